"""Tests for the AWS policy update (``dali_aug.methods.aws._ppo`` and
``_search.policy_update``): the EMA baseline, the count-weighted clipped PPO surrogate's
gradient direction, the clip, and a simulated search where the reward penalises one element."""

from __future__ import annotations

import pytest
import torch

from benchmarks.aws.synthetic import HALVES_ELEMENTS
from dali_aug.methods.aws import (
    AWSConfig,
    PairPolicy,
    check_reward,
    ema_baseline,
    pair_probs,
    policy_update,
    ppo_loss,
)

SIX = HALVES_ELEMENTS  # the harmful element first


def test_ema_baseline() -> None:
    assert ema_baseline(None, 0.7) == 0.7
    assert ema_baseline(0.5, 1.0) == pytest.approx(0.9 * 0.5 + 0.1 * 1.0)
    b = None
    for r in (0.2, 0.4, 0.6):
        b = ema_baseline(b, r)
    assert b == pytest.approx(0.9 * (0.9 * 0.2 + 0.1 * 0.4) + 0.1 * 0.6)
    with pytest.raises(ValueError, match="diverged"):
        ema_baseline(0.5, float("nan"))
    with pytest.raises(ValueError, match="not updated"):
        check_reward(float("inf"))


def _grad_wrt_probs(counts: torch.Tensor, adv: float, clip: float = 0.2) -> torch.Tensor:
    probs = torch.full((36,), 1 / 36, dtype=torch.float64, requires_grad=True)
    loss = ppo_loss(probs, probs.detach(), counts[None], torch.tensor([adv]), clip)
    loss.backward()
    assert probs.grad is not None
    return probs.grad


def test_surrogate_gradient_direction() -> None:
    """Positive advantage: a pair applied in the fine-tune gains probability (the loss falls as
    its probability rises); one never applied gets no gradient from the ratio term."""
    counts = torch.zeros(36)
    counts[[3, 7]] = torch.tensor([30.0, 10.0])
    g = _grad_wrt_probs(counts, +0.5)
    assert g[3] < g[7] < 0  # weighted by n_k / N
    assert torch.all(g[[k for k in range(36) if k not in (3, 7)]] == 0)
    assert torch.all(_grad_wrt_probs(counts, -0.5)[[3, 7]] > 0)  # negative advantage: lose


def test_one_update_moves_theta_the_right_way() -> None:
    policy = PairPolicy(elements=SIX)
    config = AWSConfig(elements=SIX)
    adam = torch.optim.Adam([policy.theta], lr=config.policy_lr, betas=config.betas)
    counts = torch.zeros((1, 36), dtype=torch.int64)
    counts[0, 4] = 50
    counts[0, 9] = 50
    before = policy.probs().detach().clone()
    baseline, stats = policy_update(policy, adam, torch.tensor([0.8]), counts, 0.6, config)
    after = policy.probs().detach()
    assert baseline == pytest.approx(0.9 * 0.6 + 0.1 * 0.8)
    assert stats["advantage"] == pytest.approx(0.2)
    assert after[4] > before[4] and after[9] > before[9]
    never = [k for k in range(36) if k not in (4, 9)]
    assert after[never].max() < before[0]  # lost mass through the normalisation only ...
    assert torch.allclose(after[never], after[never][0].expand(len(never)))  # ... all alike
    # the clip bounds the ratio the update can reach (ratio = after / before)
    assert float((after / before).max()) < 1.0 + config.clip + 0.15


def test_clip_stops_the_gradient_outside_the_trust_region() -> None:
    old = torch.full((36,), 1 / 36, dtype=torch.float64)
    new = old.clone()
    new[0] *= 1.5  # ratio 1.5 > 1 + 0.2
    new = (new / new.sum()).requires_grad_(True)
    counts = torch.zeros((1, 36))
    counts[0, 0] = 10
    ppo_loss(new, old, counts, torch.tensor([1.0]), 0.2).backward()
    assert new.grad is not None and float(new.grad.abs().sum()) == 0.0


def test_first_update_baseline_is_the_mean_reward() -> None:
    policy = PairPolicy(elements=SIX)
    config = AWSConfig(elements=SIX)
    adam = torch.optim.Adam([policy.theta], lr=0.1)
    counts = torch.ones((2, 36), dtype=torch.int64)
    b, stats = policy_update(policy, adam, torch.tensor([0.4, 0.6]), counts, None, config)
    assert stats["advantage"] == pytest.approx(0.0)
    assert b == pytest.approx(0.9 * (0.9 * 0.5 + 0.1 * 0.4) + 0.1 * 0.6)
    with pytest.raises(ValueError, match="diverged"):
        policy_update(policy, adam, torch.tensor([float("nan")]), counts[:1], b, config)


def simulate(steps: int, *, seed: int, config: AWSConfig, n: int = 200) -> list[float]:
    """A simulated AWS search: each fine-tune applies ``n`` pairs drawn from p_theta and its
    reward is the fraction of them without element 0 (the label-destroying one) plus noise;
    returns the marginal of element 0 after every update."""
    g = torch.Generator().manual_seed(seed)
    policy = PairPolicy(elements=SIX)
    adam = torch.optim.Adam([policy.theta], lr=config.policy_lr, betas=config.betas)
    bad = torch.zeros(6, 6, dtype=torch.bool)
    bad[0, :] = bad[:, 0] = True
    bad = bad.flatten()
    baseline, curve = None, []
    for _ in range(steps):
        p = pair_probs(policy.theta.detach()).double()
        pairs = torch.multinomial(p, n, replacement=True, generator=g)
        counts = torch.bincount(pairs, minlength=36)[None]
        reward = 1.0 - bad[pairs].double().mean() + 0.02 * torch.randn((), generator=g)
        baseline, _ = policy_update(policy, adam, reward[None], counts, baseline, config)
        curve.append(policy.marginal(0))
    return curve


def test_simulated_search_suppresses_the_harmful_element() -> None:
    config = AWSConfig(elements=SIX)
    curve = simulate(150, seed=11, config=config)
    uniform = 11 / 36
    assert curve[-1] < 0.5 * uniform, curve[::15]
    assert sum(curve[-20:]) / 20 < sum(curve[:20]) / 20
