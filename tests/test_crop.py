"""The training crops (``rrc``, ``pad``), the random-resized crop's ratio, the evaluation
crop's share."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dali_aug._pipeline import CROP_ATTEMPTS, crop_uniforms
from dali_aug.loader import Loader, LoaderConfig
from dali_aug.ops._normalize import normalize
from dali_aug.sources import ArraySource, open_source


def _images(n: int = 12, side: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def _source(images: np.ndarray) -> ArraySource:
    return ArraySource(images, torch.arange(len(images)) % 2, ("a", "b"))


def _config(**kw: object) -> LoaderConfig:
    base: dict[str, object] = {
        "batch_size": 12,
        "size": 20,
        "device": "cpu",
        "num_threads": 1,
        "shuffle": False,
        "flip": False,
    }
    return LoaderConfig(**{**base, **kw})  # type: ignore[arg-type]


def _shifted(image: np.ndarray, dy: int, dx: int) -> torch.Tensor:
    """``image`` [H, W, 3] seen through its own window moved by (dy, dx), zeros outside:
    output pixel (y, x) is input pixel (y + dy, x + dx)."""
    h, w, _ = image.shape
    out = np.zeros_like(image)
    ys, yd = slice(max(0, dy), h + min(0, dy)), slice(max(0, -dy), h + min(0, -dy))
    xs, xd = slice(max(0, dx), w + min(0, dx)), slice(max(0, -dx), w + min(0, -dx))
    out[yd, xd] = image[ys, xs]
    return normalize(torch.from_numpy(out).permute(2, 0, 1)[None])[0]


def _shift_of(image: np.ndarray, got: torch.Tensor, pad: int) -> tuple[int, int] | None:
    for dy in range(-pad - 1, pad + 2):
        for dx in range(-pad - 1, pad + 2):
            if torch.allclose(_shifted(image, dy, dx), got, atol=1e-5):
                return dy, dx
    return None


def test_pad_crop_shifts_each_image_by_at_most_pad_with_zero_fill() -> None:
    x = _images()
    batch = next(iter(Loader(_source(x), config=_config(crop="pad", pad=3, seed=5))))
    shifts = [_shift_of(x[i], batch.images[i], 3) for i in range(len(x))]
    assert None not in shifts
    assert all(max(abs(dy), abs(dx)) <= 3 for dy, dx in shifts)  # type: ignore[misc]
    assert len(set(shifts)) > 3  # each image has its own shift
    again = next(iter(Loader(_source(x), config=_config(crop="pad", pad=3, seed=5))))
    assert torch.equal(batch.images, again.images)
    other = next(iter(Loader(_source(x), config=_config(crop="pad", pad=3, seed=6))))
    assert not torch.equal(batch.images, other.images)


def test_pad_zero_is_the_image_itself_and_evaluation_takes_the_whole_image() -> None:
    x = _images()
    ref = normalize(torch.from_numpy(x).permute(0, 3, 1, 2))
    for cfg in (_config(crop="pad", pad=0), _config(crop="pad", train=False)):
        batch = next(iter(Loader(_source(x), config=cfg)))
        torch.testing.assert_close(batch.images, ref, atol=1e-5, rtol=0)
    # under rrc the evaluation crop is timm's 0.875: a zoom, not the image
    zoomed = next(iter(Loader(_source(x), config=_config(train=False))))
    assert (zoomed.images - ref).abs().max() > 0.5
    assert _config(train=False).eval_crop_pct == 0.875
    assert _config(crop="pad").eval_crop_pct == 1.0
    assert _config(crop="pad", crop_pct=0.5).eval_crop_pct == 0.5


def test_pad_crop_of_files_matches_the_arrays_and_resizes_the_shorter_side(
    tmp_path: Path,
) -> None:
    x = _images(n=4, side=20)
    for i, img in enumerate(x):
        folder = tmp_path / ("a" if i % 2 == 0 else "b")
        folder.mkdir(exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")
    files = open_source(tmp_path)
    order = [int(Path(p).stem) for p in files.paths]  # type: ignore[attr-defined]
    cfg = _config(batch_size=4, crop="pad", pad=2, seed=1)
    got = next(iter(Loader(files, config=cfg))).images
    want = next(iter(Loader(_source(x[order]), config=cfg))).images
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    big = next(iter(Loader(files, config=_config(batch_size=4, size=10, crop="pad", pad=1))))
    assert big.images.shape == (4, 3, 10, 10)


def test_ratio_bounds_the_drawn_aspect_ratios() -> None:
    g = torch.Generator().manual_seed(0)
    u = crop_uniforms(400, (0.08, 1.0), g, ratio=(1.0, 2.0))
    ratios = np.exp(u[:, CROP_ATTEMPTS : 2 * CROP_ATTEMPTS])
    assert ratios.min() >= 1.0 - 1e-6 and ratios.max() <= 2.0 + 1e-6
    assert ratios.max() > 1.9 and ratios.min() < 1.1


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"crop": "centre"}, "crop='centre'"),
        ({"crop": "pad", "pad": 20}, "pad=20"),
        ({"pad": -1}, "pad=-1"),
        ({"crop_pct": 0.0}, "crop_pct=0.0"),
        ({"crop_pct": 1.5}, "crop_pct=1.5"),
        ({"ratio": (2.0, 1.0)}, "ratio="),
        ({"ratio": (0.0, 1.0)}, "ratio="),
        ({"ratio": (1.0, math.inf)}, "ratio="),
    ],
)
def test_bad_crop_settings_are_named(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _config(**kw)
