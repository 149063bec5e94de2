"""LB-Aug: label-based augmentation policies for multi-label classification (Label-Based
AutoAugmentation, "LB-Aug": Wang et al., "Fine-Grained AutoAugmentation for Multi-Label
Classification"; the method is its Sec. 3).

An actor MLP maps an image's multi-hot label vector to a categorical over ops and, per op,
categoricals over 11 apply-probabilities and 10 magnitudes (:class:`Actor`). It is trained by
REINFORCE on rewards from critics trained on K stratified shuffle splits of the training set
(:func:`search`), then applied per sample in the training step (:class:`LBAugMethod`).
Clips ([N, T, 3, H, W], ``load_images(..., clip_length=T)``, clip critics) take the same
path: one op per clip, applied to every frame (docs/methods/lbaug.md, "Clips").

Example:
    >>> images, labels, names = load_images("data/train", size=64)
    >>> result = search(images, labels, SearchConfig(folds=8, critic_epochs=10))
    >>> save_actor("actor.pt", result.actor, names)
    >>> method = LBAugMethod(load_actor("actor.pt")[0], seed=0)  # Trainer(..., methods=[method])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dali_aug.methods import lazy_exports

if TYPE_CHECKING:
    from dali_aug.kernels.label_sample import sample
    from dali_aug.methods.lbaug._actor import (
        AA_OPS,
        DEMO_OPS,
        Actor,
        ActorConfig,
        ActorOutput,
        applied_probability,
        check_labels,
        draw_ops,
        joint_log_prob,
        to_op_params,
    )
    from dali_aug.methods.lbaug._critics import (
        clean_losses,
        critic_losses,
        rewards,
        shuffle_splits,
        stratified_folds,
        train_critic,
    )
    from dali_aug.methods.lbaug._report import (
        OpTable,
        load_actor,
        op_table,
        save_actor,
        write_heatmap,
        write_op_table,
    )
    from dali_aug.methods.lbaug._search import (
        SearchConfig,
        SearchResult,
        load_images,
        search,
    )
    from dali_aug.methods.lbaug.method import (
        LBAugMethod,
    )

#: public name -> the module defining it (imported on first use); ``sample`` is the
#: label-conditioned sampler (:func:`dali_aug.kernels.label_sample.sample`): op, p-level
#: and magnitude-level indices and the joint log-probability, CUDA kernel or torch reference.
_EXPORTS = {
    "AA_OPS": "dali_aug.methods.lbaug._actor",
    "DEMO_OPS": "dali_aug.methods.lbaug._actor",
    "Actor": "dali_aug.methods.lbaug._actor",
    "ActorConfig": "dali_aug.methods.lbaug._actor",
    "ActorOutput": "dali_aug.methods.lbaug._actor",
    "applied_probability": "dali_aug.methods.lbaug._actor",
    "check_labels": "dali_aug.methods.lbaug._actor",
    "draw_ops": "dali_aug.methods.lbaug._actor",
    "joint_log_prob": "dali_aug.methods.lbaug._actor",
    "to_op_params": "dali_aug.methods.lbaug._actor",
    "clean_losses": "dali_aug.methods.lbaug._critics",
    "critic_losses": "dali_aug.methods.lbaug._critics",
    "rewards": "dali_aug.methods.lbaug._critics",
    "shuffle_splits": "dali_aug.methods.lbaug._critics",
    "stratified_folds": "dali_aug.methods.lbaug._critics",
    "train_critic": "dali_aug.methods.lbaug._critics",
    "LBAugMethod": "dali_aug.methods.lbaug.method",
    "OpTable": "dali_aug.methods.lbaug._report",
    "load_actor": "dali_aug.methods.lbaug._report",
    "op_table": "dali_aug.methods.lbaug._report",
    "save_actor": "dali_aug.methods.lbaug._report",
    "write_heatmap": "dali_aug.methods.lbaug._report",
    "write_op_table": "dali_aug.methods.lbaug._report",
    "SearchConfig": "dali_aug.methods.lbaug._search",
    "SearchResult": "dali_aug.methods.lbaug._search",
    "load_images": "dali_aug.methods.lbaug._search",
    "search": "dali_aug.methods.lbaug._search",
    "sample": "dali_aug.kernels.label_sample",
}
__all__ = [
    "AA_OPS",
    "Actor",
    "ActorConfig",
    "ActorOutput",
    "DEMO_OPS",
    "LBAugMethod",
    "OpTable",
    "SearchConfig",
    "SearchResult",
    "applied_probability",
    "check_labels",
    "clean_losses",
    "critic_losses",
    "draw_ops",
    "joint_log_prob",
    "load_actor",
    "load_images",
    "op_table",
    "rewards",
    "sample",
    "save_actor",
    "search",
    "shuffle_splits",
    "stratified_folds",
    "to_op_params",
    "train_critic",
    "write_heatmap",
    "write_op_table",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
