"""dali_aug: a GPU data pipeline (NVIDIA DALI + torch) with learned data augmentation.

Example:
    >>> from dali_aug import Loader, RandAugment
    >>> loader = Loader("data/train", policy=RandAugment(n=2, m=9), batch_size=64)
"""

from __future__ import annotations

from dali_aug.loader import Batch, Loader, LoaderConfig
from dali_aug.ops import OpParams
from dali_aug.policies import (
    NoAugment,
    OpSpec,
    Policy,
    RandAugment,
    TrivialAugmentWide,
    auto_augment,
    parse_policy,
)

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "Loader",
    "LoaderConfig",
    "NoAugment",
    "OpParams",
    "OpSpec",
    "Policy",
    "RandAugment",
    "TrivialAugmentWide",
    "__version__",
    "auto_augment",
    "parse_policy",
]
