"""Pictures for humans: a grid of augmented images labelled with the ops applied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

# normalize/denormalize and the constants are re-exported from their one place, the ops
from dali_aug.ops import CATALOG, IMAGENET_MEAN, IMAGENET_STD, OpParams, denormalize, normalize

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "denormalize",
    "draw_boxes",
    "heatmap",
    "normalize",
    "op_labels",
    "save_grid",
]


def heatmap(maps: torch.Tensor) -> np.ndarray:
    """[N, H, W] non-negative maps -> uint8 NHWC pictures, each scaled to its own maximum,
    black -> red -> yellow -> white."""
    m = maps.detach().float().cpu()
    m = m / m.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    rgb = torch.stack([(3 * m).clamp(0, 1), (3 * m - 1).clamp(0, 1), (3 * m - 2).clamp(0, 1)], -1)
    return (rgb * 255).round().byte().numpy()


def draw_boxes(images: np.ndarray, boxes: torch.Tensor, color: tuple[int, int, int]) -> np.ndarray:
    """Copy of uint8 NHWC ``images`` with the outline of one half-open (y0, x0, y1, x1) box
    per image drawn in ``color``."""
    if len(boxes) != len(images):
        raise ValueError(f"{len(boxes)} boxes for {len(images)} images")
    out = images.copy()
    for n, (y0, x0, y1, x1) in enumerate(boxes.tolist()):  # a picture for humans, not a hot path
        out[n, y0:y1, [x0, x1 - 1]] = color
        out[n, [y0, y1 - 1], x0:x1] = color
    return out


def op_labels(params: OpParams) -> list[str]:
    """One short text per sample: the non-identity ops with their levels."""
    out = []
    for ops, levels in zip(params.op_ids.tolist(), params.levels.tolist(), strict=True):
        parts = [
            CATALOG[o].name + (f" {lv:+.1f}" if CATALOG[o].has_magnitude else "")
            for o, lv in zip(ops, levels, strict=True)
            if CATALOG[o].name != "Identity"
        ]
        out.append(", ".join(parts) or "Identity")
    return out


def save_grid(
    images: np.ndarray, labels: list[str], path: str | Path, *, cols: int = 8, scale: int = 2
) -> Path:
    """Writes uint8 NHWC ``images`` as a grid with a caption under each tile."""
    n, h, w, _ = images.shape
    tile_w, tile_h, cap = w * scale, h * scale, 28
    rows = max(1, -(-n // cols))
    canvas = Image.new("RGB", (cols * tile_w, rows * (tile_h + cap)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        r, c = divmod(i, cols)
        tile = Image.fromarray(images[i]).resize((tile_w, tile_h), Image.Resampling.NEAREST)
        canvas.paste(tile, (c * tile_w, r * (tile_h + cap)))
        text = labels[i] if i < len(labels) else ""
        y = r * (tile_h + cap) + tile_h + 1
        for k, line in enumerate(_wrap(text, max(8, tile_w // 6))[:2]):
            draw.text((c * tile_w + 2, y + 12 * k), line, fill=(0, 0, 0))
    path = Path(path)
    canvas.save(path)
    return path


def _wrap(text: str, width: int) -> list[str]:
    lines, cur = [], ""
    for word in text.split(" "):
        if len(cur) + len(word) + 1 > width and cur:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}".strip()
    return lines + ([cur] if cur else [])
