"""Runs real client programs on the Loader, with only their loaders' construction changed
(issue 28): pytorch/examples' ``imagenet/main.py`` under ``torchrun --nproc_per_node=2``
with gloo (train, validate, ``--resume``) and timm's ``train.py`` (prefetcher path with
RandAugment and Random Erasing in the Loader, ``--resume``, and ``--mixup`` with
``--no-prefetcher``), on a small generated ImageFolder, on the CPU.

The programs are not in this repository: fetch them (pytorch/examples at 77f55b9,
``imagenet/main.py``; huggingface/pytorch-image-models at aa4b585, ``train.py``) and pass
their paths. This script copies them to a work folder, applies ``imagenet_main.diff`` /
``timm_train.diff`` (the loader constructions, nothing else), runs them through
``log_orders.py`` (which records the indices of every training batch per rank and epoch,
without changing what the program does) and checks:

* each program exits 0 and prints its validation summary;
* a run stopped after epoch 2 and resumed with ``--resume`` trains epoch 3 in the order an
  uninterrupted run gave its epoch 3, on every rank;
* under torchrun the ranks' training samples are disjoint and cover the data every epoch.

It needs torchvision and timm (``benchmarks/setup_env.sh`` makes ``.venv-bench``):

    .venv-bench/bin/python -m benchmarks.clients.run --imagenet-main PATH/main.py \\
        --timm-train PATH/train.py --out benchmarks/clients/results/clients.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks._record import write_record

HERE = Path(__file__).resolve().parent
TRAIN, VAL = 48, 17  # images: 17 validation images do not split evenly over 2 ranks


def _patched(src: Path, diff: Path, work: Path, name: str) -> Path:
    """``src`` copied into ``work`` as ``name`` with ``diff`` applied."""
    target = work / name
    shutil.copy(src, target)
    subprocess.run(["patch", "-s", str(target), str(diff)], check=True)
    return target


def _run(cmd: list[str], cwd: Path, log: Path, orders: Path) -> int:
    env = {**os.environ, "ORDER_LOG": str(orders), "OMP_NUM_THREADS": "1"}
    with log.open("w") as fh:
        done = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return done.returncode


def _orders(path: Path) -> dict[tuple[int, int], list[int]]:
    """(rank, epoch) -> the training indices in order, from ``log_orders.py``'s log."""
    out: dict[tuple[int, int], list[int]] = collections.defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            out[(row["rank"], row["epoch"])] += row["indices"]
    return out


def _check(full: dict[Any, list[int]], resumed: dict[Any, list[int]], ranks: int) -> dict:
    """The resumed run's last epoch against the uninterrupted run's, and the ranks' cover."""
    last = max(e for _, e in full)
    same = all(resumed.get((r, last)) == full[(r, last)] for r in range(ranks))
    cover = all(
        sorted(i for r in range(ranks) for i in full[(r, e)]) == list(range(TRAIN))
        for e in range(last + 1)
    )
    differ = all(full[(0, e)] != full[(0, e + 1)] for e in range(last))
    return {
        "resumed_epoch": last,
        "resumed_order_equals_uninterrupted": same,
        "ranks_cover_the_data_every_epoch": cover if ranks > 1 else None,
        "epochs_differ": differ,
    }


def imagenet(main: Path, work: Path, data: Path) -> dict[str, Any]:
    script = _patched(main, HERE / "imagenet_main.diff", work, "main.py")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              "--nproc_per_node=2", str(HERE / "log_orders.py"), str(script), str(data),
              "-a", "resnet18", "--dist-url", "env://", "--dist-backend", "gloo", "-b", "8",
              "-j", "1", "-p", "1"]  # fmt: skip
    runs = {}
    resume = ["--epochs", "3", "--resume", "checkpoint.pth.tar"]
    for name, extra in (("full", ["--epochs", "3"]), ("part", ["--epochs", "2"]),
                        ("resumed", resume)):  # fmt: skip
        cwd = work / ("full" if name == "full" else "part")
        cwd.mkdir(exist_ok=True)
        log = cwd / f"{name}.log"
        code = _run(launch + extra, cwd, log, cwd / f"{name}.jsonl")
        text = log.read_text()
        runs[name] = {"rc": code, "validated": text.count(" *   Acc@1"), "tail": text[-400:]}
    full = _orders(work / "full" / "full.jsonl")
    resumed = _orders(work / "part" / "resumed.jsonl")
    return {"diff": _diff_size(HERE / "imagenet_main.diff"), "runs": runs,
            **_check(full, resumed, 2)}  # fmt: skip


def timm(train: Path, work: Path, data: Path) -> dict[str, Any]:
    script = _patched(train, HERE / "timm_train.diff", work, "train.py")
    base = [sys.executable, str(HERE / "log_orders.py"), str(script), "--data-dir", str(data),
            "--model", "resnet18", "--num-classes", "4", "--img-size", "32", "-b", "8",
            "--workers", "1", "--device", "cpu", "--log-interval", "1",
            "--val-split", "val"]  # fmt: skip
    aug = ["--reprob", "0.25", "--aa", "rand-m9-mstd0.5-inc1", "--experiment", "e"]
    runs = {}
    for name, extra in (
        ("full", [*aug, "--epochs", "3", "--output", "full"]),
        ("part", [*aug, "--epochs", "2", "--output", "part"]),
        ("resumed", [*aug, "--epochs", "3", "--output", "part", "--resume", "part/e/last.pth.tar"]),
        ("mixup", ["--mixup", "0.2", "--no-prefetcher", "--epochs", "2", "--output", "mixup"]),
    ):
        log = work / f"timm_{name}.log"
        code = _run(base + extra, work, log, work / f"timm_{name}.jsonl")
        text = log.read_text()
        runs[name] = {"rc": code, "validated": text.count("Test: ["), "tail": text[-400:]}
    full = _orders(work / "timm_full.jsonl")
    resumed = _orders(work / "timm_resumed.jsonl")
    return {"diff": _diff_size(HERE / "timm_train.diff"), "runs": runs,
            **_check(full, resumed, 1)}  # fmt: skip


def _diff_size(diff: Path) -> dict[str, int]:
    lines = diff.read_text().splitlines()
    return {
        "removed": sum(1 for x in lines if x.startswith("-") and not x.startswith("---")),
        "added": sum(1 for x in lines if x.startswith("+") and not x.startswith("+++")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imagenet-main", type=Path, help="pytorch/examples imagenet/main.py")
    parser.add_argument("--timm-train", type=Path, help="timm's train.py")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "clients.json")
    args = parser.parse_args()
    from dali_aug.datasets import make_shapes

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dali_aug_clients_") as tmp:
        data = Path(tmp) / "data"
        make_shapes(data / "train", TRAIN, seed=1, size=64)
        make_shapes(data / "val", VAL, seed=2, size=64)
        if args.imagenet_main is not None:
            (Path(tmp) / "imagenet").mkdir()
            results["imagenet_example"] = imagenet(args.imagenet_main, Path(tmp) / "imagenet", data)
        if args.timm_train is not None:
            (Path(tmp) / "timm").mkdir()
            results["timm_train"] = timm(args.timm_train, Path(tmp) / "timm", data)
    settings = {"train_images": TRAIN, "val_images": VAL, "size": 64}
    write_record(args.out, settings, torch.device("cpu"), **results)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
