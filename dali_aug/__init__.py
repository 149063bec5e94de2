"""dali_aug: a GPU data pipeline (NVIDIA DALI + torch) with learned data augmentation.

Importing the package, the ops, the policies, the trainer and the methods needs no DALI;
only the Loader (``dali_aug.Loader``, imported on first use) and the DALI backend do.

Example:
    >>> from dali_aug import Loader, RandAugment
    >>> loader = Loader("data/train", policy=RandAugment(n=2, m=9), batch_size=64)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dali_aug.batch import Batch
from dali_aug.ops import OpParams
from dali_aug.policies import (
    NoAugment,
    OpSpec,
    Policy,
    RandAugment,
    TimmRandAugment,
    TrivialAugmentWide,
    auto_augment,
    parse_policy,
)

if TYPE_CHECKING:
    from dali_aug.loader import Loader, LoaderConfig
    from dali_aug.video import (
        ClipArraySource,
        ClipSource,
        FrameFolderSource,
        apply_clip_params,
        clip_frame_indices,
    )

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "ClipArraySource",
    "ClipSource",
    "FrameFolderSource",
    "Loader",
    "LoaderConfig",
    "NoAugment",
    "OpParams",
    "OpSpec",
    "Policy",
    "RandAugment",
    "TimmRandAugment",
    "TrivialAugmentWide",
    "__version__",
    "apply_clip_params",
    "auto_augment",
    "clip_frame_indices",
    "parse_policy",
]

_LAZY = {
    "Loader": "dali_aug.loader",
    "LoaderConfig": "dali_aug.loader",
    # video clips (no DALI needed to import them; the Loader reads them)
    **{
        name: "dali_aug.video"
        for name in (
            "ClipArraySource",
            "ClipSource",
            "FrameFolderSource",
            "apply_clip_params",
            "clip_frame_indices",
        )
    },
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dali_aug' has no attribute {name!r}")
