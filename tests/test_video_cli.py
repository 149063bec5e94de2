"""``dali-aug train --clips T``: the demo clips, frame folders, the model default, the
refused methods and data, and the clip rows of ``samples.png``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dali_aug.cli import main


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DALI_AUG_CACHE", str(tmp_path / "cache"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


def _frame_folders(root: Path, clips_per_class: int = 3, frames: int = 6) -> Path:
    """``root/{train,val}/<class>/<clip>/000001.png``: class ``bright`` clips get brighter
    frame by frame, ``dark`` ones stay dark."""
    g = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("bright", "dark"):
            for c in range(clips_per_class):
                folder = root / split / cls / f"clip_{c:04d}"
                folder.mkdir(parents=True)
                for t in range(frames):
                    level = 40 + 30 * t if cls == "bright" else 20
                    px = np.clip(level + g.integers(0, 20, (20, 24, 3)), 0, 255).astype(np.uint8)
                    Image.fromarray(px).save(folder / f"{t + 1:06d}.png")
    return root


def test_train_on_the_moving_demo_clips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "--data", "moving-shapes", "--multi-label", "--clips", "4"]
    argv += ["--clip-stride", "2", "--train-size", "32", "--epochs", "1", "--batch-size", "16"]
    assert main([*argv, "--no-progress", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "32 train clips" in printed.out and "model: clip-r2plus1d-small" in printed.out
    assert "no random flip" in printed.err  # the flip would swap the direction labels
    metrics = json.loads((out / "metrics.json").read_text())
    assert "mAP" in metrics["history"][-1] and metrics["history"][-1]["val_samples"] == 500
    assert "moves left" in metrics["classes"]
    # samples.png: one row per clip (8 of them), the clip's 4 frames side by side
    with Image.open(out / "samples.png") as picture:
        width, height = picture.size
    assert (width, height) == (4 * 32 * 2, 8 * (32 * 2 + 28))


def test_train_on_frame_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _frame_folders(tmp_path / "clips")
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--clips", "3", "--epochs", "1", "--batch-size", "2"]
    argv += ["--size", "16", "--model", "clip-avg-small", "--no-progress", "--threads", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "6 train clips, 2 classes" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"][-1]["val_samples"] == 6 and "val_acc" in metrics["history"][-1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "moving-shapes", "--multi-label"], "add --clips T"),
        (["--data", "moving-shapes", "--clips", "4"], "add --multi-label"),
        (["--clips", "4"], "--clips needs clip data"),
    ],
)
def test_clip_data_errors(tmp_path: Path, extra: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        main(["train", *extra, "--epochs", "1", "--out", str(tmp_path / "x")])


def test_methods_that_take_images_are_refused_with_clips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--data", "moving-shapes", "--multi-label", "--clips", "4", "--method"]
    with pytest.raises(SystemExit) as err:
        main([*argv, "keep", "--out", str(tmp_path / "x")])
    assert err.value.code == 2
    assert "only --method lbaug (or none) runs on clips" in capsys.readouterr().err


def test_an_image_model_is_refused_for_clips_naming_the_clip_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--data", "moving-shapes", "--multi-label", "--clips", "4", "--model"]
    with pytest.raises(SystemExit) as err:
        main([*argv, "resnet18", "--out", str(tmp_path / "x")])
    assert err.value.code == 2
    err_text = capsys.readouterr().err
    assert "clip-r2plus1d-small" in err_text and "clip-avg-resnet18" in err_text


def test_show_draws_one_clip_per_row(tmp_path: Path) -> None:
    out = tmp_path / "show"
    argv = ["show", "--data", "moving-shapes", "--multi-label", "--clips", "3"]
    assert main([*argv, "--train-size", "16", "--threads", "1", "--out", str(out)]) == 0
    with Image.open(out / "samples.png") as picture:
        assert picture.size == (3 * 32 * 2, 8 * (32 * 2 + 28))
