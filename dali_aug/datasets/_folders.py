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
    "MOVING_FRAMES",
    "MOVING_SIZE",
    "MOVING_TRAIN",
    "MOVING_VAL",
    "MOVING_VAL_SEED",
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
    from dali_aug.datasets._moving import MOVING_DATA

    if data in FASHION_MNIST_MULTI:
        return 56
    if data in MOVING_DATA:
        return MOVING_SIZE
    return {None: DEMO_SIZE, FASHION_MNIST: 28}.get(data, 224)


def default_scale(data: str | None) -> tuple[float, float]:
    """The random-resized crop's area range of a ``--data`` argument without ``--scale``:
    (0.5, 1) on the demo data and Fashion-MNIST (small images a crop of 8 % would lose),
    (1, 1) on the Fashion-MNIST mosaics (a smaller crop cuts cells away, and with them
    labels) and on the moving demo clips (their objects cross the whole frame: a crop cuts
    them out of some frames, and their motion with them), torchvision's (0.08, 1)
    elsewhere."""
    from dali_aug.datasets._moving import MOVING_DATA

    if data in FASHION_MNIST_MULTI or data in MOVING_DATA:
        return (1.0, 1.0)
    return (0.5, 1.0) if data in (None, FASHION_MNIST) else (0.08, 1.0)


#: the generated demo clips (``--data moving-shapes`` / ``moving-fashion`` with ``--clips``,
#: :func:`dali_aug.datasets.moving_clips`): frames per clip, side, training clips without
#: ``--train-size``, validation clips, and the validation set's seed (one set for every run)
MOVING_FRAMES = 16
MOVING_SIZE = 32
MOVING_TRAIN = 2000
MOVING_VAL = 500
MOVING_VAL_SEED = 1_000_003


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


def _check_multi_label(data: str, multi_label: bool) -> None:
    if not multi_label:
        raise ValueError(
            f"--data {data} is multi-label (multi-hot labels, scored by mAP); add "
            "--multi-label (verbs that take single-label data only cannot use it)"
        )


def training_data(
    data: str | None,
    *,
    multi_label: bool,
    train_size: int | None,
    seed: int,
    clips: int | None = None,
) -> TrainingData:
    """The training data of a ``--data`` argument (the verbs' one reading of it):
    ``fashion-mnist`` (a seeded, class-balanced ``train_size`` subset of its training split,
    the test split to validate), ``fashion-mnist-multi-lbaug`` and ``-vfa`` (the mosaics'
    train split of ``train_size`` mosaics, default 2000, drawn with ``seed``; their test split
    to validate), ``moving-shapes`` / ``moving-fashion`` with ``clips`` (``train_size``
    generated clips, default :data:`MOVING_TRAIN`, drawn with ``seed``; :data:`MOVING_VAL`
    clips drawn with :data:`MOVING_VAL_SEED` to validate), else :func:`resolve_data`'s
    folders (of frame folders or video files with ``clips``).

    Raises:
        ValueError: ``--train-size`` without Fashion-MNIST or the moving clips, Fashion-MNIST
            as multi-label, its mosaics or the moving clips without ``multi_label``, the
            moving clips without ``clips``, or what :func:`resolve_data` and the source's
            scan refuse.
    """
    from dali_aug.datasets._moving import MOVING_DATA
    from dali_aug.sources import open_source

    if data in MOVING_DATA:
        from dali_aug.datasets._moving import moving_clips
        from dali_aug.video import ClipArraySource

        if clips is None:
            raise ValueError(f"--data {data} is video clips; add --clips T (e.g. --clips 8)")
        _check_multi_label(data, multi_label)
        kind = MOVING_DATA[data]
        n = MOVING_TRAIN if train_size is None else train_size
        x, y, names = moving_clips(n, length=MOVING_FRAMES, size=MOVING_SIZE, seed=seed, kind=kind)
        xv, yv, _ = moving_clips(
            MOVING_VAL, length=MOVING_FRAMES, size=MOVING_SIZE, seed=MOVING_VAL_SEED, kind=kind
        )
        return TrainingData(
            ClipArraySource.from_arrays(x, y, classes=names),
            val_source=ClipArraySource.from_arrays(xv, yv, classes=names),
        )

    if data in FASHION_MNIST_MULTI:
        from dali_aug.datasets._fashion_multi import fashion_mnist_multi_source

        _check_multi_label(data, multi_label)
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
        allowed = ", ".join([FASHION_MNIST, *FASHION_MNIST_MULTI, *MOVING_DATA])
        raise ValueError(f"--train-size is for --data {allowed}; drop it")
    if clips is not None:
        from dali_aug.video import open_clip_source

        if data is None:
            raise ValueError(
                "--clips needs clip data: --data moving-shapes or moving-fashion (generated "
                "demo clips, with --multi-label), or a folder of frame folders or video files"
            )
        train_dir, val_dir = resolve_data(data, multi_label=multi_label)
        return TrainingData(open_clip_source(train_dir), val_dir=val_dir)
    train_dir, val_dir = resolve_data(data, multi_label=multi_label)
    return TrainingData(open_source(train_dir), val_dir=val_dir)
