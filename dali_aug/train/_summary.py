"""What a person reads of a run: ``summary.csv`` (one row per epoch, written as the run goes)
and ``curves.png`` (loss, the main validation metric and the learning rate per epoch, redrawn
each epoch), drawn with PIL (no plotting library needed).

Both take the trainer's history rows (one dict per epoch: ``epoch``, ``train_loss``, the
``loss/<term>`` of the methods, the validation metrics, ``lr``, ``img_per_s``,
``data_seconds``, ...). List-valued entries (per-label metrics) stay out of the CSV.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

__all__ = ["draw_curves", "main_metric", "write_summary"]

_FIRST = ("epoch", "train_loss")
_METRICS = ("val_acc", "mAP", "val_top5")


def main_metric(row: Mapping[str, Any]) -> str | None:
    """The validation metric that ranks epochs (``best.pt``): ``val_acc`` (single-label) or
    ``mAP`` (multi-label); None when the run has no validation."""
    for key in ("val_acc", "mAP"):
        if key in row:
            return key
    return None


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def write_summary(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Writes ``rows`` as CSV: ``epoch``, ``train_loss`` first, then every other scalar key in
    order of first appearance (a key that appears later gets its column then; the file is
    rewritten whole, atomically, so a reader never sees half a row)."""
    path = Path(path)
    columns: list[str] = list(_FIRST)
    for row in rows:
        for key, value in row.items():
            if key not in columns and _scalar(value):
                columns.append(key)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: v for k, v in row.items() if k in columns and _scalar(v)})
    os.replace(tmp, path)
    return path


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


_W, _H, _PAD = 360, 260, 42
_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))


def _panel(
    d: ImageDraw.ImageDraw,
    x0: int,
    title: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    d.text((x0 + _PAD, 8), title, fill="black", font=font)
    points = [p for s in series.values() for p in s if math.isfinite(p[1])]
    left, top, right, bottom = x0 + _PAD, 30, x0 + _W - 12, _H - 30
    d.rectangle((left, top, right, bottom), outline=(150, 150, 150))
    if not points:
        d.text((left + 8, top + 8), "no data yet", fill=(120, 120, 120), font=font)
        return
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xmin, xmax = min(xs), max(max(xs), min(xs) + 1)
    ymin, ymax = min(ys), max(ys)
    if ymax - ymin < 1e-12:
        ymin, ymax = ymin - 0.5, ymax + 0.5

    def at(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - xmin) / (xmax - xmin) * (right - left),
            bottom - (y - ymin) / (ymax - ymin) * (bottom - top),
        )

    for label, y in ((f"{ymax:.3g}", ymax), (f"{ymin:.3g}", ymin)):
        d.text((x0 + 2, at(xmin, y)[1] - 6), label, fill=(90, 90, 90), font=font)
    d.text((left, bottom + 6), f"epoch {xmin:g}", fill=(90, 90, 90), font=font)
    d.text((right - 60, bottom + 6), f"{xmax:g}", fill=(90, 90, 90), font=font)
    for k, (name, pts) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        xy = [at(x, y) for x, y in pts if math.isfinite(y)]
        if len(xy) > 1:
            d.line(xy, fill=colour, width=2)
        for px, py in xy:
            d.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
        d.text((left + 100 + 80 * k, 8), name, fill=colour, font=font)  # the legend, by the title


def draw_curves(path: str | Path, rows: Sequence[Mapping[str, Any]], *, title: str = "") -> Path:
    """Three panels per epoch: the losses (train, val), the validation metrics, the learning
    rate. Written to ``path`` (PNG)."""
    font = _font(12)

    def series(key: str) -> list[tuple[float, float]]:
        return [(float(r["epoch"]), float(r[key])) for r in rows if _scalar(r.get(key))]

    panels = [
        ("loss", {k: series(k) for k in ("train_loss", "val_loss") if series(k)}),
        ("validation", {k: series(k) for k in _METRICS if series(k)}),
        ("learning rate", {"lr": series("lr")} if series("lr") else {}),
    ]
    img = Image.new("RGB", (_W * len(panels), _H + (20 if title else 0)), "white")
    d = ImageDraw.Draw(img)
    for i, (name, data) in enumerate(panels):
        _panel(d, i * _W, name, data, font)
    if title:
        d.text((8, _H + 2), title, fill="black", font=font)
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.png")
    img.save(tmp)
    os.replace(tmp, path)
    return path
