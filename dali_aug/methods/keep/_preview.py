"""keep.png: KeepAugment's boxes over the images and over the saliency maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dali_aug.methods.keep.method import KeepMode, KeepResult
from dali_aug.viz import denormalize, draw_boxes, heatmap, save_grid

__all__ = ["save_preview"]


def save_preview(result: KeepResult, mode: KeepMode, path: str | Path, *, cols: int = 8) -> Path:
    """Writes a PNG of a :class:`KeepResult`: rows of augmented images with the changed box
    (red: cut or CutMix target; green: pasted back) above rows of the saliency maps with the
    same box (blue: cut or CutMix target; green: pasted back; cyan: for CutMix, the source box
    that image gave to its partner)."""
    images = denormalize(result.batch.images)
    maps = heatmap(result.saliency)
    color = (0, 255, 0) if mode == "paste" else (255, 0, 0)
    images = draw_boxes(images, result.boxes, color)
    maps = draw_boxes(maps, result.boxes, (0, 255, 0) if mode == "paste" else (0, 96, 255))
    what = {"cutout": "cut", "paste": "pasted back", "cutmix": "CutMix target"}[mode]
    captions_top = [f"{what} {tuple(b)}" for b in result.boxes.tolist()]
    captions_bottom = ["saliency"] * len(maps)
    if result.partner_boxes is not None:  # the source box, drawn in the partner's map
        n = len(maps)
        partner = torch.roll(torch.arange(n), 1)
        src = torch.empty_like(result.partner_boxes)
        src[partner] = result.partner_boxes  # image partner[i] gave partner_boxes[i]
        maps = draw_boxes(maps, src.cpu(), (0, 255, 255))
        captions_bottom = ["saliency (cyan: patch given)"] * n
    tiles, captions = [], []
    for start in range(0, len(images), cols):
        tiles += [images[start : start + cols], maps[start : start + cols]]
        captions += captions_top[start : start + cols] + captions_bottom[start : start + cols]
    return save_grid(np.concatenate(tiles), captions, path, cols=cols)
