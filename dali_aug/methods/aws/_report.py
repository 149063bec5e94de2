"""What ``dali-aug search aws`` writes: ``policy.json`` (the exported Loader policy with the
searched theta), ``aws_probs.png`` (the n x n matrix of p_theta, as the paper's App. G), and
reading ``policy.json`` back with clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from dali_aug.methods.aws._policy import PairPolicy

__all__ = ["load_pair_policy", "write_outputs", "write_probs_png"]


def write_probs_png(policy: PairPolicy, path: str | Path, *, cell: int = 14) -> Path:
    """PNG of p_theta as an n x n matrix (row: first element, column: second), white (0) to
    blue (the largest probability), rows and columns labelled with the element names; the
    row sums (the first element's marginal) are printed at the right. Drawn with PIL."""
    m = policy.matrix().double().numpy()
    names = [e.name for e in policy.elements]
    n = len(names)
    hi = float(m.max())
    t = m / hi if hi > 0 else m * 0.0
    white, blue = np.array([255.0, 255.0, 255.0]), np.array([8.0, 48.0, 107.0])
    rgb = (white + t[..., None] * (blue - white)).round().astype(np.uint8)
    tiles = Image.fromarray(rgb).resize((n * cell, n * cell), Image.Resampling.NEAREST)
    pad = 7 * max(len(s) for s in names) + 8
    img = Image.new("RGB", (pad + n * cell + 60, pad + n * cell + 24), (255, 255, 255))
    img.paste(tiles, (pad, pad))
    draw = ImageDraw.Draw(img)
    rows = m.sum(1)
    for i, name in enumerate(names):
        y = pad + i * cell + cell // 2 - 5
        draw.text((4, y), name, fill=(0, 0, 0))
        draw.text((pad + n * cell + 4, y), f"{100 * rows[i]:.1f}%", fill=(0, 0, 0))
        tile = Image.new("RGB", (pad - 4, 12), (255, 255, 255))
        ImageDraw.Draw(tile).text((0, 0), name, fill=(0, 0, 0))
        img.paste(tile.rotate(90, expand=True), (pad + i * cell + cell // 2 - 6, 2))
    draw.text(
        (4, pad + n * cell + 6),
        f"p(first, second): white 0 -> blue {100 * hi:.2f}%; uniform {100 / n**2:.3f}%",
        fill=(0, 0, 0),
    )
    path = Path(path)
    img.save(path)
    return path


def write_outputs(policy: PairPolicy, out: str | Path, extra: dict[str, Any]) -> list[Path]:
    """Writes ``out/policy.json`` (``{"policy": Loader policy, "aws": theta and elements,
    ...extra}``, read by ``dali-aug train --policy``) and ``out/aws_probs.png``."""
    root = Path(out)
    payload = {
        "policy": policy.to_policy().to_dict(),
        "aws": policy.to_dict(),
        "top_pairs": policy.top_pairs(10),
        "entropy": policy.entropy(),
        **extra,
    }
    path = root / "policy.json"
    path.write_text(json.dumps(payload, indent=1))
    return [path, write_probs_png(policy, root / "aws_probs.png")]


def load_pair_policy(path: str | Path) -> PairPolicy:
    """The :class:`PairPolicy` of a ``policy.json`` written by ``dali-aug search aws``.

    Raises:
        ValueError: the file is missing, not JSON, or its elements or theta are invalid
            (unknown ops, a theta of the wrong length, NaN).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} does not exist; run `dali-aug search aws --out DIR` first")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not JSON ({err}); use policy.json of an AWS search") from None
    if not isinstance(data, dict) or "aws" not in data:
        raise ValueError(f"{path} has no 'aws' entry; use policy.json of `dali-aug search aws`")
    try:
        return PairPolicy.from_dict(data["aws"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
