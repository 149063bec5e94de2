"""Multi-label mosaics of real Fashion-MNIST items, to prove two multi-label augmentation
methods: LB-Aug (*Fine-Grained AutoAugmentation for Multi-Label Classification*: label-
conditioned policies, ``docs/methods/lbaug.md``) and VFA (*Enhance via Decoupling: Improving
Multi-Label Classifiers with Variational Feature Augmentation*: feature decoupling against
spurious label co-occurrence, Sec. 1; ``docs/methods/vfa.md``). Everything here (layout,
groups, rates, sizes) is our choice, not the papers'.

Each image is a 2x2 mosaic, 56x56, of four 28x28 cells in row-major order (0 upper-left,
1 upper-right, 2 lower-left, 3 lower-right); a cell holds one Fashion-MNIST item or is empty
(black). The gray image is repeated to RGB, as in :func:`fashion_mnist_source`. The ten
Fashion-MNIST classes are grouped (:data:`GROUPS`): ``top`` (T-shirt/top, Pullover, Coat,
Shirt), ``trouser``, ``dress``, ``footwear`` (Sandal, Sneaker, Ankle boot), ``bag``.

Splits: ``train`` and ``val`` draw their items from disjoint parts of Fashion-MNIST's training
split (a permutation of its 60,000 indices drawn from ``seed`` alone, the first 10 % for
``val``); ``test`` draws from Fashion-MNIST's test split. No item is in two splits. Within a
split each group's items are taken in a seeded random order without repeats until the group
runs out (then it wraps round). All draws come from ``numpy.random.default_rng([seed, split,
variant])``; the same arguments give the same arrays. Default sizes: train 2000, val 500,
test 2000 (:data:`DEFAULT_SIZES`).

Variant ``lbaug``: each cell is empty with probability 0.35 (at least one item per mosaic),
else holds an item of a uniformly drawn group; 40 % of the mosaics are inverted (255 - x:
light background, dark items). Labels and the catalog ops that can change their truth at
levels 0-10 (:data:`DESTROYED_BY`):

==================  ==========================================  ===============================
label               truth                                       destroyed by
==================  ==========================================  ===============================
top ... bag         an item of the group is in the mosaic       TranslateX/Y (out of frame),
                                                                ShearX/Y (half out), Cutout,
                                                                SamplePairing,
                                                                PosterizeIncreasing/Timm (0
                                                                bits: black)
footwear-left       a footwear item in a left cell (0, 2)       FlipLR (swaps left/right),
footwear-right      a footwear item in a right cell (1, 3)      + the presence labels' ops
bag-upper           a bag in an upper cell (0, 1)               FlipUD (swaps upper/lower),
bag-lower           a bag in a lower cell (2, 3)                + the presence labels' ops
inverted            light background, dark items                Invert, Solarize, SolarizeTimm,
                    (:func:`read_inverted`)                     SamplePairing,
                                                                PosterizeIncreasing/Timm
==================  ==========================================  ===============================

TranslateX/Y at level 10 move 25 px, a whole cell: across the middle or out of the frame.
The shears are PIL's, about the top-left corner: at level 10 (factor 0.3) ShearX shifts the
lower cells by 11-14 px, to the middle or half out of the frame (ShearY the right cells).
Rotate turns about the centre: at level 10 (30 degrees) an item's centre stays 5 px or more
from the middle (it would cross from level 15, 45 degrees), so Rotate keeps every label.
The colour ops map values monotonically (or blur, Sharpness) and keep every item where it
was and the background lighter or darker than the items; Solarize at level 10 (threshold 0)
is Invert, and on an inverted mosaic any Solarize above level 0 turns the background dark.
Not listed, measured on 500 real test mosaics: Brightness and BrightnessTimm at level 10
(factor 1.9) saturate faint items of an inverted mosaic into its white background, and
:func:`read_inverted` reads 0.4 % of them otherwise; every other op and level kept it.

Variant ``vfa``: four presence labels (:data:`VFA_CLASSES`), each item in its own cell. In
``train`` and ``val`` the labels :data:`VFA_A` and :data:`VFA_B` co-occur: of the mosaics
holding either, :data:`VFA_BOTH_GIVEN_EITHER` (95 %) hold both, and each has marginal rate
:data:`VFA_MARGINAL` (0.4, as ``top``); :data:`VFA_R` is rare (:data:`VFA_RARE_RATE`, 5 %).
In ``test`` every label is placed independently with :data:`VFA_TEST_RATE` (0.4), so there
P(A and B) = P(A) P(B) and R is as common as the rest. A ``vfa`` mosaic may be empty.

Generating the defaults takes well under a second after the IDX files are read (about 0.5 s
for the gzipped training split), so nothing is cached.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch

from dali_aug.ops._catalog import FILL
from dali_aug.sources import ArraySource

__all__ = [
    "CELL",
    "DEFAULT_SIZES",
    "DESTROYED_BY",
    "GROUPS",
    "LBAUG_CLASSES",
    "LBAUG_EMPTY_RATE",
    "LBAUG_INVERTED_RATE",
    "MultiMosaics",
    "SIDE",
    "VAL_SHARE",
    "VFA_A",
    "VFA_B",
    "VFA_BOTH_GIVEN_EITHER",
    "VFA_CLASSES",
    "VFA_MARGINAL",
    "VFA_R",
    "VFA_RARE_RATE",
    "VFA_TEST_RATE",
    "fashion_mnist_multi",
    "fashion_mnist_multi_source",
    "read_inverted",
]

MultiSplit = Literal["train", "val", "test"]
Variant = Literal["lbaug", "vfa"]
_SPLITS: tuple[str, ...] = get_args(MultiSplit)
_VARIANTS: tuple[str, ...] = get_args(Variant)

#: A cell's side (a Fashion-MNIST image) and the mosaic's side.
CELL = 28
SIDE = 2 * CELL
#: Mosaics per split without ``n``.
DEFAULT_SIZES: dict[str, int] = {"train": 2000, "val": 500, "test": 2000}
#: The share of Fashion-MNIST's training split whose items make the ``val`` mosaics.
VAL_SHARE = 0.1
#: Label groups of the Fashion-MNIST classes (their indices), in group order.
GROUPS: dict[str, tuple[int, ...]] = {
    "top": (0, 2, 4, 6),
    "trouser": (1,),
    "dress": (3,),
    "footwear": (5, 7, 9),
    "bag": (8,),
}
_GROUP_NAMES = tuple(GROUPS)
_LEFT, _RIGHT, _UPPER, _LOWER = (0, 2), (1, 3), (0, 1), (2, 3)

#: ``lbaug``: a cell is empty with this probability; a mosaic is inverted with this one.
LBAUG_EMPTY_RATE = 0.35
LBAUG_INVERTED_RATE = 0.4
#: ``lbaug`` labels, in target order.
LBAUG_CLASSES: tuple[str, ...] = (
    *_GROUP_NAMES,
    "footwear-left",
    "footwear-right",
    "bag-upper",
    "bag-lower",
    "inverted",
)
_REMOVE: tuple[str, ...] = ("TranslateX", "TranslateY", "ShearX", "ShearY", "Cutout")
_REMOVE += ("SamplePairing", "PosterizeIncreasing", "PosterizeTimm")
#: The catalog ops that can change each ``lbaug`` label's truth at levels 0-10 (module
#: docstring); every other op keeps it.
DESTROYED_BY: dict[str, tuple[str, ...]] = {
    **{g: _REMOVE for g in _GROUP_NAMES},
    "footwear-left": ("FlipLR", *_REMOVE),
    "footwear-right": ("FlipLR", *_REMOVE),
    "bag-upper": ("FlipUD", *_REMOVE),
    "bag-lower": ("FlipUD", *_REMOVE),
    "inverted": (
        "Invert",
        "Solarize",
        "SolarizeTimm",
        "SamplePairing",
        "PosterizeIncreasing",
        "PosterizeTimm",
    ),
}

#: ``vfa`` labels, in target order; A and B co-occur in train and val, R is rare there.
VFA_CLASSES: tuple[str, ...] = ("top", "trouser", "footwear", "bag")
VFA_A = "trouser"
VFA_B = "footwear"
VFA_R = "bag"
#: train/val: P(A and B | A or B), the marginal rate of A, B and the other common labels,
#: and R's rate; test: every label's rate, drawn independently.
VFA_BOTH_GIVEN_EITHER = 0.95
VFA_MARGINAL = 0.4
VFA_RARE_RATE = 0.05
VFA_TEST_RATE = 0.4

_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}
_VARIANT_CODE = {"lbaug": 11, "vfa": 12}
_PARTITION_CODE = 97


@dataclasses.dataclass(frozen=True)
class MultiMosaics:
    """One split of mosaics and how they were made.

    Attributes:
        images: uint8 [N, 56, 56, 3].
        targets: float32 [N, C] multi-hot, in ``classes`` order.
        classes: the label names.
        items: int64 [N, 4]: each cell's item, an index into Fashion-MNIST's ``file_split``
            (``train`` for the train and val mosaics, ``test`` for the test ones); -1 empty.
        inverted: bool [N]: the mosaics drawn inverted (all False for ``vfa``).
        file_split: the Fashion-MNIST split the items come from.
    """

    images: np.ndarray
    targets: np.ndarray
    classes: tuple[str, ...]
    items: np.ndarray
    inverted: np.ndarray
    file_split: str

    def source(self) -> ArraySource:
        """The mosaics as a multi-label Loader source."""
        return ArraySource(
            self.images, torch.from_numpy(self.targets), self.classes, multi_label=True
        )


def read_inverted(images: np.ndarray) -> np.ndarray:
    """The ``inverted`` label's truth read from pixels, bool [N]: the background is lighter
    than the items, i.e. the most frequent value (the background; the catalog's fill value
    ``FILL`` = 128, which geometric ops put where no pixel is, is not counted) is above the
    image's mean. An image of one value reads False.

    Args:
        images: uint8 [N, H, W, 3] (channel 0 is read) or [N, H, W].
    """
    x = np.asarray(images)
    if x.ndim == 4:
        x = x[..., 0]
    if x.dtype != np.uint8 or x.ndim != 3:
        raise ValueError(f"images must be uint8 [N, H, W(, 3)], got {x.dtype} {x.shape}")
    flat = x.reshape(len(x), -1).astype(np.int64)
    counts = np.bincount((flat + 256 * np.arange(len(x))[:, None]).ravel(), minlength=256 * len(x))
    counts = counts.reshape(len(x), 256)
    counts[:, FILL] = 0
    mode = counts.argmax(axis=1)
    return np.asarray(mode > flat.mean(axis=1))


def _check(split: str, variant: str, n: int | None, seed: int) -> int:
    if split not in _SPLITS:
        raise ValueError(f"split={split!r}; use one of {', '.join(map(repr, _SPLITS))}")
    if variant not in _VARIANTS:
        raise ValueError(f"variant={variant!r}; use one of {', '.join(map(repr, _VARIANTS))}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}; use an integer >= 0")
    if n is None:
        return DEFAULT_SIZES[split]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n={n!r}; use a positive number of mosaics (or None: the default)")
    return int(n)


def _item_pool(split: str, n_file: int, seed: int) -> np.ndarray:
    """The indices (into the Fashion-MNIST file of ``n_file`` items) a split's items come
    from: the test file's all for test; train and val share one permutation of the training
    file, drawn from ``seed`` alone (val the first :data:`VAL_SHARE` of it)."""
    if split == "test":
        return np.arange(n_file)
    order = np.random.default_rng([seed, _PARTITION_CODE]).permutation(n_file)
    n_val = max(1, round(VAL_SHARE * n_file))
    return np.sort(order[:n_val] if split == "val" else order[n_val:])


def _lbaug_cells(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Group per cell [n, 4] (-1 empty) and the inverted flags [n]."""
    occupied = rng.random((n, 4)) >= LBAUG_EMPTY_RATE
    empty = np.flatnonzero(~occupied.any(axis=1))
    occupied[empty, rng.integers(0, 4, len(empty))] = True
    groups = rng.integers(0, len(_GROUP_NAMES), (n, 4))
    inverted = rng.random(n) < LBAUG_INVERTED_RATE
    return np.where(occupied, groups, -1), inverted


