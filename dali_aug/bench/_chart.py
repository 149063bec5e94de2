"""A PNG bar chart of a benchmark run, drawn with PIL (no plotting library needed): one panel
per (stage, policy), one bar per row (median images/s, min-max whisker), the ratio against the
fastest peer as the label; rows that could not run are listed with their reason."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from dali_aug.bench._core import Row

__all__ = ["draw_chart"]

_W, _LABEL, _ROW, _TITLE = 1100, 330, 24, 30
_OURS, _PEER, _WHISKER, _TEXT, _GRAY = (
    (31, 119, 180),
    (160, 160, 160),
    (40, 40, 40),
    (0, 0, 0),
    (120, 120, 120),
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def draw_chart(rows: Sequence[Row], path: Path, *, title: str = "") -> Path:
    """Writes the chart to ``path`` (PNG) and returns it."""
    blocks: list[tuple[str, str]] = []
    for r in rows:
        if (r.stage, r.policy) not in blocks:
            blocks.append((r.stage, r.policy))
    height = _TITLE + sum(
        _TITLE + _ROW * sum(1 for r in rows if (r.stage, r.policy) == b) for b in blocks
    )
    img = Image.new("RGB", (_W, height + 10), "white")
    d = ImageDraw.Draw(img)
    small, big = _font(13), _font(16)
    d.text(
        (10, 6),
        title or "dali-aug bench: images/s (median, min-max); ratio vs fastest peer",
        fill=_TEXT,
        font=big,
    )
    y = _TITLE
    span = _W - _LABEL - 120
    for stage, policy in blocks:
        block = [r for r in rows if (r.stage, r.policy) == (stage, policy)]
        d.text((10, y + 8), f"{stage} | {policy}", fill=_TEXT, font=big)
        y += _TITLE
        top = max((max(r.runs) for r in block if r.runs and r.error is None), default=0.0)
        for r in block:
            d.text((10, y + 4), r.name[:44], fill=_OURS if r.ours else _TEXT, font=small)
            med = r.median
            if med is None or top <= 0:
                d.text((_LABEL, y + 4), (r.error or "no timed round")[:110], fill=_GRAY, font=small)
                y += _ROW
                continue
            x0 = _LABEL
            x1 = x0 + max(1, int(span * med / top))
            d.rectangle((x0, y + 3, x1, y + _ROW - 5), fill=_OURS if r.ours else _PEER)
            lo, hi = (x0 + int(span * v / top) for v in (min(r.runs), max(r.runs)))
            mid = y + _ROW // 2 - 1
            d.line((lo, mid, hi, mid), fill=_WHISKER, width=1)
            for x in (lo, hi):
                d.line((x, mid - 4, x, mid + 4), fill=_WHISKER, width=1)
            ratio = "" if r.ratio is None else f"  {r.ratio:.2f}x"
            d.text((max(x1, hi) + 6, y + 4), f"{med:,.0f}{ratio}", fill=_TEXT, font=small)
            y += _ROW
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path
