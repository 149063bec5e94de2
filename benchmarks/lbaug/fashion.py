"""LB-Aug against label-agnostic policies on real images (issue 27; paper Table 1,
qualitatively): the Fashion-MNIST mosaics' ``lbaug`` variant
(:mod:`dali_aug.datasets._fashion_multi`), whose labels include ones that some ops destroy
(footwear-left/-right: FlipLR; bag-upper/-lower: FlipUD; inverted: Invert, Solarize) beside
presence labels.

Steps, from the repository root:

    python -m benchmarks.lbaug.fashion regime   # development seeds: does augmentation help?
    python -m benchmarks.lbaug.fashion search   # an LB-Aug_H and an LB-Aug_E actor per seed
    python -m benchmarks.lbaug.fashion table    # held-out seeds: the five rows
    python -m benchmarks.lbaug.fashion labels   # per-label AP of the table's runs

``regime`` (``benchmarks/lbaug/results/fashion_regime.json``): 500 training mosaics, 56 px,
the small CNN, AdamW, 60 epochs, development seeds 0-2: no augmentation against the baseline
augmentation, a pad-and-random-crop by 4 px without the flip (a flip would swap the
left/right labels). Fixed before the runs: the regime holds if the baseline beats no
augmentation in mAP on every development seed.

``search`` (actors in ``runs/lbaug-fashion/actors/``): for each held-out seed, ``dali-aug
search lbaug`` on that seed's 500 training mosaics with the same crop, K = 8 critics (the
small CNN, 5 epochs), 20 actor epochs, the ``aa+flips`` space (the defaults), once
``--variant h`` and once ``--variant e``.

``table`` (``.../fashion.json``), held-out seeds 100-102 (written before any run): the
baseline; a label-agnostic random policy (TrivialAugment-wide: one op of a fixed space at a
random magnitude per image); a dataset-level policy (RandAugment m5-n1, the regime's; no
label-free variant of the search exists here, so it stands for the FAA-like row);
LB-Aug_E; LB-Aug_H. The paper's claim, read before the runs: LB-Aug (E or H) beats both
label-agnostic rows in mAP, and by most on the destroyable labels (``labels``:
``.../fashion_labels.json``, the AP of each label per run).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks._record import write_record
from benchmarks.accuracy_table import table_runs
from benchmarks.fashion.regime import run

DEV_SEEDS = (0, 1, 2)
SEEDS = (100, 101, 102)
EPOCHS = 60
TRAIN = 500
DATA = "fashion-mnist-multi-lbaug"
REGIME = f"--data {DATA} --train-size {TRAIN} --device cpu --eval-every 20"
NONE = "--crop pad --pad 0 --no-flip --policy none"
BASE = "--crop pad --pad 4 --no-flip --policy none"
ACTORS = Path("runs/lbaug-fashion/actors")
SEARCH = f"--data {DATA} --train-size {TRAIN} --crop pad --pad 4 --device cpu --threads 1"
REGIME_ROWS = {"none": NONE, "baseline (crop)": BASE}
TABLE_ROWS = {
    "baseline (crop)": BASE,
    "random policy (TrivialAugment-wide)": BASE.replace("--policy none", "--policy ta-wide"),
    "RandAugment-m5-n1": BASE.replace("--policy none", "--policy ra-m5-n1"),
    "LB-Aug_E": f"{BASE} --method lbaug --actor {ACTORS}/e-s{{seed}}.pt",
    "LB-Aug_H": f"{BASE} --method lbaug --actor {ACTORS}/h-s{{seed}}.pt",
}
#: attempt 2 (written after the table, where every row tied and the label-agnostic rows'
#: spaces turned out to hold none of the destroying ops: TrivialAugment-wide and RandAugment
#: have no FlipLR, FlipUD or Invert): a random policy over LB-Aug's own space, aa+flips,
#: each op equally likely, applied with probability 0.5 (the mean of LB-Aug's 11 apply
#: probabilities) at a uniform level 1-10 (random sign)
RANDOM_SPACE = ACTORS.parent / "random_space_policy.json"
TABLE2_ROWS = {"random policy over LB-Aug's space": BASE.replace("none", str(RANDOM_SPACE))}
RESULTS = Path("benchmarks/lbaug/results")
WORKDIR = "runs/lbaug-fashion"


def search(seeds: tuple[int, ...], jobs: int) -> int:
    """The actors of every seed and variant (two searches side by side, one thread each)."""
    ACTORS.mkdir(parents=True, exist_ok=True)
    cmds = []
    for seed in seeds:
        for variant in ("h", "e"):
            out = ACTORS / f"{variant}-s{seed}.pt"
            if out.exists():
                continue
            cmds.append([sys.executable, "-m", "dali_aug.cli", "search", "lbaug",
                         *shlex.split(SEARCH), "--variant", variant, "--seed", str(seed),
                         "--out", str(out), "--no-progress"])  # fmt: skip
    return run_commands(cmds, jobs)


def run_commands(cmds: list[list[str]], jobs: int) -> int:
    """Runs ``cmds`` ``jobs`` at a time, each on one thread; 1 if any failed, else 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    failed = 0
    for start in range(0, len(cmds), jobs):
        procs = [subprocess.Popen(c, env=env) for c in cmds[start : start + jobs]]
        failed += sum(p.wait() != 0 for p in procs)
    return 1 if failed else 0


