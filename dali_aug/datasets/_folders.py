"""Where data lives: the cache directory, the generated demo data, and the resolution of a
``--data`` argument into training and validation folders (one place for every verb)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DEMO_SIZE",
    "FASHION_MNIST",
    "FASHION_MNIST_MULTI",
    "TrainingData",
    "cache_dir",
    "default_scale",
    "default_size",
    "demo_data",
    "resolve_data",
    "training_data",
]

#: Image side of the generated demo shapes.
DEMO_SIZE = 64
#: the ``--data`` name of Fashion-MNIST in the CLIs (the IDX files of Debian's
#: dataset-fashion-mnist, :mod:`dali_aug.datasets._fashion_mnist`; its test split validates)
FASHION_MNIST = "fashion-mnist"
#: the ``--data`` names of the multi-label Fashion-MNIST mosaics and their variants
#: (:mod:`dali_aug.datasets._fashion_multi`; the test split validates)
FASHION_MNIST_MULTI: dict[str, Literal["lbaug", "vfa"]] = {
    "fashion-mnist-multi-lbaug": "lbaug",
    "fashion-mnist-multi-vfa": "vfa",
}


def default_size(data: str | None) -> int:
    """The image side of a ``--data`` argument without ``--size``: 64 on the demo data (None),
    28 on Fashion-MNIST and 56 on its mosaics (their native sides), 224 elsewhere."""
    if data in FASHION_MNIST_MULTI:
        return 56
    return {None: DEMO_SIZE, FASHION_MNIST: 28}.get(data, 224)


def default_scale(data: str | None) -> tuple[float, float]:
    """The random-resized crop's area range of a ``--data`` argument without ``--scale``:
    (0.5, 1) on the demo data and Fashion-MNIST (small images a crop of 8 % would lose),
    (1, 1) on the Fashion-MNIST mosaics (a smaller crop cuts cells away, and with them
    labels), torchvision's (0.08, 1) elsewhere."""
    if data in FASHION_MNIST_MULTI:
        return (1.0, 1.0)
    return (0.5, 1.0) if data in (None, FASHION_MNIST) else (0.08, 1.0)


def cache_dir() -> Path:
    """``$DALI_AUG_CACHE``, else ``$XDG_CACHE_HOME/dali_aug`` (default ``~/.cache/dali_aug``)."""
    base = os.environ.get("DALI_AUG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "dali_aug"
    )
    return Path(base)


def demo_data(multi_label: bool, n: int = 4000, seed: int = 0) -> tuple[Path, Path]:
    """Generates (once, cached) the demo shapes: a train and a val folder."""
    from dali_aug.datasets._shapes import make_shapes

    kind = "multi" if multi_label else "single"
    root = cache_dir() / f"shapes-{kind}-{n}-s{seed}"
    train = make_shapes(root / "train", n, seed=seed, multi_label=multi_label, size=DEMO_SIZE)
    val = make_shapes(
        root / "val", n // 4, seed=seed + 10_000, multi_label=multi_label, size=DEMO_SIZE
    )
    return Path(train), Path(val)


def resolve_data(data: str | Path | None, *, multi_label: bool) -> tuple[Path, Path | None]:
    """(training folder, validation folder or None) of a ``--data`` argument.

    None gives the demo shapes; ``DIR`` with ``DIR/train`` is the ImageNet layout (with
    ``DIR/val`` when present); any other folder is the training folder alone.

    Raises:
        ValueError: ``data`` is not a folder, or ``multi_label`` without a ``labels.csv``.
    """
    if data is None:
        return demo_data(multi_label)
    root = Path(data)
    if not root.is_dir():
        raise ValueError(f"--data {root} is not a folder")
    train = root / "train" if (root / "train").is_dir() else root
    packed = (train / "dataset.json").is_file()  # dali-aug pack: it records the label kind
    if multi_label and not packed and not (train / "labels.csv").is_file():
        raise ValueError(f"multi-label data needs {train / 'labels.csv'} (header 'path,labels')")
    if train != root:
        return train, (root / "val") if (root / "val").is_dir() else None
    return root, None


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The training source of a ``--data`` argument and where its validation data is: a
    folder (``val_dir``), a source built in memory (``val_source``: Fashion-MNIST's test
    split), or neither."""

    source: Any
    val_dir: Path | None = None
    val_source: Any = None


def training_data(
    data: str | None, *, multi_label: bool, train_size: int | None, seed: int
) -> TrainingData:
    """The training data of a ``--data`` argument (the verbs' one reading of it):
    ``fashion-mnist`` (a seeded, class-balanced ``train_size`` subset of its training split,
    the test split to validate), ``fashion-mnist-multi-lbaug`` and ``-vfa`` (the mosaics'
    train split of ``train_size`` mosaics, default 2000, drawn with ``seed``; their test split
    to validate), else :func:`resolve_data`'s folders.

    Raises:
        ValueError: ``--train-size`` without Fashion-MNIST, Fashion-MNIST as multi-label, its
            mosaics without ``multi_label``, or what :func:`resolve_data` and the source's
            scan refuse.
    """
    from dali_aug.sources import open_source

    if data in FASHION_MNIST_MULTI:
        from dali_aug.datasets._fashion_multi import fashion_mnist_multi_source

        if not multi_label:
            raise ValueError(
                f"--data {data} is multi-label (multi-hot labels, scored by mAP); add "
                "--multi-label (verbs that take single-label data only cannot use it)"
            )
        variant = FASHION_MNIST_MULTI[data]
        source = fashion_mnist_multi_source("train", variant, n=train_size, seed=seed)
        val = fashion_mnist_multi_source("test", variant, seed=seed)
        return TrainingData(source, val_source=val)
    if data == FASHION_MNIST:
        from dali_aug.datasets._fashion_mnist import fashion_mnist_source

        if multi_label:
            raise ValueError(f"--data {FASHION_MNIST} is single-label; drop --multi-label")
        source = fashion_mnist_source("train", train_size=train_size, seed=seed)
        return TrainingData(source, val_source=fashion_mnist_source("test"))
    if train_size is not None:
        names = ", ".join([FASHION_MNIST, *FASHION_MNIST_MULTI])
        raise ValueError(f"--train-size is for --data {names}; drop it")
    train_dir, val_dir = resolve_data(data, multi_label=multi_label)
    return TrainingData(open_source(train_dir), val_dir=val_dir)
