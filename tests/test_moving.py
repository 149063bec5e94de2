"""The moving-object clips: labels read back from the pixels (centroids, areas, brightness),
the FlipLR row of DESTROYED_BY checked against the mirrored clips, seeds, balance, the cache
and the errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from dali_aug.datasets import moving_classes, moving_clips
from dali_aug.datasets._fashion_mnist import write_idx
from dali_aug.datasets._moving import (
    DESTROYED_BY,
    MOTIONS,
    SHIFT,
    TURN,
    _generate,
    _Layout,
    _layout,
    _render,
    _shape_sprites,
)
from dali_aug.ops import apply, names

LENGTH, SIZE = 16, 32


@pytest.fixture(scope="module")
def drawn() -> tuple[np.ndarray, np.ndarray, _Layout]:
    return _generate(400, LENGTH, SIZE, 3, "shapes", None)


def _masks(clips: np.ndarray, background: np.ndarray) -> np.ndarray:
    """bool [N, T, H, W]: the pixels that differ from the clip's background."""
    diff = np.abs(clips.astype(np.int32) - np.rint(background)[:, None].astype(np.int32))
    return diff.sum(-1) > 60


def _centroids(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y of each mask's centroid [N, T] (pixel centres)."""
    area = mask.sum((2, 3)).clip(min=1)
    c = np.arange(mask.shape[-1]) + 0.5
    return (mask * c).sum((2, 3)) / area, (mask * c[:, None]).sum((2, 3)) / area


def _single(layout: _Layout, motion: int) -> np.ndarray:
    return np.flatnonzero(~layout.present[:, 1] & (layout.motion[:, 0] == motion))


def test_shapes_dtypes_and_labels() -> None:
    clips, targets, classes = moving_clips(40, cache=False)
    assert clips.shape == (40, 16, 32, 32, 3) and clips.dtype == np.uint8
    assert targets.shape == (40, 11) and targets.dtype == np.float32
    assert classes == moving_classes("shapes") and classes[:8] == MOTIONS
    assert classes[8:] == ("square present", "disc present", "triangle present")
    assert set(np.unique(targets)) <= {0.0, 1.0}
    assert (targets[:, 8:].sum(1) >= 1).all() and (targets.sum(1) <= 4).all()
    small, _, _ = moving_clips(3, length=8, size=24, cache=False)
    assert small.shape == (3, 8, 24, 24, 3)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = moving_clips(30, seed=5, cache=False)
    b = moving_clips(30, seed=5, cache=False)
    c = moving_clips(30, seed=6, cache=False)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_every_label_has_a_fair_share() -> None:
    _, targets, classes = moving_clips(2000, length=8, size=16, cache=False)
    share = dict(zip(classes, targets.mean(0), strict=True))
    for label in MOTIONS:  # 1.5 objects x 0.8 moving / 8 motions = 0.15
        assert 0.11 < share[label] < 0.19, (label, share[label])
    for label in classes[8:]:  # 1.5 objects / 3 kinds, minus clips with two of a kind
        assert 0.38 < share[label] < 0.52, (label, share[label])


@pytest.mark.parametrize(("motion", "axis", "sign"), [(0, 0, -1), (1, 0, 1), (2, 1, -1), (3, 1, 1)])
def test_direction_labels_move_the_centroid(
    drawn: tuple[np.ndarray, np.ndarray, _Layout], motion: int, axis: int, sign: int
) -> None:
    clips, targets, layout = drawn
    rows = _single(layout, motion)
    assert len(rows) >= 10 and (targets[rows, motion] == 1).all()
    centre = _centroids(_masks(clips[rows], layout.background[rows]))[axis]
    moved = sign * (centre[:, -1] - centre[:, 0])
    assert (moved > 0.6 * SHIFT * SIZE).all(), moved  # the shapes' hands shift it a little
    other = _centroids(_masks(clips[rows], layout.background[rows]))[1 - axis]
    assert (np.abs(other[:, -1] - other[:, 0]) < 0.15 * SHIFT * SIZE).all()


def test_turn_labels_turn_the_hand_that_way() -> None:
    """The dark hand pulls the brightness-weighted centroid off the shape's centroid; the
    direction between them turns with the object (clockwise on screen: the angle, y down,
    grows). At 64 px on a black background: at 32 px the hand is a pixel or two wide."""
    drawn = _layout(np.random.default_rng(3), 400, LENGTH, 64, 3)
    keep = ~drawn.present[:, 1] & np.isin(drawn.motion[:, 0], [4, 5])  # one turning object
    fields = ("present", "kind", "motion", "x0", "y0", "angle0", "phase", "colour")
    layout = dataclasses.replace(
        drawn,
        **{name: getattr(drawn, name)[keep] for name in fields},
        background=np.zeros((int(keep.sum()), 64, 64, 3)),
    )
    weight = _render(layout, _shape_sprites()).astype(float).sum(-1)
    mask = weight > 60
    mx, my = _centroids(mask)
    c = np.arange(64) + 0.5
    total = (weight * mask).sum((2, 3))
    wx = (weight * mask * c).sum((2, 3)) / total
    wy = (weight * mask * c[:, None]).sum((2, 3)) / total
    angle = np.arctan2(my - wy, mx - wx)
    turn = np.median(np.angle(np.exp(1j * np.diff(angle, axis=1))), axis=1)
    step = np.deg2rad(TURN / (LENGTH - 1))
    for label, sign in (("rotates clockwise", 1), ("rotates counterclockwise", -1)):
        rows = _single(layout, MOTIONS.index(label))
        assert len(rows) >= 10 and (sign * turn[rows] > 0).all(), (label, turn[rows])
        assert np.median(sign * turn[rows]) == pytest.approx(step, rel=0.3)


def test_grows_quadruples_the_area_and_the_rest_keep_it(
    drawn: tuple[np.ndarray, np.ndarray, _Layout],
) -> None:
    clips, _, layout = drawn
    area = _masks(clips, layout.background).sum((2, 3)).astype(float)
    one = ~layout.present[:, 1]
    ratio = area[:, -1] / area[:, 0]
    grows = one & (layout.motion[:, 0] == MOTIONS.index("grows"))
    assert grows.sum() >= 10 and (ratio[grows] > 3.0).all(), ratio[grows]
    steady = one & ~grows & (layout.motion[:, 0] != MOTIONS.index("flickers"))  # dims
    assert (np.abs(np.log(ratio[steady])) < np.log(1.4)).all()


def test_flickers_oscillates_the_mean_brightness(
    drawn: tuple[np.ndarray, np.ndarray, _Layout],
) -> None:
    clips, _, layout = drawn
    swing = _swing(clips)
    one = ~layout.present[:, 1]
    flickers = one & (layout.motion[:, 0] == MOTIONS.index("flickers"))
    steady = one & (layout.motion[:, 0] != MOTIONS.index("flickers"))
    assert flickers.sum() >= 10
    assert swing[flickers].min() > 2 * swing[steady].max(), (swing[flickers], swing[steady])


def test_fliplr_swaps_left_right_and_the_turns_as_the_table_says(
    drawn: tuple[np.ndarray, np.ndarray, _Layout],
) -> None:
    clips, targets, layout = drawn
    flipped = apply("FlipLR", clips.reshape(-1, SIZE, SIZE, 3), 0).reshape(clips.shape)
    mirrored = layout.mirrored()
    assert np.abs(flipped.astype(int) - _render(mirrored, _shape_sprites())).max() <= 1
    from dali_aug.datasets._moving import _targets

    swapped = _targets(mirrored, 3)
    changed = {MOTIONS[j] for j in np.flatnonzero((swapped != targets).any(0))}
    assert changed == {"moves left", "moves right", "rotates clockwise", "rotates counterclockwise"}
    assert changed == {label for label, ops in DESTROYED_BY.items() if "FlipLR" in ops}
    # read from the pixels too: the flipped "moves left" clips move right
    rows = _single(layout, MOTIONS.index("moves left"))
    x = _centroids(_masks(flipped[rows], layout.background[rows, :, ::-1]))[0]
    assert (x[:, -1] - x[:, 0] > 0.6 * SHIFT * SIZE).all()


@pytest.mark.parametrize("op", ["Color", "Contrast", "Brightness", "Invert", "Sharpness"])
def test_colour_ops_keep_the_direction_labels(
    drawn: tuple[np.ndarray, np.ndarray, _Layout], op: str
) -> None:
    clips, _, layout = drawn
    assert all(op not in DESTROYED_BY[label] for label in MOTIONS[:4])
    for motion, axis, sign in ((0, 0, -1), (1, 0, 1), (2, 1, -1), (3, 1, 1)):
        rows = _single(layout, motion)
        out = apply(op, clips[rows].reshape(-1, SIZE, SIZE, 3), 10).reshape(clips[rows].shape)
        background = apply(op, np.rint(layout.background[rows]).astype(np.uint8), 10)
        centre = _centroids(_masks(out, background.astype(float)))[axis]
        assert (sign * (centre[:, -1] - centre[:, 0]) > 0.4 * SHIFT * SIZE).all(), (op, motion)


def _swing(clips: np.ndarray) -> np.ndarray:
    """[N]: the oscillation of each clip's mean brightness (second differences: 0 on a trend,
    as of a growing object, 2|cos| on a period-4 cosine)."""
    mean = clips.astype(float).mean((2, 3, 4))
    return np.abs(mean[:, 2:] + mean[:, :-2] - 2 * mean[:, 1:-1]).mean(1)


def test_flickers_survives_the_ops_not_listed_and_not_the_folding_ones(
    drawn: tuple[np.ndarray, np.ndarray, _Layout],
) -> None:
    clips, _, layout = drawn
    flicker = clips[_single(layout, MOTIONS.index("flickers"))]
    frames = flicker.reshape(-1, SIZE, SIZE, 3)
    before = _swing(flicker)
    for op in names():
        kept = min(
            (
                _swing(apply(op, frames, level, generator=_gen()).reshape(flicker.shape)) / before
            ).min()
            for level in (3, 5, 7, 10)
        )
        if op in ("Equalize", "Solarize", "SolarizeTimm", "SolarizeAdd"):
            assert op in DESTROYED_BY["flickers"] and kept < 0.3, (op, kept)
        elif op not in DESTROYED_BY["flickers"]:
            assert kept > 0.35, (op, kept)


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_destroyed_by_names_catalog_ops_and_every_label() -> None:
    catalog = set(names())
    labels = {*moving_classes("shapes"), *moving_classes("fashion")}
    assert set(DESTROYED_BY) == labels
    for ops in DESTROYED_BY.values():
        assert set(ops) <= catalog
    assert "FlipUD" in DESTROYED_BY["moves up"] and "FlipUD" not in DESTROYED_BY["moves left"]
    assert "Color" not in {op for label in MOTIONS for op in DESTROYED_BY[label]}


def test_the_cache_writes_once_and_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = moving_clips(12, length=8, seed=2, cache_dir=tmp_path)
    (file,) = tmp_path.glob("*.npz")
    import dali_aug.datasets._moving as moving

    def fail(*args: object) -> None:
        raise AssertionError("generated again")

    monkeypatch.setattr(moving, "_generate", fail)
    again = moving_clips(12, length=8, seed=2, cache_dir=tmp_path)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    monkeypatch.undo()
    file.write_bytes(b"damaged")
    repaired = moving_clips(12, length=8, seed=2, cache_dir=tmp_path)
    assert np.array_equal(first[0], repaired[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == [file.name]  # no partial files


def test_default_cache_is_the_data_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DALI_AUG_CACHE", str(tmp_path))
    moving_clips(4, length=8)
    assert len(list((tmp_path / "moving-clips").glob("moving-shapes-n4-t8-*.npz"))) == 1


def test_fashion_items_from_idx_files(tmp_path: Path) -> None:
    items = np.zeros((30, 28, 28), np.uint8)
    items[:, 6:22, 8:20] = 200
    for stem in ("train", "t10k"):
        write_idx(tmp_path / f"{stem}-images-idx3-ubyte", items)
        write_idx(tmp_path / f"{stem}-labels-idx1-ubyte", (np.arange(30) % 10).astype(np.uint8))
    clips, targets, classes = moving_clips(20, kind="fashion", root=tmp_path, cache=False)
    assert classes[8:] == (
        "top present",
        "trouser present",
        "dress present",
        "footwear present",
        "bag present",
    )
    assert clips.shape == (20, 16, 32, 32, 3) and targets.shape == (20, 13)
    assert (targets[:, 8:].sum(1) >= 1).all()
    with pytest.raises(ValueError, match="dataset-fashion-mnist"):
        moving_clips(2, kind="fashion", root=tmp_path / "missing", cache=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 0}, ValueError, "n >= 1"),
        ({"n": 2.0}, TypeError, "n=2.0"),
        ({"n": 2, "length": 4}, ValueError, "length >= 8"),
        ({"n": 2, "size": 8}, ValueError, "size >= 16"),
        ({"n": 2, "seed": -1}, ValueError, "seed >= 0"),
        ({"n": 2, "seed": True}, TypeError, "seed=True"),
        ({"n": 2, "kind": "cubes"}, ValueError, "'shapes', 'fashion'"),
    ],
)
def test_bad_arguments_name_the_fix(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        moving_clips(**kwargs, cache=False)
