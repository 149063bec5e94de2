"""End-to-end loader throughput: dali-aug Loader vs torch DataLoader + PIL RandAugment.

The job (as in ../shared/MEASURED.md): JPEGs of 400-500 px (quality 90) -> decode ->
RandomResizedCrop 224 + flip -> RandAugment(n=2, m=9) -> normalised float32 NCHW batches of
64 on the CPU. Peers, with the same number of threads/workers:

* ``dali-aug``: ``dali_aug.Loader`` (DALI CPU pipeline, ROI decode, ``num_threads``).
* ``dataloader+pil``: ``torch.utils.data.DataLoader(num_workers)`` with a PIL pipeline
  (``Image.draft``-free full decode, torchvision-style RandomResizedCrop, flip, RandAugment
  with the catalog's PIL reference ops, ``dali_aug.ops.pil_reference``).

Each peer is built outside the timed region and warmed up with one epoch; then rounds are
interleaved (peer A epoch, peer B epoch, ...) and the median images/s per peer is reported
with the ratio to the DataLoader measured in the same run.

Usage: ``python benchmarks/loader_throughput.py [--images 640] [--rounds 3] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dali_aug._pipeline import IMAGENET_MEAN, IMAGENET_STD
from dali_aug.loader import Loader
from dali_aug.ops import get
from dali_aug.ops.pil_reference import pil_apply
from dali_aug.policies import RAND_OPS, RandAugment

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255


def make_jpegs(root: Path, n: int, seed: int = 0) -> Path:
    """Photo-like JPEGs of 400-500 px, two classes."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        h, w = (int(v) for v in rng.integers(400, 501, 2))
        low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC)
        arr = np.asarray(img).astype(np.int16) + rng.integers(-12, 13, (h, w, 3))
        d = root / f"c{k % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(d / f"{k:05d}.jpg", quality=90)
    return root


class PilRandAugment(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """The DataLoader peer: PIL decode, RandomResizedCrop + flip, RandAugment(n, m)."""

    def __init__(self, root: Path, size: int = 224, n: int = 2, m: float = 9.0) -> None:
        self.files = sorted(root.glob("*/*.jpg"))
        self.size, self.n, self.m = size, n, m

    def __len__(self) -> int:
        return len(self.files)

    def _crop_box(self, w: int, h: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        area = w * h
        for _ in range(10):
            target = area * rng.uniform(0.08, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                return x, y, x + cw, y + ch
        return 0, 0, w, h

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng(i + 1_000_003 * torch.initial_seed() % 2**31)
        img = Image.open(self.files[i]).convert("RGB")
        box = self._crop_box(*img.size, rng)
        img = img.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = np.asarray(img)
        for _ in range(self.n):
            op = RAND_OPS[int(rng.integers(len(RAND_OPS)))]
            level = self.m * (-1 if get(op).signed and rng.random() < 0.5 else 1)
            arr = pil_apply(op, arr, level)
        x = torch.from_numpy(np.array(arr)).permute(2, 0, 1).float()
        return (x - MEAN) / STD, int(self.files[i].parent.name[1:])


def _epoch(iterate: Callable[[], Any]) -> tuple[float, int]:
    t0 = time.perf_counter()
    count = 0
    for images, _ in iterate():
        count += images.shape[0]
    return time.perf_counter() - t0, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--data", type=Path, default=None, help="reuse a JPEG folder")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/loader.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    root = args.data or make_jpegs(Path(tmp.name) / "jpegs", args.images)
    b = args.batch_size

    loader = Loader(
        root,
        policy=RandAugment(n=2, m=9),
        batch_size=b,
        size=224,
        num_threads=args.threads,
        device="cpu",
        seed=0,
    )

    def dali_iter() -> Any:
        return ((x.images, x.labels) for x in loader)

    dl = torch.utils.data.DataLoader(
        PilRandAugment(root),
        batch_size=b,
        shuffle=True,
        num_workers=args.threads,
        persistent_workers=True,
    )
    peers: dict[str, Callable[[], Any]] = {
        "dali-aug Loader (DALI CPU, RandAugment n2 m9)": dali_iter,
        "torch DataLoader + PIL RandAugment n2 m9": lambda: iter(dl),
    }
    for it in peers.values():  # warm-up epoch, excluded
        _epoch(it)
    runs: dict[str, list[float]] = {k: [] for k in peers}
    for r in range(args.rounds):
        for name, it in peers.items():
            loader.set_epoch(r + 1)
            seconds, count = _epoch(it)
            runs[name].append(count / seconds)
    base = statistics.median(runs["torch DataLoader + PIL RandAugment n2 m9"])
    print(
        f"\n{args.images} JPEGs 400-500 px -> 224, batch {b}, {args.threads} threads/workers,"
        f" {args.rounds} interleaved rounds after 1 warm-up epoch"
    )
    print(f"{'peer':52s} {'img/s (median)':>15s} {'min-max':>15s} {'ratio':>7s}")
    rows = []
    for name, vals in runs.items():
        med = statistics.median(vals)
        print(f"{name:52s} {med:15.1f} {min(vals):7.1f}-{max(vals):<7.1f} {med / base:6.2f}x")
        rows.append({"peer": name, "img_per_s": vals, "median": med, "ratio": med / base})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
        "settings": vars(args) | {"data": str(root), "out": str(args.out)},
        "results": rows,
    }
    args.out.write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
