"""Cutout (DeVries & Taylor, arXiv:1708.04552) in the training step: KeepAugment's
saliency-blind baseline."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from dali_aug.methods.keep._augment import box_size
from dali_aug.ops._torch_kernels import box_mask
from dali_aug.train import Method, Step

if TYPE_CHECKING:
    from dali_aug.batch import Batch

__all__ = ["CutoutMethod"]


class CutoutMethod(Method):
    """Cutout with KeepCutout's box (``box_fraction`` of each side, fully inside the image,
    placed uniformly) and fill (0, the mean of normalised images), blind to saliency."""

    name = "cutout"

    def __init__(self, *, box_fraction: float = 0.25, seed: int = 0) -> None:
        if not 0 < box_fraction <= 1:
            raise ValueError(f"box_fraction={box_fraction} must be in (0, 1]")
        self.box_fraction = box_fraction
        self.generator = torch.Generator().manual_seed(seed)

    def augment(self, step: Step, batch: Batch) -> Batch:
        x = batch.images
        n, _, h, w = x.shape
        bh, bw = box_size(h, w, self.box_fraction)
        y0 = torch.randint(0, h - bh + 1, (n,), generator=self.generator)
        x0 = torch.randint(0, w - bw + 1, (n,), generator=self.generator)
        boxes = torch.stack([y0, x0, y0 + bh, x0 + bw], 1).to(x.device)
        images = torch.where(box_mask(boxes, h, w), torch.zeros_like(x), x)
        return dataclasses.replace(batch, images=images)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
