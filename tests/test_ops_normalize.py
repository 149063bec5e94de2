"""Tests for dali_aug.ops._normalize: the one place of the ImageNet normalisation."""

from __future__ import annotations

import torch

from dali_aug import ops, viz
from dali_aug.ops import IMAGENET_MEAN, IMAGENET_STD, denormalize, normalize


def test_normalize_matches_the_formula(device: str) -> None:
    x = torch.randint(0, 256, (3, 3, 5, 7), dtype=torch.uint8, device=device)
    out = normalize(x)
    assert out.dtype == torch.float32 and out.device == x.device
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (x.float() / 255 - mean) / std, rtol=1e-5, atol=1e-5)
    as_float = normalize(x.float() / 255.0, scale=1.0)
    torch.testing.assert_close(as_float, out, rtol=1e-5, atol=1e-5)


def test_denormalize_inverts_normalize() -> None:
    x = torch.randint(0, 256, (4, 3, 6, 6), dtype=torch.uint8)
    back = denormalize(normalize(x))
    assert back.dtype.name == "uint8" and back.shape == (4, 6, 6, 3)
    assert (back == x.permute(0, 2, 3, 1).numpy()).all()


def test_one_place() -> None:
    """viz re-exports the ops' functions and constants (no copy of its own)."""
    assert viz.normalize is ops.normalize and viz.denormalize is ops.denormalize
    assert viz.IMAGENET_MEAN is IMAGENET_MEAN and viz.IMAGENET_STD is IMAGENET_STD
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
