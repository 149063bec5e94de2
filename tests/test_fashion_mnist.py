"""The Fashion-MNIST reader on small IDX files the tests write (no download, no Debian
package needed)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from dali_aug.datasets._fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    balanced_subset,
    fashion_mnist_dir,
    fashion_mnist_source,
    load_fashion_mnist,
    read_idx,
    write_idx,
)


def _fake(root: Path, n_train: int = 60, n_test: int = 20, gz: bool = True) -> Path:
    """Four IDX files: image i is filled with the value i % 256, labels cycle 0..9."""
    ext = ".gz" if gz else ""
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = np.arange(n, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(root / f"{stem}-images-idx3-ubyte{ext}", images)
        write_idx(root / f"{stem}-labels-idx1-ubyte{ext}", labels)
    return root


@pytest.mark.parametrize("gz", [True, False])
def test_reads_what_was_written(tmp_path: Path, gz: bool) -> None:
    root = _fake(tmp_path, gz=gz)
    images, labels = load_fashion_mnist("train", root)
    assert images.shape == (60, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [i % 10 for i in range(60)]
    assert int(images[7, 3, 5]) == 7
    test_images, _ = load_fashion_mnist("test", root)
    assert test_images.shape == (20, 28, 28)


def test_source_is_rgb_with_the_class_names_and_a_balanced_seeded_subset(tmp_path: Path) -> None:
    root = _fake(tmp_path, n_train=100)
    src = fashion_mnist_source("train", root=root, train_size=30, seed=4)
    assert src.images.shape == (30, 28, 28, 3)
    assert np.array_equal(src.images[..., 0], src.images[..., 2])
    assert src.classes == FASHION_MNIST_CLASSES
    assert np.bincount(src.targets.numpy(), minlength=10).tolist() == [3] * 10
    again = fashion_mnist_source("train", root=root, train_size=30, seed=4)
    other = fashion_mnist_source("train", root=root, train_size=30, seed=5)
    assert np.array_equal(src.images, again.images)
    assert not np.array_equal(src.images, other.images)
    # the image's value is its index in the file: its label is index % 10
    index = src.images[:, 0, 0, 0].astype(np.int64)
    assert (index % 10 == src.targets.numpy()).all()
    with pytest.raises(ValueError, match="multiple of 10"):
        fashion_mnist_source("train", root=root, train_size=25)
    with pytest.raises(ValueError, match="fewer than"):
        balanced_subset(np.arange(20) % 10, 3)


def test_missing_files_name_the_debian_package_and_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DALI_AUG_FASHION_MNIST", raising=False)
    with pytest.raises(ValueError, match="apt-get install dataset-fashion-mnist") as info:
        fashion_mnist_dir(tmp_path / "nowhere")
    assert "nowhere" in str(info.value)
    root = _fake(tmp_path / "env")
    monkeypatch.setenv("DALI_AUG_FASHION_MNIST", str(root))
    assert fashion_mnist_dir() == root
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        fashion_mnist_dir()
    monkeypatch.delenv("DALI_AUG_FASHION_MNIST")
    assert str(FASHION_MNIST_DIR) == "/usr/share/datasets/fashion-mnist"


def test_damaged_files_are_errors_naming_the_file(tmp_path: Path) -> None:
    good = write_idx(tmp_path / "a-ubyte", np.zeros((4, 28, 28), np.uint8))
    data = good.read_bytes()
    cases = {
        "truncated": data[:-5],
        "trailing bytes": data + b"\x00\x01",
        "not IDX": b"\x01\x02" + data[2:],
        "int32": data[:2] + b"\x0c" + data[3:],
        "huge": data[:4] + (10**9).to_bytes(4, "big") + data[8:],
    }
    for name, blob in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}-ubyte"
        path.write_bytes(blob)
        with pytest.raises(ValueError, match=str(path.name)):
            read_idx(path)
    bad_gz = tmp_path / "bad-ubyte.gz"
    bad_gz.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="cannot read"):
        read_idx(bad_gz)
    with gzip.open(tmp_path / "ok.gz", "wb") as fh:
        fh.write(data)
    assert read_idx(tmp_path / "ok.gz").shape == (4, 28, 28)


def test_images_and_labels_that_do_not_belong_together(tmp_path: Path) -> None:
    root = _fake(tmp_path)
    write_idx(root / "train-labels-idx1-ubyte.gz", np.zeros(59, np.uint8))
    with pytest.raises(ValueError, match="do not belong together"):
        load_fashion_mnist("train", root)
    write_idx(root / "train-labels-idx1-ubyte.gz", np.full(60, 12, np.uint8))
    with pytest.raises(ValueError, match="label 12"):
        load_fashion_mnist("train", root)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("val", root)  # type: ignore[arg-type]


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_the_installed_package_has_the_official_sizes() -> None:
    train, labels = load_fashion_mnist("train")
    test, _ = load_fashion_mnist("test")
    assert train.shape == (60000, 28, 28) and test.shape == (10000, 28, 28)
    assert np.bincount(labels).tolist() == [6000] * 10


def test_train_on_fashion_mnist_with_a_balanced_subset_and_the_test_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from dali_aug.cli import main

    monkeypatch.setenv("DALI_AUG_FASHION_MNIST", str(_fake(tmp_path / "idx", n_train=60)))
    monkeypatch.setenv("DALI_AUG_CACHE", str(tmp_path / "cache"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "run"
    argv = ["train", "--data", "fashion-mnist", "--train-size", "40", "--epochs", "1"]
    assert main([*argv, "--batch-size", "8", "--no-progress", "--out", str(out)]) == 0
    assert "40 train images, 10 classes" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == list(FASHION_MNIST_CLASSES)
    assert "val_acc" in metrics["history"][-1]  # evaluated on the test split
    with pytest.raises(SystemExit, match="--train-size is for --data fashion-mnist"):
        main(["train", "--train-size", "40", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="single-label"):
        main([*argv, "--multi-label", "--out", str(tmp_path / "y")])


def test_lowres_saliency_at_the_native_28_px_is_refused_before_any_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dali_aug.cli import main

    monkeypatch.setenv("DALI_AUG_FASHION_MNIST", str(tmp_path / "absent"))
    argv = ["train", "--data", "fashion-mnist", "--method", "keep", "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as exc:
        main(argv)  # the default saliency is lowres: 14 px, which the small model cannot take
    assert exc.value.code == 2
    assert "--saliency" in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "r").exists()
