"""LAMB (``--opt lamb``): one step in closed form, the global clipping, the trust ratio's
edge cases, timm's Lamb where timm imports, and the flag."""

from __future__ import annotations

import argparse

import pytest
import torch

from dali_aug._recipe import optimizer
from dali_aug.train import Lamb


def _one_step(w: torch.Tensor, g: torch.Tensor, **kw: float) -> torch.Tensor:
    p = torch.nn.Parameter(w.clone())
    opt = Lamb([p], **kw)  # type: ignore[arg-type]
    p.grad = g.clone()
    opt.step()
    return p.detach()


def test_first_step_is_the_closed_form() -> None:
    w = torch.tensor([3.0, -4.0, 0.5])
    g = torch.tensor([0.2, 0.1, -0.3])  # norm 0.37 < 1: no clipping
    lr, wd, eps = 0.1, 0.05, 1e-6
    got = _one_step(w, g, lr=lr, weight_decay=wd, eps=eps)
    update = g / (g.abs() + eps) + wd * w  # bias-corrected m / sqrt(v) = sign(g) at step 1
    want = w - lr * (w.norm() / update.norm()) * update
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, w - lr * update)  # the trust ratio is not 1 here


def test_gradients_are_clipped_together_to_the_global_norm() -> None:
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = Lamb([a, b], lr=0.1, weight_decay=0.0, always_adapt=False)
    a.grad, b.grad = torch.tensor([30.0, 0.0]), torch.tensor([0.0, 40.0])  # global norm 50
    opt.step()
    assert torch.equal(a.grad, torch.tensor([30.0, 0.0]))  # p.grad is left as it was
    # second moment of the clipped gradient: (1 - b2) * (g / 50)^2
    torch.testing.assert_close(opt.state[b]["exp_avg_sq"], 0.001 * (b.grad / 50) ** 2)
    c = torch.nn.Parameter(torch.ones(2))
    unclipped = Lamb([c], lr=0.1, weight_decay=0.0, max_grad_norm=None)
    c.grad = torch.tensor([0.0, 40.0])
    unclipped.step()
    torch.testing.assert_close(unclipped.state[c]["exp_avg_sq"], 0.001 * c.grad**2)


def test_trust_ratio_is_one_for_zero_weights_and_capped_by_trust_clip() -> None:
    g = torch.tensor([1.0, -1.0])
    zero = _one_step(torch.zeros(2), g, lr=0.1, weight_decay=0.01)
    torch.testing.assert_close(zero, -0.1 * g / (g.abs() + 1e-6))  # ||w|| = 0: ratio 1
    big = torch.tensor([100.0, 100.0])
    capped = _one_step(big, g, lr=0.1, weight_decay=0.0, trust_clip=True, always_adapt=True)
    torch.testing.assert_close(capped, big - 0.1 * g / (g.abs() + 1e-6))  # ratio 141 -> 1
    free = _one_step(big, g, lr=0.1, weight_decay=0.0)  # no decay, no adaptation
    torch.testing.assert_close(free, capped)


def test_matches_timms_lamb_over_steps() -> None:
    timm_lamb = pytest.importorskip("timm.optim.lamb", reason="timm is not installed").Lamb
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    twin = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    twin.load_state_dict(net.state_dict())
    ours, theirs = Lamb(net.parameters(), lr=0.05), timm_lamb(twin.parameters(), lr=0.05)
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    for _ in range(5):
        for model, opt in ((net, ours), (twin, theirs)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).mul(40).backward()  # clipped
            opt.step()
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_opt_lamb_builds_lamb_with_timms_weight_decay() -> None:
    args = argparse.Namespace(
        opt="lamb", model="small", lr=None, weight_decay=None, momentum=None, batch_size=64
    )
    opt, lr = optimizer(args, torch.nn.Linear(2, 2))
    assert isinstance(opt, Lamb) and lr == 1e-3
    assert opt.param_groups[0]["weight_decay"] == 0.01
