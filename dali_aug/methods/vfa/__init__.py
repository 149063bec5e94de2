"""VFA, Variational Feature Augmentation (Chen et al., "Enhance via Decoupling: Improving
Multi-Label Classifiers with Variational Feature Augmentation"), as a training-step method."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dali_aug.methods import lazy_exports

if TYPE_CHECKING:
    from dali_aug.methods.vfa._modules import VFAModules, VFAOutputs
    from dali_aug.methods.vfa._presets import PRESETS
    from dali_aug.methods.vfa._shuffle import label_mutual_information, shuffle
    from dali_aug.methods.vfa.method import TERMS, VFAConfig, VFAMethod, kl_divergence

_EXPORTS = {
    "PRESETS": "dali_aug.methods.vfa._presets",
    "TERMS": "dali_aug.methods.vfa.method",
    "VFAConfig": "dali_aug.methods.vfa.method",
    "VFAMethod": "dali_aug.methods.vfa.method",
    "VFAModules": "dali_aug.methods.vfa._modules",
    "VFAOutputs": "dali_aug.methods.vfa._modules",
    "kl_divergence": "dali_aug.methods.vfa.method",
    "label_mutual_information": "dali_aug.methods.vfa._shuffle",
    "shuffle": "dali_aug.methods.vfa._shuffle",
}
__all__ = [
    "PRESETS",
    "TERMS",
    "VFAConfig",
    "VFAMethod",
    "VFAModules",
    "VFAOutputs",
    "kl_divergence",
    "label_mutual_information",
    "shuffle",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
