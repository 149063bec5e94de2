"""Accuracy of training configurations on the demo data, mean +- std over seeds.

Each configuration is a set of ``dali-aug train`` flags; every (configuration, seed) pair is
one ``dali-aug train`` run in a subprocess, one after the other, and the table reports the last
epoch's validation metrics (top-1 for single-label, mAP and mA for ``--multi-label``).

From the repository root:

    python -m benchmarks.accuracy_table --epochs 3 --seeds 0 1 2 --name keep \\
        --extra "--size 32 --threads 1 --device cpu" \\
        --config "Cutout=--policy none --method cutout" \\
        --config "KeepCutout=--policy none --method keep --keep-mode cutout"

Writes a record (settings, every run's command and history, the commit) to ``--out``, by
default ``runs/bench/accuracy/<name>.json`` (scratch, not tracked); a curated record goes to
``benchmarks/<topic>/results/`` (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._record import provenance


def _run(flags: list[str], seed: int, epochs: int, out: Path, extra: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "dali_aug.cli", "train", *flags, *extra]
    cmd += ["--seed", str(seed), "--epochs", str(epochs), "--out", str(out), "--no-progress"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"command": shlex.join(cmd[2:]), "seconds": time.perf_counter() - start, **metrics}


def _device(flags: list[str]) -> str:
    """The device a ``dali-aug train`` run with ``flags`` trains on (its last ``--device``;
    ``auto``, the default: CUDA where torch sees a GPU)."""
    import torch

    device = "auto"
    for flag, value in zip(flags, flags[1:], strict=False):
        if flag == "--device":
            device = value
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _stat(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} +- {100 * sd:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", action="append", required=True, help='"NAME=FLAGS"')
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--multi-label", action="store_true")
    p.add_argument("--extra", default="", help="flags added to every run")
    p.add_argument("--name", default="keep")
    p.add_argument("--workdir", default="runs/accuracy", help="the runs' output folders")
    p.add_argument("--out", default=None, help="default: runs/bench/accuracy/<name>.json")
    args = p.parse_args(argv)
    configs = {}
    for item in args.config:
        name, sep, flags = item.partition("=")
        if not sep:
            p.error(f"--config {item!r}: use NAME=FLAGS")
        configs[name] = shlex.split(flags) + (["--multi-label"] if args.multi_label else [])
    keys = ["mAP", "mA"] if args.multi_label else ["val_acc"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for seed in args.seeds:  # seeds outermost: a cut-short run still has every config
        for name, flags in configs.items():
            out = Path(args.workdir) / f"{name}-s{seed}"
            runs[name].append(_run(flags, seed, args.epochs, out, shlex.split(args.extra)))
            last = runs[name][-1]["history"][-1]
            print(f"{name} seed {seed}: " + ", ".join(f"{k} {last[k]:.4f}" for k in keys))
    print(f"\n{'config':<20}" + "".join(f"{k + ' (%)':>18}" for k in keys) + f"{'s/run':>8}")
    for name, rs in runs.items():
        cells = "".join(f"{_stat([r['history'][-1][k] for r in rs]):>18}" for k in keys)
        print(f"{name:<20}{cells}{statistics.mean(r['seconds'] for r in rs):>8.0f}")
    extra = shlex.split(args.extra)
    devices = {_device([*flags, *extra]) for flags in configs.values()}
    record = {
        "provenance": provenance("cuda" if "cuda" in devices else "cpu"),
        "settings": vars(args),
        "runs": runs,
    }
    out = Path(args.out or f"runs/bench/accuracy/{args.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
