"""Augmentation policies: validated objects sampling per-sample ops (see ``_policy``)."""

from __future__ import annotations

from dali_aug.policies._parse import POLICY_NAMES, parse_policy
from dali_aug.policies._policy import (
    MAX_ENTRIES,
    MAX_LAYERS,
    AugmentPolicy,
    NoAugment,
    OpSpec,
    Policy,
    RandAugment,
    TimmRandAugment,
    TrivialAugmentWide,
    auto_augment,
    check_policy,
    policy_from_dict,
)
from dali_aug.policies._tables import (
    RAND_OPS,
    TIMM_RAND_INCREASING_TRANSFORMS,
    TIMM_RAND_TRANSFORMS,
    WIDE_MAX_LEVEL,
)

__all__ = [
    "MAX_ENTRIES",
    "MAX_LAYERS",
    "POLICY_NAMES",
    "RAND_OPS",
    "TIMM_RAND_INCREASING_TRANSFORMS",
    "TIMM_RAND_TRANSFORMS",
    "WIDE_MAX_LEVEL",
    "AugmentPolicy",
    "NoAugment",
    "OpSpec",
    "Policy",
    "RandAugment",
    "TimmRandAugment",
    "TrivialAugmentWide",
    "auto_augment",
    "check_policy",
    "parse_policy",
    "policy_from_dict",
]
