"""Synthetic datasets that need no download (procedurally drawn shapes)."""

from __future__ import annotations

from ._shapes import MULTI_LABELS, SHAPE_CLASSES, ShapesSpec, make_shapes

__all__ = ["MULTI_LABELS", "SHAPE_CLASSES", "ShapesSpec", "make_shapes"]