def random_space_policy(path: Path) -> None:
    """Writes the attempt-2 policy (see :data:`RANDOM_SPACE`): one sub-policy per op and
    level, weighted so that every op of the space is drawn equally often."""
    from dali_aug.methods.lbaug.cli import _ops
    from dali_aug.ops import get
    from dali_aug.policies import OpSpec, Policy

    subs, weights = [], []
    for op in _ops("aa+flips"):  # the searches' space (the CLI's default)
        levels = range(1, 11) if get(op).has_magnitude else [0]
        for level in levels:
            subs.append((OpSpec(op, 0.5, level),))
            weights.append(1.0 / len(levels))
    policy = Policy("random over aa+flips", tuple(subs), weights=tuple(weights))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(policy.to_dict(), indent=1))


def labels(table: Path, out: Path) -> dict[str, Any]:
    """Each run's per-label AP (its ``metrics.json``), by row."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, seed, folder in table_runs(table):
        per_label = json.loads((folder / "metrics.json").read_text())["per_label"]
        ap = {label: v["ap"] for label, v in per_label.items()}
        rows.setdefault(name, []).append({"seed": seed, "ap": ap})
    write_record(out, {"table": str(table)}, torch.device("cpu"), runs=rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("step", choices=["regime", "search", "table", "labels", "table2"])
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    common: dict[str, Any] = {"jobs": args.jobs, "regime": REGIME, "epochs": EPOCHS,
                              "multi_label": True, "workdir": WORKDIR}  # fmt: skip
    if args.step == "regime":
        out = str(RESULTS / "fashion_regime.json")
        return run("lbaug-regime", REGIME_ROWS, out, seeds=DEV_SEEDS, **common)
    if args.step == "search":
        return search(SEEDS, args.jobs)
    if args.step == "table2":
        random_space_policy(RANDOM_SPACE)
        out = str(RESULTS / "fashion_random_space.json")
        return run("lbaug-table2", TABLE2_ROWS, out, seeds=SEEDS, **common)
    if args.step == "table":
        return run("lbaug-table", TABLE_ROWS, str(RESULTS / "fashion.json"), seeds=SEEDS, **common)
    rows = labels(RESULTS / "fashion.json", RESULTS / "fashion_labels.json")
    if (RESULTS / "fashion_random_space.json").exists():  # attempt 2's row
        rows |= labels(
            RESULTS / "fashion_random_space.json", RESULTS / "fashion_random_space_labels.json"
        )
    for name, runs in rows.items():
        names = runs[0]["ap"]
        means = {k: sum(r["ap"][k] for r in runs) / len(runs) for k in names}
        print(name, {k: round(v, 3) for k, v in means.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
