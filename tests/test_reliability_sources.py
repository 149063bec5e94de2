"""Regression tests of the sources' reliability defects: huge / negative / NaN labels of
``ArraySource.from_arrays``, validation classes mapped by name onto the training classes,
unreadable folders listed in ``source.ignored``, and label CSVs with a NUL byte or in
another encoding. Synthetic data only; fast (no decoding)."""

from __future__ import annotations

import io
import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from dali_aug._image_format import too_many_pixels
from dali_aug.sources import ArraySource, CsvSource, FolderSource, IgnoreReason, open_source


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(buf, "PNG")
    path.write_bytes(buf.getvalue())
    return path


def _images(n: int = 4) -> np.ndarray:
    return np.zeros((n, 4, 4, 3), dtype=np.uint8)


# D2: labels of from_arrays


def test_huge_label_fails_fast_without_building_names() -> None:
    labels = np.array([0, 1, 10**9, 0])
    with pytest.raises(ValueError, match=r"class index 1000000000 at row 2.*classes="):
        ArraySource.from_arrays(_images(), labels)


def test_label_beyond_given_classes_is_refused() -> None:
    with pytest.raises(ValueError, match=r"class index 7 at row 1 .* 0 <= y < 3"):
        ArraySource.from_arrays(_images(), np.array([0, 7, 1, 2]), classes=3)


def test_classes_allow_more_classes_than_samples() -> None:
    src = ArraySource.from_arrays(_images(2), np.array([0, 9]), classes=10)
    assert len(src.classes) == 10 and src.targets.tolist() == [0, 9]
    named = ArraySource.from_arrays(_images(2), np.array([1, 0]), classes=["cat", "dog"])
    assert named.classes == ("cat", "dog")


def test_negative_label_names_the_row() -> None:
    with pytest.raises(ValueError, match="negative class index -3 at row 2"):
        ArraySource.from_arrays(_images(), np.array([0, 1, -3, 0]))
    with pytest.raises(ValueError, match="negative class index -1 at row 0"):
        ArraySource(_images(2), torch.tensor([-1, 0]), ("0", "1"))


def test_non_integer_labels_are_refused() -> None:
    with pytest.raises(TypeError, match="integer class indices"):
        ArraySource.from_arrays(_images(), np.array([0.0, 1.5, 0.0, 1.0]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_in_multi_hot_labels_names_the_row(bad: float) -> None:
    hot = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    hot[3, 1] = bad
    with pytest.raises(ValueError, match="multi-hot labels row 3 has a NaN or infinite"):
        ArraySource.from_arrays(_images(), hot)
    with pytest.raises(ValueError, match="multi-hot targets row 3"):
        ArraySource(_images(), torch.from_numpy(hot), ("a", "b", "c"), multi_label=True)


# D5 / D6 / D14: validation data mapped onto the training classes by name


def _folders(root: Path, names: list[str]) -> Path:
    for name in names:
        _png(root / name / f"{name}.png")
    return root


def test_val_folder_missing_a_class_keeps_the_training_labels(tmp_path: Path) -> None:
    train = FolderSource.scan(_folders(tmp_path / "train", ["cat", "dog", "owl"]))
    val = open_source(_folders(tmp_path / "val", ["cat", "owl"]), classes=train.classes)
    assert val.classes == ("cat", "dog", "owl")
    assert dict(zip(val.paths, val.targets.tolist(), strict=True)) == {
        "cat/cat.png": 0,
        "owl/owl.png": 2,
    }


def _csv(root: Path, rows: list[tuple[str, str]]) -> Path:
    for path, _ in rows:
        _png(root / path)
    text = "path,labels\n" + "".join(f"{p},{labs}\n" for p, labs in rows)
    (root / "labels.csv").write_text(text, encoding="utf-8")
    return root


def test_val_csv_labels_in_another_order_keep_the_training_columns(tmp_path: Path) -> None:
    train = CsvSource.load(_csv(tmp_path / "train", [("a.png", "sky"), ("b.png", "sea tree")]))
    assert train.classes == ("sky", "sea", "tree")
    val = open_source(
        _csv(tmp_path / "val", [("c.png", "tree"), ("d.png", "sky sea")]), classes=train.classes
    )
    assert val.classes == train.classes
    assert val.targets.tolist() == [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]


def test_val_class_unknown_to_training_is_refused_by_name(tmp_path: Path) -> None:
    train = FolderSource.scan(_folders(tmp_path / "train", ["cat", "dog"]))
    with pytest.raises(
        ValueError, match=r"class folder\(s\) not among the 2 training classes: 'emu'"
    ):
        open_source(_folders(tmp_path / "val", ["cat", "emu"]), classes=train.classes)
    labels = CsvSource.load(_csv(tmp_path / "tr", [("a.png", "sky")]))
    with pytest.raises(ValueError, match=r"labels.csv.*label\(s\) not among .* 'moon'"):
        CsvSource.load(_csv(tmp_path / "va", [("b.png", "sky moon")]), classes=labels.classes)


def test_train_cli_refuses_an_unknown_val_class_before_training(tmp_path: Path) -> None:
    from dali_aug.cli import main

    _folders(tmp_path / "data" / "train", ["cat", "dog"])
    _folders(tmp_path / "data" / "val", ["cat", "emu"])
    argv = ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match="validation data: .*'emu'"):
        main([*argv, "--device", "cpu", "--model", "small", "--epochs", "1"])
    assert not (tmp_path / "out" / "metrics.json").exists()


# D7: unreadable folders


def _deny(monkeypatch: pytest.MonkeyPatch, *denied: Path) -> None:
    """``os.scandir`` raises PermissionError for ``denied`` (chmod 000 does not stop root)."""
    real = os.scandir
    blocked = {os.path.realpath(d) for d in denied}

    def scandir(path: Any = ".") -> Any:
        if os.path.realpath(path) in blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_unreadable_class_folder_and_subfolder_are_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _folders(tmp_path / "data", ["cat", "dog", "owl"])
    _png(root / "cat" / "sub" / "x.png")
    _deny(monkeypatch, root / "dog", root / "cat" / "sub")
    with pytest.warns(RuntimeWarning, match=r"2 folder\(s\) could not be read"):
        src = FolderSource.scan(root)
    assert src.paths == ("cat/cat.png", "owl/owl.png")
    unreadable = [i.path for i in src.ignored if i.reason is IgnoreReason.UNREADABLE]
    assert unreadable == ["cat/sub", "dog"]


def test_unreadable_data_root_is_a_value_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _folders(tmp_path / "data", ["cat"])
    _deny(monkeypatch, root)
    with pytest.raises(ValueError, match=r"data folder .*data' cannot be read .*permissions"):
        FolderSource.scan(root)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="chmod 000 does not stop root"
)
def test_chmod_000_class_folder_is_listed(tmp_path: Path) -> None:
    root = _folders(tmp_path / "data", ["cat", "dog"])
    (root / "dog").chmod(0)
    try:
        with pytest.warns(RuntimeWarning, match="could not be read"):
            src = FolderSource.scan(root)
    finally:
        (root / "dog").chmod(0o755)
    assert [i.path for i in src.ignored if i.reason is IgnoreReason.UNREADABLE] == ["dog"]