def _vfa_cells(rng: np.random.Generator, n: int, split: str) -> np.ndarray:
    """Group per cell [n, 4] (-1 empty): the present labels, each in its own random cell."""
    k = len(VFA_CLASSES)
    present = np.zeros((n, k), bool)
    col = {name: VFA_CLASSES.index(name) for name in VFA_CLASSES}
    if split == "test":
        present[:] = rng.random((n, k)) < VFA_TEST_RATE
    else:
        # either with q, then both / only A / only B: P(A) = q (1 + both) / 2
        both = VFA_BOTH_GIVEN_EITHER
        either = rng.random(n) < VFA_MARGINAL * 2 / (1 + both)
        r = rng.random(n)
        only_a = (r >= both) & (r < both + (1 - both) / 2)
        only_b = r >= both + (1 - both) / 2
        present[:, col[VFA_A]] = either & ~only_b
        present[:, col[VFA_B]] = either & ~only_a
        present[:, col[VFA_R]] = rng.random(n) < VFA_RARE_RATE
        for name in VFA_CLASSES:
            if name not in (VFA_A, VFA_B, VFA_R):
                present[:, col[name]] = rng.random(n) < VFA_MARGINAL
    cell_order = rng.permuted(np.tile(np.arange(4), (n, 1)), axis=1)
    rank = np.cumsum(present, axis=1) - 1  # the j-th present label takes the j-th cell
    rows, labels = np.nonzero(present)
    cells = np.full((n, 4), -1, np.int64)
    group_of = np.array([_GROUP_NAMES.index(name) for name in VFA_CLASSES])
    cells[rows, cell_order[rows, rank[rows, labels]]] = group_of[labels]
    return cells


