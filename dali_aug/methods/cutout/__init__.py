"""Cutout (DeVries & Taylor, arXiv:1708.04552) as a training-step method."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dali_aug.methods import lazy_exports

if TYPE_CHECKING:
    from dali_aug.methods.cutout.method import CutoutMethod

_EXPORTS = {
    "CutoutMethod": "dali_aug.methods.cutout.method",
}
__all__ = [
    "CutoutMethod",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
