"""Benchmark data: a generated ImageFolder of ImageNet-like JPEGs, and the per-image datasets
the DataLoader peers read it with (PIL or torchvision decode)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dali_aug.datasets import cache_dir

__all__ = ["FileDataset", "jpeg_folder", "make_jpegs", "pil_rrc_flip", "random_crop_box"]


def make_jpegs(root: Path, n: int, *, seed: int = 0, lo: int = 400, hi: int = 500) -> Path:
    """Writes ``n`` photo-like JPEGs (smooth colour fields + noise) of ``lo``-``hi`` px per
    side, quality 90, in two class folders ``root/c0`` and ``root/c1``."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        h, w = (int(v) for v in rng.integers(lo, hi + 1, 2))
        low = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((w, h), Image.Resampling.BICUBIC)
        arr = np.asarray(img).astype(np.int16) + rng.integers(-12, 13, (h, w, 3))
        d = root / f"c{k % 2}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(d / f"{k:05d}.jpg", quality=90)
    return root


def jpeg_folder(n: int, *, seed: int = 0, data: Path | None = None) -> Path:
    """``data`` if given (an existing ImageFolder), else the generated folder of ``n`` JPEGs,
    made once and cached under ``$DALI_AUG_CACHE`` (default ``~/.cache/dali_aug``)."""
    if data is not None:
        if not Path(data).is_dir():
            raise ValueError(f"--data {data} is not a folder; pass an ImageFolder of JPEGs")
        return Path(data)
    root = cache_dir() / f"bench-jpegs-{n}-s{seed}"
    done = root / ".complete"
    if not done.is_file():
        make_jpegs(root, n, seed=seed)
        done.write_text(f"{n} JPEGs, seed {seed}\n")
    return root


def random_crop_box(
    w: int, h: int, rng: np.random.Generator, scale: tuple[float, float] = (0.08, 1.0)
) -> tuple[int, int, int, int]:
    """A RandomResizedCrop window (torchvision's rule: 10 tries, then the whole image)."""
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return x, y, x + cw, y + ch
    return 0, 0, w, h


def pil_rrc_flip(path: str, index: int, size: int) -> torch.Tensor:
    """Plain decode (PIL) + RandomResizedCrop ``size`` (bilinear) + horizontal flip: uint8
    [3, size, size]. The randomness derives from the worker's seed and the index."""
    rng = np.random.default_rng((torch.initial_seed() % 2**31, index))
    with Image.open(path) as f:
        img = f.convert("RGB")
    box = random_crop_box(*img.size, rng)
    img = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()


class FileDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """``load(path, index) -> tensor`` for each file; the label is the class index."""

    def __init__(
        self, files: list[str], targets: list[int], load: Callable[[str, int], Any]
    ) -> None:
        self.files, self.targets, self.load = files, targets, load

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return self.load(self.files[i], i), self.targets[i]