def _assign_items(
    rng: np.random.Generator, cells: np.ndarray, pool: np.ndarray, file_labels: np.ndarray
) -> np.ndarray:
    """Item index per cell: each group's pool in a seeded order, without repeats until it
    runs out."""
    items = np.full(cells.shape, -1, np.int64)
    for g, name in enumerate(_GROUP_NAMES):
        where = cells == g
        count = int(where.sum())
        if not count:
            continue
        members = pool[np.isin(file_labels[pool], GROUPS[name])]
        if not len(members):
            raise ValueError(
                f"no Fashion-MNIST item of group {name!r} (classes {GROUPS[name]}) is left for "
                "this split; the IDX files hold too few items"
            )
        items[where] = rng.permutation(members)[np.arange(count) % len(members)]
    return items


def _labels(variant: str, cells: np.ndarray, inverted: np.ndarray) -> np.ndarray:
    """The multi-hot targets [n, C] of a layout (the truth the module docstring defines)."""
    has = {name: (cells == g) for g, name in enumerate(_GROUP_NAMES)}
    if variant == "vfa":
        cols = [has[name].any(axis=1) for name in VFA_CLASSES]
    else:
        foot, bag = has["footwear"], has["bag"]
        cols = [has[name].any(axis=1) for name in _GROUP_NAMES]
        cols += [foot[:, _LEFT].any(axis=1), foot[:, _RIGHT].any(axis=1)]
        cols += [bag[:, _UPPER].any(axis=1), bag[:, _LOWER].any(axis=1), inverted]
    return np.stack(cols, axis=1).astype(np.float32)