# D15: label CSVs with a NUL byte or in another encoding


def test_nul_byte_in_a_csv_path_is_refused_at_load(tmp_path: Path) -> None:
    root = _csv(tmp_path / "data", [("a.png", "sky")])
    (root / "labels.csv").write_bytes(b"path,labels\na.png,sky\nb\x00.png,sea\n")
    with pytest.raises(ValueError, match=r"labels.csv: row 3 has a NUL byte in path"):
        CsvSource.load(root)


@pytest.mark.parametrize(
    ("encoding", "match"),
    [
        ("latin-1", r"labels.csv' is not UTF-8: row 3 \(byte 31.*save it as UTF-8"),
        ("utf-16", r"labels.csv' is UTF-16 .*save it as UTF-8"),
        ("utf-16-le", r"labels.csv' is UTF-16 .*save it as UTF-8"),
    ],
)
def test_csv_in_another_encoding_names_the_file_and_row(
    tmp_path: Path, encoding: str, match: str
) -> None:
    root = _csv(tmp_path / "data", [("a.png", "sky")])
    (root / "labels.csv").write_text("path,labels\na.png,sky\na.png,café\n", encoding=encoding)
    with pytest.raises(ValueError, match=match):
        CsvSource.load(root)


# decompression bombs: a small file whose header declares a huge image


def _bomb_png(path: Path, w: int = 20000, h: int = 20000) -> Path:
    """A tiny PNG whose IHDR declares ``w`` x ``h`` (CRC fixed, so PIL opens the header)."""
    data = bytearray(_png(path).read_bytes())
    data[16:24] = w.to_bytes(4, "big") + h.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_is_skipped_and_reported(tmp_path: Path) -> None:
    from dali_aug.loader import Loader

    root = _folders(tmp_path / "data", ["cat", "dog"])
    _bomb_png(root / "dog" / "bomb.png")
    src = FolderSource.scan(root)
    with pytest.raises(
        OSError, match=r"bomb.png.*decompression bomb.*400000000 pixels.*MAX_IMAGE_PIXELS"
    ):
        src.read(src.paths.index("dog/bomb.png"))
    loader = Loader(src, batch_size=4, train=False, device="cpu", size=8)
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable file"):
        (batch,) = list(loader)
    assert len(batch.images) == 3
    assert loader.skipped == [str(root / "dog" / "bomb.png")]


def test_image_just_over_the_pixel_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    data = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(data, "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 256 pixels: PIL only warns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        assert "declares 16x16 = 256 pixels" in str(too_many_pixels(data.getvalue()))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 256)
    assert too_many_pixels(data.getvalue()) is None


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("JPEG", {}),
        ("JPEG", {"progressive": True}),
        ("JPEG", {"exif": b"Exif\x00\x00" + bytes(64)}),
        ("PNG", {}),
    ],
)
def test_header_size_matches_pil(fmt: str, options: dict[str, Any]) -> None:
    from dali_aug._image_format import _header_size

    buf = io.BytesIO()
    Image.fromarray(np.zeros((13, 21, 3), dtype=np.uint8)).save(buf, fmt, **options)
    assert _header_size(buf.getvalue()) == (21, 13)
