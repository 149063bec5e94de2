"""summary.csv and curves.png from the trainer's history rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from dali_aug.train._summary import draw_curves, main_metric, write_summary


def _rows() -> list[dict[str, object]]:
    return [
        {"epoch": 1, "train_loss": 1.2, "lr": 0.1, "val_loss": 1.0, "val_acc": 0.5, "ap": [1, 2]},
        {"epoch": 2, "train_loss": 0.8, "lr": 0.05, "val_loss": 0.7, "val_acc": 0.7},
        {"epoch": 3, "train_loss": 0.5, "loss/mixup": 0.1, "lr": 0.0, "val_acc": 0.8},
    ]


def test_summary_has_one_row_per_epoch_and_columns_as_they_appear(tmp_path: Path) -> None:
    path = write_summary(tmp_path / "summary.csv", _rows())
    with path.open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["epoch"] for r in table] == ["1", "2", "3"]
    header = list(table[0])
    assert header[:2] == ["epoch", "train_loss"] and header[-1] == "loss/mixup"
    assert "ap" not in header  # list-valued entries stay in metrics.json
    assert table[0]["loss/mixup"] == "" and table[2]["loss/mixup"] == "0.1"
    assert not list(tmp_path.glob("*.tmp"))


def test_main_metric_is_accuracy_or_map() -> None:
    assert main_metric({"val_acc": 1.0, "mAP": 0.2}) == "val_acc"
    assert main_metric({"mAP": 0.2}) == "mAP"
    assert main_metric({"train_loss": 1.0}) is None


def test_curves_draw_three_panels_with_lines(tmp_path: Path) -> None:
    path = draw_curves(tmp_path / "curves.png", _rows(), title="run")
    with Image.open(path) as img:
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.shape[1] == 3 * 360
    coloured = (np.abs(pixels.astype(int) - pixels.mean(-1, keepdims=True)) > 40).any(-1)
    for panel in range(3):  # every panel draws a coloured series
        assert coloured[:, panel * 360 : (panel + 1) * 360].sum() > 50
    empty = draw_curves(tmp_path / "empty.png", [{"epoch": 1}])
    assert empty.is_file()
