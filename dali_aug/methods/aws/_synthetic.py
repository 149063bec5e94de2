"""The small CPU check of AWS's mechanism (``papers/DIGEST.md`` §3.4): a task on which one
element destroys the label.

Two classes, ``left`` and ``right``: which half of the image holds a bright square (side a
quarter of the image, centre x in [0.15, 0.30] or [0.70, 0.85] of the width, any height and
colour, on a dark noisy background). TranslateX at its largest element magnitude (0.45 x
width, random sign) moves the square into the other half or off the image, so a sample
augmented with it carries the wrong label or none; the small translation (0.15) keeps the
square in its half. Use it with ``flip=False`` (a flip swaps the classes too).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from dali_aug.methods.aws._search import AWSConfig
from dali_aug.methods.aws._space import Element
from dali_aug.sources import ArraySource

__all__ = ["HALVES_ELEMENTS", "halves_config", "halves_task"]

#: A reduced search space for the check (6 elements, 36 pairs; DIGEST §3.4): the harmful
#: element first.
HALVES_ELEMENTS: tuple[Element, ...] = (
    Element("TranslateX", 10.0),
    Element("TranslateX", 10.0 / 3.0),
    Element("Rotate", 10.0 / 3.0),
    Element("Brightness", 10.0 / 3.0),
    Element("Contrast", 10.0 / 3.0),
    Element("Equalize"),
)


def halves_task(n: int, *, size: int = 16, seed: int = 0, contrast: float = 40.0) -> ArraySource:
    """``n`` images [size, size] of the left/right task, classes balanced (seeded).

    Args:
        n: images.
        size: side in pixels.
        seed: the draws.
        contrast: how much brighter than the noise (uniform in [0, 80]) the square is, at
            least; small values make the task hard enough that the reward is not saturated.
    """
    if n < 2 or size < 16:
        raise ValueError(f"halves_task(n={n}, size={size}): need n >= 2 and size >= 16")
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    labels = labels[torch.randperm(n, generator=g)]
    side = size // 4
    cx = 0.15 + 0.15 * torch.rand(n, generator=g)
    cx = torch.where(labels == 1, 1.0 - cx, cx) * size
    cy = (0.25 + 0.5 * torch.rand(n, generator=g)) * size
    colour = 40 + contrast + 60 * torch.rand((n, 3), generator=g)
    noise = torch.rand((n, size, size, 3), generator=g) * 80
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    in_x = (grid[None, :] - cx[:, None]).abs() <= side / 2  # [n, W]
    in_y = (grid[None, :] - cy[:, None]).abs() <= side / 2  # [n, H]
    mask = (in_y[:, :, None] & in_x[:, None, :])[..., None]  # [n, H, W, 1]
    images = torch.where(mask, colour[:, None, None, :], noise)
    array = images.round().clamp(0, 255).to(torch.uint8).numpy()
    return ArraySource(np.ascontiguousarray(array), labels.long(), ("left", "right"))


def halves_config(**overrides: Any) -> AWSConfig:
    """A CPU-small :class:`AWSConfig` for the halves task (reduced space, no flip, mild crops,
    16 px); ``overrides`` replace its fields."""
    base = AWSConfig(
        share_epochs=1,
        finetune_epochs=1,
        steps=2,
        elements=HALVES_ELEMENTS,
        flip=False,  # a flip swaps left and right
        scale=(0.8, 1.0),
        size=16,
        batch_size=16,
        holdout=0.25,
        device="cpu",
        num_threads=1,
    )
    return dataclasses.replace(base, **overrides)
