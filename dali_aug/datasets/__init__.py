"""Synthetic datasets that need no download (procedurally drawn shapes)."""

from __future__ import annotations

from ._folders import DEMO_SIZE, cache_dir, demo_data, resolve_data
from ._shapes import MULTI_LABELS, SHAPE_CLASSES, ShapesSpec, make_shapes
from ._split import holdout, stratified_holdout, subset

__all__ = [
    "DEMO_SIZE",
    "MULTI_LABELS",
    "SHAPE_CLASSES",
    "ShapesSpec",
    "cache_dir",
    "demo_data",
    "holdout",
    "make_shapes",
    "resolve_data",
    "stratified_holdout",
    "subset",
]
