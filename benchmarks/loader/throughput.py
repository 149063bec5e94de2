"""The loader throughput benchmark with the project's speed goals.

``dali-aug bench`` (the product verb) measures and prints the table; this lab script runs the
same measurement with the same flags, then prints the project's goals as ratios of that run
and adds them to the JSON record (with the git commit). From the repository root, in the
benchmark environment of ``benchmarks/setup_env.sh``:

    python -m benchmarks.loader.throughput --quick            # smoke run
    python -m benchmarks.loader.throughput --stages end-to-end --out runs/bench/loader/e2e.json

The default ``--out`` is ``dali-aug bench``'s (under ``runs/``, not tracked); a curated record
goes to ``benchmarks/loader/results/<name>.json`` (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from benchmarks._record import provenance
from dali_aug.bench import Row, add_arguments, run_from_args
from dali_aug.bench._core import Device


def _find(rows: Sequence[Row], stage: str, policy: str, prefix: str) -> Row | None:
    for row in rows:
        if row.stage == stage and row.policy == policy and row.name.startswith(prefix):
            return row
    return None


def _ratio(a: Row | None, b: Sequence[Row | None]) -> float | None:
    meds = [r.median for r in b if r is not None and r.median is not None]
    if a is None or a.median is None or not meds:
        return None
    return a.median / max(meds)


def goals(rows: Sequence[Row], device: Device) -> list[dict[str, Any]]:
    """The project's throughput goals, as ratios of this run: CPU end to end >= 1.5x the
    fastest of DataLoader + torchvision v2 / timm; GPU augmentation stage >= 1.5x DALI auto_aug and
    >= 10x Kornia (RandAugment, the faster dali-aug backend)."""
    out: list[dict[str, Any]] = []
    e2e, rand = "end-to-end", "rand-m9-n2"
    loaders = [_find(rows, e2e, rand, "a."), _find(rows, e2e, rand, "b.")]
    dataloaders = [_find(rows, e2e, rand, "c."), _find(rows, e2e, rand, "d.")]
    for ours in loaders:
        out.append(
            {
                "goal": f"{device} end-to-end: {ours.name if ours else 'dali-aug'} >= 1.5x "
                "fastest of c/d",
                "target": 1.5,
                "ratio": _ratio(ours, dataloaders),
            }
        )
    ours_stage = [_find(rows, "augment", rand, p) for p in ("dali-aug (DALI", "dali-aug (torch")]
    best = max(
        (r for r in ours_stage if r is not None and r.median is not None),
        key=lambda r: r.median or 0.0,
        default=None,
    )
    for peer, target in (("DALI auto_aug", 1.5), ("Kornia", 10.0)):
        out.append(
            {
                "goal": f"{device} augmentation stage (RandAugment): best dali-aug backend >= "
                f"{target:g}x {peer}" + ("" if device == "cuda" else " (the goal is for a GPU)"),
                "target": target,
                "ratio": _ratio(best, [_find(rows, "augment", rand, peer)]),
            }
        )
    for g in out:
        g["met"] = None if g["ratio"] is None else bool(g["ratio"] >= g["target"])
    return out


def format_goals(items: Sequence[dict[str, Any]]) -> str:
    lines = []
    for g in items:
        ratio = "n/a" if g["ratio"] is None else f"{g['ratio']:.2f}x"
        state = "n/a" if g["met"] is None else ("met" if g["met"] else "not met")
        lines.append(f"goal: {g['goal']}: {ratio} ({state})")
    return "\n".join(lines)


def _annotate(rows: list[Row], record: dict[str, Any]) -> None:
    device = record["settings"]["device"]
    found = goals(rows, device)
    print(format_goals(found))
    record["goals"] = found
    record["provenance"] = provenance("cuda" if device == "cuda" else "cpu")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loader.throughput")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv), annotate=_annotate)


if __name__ == "__main__":
    raise SystemExit(main())
