"""KeepAugment (Gong et al., "KeepAugment: A Simple Information-Preserving Data Augmentation
Approach", arXiv:2011.11778): saliency-preserving augmentation in the training step. Public
names (imported on first use); :class:`KeepMethod` is the training-step method."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dali_aug.methods import lazy_exports

if TYPE_CHECKING:
    from dali_aug.kernels.region_select import select_regions
    from dali_aug.methods.keep._augment import (
        DEFAULT_BOX_FRACTION,
        CutMixVariant,
        FillMode,
        box_size,
        cutmix_size,
        fill_boxes,
        keep_cutmix,
        keep_cutout,
        keep_paste,
    )
    from dali_aug.methods.keep._preview import save_preview
    from dali_aug.methods.keep._saliency import (
        EarlyHead,
        NormMode,
        SaliencyMode,
        saliency,
    )
    from dali_aug.methods.keep.method import (
        EARLY_LOSS_WEIGHT,
        KeepMethod,
        KeepMode,
        KeepResult,
    )
    from dali_aug.ops._torch_kernels import box_mask

_EXPORTS = {
    "select_regions": "dali_aug.kernels.region_select",
    "DEFAULT_BOX_FRACTION": "dali_aug.methods.keep._augment",
    "CutMixVariant": "dali_aug.methods.keep._augment",
    "FillMode": "dali_aug.methods.keep._augment",
    "box_size": "dali_aug.methods.keep._augment",
    "cutmix_size": "dali_aug.methods.keep._augment",
    "fill_boxes": "dali_aug.methods.keep._augment",
    "keep_cutmix": "dali_aug.methods.keep._augment",
    "keep_cutout": "dali_aug.methods.keep._augment",
    "keep_paste": "dali_aug.methods.keep._augment",
    "EARLY_LOSS_WEIGHT": "dali_aug.methods.keep.method",
    "KeepMethod": "dali_aug.methods.keep.method",
    "KeepMode": "dali_aug.methods.keep.method",
    "KeepResult": "dali_aug.methods.keep.method",
    "save_preview": "dali_aug.methods.keep._preview",
    "EarlyHead": "dali_aug.methods.keep._saliency",
    "NormMode": "dali_aug.methods.keep._saliency",
    "SaliencyMode": "dali_aug.methods.keep._saliency",
    "saliency": "dali_aug.methods.keep._saliency",
    "box_mask": "dali_aug.ops._torch_kernels",
}
__all__ = [
    "DEFAULT_BOX_FRACTION",
    "EARLY_LOSS_WEIGHT",
    "CutMixVariant",
    "EarlyHead",
    "FillMode",
    "KeepMethod",
    "KeepMode",
    "KeepResult",
    "NormMode",
    "SaliencyMode",
    "box_mask",
    "box_size",
    "cutmix_size",
    "fill_boxes",
    "keep_cutmix",
    "keep_cutout",
    "keep_paste",
    "saliency",
    "save_preview",
    "select_regions",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
