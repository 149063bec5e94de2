"""Saving and loading a searched actor, and its per-label op table (CSV) and heat map (PNG)."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from dali_aug.methods.lbaug._actor import Actor, ActorConfig, applied_probability, check_labels

__all__ = ["OpTable", "load_actor", "op_table", "save_actor", "write_heatmap", "write_op_table"]

FORMAT = "dali_aug.lbaug.actor/1"


def save_actor(
    path: str | Path,
    actor: Actor,
    label_names: Sequence[str],
    *,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Writes the actor (state dict, config, op names, label names, ``extra``) to ``path``."""
    if len(label_names) != actor.config.num_labels:
        raise ValueError(
            f"{len(label_names)} label names for an actor of {actor.config.num_labels} labels"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "config": actor.config.to_dict(),
        "ops": list(actor.config.ops),
        "label_names": list(label_names),
        "state_dict": {k: v.detach().cpu() for k, v in actor.state_dict().items()},
        **(extra or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_actor(
    path: str | Path, *, map_location: str | torch.device = "cpu"
) -> tuple[Actor, tuple[str, ...]]:
    """Loads an actor written by :func:`save_actor`: (actor in eval mode, label names)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"actor file {str(path)!r} does not exist; run `dali-aug search lbaug`")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a pickle error, a truncated file, another format
        raise ValueError(f"{path} is not an LB-Aug actor file ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an LB-Aug actor file (expected format {FORMAT!r})")
    actor = Actor(ActorConfig.from_dict(payload["config"]))
    actor.load_state_dict(payload["state_dict"])
    return actor.eval(), tuple(payload["label_names"])


@dataclasses.dataclass(frozen=True)
class OpTable:
    """Mean op probabilities of the actor over groups of samples.

    Attributes:
        rows: row names: each label (samples carrying it), ``(all)``, ``(no label)`` if some
            samples have none, then ``not <label>`` for each label (samples without it).
        counts: samples per row.
        ops: the op names (columns).
        op_prob: [R, K], mean ``pi(op; y)`` over the row's samples.
        applied: [R, K], mean probability that the op is chosen and applied,
            ``pi(op; y) * E[p | op; y]``.
    """

    rows: tuple[str, ...]
    counts: tuple[int, ...]
    ops: tuple[str, ...]
    op_prob: np.ndarray
    applied: np.ndarray

    def value(self, row: str, op: str, *, applied: bool = False) -> float:
        table = self.applied if applied else self.op_prob
        return float(table[self.rows.index(row), self.ops.index(op)])


@torch.no_grad()
def op_table(actor: Actor, labels: torch.Tensor, label_names: Sequence[str]) -> OpTable:
    """Evaluates the actor (eval mode) on ``labels`` [N, C] and averages per label group."""
    y = check_labels(labels, actor.config.num_labels)
    if len(label_names) != y.shape[1]:
        raise ValueError(f"{len(label_names)} label names for {y.shape[1]} label columns")
    actor = actor.eval()
    device = next(actor.parameters()).device
    probs, applied = [], []
    for s in range(0, y.shape[0], 4096):
        out = actor(y[s : s + 4096].to(device))
        probs.append(out.op_logits.softmax(-1).cpu())
        applied.append(applied_probability(out, actor.config).cpu())
    p, a = torch.cat(probs).double(), torch.cat(applied).double()
    pos = y.cpu() > 0.5
    groups: list[tuple[str, torch.Tensor]] = [(n, pos[:, j]) for j, n in enumerate(label_names)]
    groups.append(("(all)", torch.ones(len(y), dtype=torch.bool)))
    none = ~pos.any(1)
    if bool(none.any()):
        groups.append(("(no label)", none))
    groups += [(f"not {n}", ~pos[:, j]) for j, n in enumerate(label_names)]
    rows, counts, op_rows, app_rows = [], [], [], []
    for name, mask in groups:
        m = mask.double().unsqueeze(1)
        k = float(m.sum())
        rows.append(name)
        counts.append(int(k))
        op_rows.append(((p * m).sum(0) / max(k, 1.0)).numpy())
        app_rows.append(((a * m).sum(0) / max(k, 1.0)).numpy())
    return OpTable(
        tuple(rows), tuple(counts), actor.config.ops, np.stack(op_rows), np.stack(app_rows)
    )


def write_op_table(table: OpTable, path: str | Path) -> Path:
    """CSV: ``row, samples, quantity, <op>...``; ``quantity`` is ``op_prob`` (mean pi(op; y))
    or ``applied`` (mean probability the op is chosen and applied)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["row", "samples", "quantity", *table.ops])
        for quantity, values in (("op_prob", table.op_prob), ("applied", table.applied)):
            for name, n, vals in zip(table.rows, table.counts, values, strict=True):
                w.writerow([name, n, quantity, *(f"{v:.5f}" for v in vals)])
    return path


def _colour(t: float) -> tuple[int, int, int]:
    """White -> dark blue for t in [0, 1]."""
    t = min(max(t, 0.0), 1.0)
    return (round(255 - 225 * t), round(255 - 185 * t), round(255 - 95 * t))


def write_heatmap(table: OpTable, path: str | Path, *, cell: int = 34) -> Path:
    """PNG heat map, labels x ops: mean ``pi(op; y)`` over the samples carrying each label (and
    the ``(all)`` row), coloured from the table's minimum (white) to its maximum (blue), with
    the value in percent in every cell. Drawn with PIL (no plotting dependency)."""
    keep = [i for i, r in enumerate(table.rows) if not r.startswith("not ")]
    values = table.op_prob[keep]
    names = [f"{table.rows[i]} ({table.counts[i]})" for i in keep]
    lo, hi = float(values.min()), float(values.max())
    left, top = 8 + 7 * max(len(n) for n in names), 12 + 7 * max(len(o) for o in table.ops)
    width = left + cell * len(table.ops) + 8
    height = top + cell * len(keep) + 30
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for j, op in enumerate(table.ops):  # vertical op names: draw rotated text tiles
        tile = Image.new("RGB", (top - 4, 12), (255, 255, 255))
        ImageDraw.Draw(tile).text((0, 0), op, fill=(0, 0, 0))
        img.paste(tile.rotate(90, expand=True), (left + j * cell + cell // 2 - 6, 2))
    for i, name in enumerate(names):
        y0 = top + i * cell
        draw.text((4, y0 + cell // 2 - 5), name, fill=(0, 0, 0))
        for j in range(len(table.ops)):
            v = float(values[i, j])
            t = (v - lo) / (hi - lo) if hi > lo else 0.0
            x0 = left + j * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=_colour(t))
            text = f"{100 * v:.0f}" if v >= 0.095 else f"{100 * v:.1f}"
            draw.text(
                (x0 + 4, y0 + cell // 2 - 5), text, fill=(0, 0, 0) if t < 0.6 else (255, 255, 255)
            )
    draw.text(
        (4, top + cell * len(keep) + 8),
        f"mean op probability (%) per label; white {100 * lo:.1f}% -> blue {100 * hi:.1f}%",
        fill=(0, 0, 0),
    )
    path = Path(path)
    img.save(path)
    return path
