"""Data without a download, and where data lives: the procedurally drawn demo shapes
(:func:`make_shapes`, :func:`demo_data`), Fashion-MNIST from its installed IDX files
(:func:`fashion_mnist_source`) and multi-label mosaics of its items
(:func:`fashion_mnist_multi_source`), multi-label clips of moving objects
(:func:`moving_clips`), the cache folder, the resolution of a ``--data``
argument (:func:`resolve_data`), and seeded held-out splits of a training set
(:func:`holdout`, :func:`stratified_holdout`, :func:`subset`)."""

from __future__ import annotations

from ._fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    fashion_mnist_source,
    load_fashion_mnist,
)
from ._fashion_multi import (
    DESTROYED_BY,
    LBAUG_CLASSES,
    VFA_CLASSES,
    MultiMosaics,
    fashion_mnist_multi,
    fashion_mnist_multi_source,
    read_inverted,
)
from ._folders import (
    DEMO_SIZE,
    FASHION_MNIST,
    FASHION_MNIST_MULTI,
    MOVING_FRAMES,
    MOVING_SIZE,
    MOVING_TRAIN,
    MOVING_VAL,
    MOVING_VAL_SEED,
    TrainingData,
    cache_dir,
    default_scale,
    default_size,
    demo_data,
    resolve_data,
    training_data,
)
from ._moving import DESTROYED_BY as CLIP_DESTROYED_BY
from ._moving import MOTIONS, MOVING_DATA, ClipKind, moving_classes, moving_clips
from ._shapes import MULTI_LABELS, SHAPE_CLASSES, ShapesSpec, make_shapes
from ._split import holdout, stratified_holdout, subset

__all__ = [
    "CLIP_DESTROYED_BY",
    "ClipKind",
    "DEMO_SIZE",
    "DESTROYED_BY",
    "FASHION_MNIST",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_MULTI",
    "LBAUG_CLASSES",
    "MOTIONS",
    "MOVING_DATA",
    "MOVING_FRAMES",
    "MOVING_SIZE",
    "MOVING_TRAIN",
    "MOVING_VAL",
    "MOVING_VAL_SEED",
    "MULTI_LABELS",
    "MultiMosaics",
    "SHAPE_CLASSES",
    "ShapesSpec",
    "TrainingData",
    "VFA_CLASSES",
    "cache_dir",
    "default_scale",
    "default_size",
    "demo_data",
    "fashion_mnist_multi",
    "fashion_mnist_multi_source",
    "fashion_mnist_source",
    "holdout",
    "load_fashion_mnist",
    "make_shapes",
    "moving_classes",
    "moving_clips",
    "read_inverted",
    "resolve_data",
    "stratified_holdout",
    "subset",
    "training_data",
]
