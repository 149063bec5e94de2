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
default ``runs/bench/accuracy/<name>.json`` (scratch, not tracked), rewritten after every
finished run (a cut-short table keeps what it has); a curated record goes to
``benchmarks/<topic>/results/`` (``benchmarks/RESULTS.md``).

A ``{seed}`` in a configuration's flags becomes the run's seed (e.g. a policy searched per
seed: ``--policy runs/aws/s{seed}/policy.json``).

Every run trains on one thread (``OMP_NUM_THREADS=1``, and ``--threads 1`` unless the flags
set it: the accuracies depend on the thread count, through the order of floating-point
sums); ``--jobs N`` runs N of them side by side, which changes the seconds per run only.
The table's last column is each configuration's mean difference to the first configuration,
in points and in units of the larger of the two standard deviations.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._record import provenance


def run_folder(workdir: str | Path, name: str, seed: int) -> Path:
    """The output folder of row ``name``'s run with ``seed`` under ``workdir``."""
    return Path(workdir) / f"{name}-s{seed}"


def table_runs(table: str | Path) -> Iterator[tuple[str, int, Path]]:
    """(row, seed, run folder) of every run of a record this script wrote, in its order (for
    scripts that read more from the runs' folders than the record keeps)."""
    record = json.loads(Path(table).read_text())
    for name, runs in record["runs"].items():
        for run in runs:
            yield name, run["seed"], run_folder(record["settings"]["workdir"], name, run["seed"])


def _run(flags: list[str], seed: int, epochs: int, out: Path, extra: list[str]) -> dict[str, Any]:
    flags = [f.replace("{seed}", str(seed)) for f in flags]  # per-seed inputs (a searched policy)
    cmd = [sys.executable, "-m", "dali_aug.cli", "train", *flags, *extra]
    cmd += ["--seed", str(seed), "--epochs", str(epochs), "--out", str(out), "--no-progress"]
    cmd += ["--overwrite"] if (out / "args.yaml").exists() else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd += [] if "--threads" in cmd else ["--threads", "1"]
    start = time.perf_counter()
    done = subprocess.run(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd[2:])} failed:\n{done.stderr[-2000:]}")
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
    p.add_argument("--jobs", type=int, default=1, help="runs side by side (one thread each)")
    args = p.parse_args(argv)
    configs = {}
    for item in args.config:
        name, sep, flags = item.partition("=")
        if not sep:
            p.error(f"--config {item!r}: use NAME=FLAGS")
        configs[name] = shlex.split(flags) + (["--multi-label"] if args.multi_label else [])
    keys = ["mAP", "mA"] if args.multi_label else ["val_acc"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    failures: list[dict[str, Any]] = []
    extra = shlex.split(args.extra)
    devices = {_device([*flags, *extra]) for flags in configs.values()}
    out = Path(args.out or f"runs/bench/accuracy/{args.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        ordered = {n: sorted(rs, key=lambda r: r["seed"]) for n, rs in runs.items()}
        record = {
            "provenance": provenance("cuda" if "cuda" in devices else "cpu"),
            "settings": vars(args),
            "runs": ordered,
            "failures": failures,
        }
        out.write_text(json.dumps(record, indent=2))

    # seeds outermost: a cut-short table still has every config
    work = [(name, seed) for seed in args.seeds for name in configs]
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            pool.submit(
                _run,
                configs[name],
                seed,
                args.epochs,
                run_folder(args.workdir, name, seed),
                extra,
            ): (name, seed)
            for name, seed in work
        }
        for future in concurrent.futures.as_completed(futures):
            name, seed = futures[future]
            try:
                result = {"seed": seed, **future.result()}
            except RuntimeError as err:  # one failed run does not end the table
                print(f"{name} seed {seed}: FAILED\n{err}", flush=True)
                failures.append({"config": name, "seed": seed, "error": str(err)[-2000:]})
                write()
                continue
            runs[name].append(result)
            last = result["history"][-1]
            print(
                f"{name} seed {seed}: "
                + ", ".join(f"{k} {last[k]:.4f}" for k in keys)
                + f" ({result['seconds']:.0f} s)",
                flush=True,
            )
            write()
    print(table(runs, keys))
    print(f"wrote {out}")
    return 1 if failures else 0


def table(runs: dict[str, list[dict[str, Any]]], keys: list[str]) -> str:
    """The table of a record's runs: mean +- std per configuration and metric, the seeds, the
    seconds per run, and the first metric's difference to the first configuration."""
    lines = [
        f"{'config':<28}"
        + "".join(f"{k + ' (%)':>16}" for k in keys)
        + f"{'n':>4}{'s/run':>7}  vs {next(iter(runs), '')}"
    ]
    ref = None
    for name, rs in runs.items():
        if not rs:
            continue
        cells = "".join(f"{_stat([r['history'][-1][k] for r in rs]):>16}" for k in keys)
        values = [100 * r["history"][-1][keys[0]] for r in rs]
        mean = statistics.mean(values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        diff = ""
        if ref is None:
            ref = (mean, sd)
        else:
            delta, unit = mean - ref[0], max(sd, ref[1])
            diff = f"{delta:+.2f} ({delta / unit:+.1f} sd)" if unit > 0 else f"{delta:+.2f}"
        secs = statistics.mean(r["seconds"] for r in rs)
        lines.append(f"{name:<28}{cells}{len(rs):>4}{secs:>7.0f}  {diff}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
