"""The Fashion-MNIST mosaics on small IDX files the tests write: every fake item is unique
and readable from its pixels (its class from its value, its file and index from a bit row),
so the tests recompute each label from the cells and follow the items through the ops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dali_aug.datasets._fashion_mnist import write_idx
from dali_aug.datasets._fashion_multi import (
    CELL,
    DESTROYED_BY,
    GROUPS,
    LBAUG_CLASSES,
    SIDE,
    VFA_A,
    VFA_B,
    VFA_BOTH_GIVEN_EITHER,
    VFA_CLASSES,
    VFA_MARGINAL,
    VFA_R,
    VFA_RARE_RATE,
    VFA_TEST_RATE,
    fashion_mnist_multi,
    fashion_mnist_multi_source,
    read_inverted,
)
from dali_aug.ops import CATALOG, apply, names

N_TRAIN, N_TEST = 400, 200
_TEST_FLAG = 1 << 20  # the bit row's flag of the test file's items
_GROUP_OF_CLASS = {c: g for g, classes in enumerate(GROUPS.values()) for c in classes}


def _value(c: int) -> int:
    return 20 + 20 * c  # 20..200: never 0 (background) nor 128 (the geometric ops' fill)


def _item(index: int, test: bool) -> np.ndarray:
    """Class ``index % 10``: a 10x10 square of its value in the middle with a 2x2 white core
    (real items nearly all reach 255), and the item's identity (index and file) in binary,
    in the class's value, on row 25."""
    c = index % 10
    img = np.zeros((CELL, CELL), np.uint8)
    img[9:19, 9:19] = _value(c)
    img[13:15, 13:15] = 255
    code = index | (_TEST_FLAG if test else 0)
    bits = [(code >> j) & 1 for j in range(24)]
    img[25, 2:26] = np.array(bits, np.uint8) * _value(c)
    return img


