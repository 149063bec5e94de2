"""Tests for dali_aug.datasets (synthetic shapes datasets): layout, labels, determinism, cache."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from dali_aug.datasets import MULTI_LABELS, SHAPE_CLASSES, ShapesSpec, make_shapes
from dali_aug.datasets._shapes import (
    _flip_lr,
    _flip_ud,
    _multi_image,
    _multi_labels,
    _Shape,
)


def _read_labels(root: Path) -> list[tuple[str, list[str]]]:
    with (root / "labels.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["path", "labels"]
        return [(path, labels.split()) for path, labels in reader]


def _all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def multi400(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build a 400-image multi-label dataset shared by the label tests."""
    return make_shapes(tmp_path_factory.mktemp("m") / "shapes", 400, seed=7, multi_label=True)


def test_single_label_layout_and_balance(tmp_path: Path) -> None:
    """ImageFolder layout, balanced classes, metadata files."""
    root = make_shapes(tmp_path / "new" / "shapes", 10, seed=0)
    assert root == tmp_path / "new" / "shapes"
    assert (root / "classes.txt").read_text().split() == list(SHAPE_CLASSES)
    assert list(SHAPE_CLASSES) == sorted(SHAPE_CLASSES)  # ImageFolder index == classes.txt line
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == list(SHAPE_CLASSES)
    counts = {c: len(list((root / c).glob("*.jpg"))) for c in SHAPE_CLASSES}
    assert sum(counts.values()) == 10
    assert max(counts.values()) - min(counts.values()) <= 1
    names = sorted(p.name for p in root.glob("*/*.jpg"))
    assert names == [f"{i:05d}.jpg" for i in range(10)]  # unique, zero-padded, global index
    with Image.open(next(root.glob("*/*.jpg"))) as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 64))
    readme = (root / "README.txt").read_text()
    assert "single-label" in readme.lower()
    meta = json.loads((root / ".dali_aug_shapes.json").read_text())
    assert (meta["n"], meta["seed"], meta["multi_label"]) == (10, 0, False)
    assert not list(tmp_path.glob("new/.*partial*"))  # temporary build folder cleaned up


def test_multi_label_layout(tmp_path: Path) -> None:
    """images/ + labels.csv layout with vocabulary names in fixed order."""
    root = make_shapes(tmp_path / "m", 12, seed=3, multi_label=True, size=48, quality=80)
    assert (root / "classes.txt").read_text().splitlines() == list(MULTI_LABELS)
    rows = _read_labels(root)
    assert len(rows) == 12 == len(list((root / "images").glob("*.jpg")))
    for path, labels in rows:
        assert path.startswith("images/")
        assert (root / path).is_file()
        assert set(labels) <= set(MULTI_LABELS)
        assert labels == [name for name in MULTI_LABELS if name in labels]  # fixed order
        with Image.open(root / path) as im:
            assert im.size == (48, 48)
    readme = (root / "README.txt").read_text()
    for word in ("Invert", "Solarize", "FlipLR", "TranslateX", "Rotate", "FlipUD", "arrow_up"):
        assert word in readme


@pytest.mark.parametrize("multi_label", [False, True])
def test_deterministic(tmp_path: Path, multi_label: bool) -> None:
    """Same seed gives byte-identical files; another seed gives other images."""
    a = _all_files(make_shapes(tmp_path / "a", 20, seed=5, multi_label=multi_label))
    b = _all_files(make_shapes(tmp_path / "b", 20, seed=5, multi_label=multi_label))
    c = _all_files(make_shapes(tmp_path / "c", 20, seed=6, multi_label=multi_label))
    assert a == b
    images = [k for k in a if k.endswith(".jpg")]
    assert len(images) == 20
    assert all(a[k] != c[k] for k in images)


def test_label_prevalence(multi400: Path) -> None:
    """Every multi-label prevalence lies in [0.1, 0.9] on n=400."""
    rows = _read_labels(multi400)
    assert len(rows) == 400
    for name in MULTI_LABELS:
        prevalence = sum(name in labels for _, labels in rows) / len(rows)
        assert 0.1 <= prevalence <= 0.9, (name, prevalence)
    assert sum(not labels for _, labels in rows) / len(rows) < 0.05  # all-zero rows are rare


def test_colour_labels_match_pixels(multi400: Path) -> None:
    """Colour labels agree with the saturated pixels in the JPEGs."""

    def count(a: npt.NDArray[np.int_], channel: int) -> int:
        others = [c for c in range(3) if c != channel]
        mask = (a[..., channel] > 150) & (a[..., others[0]] < 90) & (a[..., others[1]] < 90)
        return int(mask.sum())

    for path, labels in _read_labels(multi400)[:150]:
        with Image.open(multi400 / path) as im:
            a = np.asarray(im.convert("RGB")).astype(int)
        for channel, name in enumerate(("red", "green", "blue")):
            assert (count(a, channel) >= 10) == (name in labels), (path, name)


