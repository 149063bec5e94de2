"""Cutout (DeVries & Taylor, arXiv:1708.04552) in the training step: KeepAugment's
saliency-blind baseline."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from dali_aug.methods.keep._augment import DEFAULT_BOX_FRACTION, FillMode, box_size, fill_boxes
from dali_aug.train import DeviceGenerators, Method, Step
from dali_aug.train._generators import generators_state, load_generators_state

if TYPE_CHECKING:
    from dali_aug.batch import Batch

__all__ = ["CutoutMethod"]


class CutoutMethod(Method):
    """Cutout with KeepCutout's box (``box_fraction`` of each side, default 0.5: length 16 at
    32 px; fully inside the image, placed uniformly) and fill (``zero``: 0, the mean of
    normalised images; ``random``: Random Erasing's per-pixel standard normal), blind to
    saliency."""

    name = "cutout"

    def __init__(
        self, *, box_fraction: float = DEFAULT_BOX_FRACTION, fill: FillMode = "zero", seed: int = 0
    ) -> None:
        if not 0 < box_fraction <= 1:
            raise ValueError(f"box_fraction={box_fraction} must be in (0, 1], e.g. 0.5")
        if fill not in ("zero", "random"):
            raise ValueError(f"unknown fill {fill!r}; use 'zero' or 'random'")
        self.box_fraction, self.fill = box_fraction, fill
        self.generator = torch.Generator().manual_seed(seed)
        self._fill_generators = DeviceGenerators(seed + 1)

    def augment(self, step: Step, batch: Batch) -> Batch:
        x = batch.images
        n, _, h, w = x.shape
        bh, bw = box_size(h, w, self.box_fraction)
        y0 = torch.randint(0, h - bh + 1, (n,), generator=self.generator)
        x0 = torch.randint(0, w - bw + 1, (n,), generator=self.generator)
        boxes = torch.stack([y0, x0, y0 + bh, x0 + bw], 1).to(x.device)
        gen = None
        if self.fill == "random":
            gen = self._fill_generators(x.device)
        return dataclasses.replace(batch, images=fill_boxes(x, boxes, self.fill, generator=gen))

    def state_dict(self) -> dict[str, Any]:
        return generators_state(self.generator, self._fill_generators)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_generators_state(self.generator, self._fill_generators, state)
