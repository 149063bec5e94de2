"""AWS: Auto-Augment via Augmentation-Wise Weight Sharing (Tian et al., "Improving
Auto-Augment via Augmentation-Wise Weight Sharing", arXiv:2009.14737; the method is its
Sec. 3, the search space its Sec. 3.4 and App. D).

A distribution p_theta over the 1296 ordered pairs of 36 augmentation elements
(:class:`PairPolicy`) is searched by PPO (:func:`policy_update`) on rewards from short
fine-tunes of one shared checkpoint (:func:`search`), then exported as a weighted
:class:`~dali_aug.policies.Policy` that the DALI Loader runs (``dali-aug train --policy
DIR/policy.json``). AWS is an outer loop, not a training-step method.

Example:
    >>> policy = search(open_source("data/train"), AWSConfig(steps=40), "runs/aws")
    >>> loader.set_policy(policy.to_policy())
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dali_aug.methods import lazy_exports

if TYPE_CHECKING:
    from dali_aug.methods.aws._policy import PairPolicy, check_theta, pair_probs
    from dali_aug.methods.aws._ppo import check_reward, ema_baseline, ppo_loss
    from dali_aug.methods.aws._report import load_pair_policy, write_outputs, write_probs_png
    from dali_aug.methods.aws._search import AWSConfig, PairCounter, policy_update, search
    from dali_aug.methods.aws._space import (
        AWS_ELEMENTS,
        Element,
        check_elements,
        element_names,
        elements_of,
        pair_index,
        pair_of,
    )

_EXPORTS = {
    "PairPolicy": "dali_aug.methods.aws._policy",
    "check_theta": "dali_aug.methods.aws._policy",
    "pair_probs": "dali_aug.methods.aws._policy",
    "check_reward": "dali_aug.methods.aws._ppo",
    "ema_baseline": "dali_aug.methods.aws._ppo",
    "ppo_loss": "dali_aug.methods.aws._ppo",
    "load_pair_policy": "dali_aug.methods.aws._report",
    "write_outputs": "dali_aug.methods.aws._report",
    "write_probs_png": "dali_aug.methods.aws._report",
    "AWSConfig": "dali_aug.methods.aws._search",
    "PairCounter": "dali_aug.methods.aws._search",
    "policy_update": "dali_aug.methods.aws._search",
    "search": "dali_aug.methods.aws._search",
    "AWS_ELEMENTS": "dali_aug.methods.aws._space",
    "Element": "dali_aug.methods.aws._space",
    "check_elements": "dali_aug.methods.aws._space",
    "element_names": "dali_aug.methods.aws._space",
    "elements_of": "dali_aug.methods.aws._space",
    "pair_index": "dali_aug.methods.aws._space",
    "pair_of": "dali_aug.methods.aws._space",
}
__all__ = [
    "AWS_ELEMENTS",
    "AWSConfig",
    "Element",
    "PairCounter",
    "PairPolicy",
    "check_elements",
    "check_reward",
    "check_theta",
    "element_names",
    "elements_of",
    "ema_baseline",
    "load_pair_policy",
    "pair_index",
    "pair_of",
    "pair_probs",
    "policy_update",
    "ppo_loss",
    "search",
    "write_outputs",
    "write_probs_png",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
