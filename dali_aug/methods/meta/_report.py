"""MetaAugment's results: the learned pair distribution as a dataset-level
:class:`~dali_aug.policies.Policy` (transfer, ``dali-aug train --policy FILE.json``), the
per-pair table (CSV) and its heat maps (PNG, drawn with PIL)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageDraw

from dali_aug.methods.meta._space import FUNCTIONS
from dali_aug.ops import get
from dali_aug.policies import OpSpec, Policy

if TYPE_CHECKING:
    from dali_aug.methods.meta.method import MetaAugmentMethod

__all__ = ["pairs_policy", "write_pairs_csv", "write_pairs_png", "write_report"]


def _levels(function: str, bins: int) -> tuple[float, ...]:
    """Level bin centres on 0-10 (one level, 0, for a magnitude-free function)."""
    if not get(function).has_magnitude:
        return (0.0,)
    return tuple(round((b + 0.5) * 10.0 / bins, 4) for b in range(bins))


def pairs_policy(probs: torch.Tensor, *, levels: int = 3, name: str = "meta-augment") -> Policy:
    """A weighted :class:`Policy` with the distribution ``probs`` [14, 14] over ordered pairs.

    The continuous magnitudes ``U(0, 10)`` are represented by ``levels`` equal-width bins per
    function, each at its centre (3 bins: 1.667, 5, 8.333): pair ``(j, k)`` becomes one
    two-op sub-policy (both ops applied with probability 1) per level combination, each with
    weight ``p_jk / (bins_j * bins_k)``; magnitude-free functions have one level. Signed ops
    get the Loader's fair random sign, as in training.
    """
    k = len(FUNCTIONS)
    if tuple(probs.shape) != (k, k):
        raise ValueError(f"pairs_policy: probs must be [{k}, {k}], got {tuple(probs.shape)}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"pairs_policy: levels={levels!r} must be a positive int, e.g. 3")
    p = probs.double().cpu()
    subs: list[tuple[OpSpec, ...]] = []
    weights: list[float] = []
    for j, a in enumerate(FUNCTIONS):
        for kk, b in enumerate(FUNCTIONS):
            la, lb = _levels(a, levels), _levels(b, levels)
            share = float(p[j, kk]) / (len(la) * len(lb))
            for x in la:
                for y in lb:
                    subs.append((OpSpec(a, 1.0, x), OpSpec(b, 1.0, y)))
                    weights.append(share)
    return Policy(name, tuple(subs), weights=tuple(weights))


def write_pairs_csv(method: MetaAugmentMethod, path: Path) -> Path:
    """``first,second,count,mean_weight,prob``, one row per ordered pair (196); an empty
    ``mean_weight`` for a pair never drawn."""
    table = method.pair_table()
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["first", "second", "count", "mean_weight", "prob"])
        for j, a in enumerate(FUNCTIONS):
            for k, b in enumerate(FUNCTIONS):
                mean = float(table["mean_weight"][j, k])
                w.writerow(
                    [
                        a,
                        b,
                        int(table["count"][j, k]),
                        "" if math.isnan(mean) else f"{mean:.6f}",
                        f"{float(table['prob'][j, k]):.6f}",
                    ]
                )
    return path


def _panel(values: np.ndarray, title: str, cell: int) -> Image.Image:
    """One labelled 14 x 14 heat map: rows = first function, columns = second."""
    names = list(FUNCTIONS)
    left, top = 80, 80
    img = Image.new("RGB", (left + cell * len(names) + 10, top + cell * len(names) + 44), "white")
    draw = ImageDraw.Draw(img)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    for c, n in enumerate(names):
        label = Image.new("RGB", (top - 4, 11), "white")
        ImageDraw.Draw(label).text((0, 0), n, fill="black")
        img.paste(label.rotate(90, expand=True), (left + c * cell + cell // 2 - 5, 2))
    for r, n in enumerate(names):
        y = top + r * cell
        draw.text((2, y + cell // 2 - 5), n, fill="black")
        for c in range(len(names)):
            v = float(values[r, c])
            x = left + c * cell
            if math.isfinite(v):
                t = (v - lo) / (hi - lo) if hi > lo else 0.5
                rgb = (int(255 * t), int(80 + 100 * (1 - abs(2 * t - 1))), int(255 * (1 - t)))
            else:
                rgb = (200, 200, 200)
            draw.rectangle([x, y, x + cell - 2, y + cell - 2], fill=rgb)
    draw.text(
        (2, top + cell * len(names) + 4),
        f"{title}: blue {lo:.4g} -> red {hi:.4g}\nrows: first function, columns: second; "
        "grey: never drawn",
        fill="black",
    )
    return img


def write_pairs_png(method: MetaAugmentMethod, path: Path, *, cell: int = 22) -> Path:
    """Two heat maps side by side: the mean raw weight of each pair and the sampler's
    probability."""
    table = method.pair_table()
    panels = [
        _panel(table["mean_weight"].numpy(), "mean weight", cell),
        _panel(table["prob"].numpy(), "sampler prob", cell),
    ]
    width = sum(p.width for p in panels) + 10
    canvas = Image.new("RGB", (width, max(p.height for p in panels)), "white")
    x = 0
    for p in panels:
        canvas.paste(p, (x, 0))
        x += p.width + 10
    canvas.save(path)
    return path


def write_report(method: MetaAugmentMethod, out: Path) -> dict[str, str]:
    """``meta_pairs.csv``, ``meta_pairs.png`` and ``meta_policy.json`` (the exported
    :meth:`~MetaAugmentMethod.to_policy`, loadable with ``dali-aug train --policy``)."""
    out.mkdir(parents=True, exist_ok=True)
    policy_path = out / "meta_policy.json"
    policy_path.write_text(json.dumps(method.to_policy().to_dict()))
    return {
        "pairs_csv": str(write_pairs_csv(method, out / "meta_pairs.csv")),
        "pairs_png": str(write_pairs_png(method, out / "meta_pairs.png")),
        "policy_json": str(policy_path),
    }
