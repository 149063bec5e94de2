"""LB-Aug: label-based augmentation policies for multi-label classification (Label-Based
AutoAugmentation, "LB-Aug", seed paper 000 of this project; text in
``papers/lb-aug.txt``).

An actor MLP maps an image's multi-hot label vector to a categorical over ops and, per op,
categoricals over 11 apply-probabilities and 10 magnitudes (:class:`Actor`). It is trained by
REINFORCE on rewards from critics trained on K stratified shuffle splits of the training set
(:func:`search`), then applied per sample in the training step (:class:`LBAugHook`).

Example:
    >>> images, labels, names = load_images("data/train", size=64)
    >>> result = search(images, labels, SearchConfig(folds=8, critic_epochs=10))
    >>> save_actor("actor.pt", result.actor, names)
    >>> hook = LBAugHook(load_actor("actor.pt")[0], seed=0)   # Trainer(..., hooks=[hook])
"""

from __future__ import annotations

from dali_aug.lbaug._actor import (
    AA_OPS,
    DEMO_OPS,
    Actor,
    ActorConfig,
    ActorOutput,
    applied_probability,
    check_labels,
    joint_log_prob,
    to_op_params,
)
from dali_aug.lbaug._critics import (
    clean_losses,
    critic_losses,
    rewards,
    shuffle_splits,
    stratified_folds,
    train_critic,
)
from dali_aug.lbaug._hook import LBAugHook
from dali_aug.lbaug._report import (
    OpTable,
    load_actor,
    op_table,
    save_actor,
    write_heatmap,
    write_op_table,
)
from dali_aug.lbaug._search import SearchConfig, SearchResult, load_images, search
from dali_aug.lbaug._search import label_sample as _label_sample

#: The label-conditioned sampler (:func:`dali_aug.kernels.label_sample.sample`): op, p-level
#: and magnitude-level indices and the joint log-probability, CUDA kernel or torch reference.
sample = _label_sample.sample

__all__ = [
    "AA_OPS",
    "DEMO_OPS",
    "Actor",
    "ActorConfig",
    "ActorOutput",
    "LBAugHook",
    "OpTable",
    "SearchConfig",
    "SearchResult",
    "applied_probability",
    "check_labels",
    "clean_losses",
    "critic_losses",
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