def _fake(root: Path) -> Path:
    for stem, n, test in (("train", N_TRAIN, False), ("t10k", N_TEST, True)):
        images = np.stack([_item(i, test) for i in range(n)])
        write_idx(root / f"{stem}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{stem}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _fake(tmp_path_factory.mktemp("idx"))


def _cells(image: np.ndarray) -> list[np.ndarray]:
    gray = image[..., 0]
    return [
        gray[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL] for r in (0, 1) for c in (0, 1)
    ]


def _decode(cell: np.ndarray) -> tuple[str, int] | None:
    """(file, index) of an untransformed, non-inverted cell, None for an empty one; checks
    that the cell is exactly the fake item."""
    if not cell.any():
        return None
    code = sum(1 << j for j in range(24) if cell[25, 2 + j])
    test = bool(code & _TEST_FLAG)
    index = code & ~_TEST_FLAG
    assert np.array_equal(cell, _item(index, test))
    return ("test" if test else "train"), index


def _layout(images: np.ndarray, inverted: np.ndarray) -> list[list[tuple[str, int] | None]]:
    out = []
    for image, inv in zip(images, inverted, strict=True):
        x = 255 - image if inv else image
        out.append([_decode(cell) for cell in _cells(x)])
    return out


def _truth_from_cells(
    variant: str, layout: list[list[tuple[str, int] | None]], inverted: np.ndarray
) -> np.ndarray:
    """The labels the module docstring defines, recomputed from the decoded cells."""
    names = list(GROUPS)
    rows = []
    for cells, inv in zip(layout, inverted, strict=True):
        group = [None if c is None else names[_GROUP_OF_CLASS[c[1] % 10]] for c in cells]
        if variant == "vfa":
            rows.append([float(n in group) for n in VFA_CLASSES])
            continue
        row = [float(n in group) for n in names]
        row += [
            float("footwear" in (group[0], group[2])),
            float("footwear" in (group[1], group[3])),
        ]
        row += [float("bag" in (group[0], group[1])), float("bag" in (group[2], group[3]))]
        rows.append([*row, float(inv)])
    return np.array(rows, np.float32)


def _read_positions(images: np.ndarray, inverted: np.ndarray) -> np.ndarray:
    """Presence and position labels read from (possibly moved) pixels: a group is in a half
    when more than half a square's area (50 px) of its value lies there."""
    out = []
    for image, inv in zip(images, inverted, strict=True):
        gray = image[..., 0].astype(np.int64)
        gray = 255 - gray if inv else gray
        half = SIDE // 2
        row = []
        masks = {}
        for name, classes in GROUPS.items():
            masks[name] = np.isin(gray, [_value(c) for c in classes])
            row.append(float(masks[name].sum() > 50))
        foot, bag = masks["footwear"], masks["bag"]
        row += [float(foot[:, :half].sum() > 50), float(foot[:, half:].sum() > 50)]
        row += [float(bag[:half].sum() > 50), float(bag[half:].sum() > 50)]
        out.append(row)
    return np.array(out, np.float32)


@pytest.mark.parametrize("variant", ["lbaug", "vfa"])
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_labels_are_what_the_cells_hold(root: Path, variant: str, split: str) -> None:
    m = fashion_mnist_multi(split, variant, n=300, seed=3, root=root)  # type: ignore[arg-type]
    assert m.images.shape == (300, SIDE, SIDE, 3) and m.images.dtype == np.uint8
    assert np.array_equal(m.images[..., 0], m.images[..., 2])
    assert m.classes == (LBAUG_CLASSES if variant == "lbaug" else VFA_CLASSES)
    assert m.targets.dtype == np.float32 and m.targets.shape == (300, len(m.classes))
    layout = _layout(m.images, m.inverted)
    assert np.array_equal(m.targets, _truth_from_cells(variant, layout, m.inverted))
    # the recorded layout is the one in the pixels
    recorded = [[None if i < 0 else (m.file_split, int(i)) for i in row] for row in m.items]
    assert recorded == layout
    assert np.array_equal(read_inverted(m.images), m.inverted)
    if variant == "lbaug":
        assert 0.2 < m.inverted.mean() < 0.6 and (m.items >= 0).any(axis=1).all()
        assert 0 < m.targets.mean(axis=0).min() and m.targets.mean(axis=0).max() < 0.8
    else:
        assert not m.inverted.any()  # one item per present label, each in its own cell
        assert np.array_equal((m.items >= 0).sum(axis=1), m.targets.sum(axis=1))
    src = fashion_mnist_multi_source(split, variant, n=300, seed=3, root=root)  # type: ignore[arg-type]
    assert src.multi_label and src.classes == m.classes
    assert np.array_equal(src.images, m.images) and np.array_equal(src.targets.numpy(), m.targets)


def _lbaug(root: Path, n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = fashion_mnist_multi("train", "lbaug", n=n, seed=1, root=root)
    return m.images, m.inverted, m.targets


def test_destroyed_by_names_catalog_ops_for_every_label() -> None:
    assert set(DESTROYED_BY) == set(LBAUG_CLASSES)
    for ops in DESTROYED_BY.values():
        assert set(ops) <= set(names())


def test_the_flips_swap_the_position_labels_and_keep_the_rest(root: Path) -> None:
    images, inverted, targets = _lbaug(root)
    col = {name: i for i, name in enumerate(LBAUG_CLASSES)}
    read = _read_positions(images, inverted)
    assert np.array_equal(read, targets[:, :-1])  # the reader agrees on the originals
    lr = _read_positions(apply("FlipLR", images, 0), inverted)
    ud = _read_positions(apply("FlipUD", images, 0), inverted)
    left, right, upper, lower = (
        col[n] for n in ("footwear-left", "footwear-right", "bag-upper", "bag-lower")
    )
    swapped_lr = read.copy()
    swapped_lr[:, [left, right]] = read[:, [right, left]]
    swapped_ud = read.copy()
    swapped_ud[:, [upper, lower]] = read[:, [lower, upper]]
    assert np.array_equal(lr, swapped_lr) and not np.array_equal(lr, read)
    assert np.array_equal(ud, swapped_ud) and not np.array_equal(ud, read)
    assert "FlipLR" in DESTROYED_BY["footwear-left"] and "FlipLR" not in DESTROYED_BY["bag-upper"]
    assert "FlipUD" in DESTROYED_BY["bag-lower"] and "FlipUD" not in DESTROYED_BY["footwear-right"]


def test_a_whole_cell_translation_moves_items_across_or_out(root: Path) -> None:
    images, inverted, targets = _lbaug(root)
    col = {name: i for i, name in enumerate(LBAUG_CLASSES)}
    left, right = col["footwear-left"], col["footwear-right"]
    # PIL's sign: level 10 reads the input 25 px to the right, so the content moves left
    moved = _read_positions(apply("TranslateX", images, 10), inverted)
    assert np.array_equal(moved[:, left], targets[:, right]) and not moved[:, right].any()
    moved = _read_positions(apply("TranslateX", images, -10), inverted)
    assert np.array_equal(moved[:, right], targets[:, left]) and not moved[:, left].any()
    assert "TranslateX" in DESTROYED_BY["footwear-left"]


@pytest.mark.parametrize("op", ["Rotate", "FlipLR", "FlipUD", "Identity"])
def test_geometric_ops_keep_the_labels_they_do_not_destroy(root: Path, op: str) -> None:
    images, inverted, targets = _lbaug(root)
    levels = (10, -10) if CATALOG[names().index(op)].signed else (0,)
    for level in levels:
        read = _read_positions(apply(op, images, level), inverted)
        for j, name in enumerate(LBAUG_CLASSES[:-1]):
            if op not in DESTROYED_BY[name]:
                assert np.array_equal(read[:, j], targets[:, j]), (op, level, name)


def _levels(op: str) -> list[float]:
    spec = CATALOG[names().index(op)]
    return [0, 3, 10, -3, -10] if spec.signed else [0, 3, 10]


def _occupied(images: np.ndarray) -> np.ndarray:
    """Per cell [N, 4]: some pixel differs from the cell's most frequent value (a
    saturating colour op can merge most of a fake item's square with the background, never
    its white core)."""
    return np.array(
        [[(c != np.bincount(c.ravel()).argmax()).any() for c in _cells(x)] for x in images]
    )


@pytest.mark.parametrize("op", names())
def test_polarity_changes_under_its_destroyers_only(root: Path, op: str) -> None:
    import torch

    images, inverted, _ = _lbaug(root, n=64)
    occupied = _occupied(images)
    colour = CATALOG[names().index(op)].family.name != "AFFINE"
    for level in _levels(op):
        out = apply(op, images, level, generator=torch.Generator().manual_seed(0))
        if op not in DESTROYED_BY["inverted"]:
            assert np.array_equal(read_inverted(out), inverted), (op, level)
        if colour and op not in DESTROYED_BY["top"]:  # a colour op moves no item
            assert np.array_equal(_occupied(out), occupied), (op, level)
    assert np.array_equal(read_inverted(apply("Invert", images, 0)), ~inverted)
    assert inverted.any() and not read_inverted(apply("Solarize", images, 5)).any()


def test_vfa_rates_in_train_and_val_and_independence_in_test(root: Path) -> None:
    n = 4000
    col = {name: i for i, name in enumerate(VFA_CLASSES)}
    for split in ("train", "val"):
        t = fashion_mnist_multi(split, "vfa", n=n, root=root).targets  # type: ignore[arg-type]
        a, b, r = t[:, col[VFA_A]], t[:, col[VFA_B]], t[:, col[VFA_R]]
        either = (a + b) > 0
        assert abs((a * b)[either].mean() - VFA_BOTH_GIVEN_EITHER) < 0.03  # SE 0.006
        assert abs(a.mean() - VFA_MARGINAL) < 0.04 and abs(b.mean() - VFA_MARGINAL) < 0.04
        assert abs(t[:, col["top"]].mean() - VFA_MARGINAL) < 0.04
        assert abs(r.mean() - VFA_RARE_RATE) < 0.02  # SE 0.0035
    t = fashion_mnist_multi("test", "vfa", n=n, root=root).targets
    a, b, r = t[:, col[VFA_A]], t[:, col[VFA_B]], t[:, col[VFA_R]]
    for j in range(len(VFA_CLASSES)):
        assert abs(t[:, j].mean() - VFA_TEST_RATE) < 0.04  # SE 0.008
    for x, y in ((a, b), (a, r), (b, r)):
        assert abs((x * y).mean() - x.mean() * y.mean()) < 0.03  # SE 0.006
    assert (a * b)[(a + b) > 0].mean() < 0.4


def _identities(m: object) -> set[tuple[str, int]]:
    images, inverted = m.images, m.inverted  # type: ignore[attr-defined]
    return {cell for row in _layout(images, inverted) for cell in row if cell is not None}


@pytest.mark.parametrize("variant", ["lbaug", "vfa"])
def test_splits_use_disjoint_items(root: Path, variant: str) -> None:
    items = {
        s: _identities(fashion_mnist_multi(s, variant, n=1500, seed=2, root=root))  # type: ignore[arg-type]
        for s in ("train", "val", "test")
    }
    assert {f for f, _ in items["train"] | items["val"]} == {"train"}
    assert {f for f, _ in items["test"]} == {"test"}
    assert not items["train"] & items["val"]
    assert len(items["val"]) <= round(0.1 * N_TRAIN) < len(items["train"])
    # val's items are the same part of the training file whatever the variant
    other = "vfa" if variant == "lbaug" else "lbaug"
    val_other = _identities(fashion_mnist_multi("val", other, n=1500, seed=2, root=root))  # type: ignore[arg-type]
    assert not val_other & items["train"]


def test_same_seed_same_data_other_seed_other_data(root: Path) -> None:
    for variant in ("lbaug", "vfa"):
        a = fashion_mnist_multi("train", variant, n=50, seed=4, root=root)  # type: ignore[arg-type]
        b = fashion_mnist_multi("train", variant, n=50, seed=4, root=root)  # type: ignore[arg-type]
        c = fashion_mnist_multi("train", variant, n=50, seed=5, root=root)  # type: ignore[arg-type]
        assert np.array_equal(a.images, b.images) and np.array_equal(a.targets, b.targets)
        assert not np.array_equal(a.images, c.images)
        assert not np.array_equal(a.targets, c.targets)  # the layout, not only the items
        d = fashion_mnist_multi("val", variant, n=50, seed=4, root=root)  # type: ignore[arg-type]
        assert not np.array_equal(a.items, d.items)


def test_bad_arguments_name_the_choices(root: Path) -> None:
    with pytest.raises(ValueError, match="'train', 'val', 'test'"):
        fashion_mnist_multi("dev", "lbaug", root=root)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'lbaug', 'vfa'"):
        fashion_mnist_multi("train", "vfa2", root=root)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n=0"):
        fashion_mnist_multi("train", "lbaug", n=0, root=root)
    with pytest.raises(ValueError, match="seed=-1"):
        fashion_mnist_multi("train", "lbaug", seed=-1, root=root)
    with pytest.raises(ValueError, match="uint8"):
        read_inverted(np.zeros((2, 4, 4), np.float32))


def test_default_sizes(root: Path) -> None:
    sizes = {
        s: len(fashion_mnist_multi(s, "vfa", root=root).images) for s in ("train", "val", "test")
    }  # type: ignore[arg-type]
    assert sizes == {"train": 2000, "val": 500, "test": 2000}


def test_training_data_needs_multi_label_and_takes_the_train_size(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dali_aug.datasets import default_scale, default_size, training_data

    monkeypatch.setenv("DALI_AUG_FASHION_MNIST", str(root))
    for name, classes in (
        ("fashion-mnist-multi-lbaug", LBAUG_CLASSES),
        ("fashion-mnist-multi-vfa", VFA_CLASSES),
    ):
        with pytest.raises(ValueError, match="add --multi-label"):
            training_data(name, multi_label=False, train_size=None, seed=0)
        data = training_data(name, multi_label=True, train_size=120, seed=0)
        assert len(data.source.images) == 120 and data.source.classes == classes
        assert data.source.multi_label and data.val_source.multi_label
        assert len(data.val_source.images) == 2000 and data.val_dir is None
        assert default_size(name) == 56 and default_scale(name) == (1.0, 1.0)


def test_train_on_the_mosaics(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from dali_aug.cli import main

    monkeypatch.setenv("DALI_AUG_FASHION_MNIST", str(root))
    monkeypatch.setenv("DALI_AUG_CACHE", str(tmp_path / "cache"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    out = tmp_path / "run"
    argv = ["train", "--data", "fashion-mnist-multi-vfa", "--train-size", "64", "--epochs", "1"]
    argv += ["--batch-size", "16", "--no-progress", "--no-flip"]
    assert main([*argv, "--multi-label", "--out", str(out)]) == 0
    assert "64 train images" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classes"] == list(VFA_CLASSES)
    assert "mAP" in metrics["history"][-1]
    with pytest.raises(SystemExit, match="add --multi-label"):
        main([*argv, "--out", str(tmp_path / "y")])


def test_lbaug_searches_the_mosaics_training_split_with_the_pad_crop(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``dali-aug search lbaug --data fashion-mnist-multi-lbaug``: the training split's
    ``--train-size`` mosaics at 56 px with the pad crop, and an actor over their labels."""
    import json

    from dali_aug.cli import main
    from dali_aug.datasets import LBAUG_CLASSES

    monkeypatch.setenv("DALI_AUG_FASHION_MNIST", str(root))
    monkeypatch.setenv("DALI_AUG_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "actor.pt"
    argv = ["search", "lbaug", "--data", "fashion-mnist-multi-lbaug", "--train-size", "40",
            "--crop", "pad", "--pad", "2", "--folds", "2", "--critic-epochs", "1",
            "--search-epochs", "1", "--device", "cpu", "--threads", "1", "--no-progress",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "fashion-mnist-multi-lbaug (40 images, 10 labels, 56 px)" in capsys.readouterr().out
    summary = json.loads((tmp_path / "actor_search.json").read_text())
    assert summary["data"] == "fashion-mnist-multi-lbaug" and summary["size"] == 56
    assert summary["samples"] == 40
    payload = torch.load(out, weights_only=False)
    assert tuple(payload["label_names"]) == tuple(LBAUG_CLASSES)
