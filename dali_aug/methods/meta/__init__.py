"""MetaAugment (arXiv:2012.12076): sample-aware augmentation by meta-learned loss
reweighting, with a learned transformation-pair sampler."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dali_aug.methods import lazy_exports

if TYPE_CHECKING:
    from dali_aug.methods.meta._policy_net import (
        PolicyNet,
        effective_sample_share,
        normalise_weights,
    )
    from dali_aug.methods.meta._report import pairs_policy
    from dali_aug.methods.meta._sampler import PairSampler
    from dali_aug.methods.meta._space import FUNCTIONS, Transforms, draw_transforms, embed
    from dali_aug.methods.meta.method import MetaAugmentMethod, MetaConfig

_EXPORTS = {
    "FUNCTIONS": "dali_aug.methods.meta._space",
    "MetaAugmentMethod": "dali_aug.methods.meta.method",
    "MetaConfig": "dali_aug.methods.meta.method",
    "PairSampler": "dali_aug.methods.meta._sampler",
    "PolicyNet": "dali_aug.methods.meta._policy_net",
    "Transforms": "dali_aug.methods.meta._space",
    "draw_transforms": "dali_aug.methods.meta._space",
    "effective_sample_share": "dali_aug.methods.meta._policy_net",
    "embed": "dali_aug.methods.meta._space",
    "normalise_weights": "dali_aug.methods.meta._policy_net",
    "pairs_policy": "dali_aug.methods.meta._report",
}
__all__ = [
    "FUNCTIONS",
    "MetaAugmentMethod",
    "MetaConfig",
    "PairSampler",
    "PolicyNet",
    "Transforms",
    "draw_transforms",
    "effective_sample_share",
    "embed",
    "normalise_weights",
    "pairs_policy",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