def _mosaic(file_images: np.ndarray, items: np.ndarray, inverted: np.ndarray) -> np.ndarray:
    n = len(items)
    cells = np.zeros((n, 4, CELL, CELL), np.uint8)
    filled = items >= 0
    cells[filled] = file_images[items[filled]]
    gray = cells.reshape(n, 2, 2, CELL, CELL).transpose(0, 1, 3, 2, 4).reshape(n, SIDE, SIDE)
    gray[inverted] = 255 - gray[inverted]
    return np.repeat(gray[..., None], 3, axis=-1)


def fashion_mnist_multi(
    split: MultiSplit,
    variant: Variant,
    *,
    n: int | None = None,
    seed: int = 0,
    root: str | Path | None = None,
) -> MultiMosaics:
    """The mosaics of one split and variant with their layout (module docstring).

    Args:
        split: ``train``, ``val`` (items disjoint from train's) or ``test`` (Fashion-MNIST's
            test items).
        variant: ``lbaug`` (presence, position and polarity labels) or ``vfa`` (presence
            labels with a spurious co-occurrence in train and val).
        n: the number of mosaics; None: :data:`DEFAULT_SIZES`.
        seed: the seed of the val/train partition of the items and of the split's draws.
        root: the folder of the IDX files (as :func:`load_fashion_mnist`).

    Raises:
        ValueError: an unknown split or variant (naming the choices), ``n`` or ``seed`` out
            of range, the IDX files missing or damaged, or too few items for a group.
    """
    from dali_aug.datasets._fashion_mnist import load_fashion_mnist

    count = _check(split, variant, n, seed)
    file_split = "test" if split == "test" else "train"
    file_images, file_labels = load_fashion_mnist(file_split, root)  # type: ignore[arg-type]
    pool = _item_pool(split, len(file_images), int(seed))
    rng = np.random.default_rng([int(seed), _SPLIT_CODE[split], _VARIANT_CODE[variant]])
    if variant == "lbaug":
        cells, inverted = _lbaug_cells(rng, count)
        classes = LBAUG_CLASSES
    else:
        cells, inverted = _vfa_cells(rng, count, split), np.zeros(count, bool)
        classes = VFA_CLASSES
    items = _assign_items(rng, cells, pool, file_labels)
    return MultiMosaics(
        images=_mosaic(file_images, items, inverted),
        targets=_labels(variant, cells, inverted),
        classes=classes,
        items=items,
        inverted=inverted,
        file_split=file_split,
    )


def fashion_mnist_multi_source(
    split: MultiSplit,
    variant: Variant,
    *,
    n: int | None = None,
    seed: int = 0,
    root: str | Path | None = None,
) -> ArraySource:
    """A multi-label Loader source of :func:`fashion_mnist_multi`'s mosaics: images uint8
    [N, 56, 56, 3], targets float32 [N, C], the label names.

    Example:
        >>> train = Loader(fashion_mnist_multi_source("train", "lbaug"), size=56)
    """
    return fashion_mnist_multi(split, variant, n=n, seed=seed, root=root).source()
