"""The small CPU check of AWS's mechanism ("Improving Auto-Augment via Augmentation-Wise Weight
Sharing": the search lowers the probability of augmentations that hurt): a task on which one
element destroys the label. ``python -m benchmarks.aws.mechanism`` runs the search on it
(``benchmarks/aws/NOTES.md``).

Two classes, ``left`` and ``right``: which half of the image holds a bright square (side a
quarter of the image, centre x in [0.15, 0.30] or [0.70, 0.85] of the width, any height and
colour, on a dark noisy background). TranslateX at its largest element magnitude (0.45 x
width, random sign) moves the square into the other half or off the image, so a sample
augmented with it carries the wrong label or none; the small translation (0.15) keeps the
square in its half. Use it with ``flip=False`` (a flip swaps the classes too).

A second task, ``polarity`` (:func:`polarity_task`): class ``light`` is a bright square on a
dark noisy background, class ``dark`` is ``255 -`` an independent ``light`` image, so Invert
maps each class onto the other's exact distribution: every sample augmented with it carries
the wrong label (a harmful element that always flips, where the halves task's TranslateX flips
about half the time and erases the square otherwise). The pair (Invert, Invert) is the
identity, so one of the 11 pairs containing Invert is harmless.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from dali_aug.methods.aws._search import AWSConfig
from dali_aug.methods.aws._space import Element
from dali_aug.sources import ArraySource

__all__ = [
    "HALVES_ELEMENTS",
    "POLARITY_ELEMENTS",
    "halves_config",
    "halves_task",
    "polarity_config",
    "polarity_task",
]

#: A reduced search space for the check (6 elements, 36 pairs): the harmful
#: element first.
HALVES_ELEMENTS: tuple[Element, ...] = (
    Element("TranslateX", 10.0),
    Element("TranslateX", 10.0 / 3.0),
    Element("Rotate", 10.0 / 3.0),
    Element("Brightness", 10.0 / 3.0),
    Element("Contrast", 10.0 / 3.0),
    Element("Equalize"),
)


#: The reduced space for the polarity task (6 elements, 36 pairs): the harmful element first.
POLARITY_ELEMENTS: tuple[Element, ...] = (
    Element("Invert"),
    Element("TranslateX", 10.0 / 3.0),
    Element("Rotate", 10.0 / 3.0),
    Element("Brightness", 10.0 / 3.0),
    Element("Contrast", 10.0 / 3.0),
    Element("ShearX", 10.0 / 3.0),
)


def _squares(
    n: int, size: int, g: torch.Generator, contrast: float, cx: torch.Tensor
) -> torch.Tensor:
    """[n, size, size, 3] float: a bright square (side size/4, centre x ``cx`` in pixels, any
    height and colour) on uniform noise in [0, 80]."""
    side = size // 4
    cy = (0.25 + 0.5 * torch.rand(n, generator=g)) * size
    colour = 40 + contrast + 60 * torch.rand((n, 3), generator=g)
    noise = torch.rand((n, size, size, 3), generator=g) * 80
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    in_x = (grid[None, :] - cx[:, None]).abs() <= side / 2  # [n, W]
    in_y = (grid[None, :] - cy[:, None]).abs() <= side / 2  # [n, H]
    mask = (in_y[:, :, None] & in_x[:, None, :])[..., None]  # [n, H, W, 1]
    return torch.where(mask, colour[:, None, None, :], noise)


def _check_task(name: str, n: int, size: int) -> None:
    if n < 2 or size < 16:
        raise ValueError(f"{name}(n={n}, size={size}): need n >= 2 and size >= 16")


def _balanced(n: int, g: torch.Generator) -> torch.Tensor:
    labels = torch.arange(n) % 2
    return labels[torch.randperm(n, generator=g)]


def _array(images: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(images.round().clamp(0, 255).to(torch.uint8).numpy())


def halves_task(n: int, *, size: int = 16, seed: int = 0, contrast: float = 40.0) -> ArraySource:
    """``n`` images [size, size] of the left/right task, classes balanced (seeded).

    Args:
        n: images.
        size: side in pixels.
        seed: the draws.
        contrast: how much brighter than the noise (uniform in [0, 80]) the square is, at
            least; small values make the task hard enough that the reward is not saturated.
    """
    _check_task("halves_task", n, size)
    g = torch.Generator().manual_seed(seed)
    labels = _balanced(n, g)
    cx = 0.15 + 0.15 * torch.rand(n, generator=g)
    cx = torch.where(labels == 1, 1.0 - cx, cx) * size
    images = _squares(n, size, g, contrast, cx)
    return ArraySource(_array(images), labels.long(), ("left", "right"))


def polarity_task(n: int, *, size: int = 16, seed: int = 0, contrast: float = 40.0) -> ArraySource:
    """``n`` images [size, size] of the light/dark task, classes balanced (seeded).

    Args:
        n: images.
        size: side in pixels.
        seed: the draws.
        contrast: how much brighter than the noise the square is, at least.
    """
    _check_task("polarity_task", n, size)
    g = torch.Generator().manual_seed(seed)
    labels = _balanced(n, g)
    cx = (0.2 + 0.6 * torch.rand(n, generator=g)) * size
    images = _squares(n, size, g, contrast, cx)
    images = torch.where((labels == 1)[:, None, None, None], 255.0 - images, images)
    return ArraySource(_array(images), labels.long(), ("light", "dark"))


def halves_config(**overrides: Any) -> AWSConfig:
    """A CPU-small :class:`AWSConfig` for the halves task (reduced space, no flip, mild crops,
    16 px); ``overrides`` replace its fields."""
    return _small(HALVES_ELEMENTS, overrides)


def polarity_config(**overrides: Any) -> AWSConfig:
    """As :func:`halves_config`, for the polarity task (:data:`POLARITY_ELEMENTS`)."""
    return _small(POLARITY_ELEMENTS, overrides)


def _small(elements: tuple[Element, ...], overrides: dict[str, Any]) -> AWSConfig:
    base = AWSConfig(
        share_epochs=1,
        finetune_epochs=1,
        steps=2,
        elements=elements,
        flip=False,  # a flip swaps left and right (harmless for polarity, but kept equal)
        scale=(0.8, 1.0),
        size=16,
        batch_size=16,
        holdout=0.25,
        device="cpu",
        num_threads=1,
    )
    return dataclasses.replace(base, **overrides)
