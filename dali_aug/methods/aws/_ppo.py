"""The AWS policy update: PPO with an exponential-moving-average baseline ("Improving
Auto-Augment via Augmentation-Wise Weight Sharing", arXiv:2009.14737, Sec. 3.4, "Search
Pipeline"). The paper does not say how the one reward of a fine-tune enters PPO; the
count-weighted surrogate below is our reading.

One fine-tune gives one reward R (held-out accuracy) and the counts ``n_k`` of how often each
pair was applied in it (from the Loader's op record). With the advantage ``A = R - b``::

    loss = -sum_k (n_k / N) * min(r_k * A, clip(r_k, 1 - eps, 1 + eps) * A)
    r_k  = p_theta(k) / p_theta_old(k)

minimised for ``ppo_epochs`` Adam steps per update (the whole-trajectory REINFORCE gradient
``A * sum_k (n_k / N) grad log p_theta(k)`` at ``theta = theta_old``). Several rewards (the
fine-tunes of several ranks) average their surrogates in one update. The baseline is
``b <- 0.9 b + 0.1 R``, started at the first reward.
"""

from __future__ import annotations

import math

import torch

__all__ = ["check_reward", "ema_baseline", "ppo_loss"]


def check_reward(reward: float) -> float:
    """``reward`` as a finite float; ValueError naming the fix otherwise."""
    value = float(reward)
    if not math.isfinite(value):
        raise ValueError(
            f"AWS reward is {value}: the fine-tune diverged (NaN loss or accuracy); lower the "
            "network lr (--lr) or check the held-out split; the policy was not updated"
        )
    return value


def ema_baseline(baseline: float | None, reward: float, decay: float = 0.9) -> float:
    """``decay * b + (1 - decay) * R``; the first reward (``b`` None) starts the baseline."""
    reward = check_reward(reward)
    if baseline is None:
        return reward
    return decay * baseline + (1.0 - decay) * reward


def ppo_loss(
    probs: torch.Tensor,
    old_probs: torch.Tensor,
    counts: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
) -> torch.Tensor:
    """The count-weighted clipped PPO surrogate, averaged over the rewards.

    Args:
        probs: [K] p_theta (differentiable).
        old_probs: [K] p_theta_old, the distribution the fine-tunes sampled from (detached).
        counts: [R, K] how often each pair was applied in each fine-tune.
        advantages: [R] reward minus baseline, one per fine-tune.
        clip: epsilon of the ratio clip.

    Returns:
        the scalar loss to minimise.
    """
    counts = counts.to(probs.dtype)
    weights = counts / counts.sum(1, keepdim=True).clamp_min(1.0)  # [R, K], n_k / N
    ratio = probs / old_probs  # [K]
    adv = advantages.to(probs.dtype)[:, None]  # [R, 1]
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    return -(weights * surrogate).sum(1).mean()