def test_flips_swap_position_and_orientation_labels() -> None:
    """FlipLR swaps left/right; FlipUD flips arrow_up."""
    size = 64
    rng = np.random.default_rng(0)
    for _ in range(200):
        _, shapes = _multi_image(rng, size)
        labels = set(_multi_labels(shapes, size))
        flipped = set(_multi_labels([_flip_lr(s, size) for s in shapes], size))
        swap = {"left": "right", "right": "left"}
        assert flipped == {swap.get(name, name) for name in labels}
        twice = [_flip_lr(_flip_lr(s, size), size) for s in shapes]
        assert set(_multi_labels(twice, size)) == labels
    up = _Shape("triangle", "red", 32.0, 32.0, 8.0, 95.0)
    down = _flip_ud(up, size)
    assert "arrow_up" in _multi_labels([up], size)
    assert "arrow_up" not in _multi_labels([down], size)
    assert "arrow_up" in _multi_labels([_flip_lr(up, size)], size)  # FlipLR keeps orientation
    assert "arrow_up" not in _multi_labels([_Shape("square", "red", 32, 32, 8, 90)], size)


def test_label_rule_thresholds() -> None:
    """The label rule on hand-made shapes (thirds, unlabelled kinds, many)."""
    size = 60
    shape = _Shape("circle", "yellow", 0.0, 30.0, 5.0, 0.0)
    assert _multi_labels([shape], size) == ["circle", "left"]
    assert _multi_labels([_Shape("circle", "blue", 30.0, 30.0, 5.0, 0.0)], size) == [
        "circle",
        "blue",
    ]
    assert "right" in _multi_labels([_Shape("cross", "yellow", 41.0, 30.0, 5.0, 0.0)], size)
    assert _multi_labels([_Shape("cross", "yellow", 30.0, 30.0, 5.0, 0.0)], size) == []
    three = [_Shape("square", "green", x, 30.0, 5.0, 0.0) for x in (25.0, 30.0, 35.0)]
    assert _multi_labels(three, size) == ["square", "green", "many"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n >= 1"),
        ({"n": -3}, "n >= 1"),
        ({"size": 31}, "size >= 32"),
        ({"quality": 0}, "quality"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, int], match: str) -> None:
    """Out-of-range arguments raise ValueError naming the fix, writing nothing."""
    args = {"n": 4, "seed": 0, "size": 64, "quality": 90} | kwargs
    with pytest.raises(ValueError, match=match):
        make_shapes(
            tmp_path / "x", args["n"], seed=args["seed"], size=args["size"], quality=args["quality"]
        )
    assert not (tmp_path / "x").exists()


def test_bad_types(tmp_path: Path) -> None:
    """Non-int counts raise TypeError."""
    with pytest.raises(TypeError, match="n must be an int"):
        make_shapes(tmp_path / "x", 4.0, seed=0)  # type: ignore[arg-type]


def test_foreign_or_conflicting_root(tmp_path: Path) -> None:
    """Foreign or conflicting roots are refused; empty ones are used."""
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        make_shapes(foreign, 4, seed=0)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        make_shapes(afile, 4, seed=0)
    root = make_shapes(tmp_path / "ds", 4, seed=0)
    with pytest.raises(ValueError, match="different arguments"):
        make_shapes(root, 4, seed=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert make_shapes(empty, 4, seed=0) == empty  # an existing empty folder is fine
    assert _all_files(empty) == _all_files(root)


def test_cache_reuse_does_not_rewrite(tmp_path: Path) -> None:
    """A second identical call reuses the folder without rewriting."""
    root = make_shapes(tmp_path / "ds", 8, seed=2, multi_label=True)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert make_shapes(str(root), 8, seed=2, multi_label=True) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    # An incomplete folder (a file removed) is not mistaken for a complete dataset.
    next(root.glob("images/*.jpg")).unlink()
    with pytest.raises(ValueError, match="not empty"):
        make_shapes(root, 8, seed=2, multi_label=True)


def test_spec() -> None:
    """ShapesSpec validates and serialises its arguments."""
    spec = ShapesSpec(n=3, seed=1)
    spec.validate()
    assert spec.to_dict()["multi_label"] is False
    with pytest.raises(ValueError, match="n >= 1"):
        ShapesSpec(n=0, seed=1).validate()


def test_single_label_is_learnable(tmp_path: Path) -> None:
    """Softmax regression on low-frequency |FFT| of a saturation map beats chance clearly.

    The FFT magnitude ignores translation, so a linear model separates the shape kinds.
    """

    def load(root: Path) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int_]]:
        xs, ys = [], []
        for label, name in enumerate(SHAPE_CLASSES):
            for p in sorted((root / name).glob("*.jpg")):
                with Image.open(p) as im:
                    a = np.asarray(im.convert("RGB"), np.float64) / 255.0
                sat = a.max(-1) - a.min(-1)
                spec = np.abs(np.fft.rfft2(sat - sat.mean()))
                spec = np.concatenate([spec[:4, :4], spec[-4:, :4]])  # lowest frequencies
                xs.append((spec / (spec.sum() + 1e-9)).ravel())
                ys.append(label)
        return np.stack(xs), np.array(ys)

    x_tr, y_tr = load(make_shapes(tmp_path / "tr", 400, seed=11, size=32))
    x_te, y_te = load(make_shapes(tmp_path / "te", 200, seed=12, size=32))
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    w = np.zeros((x_tr.shape[1], len(SHAPE_CLASSES)))
    onehot = np.eye(len(SHAPE_CLASSES))[y_tr]
    for _ in range(300):
        z = x_tr @ w
        p = np.exp(z - z.max(1, keepdims=True))
        w -= 0.5 * x_tr.T @ (p / p.sum(1, keepdims=True) - onehot) / len(x_tr)
    accuracy = float(((x_te @ w).argmax(1) == y_te).mean())
    assert accuracy > 0.5, accuracy  # chance is 0.25 (measured: about 0.75)
