"""MetaAugment (dali_aug.methods.meta, arXiv:2012.12076): the transformation space and its
embedding, the policy net and its normalised weights, the pair sampler, the meta-gradient
against finite differences, the method in the trainer's step, the export and the errors."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dali_aug.batch import Batch
from dali_aug.datasets import stratified_holdout
from dali_aug.methods.meta import (
    FUNCTIONS,
    MetaAugmentMethod,
    MetaConfig,
    PairSampler,
    PolicyNet,
    draw_transforms,
    effective_sample_share,
    embed,
    normalise_weights,
    pairs_policy,
)
from dali_aug.methods.meta._bilevel import (
    exact_meta_grads,
    fast_meta_grads,
    jvp_dots,
    unrolled_meta_grads,
)
from dali_aug.models import build_model
from dali_aug.ops import get, identity_params, index
from dali_aug.policies import Policy, policy_from_dict
from dali_aug.train import Forward, Step, Trainer

K = len(FUNCTIONS)


def _batch(n: int = 8, seed: int = 0, size: int = 32, classes: int = 4) -> Batch:
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, classes, (n,), generator=g)
    return Batch(clean.float(), labels, torch.arange(n), params=identity_params(n), clean=clean)


def _trainer(config: MetaConfig, seed: int = 0) -> tuple[Trainer, MetaAugmentMethod]:
    torch.manual_seed(seed)
    model = build_model("small", 4)
    method = MetaAugmentMethod(model, config, seed=seed)
    val = [_batch(8, 100 + i) for i in range(2)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return Trainer(model, opt, methods=[method], meta_val=val), method


# -- the transformation space ----------------------------------------------------------------
def test_functions_are_the_papers_fourteen_from_the_catalog() -> None:
    assert FUNCTIONS[0] == "AutoContrast" and FUNCTIONS[-1] == "Identity" and K == 14
    assert "Invert" not in FUNCTIONS and "Cutout" not in FUNCTIONS
    for f in FUNCTIONS:
        index(f)  # every function is a catalog op


def test_embed_matches_the_spec() -> None:
    e = embed(
        torch.tensor([FUNCTIONS.index("Rotate")]),
        torch.tensor([FUNCTIONS.index("Identity")]),
        torch.tensor([3.0]),
        torch.tensor([7.0]),
    )
    assert e.dtype == torch.float32 and e.shape == (1, 28)
    expected = torch.zeros(1, 28)
    expected[0, 4], expected[0, 27] = 4.0, 11.0
    torch.testing.assert_close(e, expected)


def test_embed_magnitude_free_functions_get_eleven_and_same_function_twice() -> None:
    first = torch.tensor([0, 1, 5])  # AutoContrast, Equalize, Color
    second = torch.tensor([5, 1, 5])
    e = embed(first, second, torch.tensor([2.0, 2.0, 2.5]), torch.tensor([4.0, 9.0, 0.5]))
    assert e[0, 0] == 11.0 and e[0, 11] == 5.0 and int((e[0] != 0).sum()) == 2
    assert e[1, 2] == 11.0 and e[1, 3] == 11.0 and int((e[1] != 0).sum()) == 2
    assert e[2, 10] == 3.5 and e[2, 11] == 1.5 and int((e[2] != 0).sum()) == 2


def test_embed_rejects_an_index_outside_the_functions() -> None:
    with pytest.raises(ValueError, match="outside"):
        embed(torch.tensor([14]), torch.tensor([0]), torch.ones(1), torch.ones(1))
    with pytest.raises(TypeError, match="int64"):
        embed(torch.tensor([1.0]), torch.tensor([0]), torch.ones(1), torch.ones(1))


def test_draw_transforms_applies_the_pairs_with_uniform_magnitudes_and_signs() -> None:
    n = 4000
    g = torch.Generator().manual_seed(3)
    first, second = torch.randint(0, K, (n,), generator=g), torch.randint(0, K, (n,), generator=g)
    t = draw_transforms(first, second, generator=g)
    ops = torch.tensor([index(f) for f in FUNCTIONS])
    assert torch.equal(t.params.op_ids, ops[torch.stack([first, second], 1)])
    mags = torch.stack([t.m1, t.m2], 1)
    assert float(mags.min()) >= 0.0 and float(mags.max()) < 10.0
    assert abs(float(mags.mean()) - 5.0) < 0.2  # U(0, 10)
    signed = torch.tensor([get(f).signed for f in FUNCTIONS])[torch.stack([first, second], 1)]
    has_mag = torch.tensor([get(f).has_magnitude for f in FUNCTIONS])[
        torch.stack([first, second], 1)
    ]
    levels = t.params.levels
    assert bool((levels[~has_mag] == 0).all())
    assert bool((levels[~signed] >= 0).all())
    torch.testing.assert_close(levels.abs()[has_mag], mags[has_mag])
    frac_neg = float((levels[signed & has_mag] < 0).double().mean())
    assert abs(frac_neg - 0.5) < 0.03
    torch.testing.assert_close(t.embedding(), embed(first, second, t.m1, t.m2))


# -- the policy net and the weights ----------------------------------------------------------
def test_policy_net_gives_one_sigmoid_weight_per_sample() -> None:
    torch.manual_seed(0)
    net = PolicyNet(192)
    assert net.feature.out_features == 100 and net.transform.in_features == 28
    w = net(torch.randn(5, 192), torch.randn(5, 28))
    assert w.shape == (5,) and bool(((w > 0) & (w < 1)).all())
    with pytest.raises(ValueError, match="features must be"):
        net(torch.randn(5, 64), torch.randn(5, 28))


def test_normalised_weights_sum_to_one() -> None:
    raw = torch.rand(37, generator=torch.Generator().manual_seed(1)) + 0.01
    w = normalise_weights(raw)
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    torch.testing.assert_close(w / w[0], raw / raw[0])


def test_nan_weights_raise_naming_the_fix() -> None:
    with pytest.raises(ValueError, match="--meta-lr"):
        normalise_weights(torch.tensor([0.5, float("nan")]))


# -- the sampler -----------------------------------------------------------------------------
def test_sampler_is_uniform_before_its_first_refresh() -> None:
    s = PairSampler(eps=0.1, history=4, every=5)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        first, second = s.sample(64, generator=g)
        s.record(first, second, torch.where(first == 11, 0.01, 0.9).double())
        s.step()
    torch.testing.assert_close(s.probs, torch.full((K, K), 1 / K**2, dtype=torch.float64))
    first, second = s.sample(196 * 200, generator=g)
    counts = torch.bincount(first * K + second, minlength=K * K).double()
    assert float(counts.min()) > 120 and float(counts.max()) < 290  # uniform, 200 expected


def test_sampler_refresh_is_eq5_and_never_below_the_floor() -> None:
    s = PairSampler(eps=0.1, history=3, every=2)
    first = torch.arange(K * K) // K
    second = torch.arange(K * K) % K
    raw = torch.full((K * K,), 0.5, dtype=torch.float64)
    raw[first == 11] = 1e-9  # TranslateX first: nearly zero weight
    for _ in range(2):
        s.record(first, second, raw)
        s.step()
    v = raw / raw.sum()
    expected = (0.9 * v + 0.1 / K**2).view(K, K)
    torch.testing.assert_close(s.probs, expected)
    assert float(s.probs.min()) >= s.floor - 1e-15
    torch.testing.assert_close(s.probs.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert float(s.probs[11].max()) < 1 / K**2


def test_sampler_unseen_pairs_get_the_mean_of_the_seen() -> None:
    s = PairSampler(eps=0.5, history=10, every=1)
    s.record(torch.tensor([0, 0]), torch.tensor([0, 1]), torch.tensor([0.2, 0.6]))
    s.step()
    p = s.probs.flatten()
    v = torch.full((K * K,), 0.4, dtype=torch.float64)
    v[0], v[1] = 0.2, 0.6
    torch.testing.assert_close(p, 0.5 * v / v.sum() + 0.5 / K**2)


def test_sampler_history_window_forgets_old_iterations() -> None:
    s = PairSampler(eps=0.1, history=2, every=1)
    one = torch.tensor([3]), torch.tensor([4])
    s.record(*one, torch.tensor([0.9]))
    s.step()
    s.record(*one, torch.tensor([0.1]))
    s.step()
    s.record(*one, torch.tensor([0.1]))
    s.step()  # the window now holds only the two 0.1 iterations
    torch.testing.assert_close(s.mean_outputs()[3, 4], torch.tensor(0.1, dtype=torch.float64))


@pytest.mark.parametrize("eps", [0.0, -0.1, 1.5, float("nan")])
def test_sampler_eps_outside_zero_one_raises(eps: float) -> None:
    with pytest.raises(ValueError, match=r"eps=.* must be in \(0, 1\]"):
        PairSampler(eps=eps)
    with pytest.raises(ValueError, match="eps"):
        MetaConfig(eps=eps)


# -- the meta-gradient -----------------------------------------------------------------------
def _toy(seed: int = 0) -> dict[str, object]:
    """A linear classifier and a small policy net in float64."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    lin = nn.Linear(3, 2).double()
    net = PolicyNet(3, hidden=4).double()
    data = {
        "x": torch.randn(6, 3, generator=g, dtype=torch.float64),
        "y": torch.randint(0, 2, (6,), generator=g),
        "xv": torch.randn(5, 3, generator=g, dtype=torch.float64),
        "yv": torch.randint(0, 2, (5,), generator=g),
        "feat": torch.randn(6, 3, generator=g, dtype=torch.float64),
        "emb": torch.rand(6, 28, generator=g, dtype=torch.float64) * 11,
    }
    return {"lin": lin, "net": net, "rho": torch.tensor(math.log(0.7), dtype=torch.float64), **data}


def _reference_val_loss(t: dict, net: nn.Module, rho: torch.Tensor) -> torch.Tensor:
    """L_val(w - alpha * sum_i P~_i grad L_i(w)) with per-sample gradients taken one by one."""
    lin: nn.Linear = t["lin"]  # type: ignore[assignment]
    raw = net(t["feat"], t["emb"])
    weights = raw / raw.sum()
    w, b = lin.weight.detach().requires_grad_(), lin.bias.detach().requires_grad_()
    gw, gb = torch.zeros_like(w), torch.zeros_like(b)
    for i in range(len(t["y"])):  # type: ignore[arg-type]
        with torch.enable_grad():
            li = F.cross_entropy(t["x"][i : i + 1] @ w.T + b, t["y"][i : i + 1])  # type: ignore[index]
            dw, db = torch.autograd.grad(li, [w, b])
        gw, gb = gw + weights[i] * dw, gb + weights[i] * db
    alpha = rho.exp()
    wh, bh = w.detach() - alpha * gw, b.detach() - alpha * gb
    return F.cross_entropy(t["xv"] @ wh.T + bh, t["yv"])  # type: ignore[operator]


def _auto_grads(
    t: dict, mode: str, previous: dict | None = None, scheme: str = "central"
) -> list[torch.Tensor]:
    lin: nn.Linear = t["lin"]  # type: ignore[assignment]
    net: PolicyNet = t["net"]  # type: ignore[assignment]
    rho = t["rho"].clone().requires_grad_()  # type: ignore[union-attr]
    params = dict(lin.named_parameters())
    raw = net(t["feat"], t["emb"])
    weights = normalise_weights(raw)

    def val_loss(ps: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(torch.func.functional_call(lin, ps, (t["xv"],)), t["yv"])

    def train_at(ps: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = torch.func.functional_call(lin, ps, (t["x"],))
        return F.cross_entropy(logits, t["y"], reduction="none")

    meta = [*net.parameters(), rho]
    losses = F.cross_entropy(lin(t["x"]), t["y"], reduction="none")
    if mode == "exact":
        grads, _ = exact_meta_grads(params, losses, weights, rho.exp(), val_loss, train_at, meta)
    elif mode == "unrolled":
        grads, _ = unrolled_meta_grads(params, losses, weights, rho.exp(), val_loss, meta)
    else:
        grads, _ = fast_meta_grads(
            params,
            weights,
            rho.exp(),
            val_loss,
            train_at,
            meta,
            previous=previous,
            fd_eps=1e-6,
            scheme=scheme,  # type: ignore[arg-type]
            losses_at_w=losses,
        )
    return grads


def _flat(grads: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads])


@pytest.mark.parametrize("form", ["exact", "unrolled"])
def test_exact_meta_gradient_matches_central_finite_differences(form: str) -> None:
    t = _toy()
    net: PolicyNet = t["net"]  # type: ignore[assignment]
    auto = _flat(_auto_grads(t, form))
    fd = []
    h = 1e-6
    with torch.no_grad():
        for p in net.parameters():
            flat = p.view(-1)
            for j in range(flat.numel()):
                old = float(flat[j])
                flat[j] = old + h
                up = _reference_val_loss(t, net, t["rho"])  # type: ignore[arg-type]
                flat[j] = old - h
                down = _reference_val_loss(t, net, t["rho"])  # type: ignore[arg-type]
                flat[j] = old
                fd.append(float(up - down) / (2 * h))
        rho: torch.Tensor = t["rho"]  # type: ignore[assignment]
        up = _reference_val_loss(t, net, rho + h)
        down = _reference_val_loss(t, net, rho - h)
    fd.append(float(up - down) / (2 * h))
    fd_t = torch.tensor(fd, dtype=torch.float64)
    theta_err = (auto[:-1] - fd_t[:-1]).norm() / fd_t[:-1].norm()
    alpha_err = abs(float(auto[-1] - fd_t[-1])) / abs(float(fd_t[-1]))
    assert float(fd_t[:-1].norm()) > 1e-6 and abs(float(fd_t[-1])) > 1e-6
    assert float(theta_err) < 1e-3, float(theta_err)
    assert alpha_err < 1e-3, alpha_err


def test_exact_jvp_form_equals_the_unrolled_form() -> None:
    t = _toy(2)
    torch.testing.assert_close(
        _flat(_auto_grads(t, "exact")), _flat(_auto_grads(t, "unrolled")), rtol=1e-10, atol=1e-14
    )


def test_jvp_dots_are_the_per_sample_gradient_dot_products() -> None:
    t = _toy(3)
    lin: nn.Linear = t["lin"]  # type: ignore[assignment]
    params = dict(lin.named_parameters())
    g = torch.Generator().manual_seed(0)
    direction = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params.values()]

    def train_at(ps: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = torch.func.functional_call(lin, ps, (t["x"],))
        return F.cross_entropy(logits, t["y"], reduction="none")

    dots = jvp_dots(params, direction, train_at)
    expected = []
    for i in range(len(t["y"])):  # type: ignore[arg-type]
        li = F.cross_entropy(lin(t["x"][i : i + 1]), t["y"][i : i + 1])  # type: ignore[index]
        gi = torch.autograd.grad(li, list(params.values()))
        expected.append(sum((a * b).sum() for a, b in zip(gi, direction, strict=True)))
    torch.testing.assert_close(dots, torch.stack(expected), rtol=1e-10, atol=1e-12)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", ["central", "forward"])
def test_fast_meta_gradient_equals_exact_given_this_batchs_gradient(scheme: str) -> None:
    """With the current weighted gradient in the virtual step the fast form is the exact
    meta-gradient up to the finite difference (the identity the fast mode rests on)."""
    t = _toy(1)
    lin: nn.Linear = t["lin"]  # type: ignore[assignment]
    net: PolicyNet = t["net"]  # type: ignore[assignment]
    exact = _flat(_auto_grads(t, "exact"))
    with torch.no_grad():
        weights = normalise_weights(net(t["feat"], t["emb"]))
    losses = (weights * F.cross_entropy(lin(t["x"]), t["y"], reduction="none")).sum()
    current = dict(
        zip(["weight", "bias"], torch.autograd.grad(losses, list(lin.parameters())), strict=True)
    )
    fast = _flat(_auto_grads(t, "fast", previous=current, scheme=scheme))
    tol = 1e-5 if scheme == "central" else 1e-4  # one-sided: O(h) truncation error
    torch.testing.assert_close(fast, exact, rtol=tol, atol=1e-9)


# -- the method in the trainer's step --------------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "virtual"), [("exact", "current"), ("fast", "current"), ("fast", "real_step")]
)
def test_step_updates_theta_and_alpha_and_weights_under_the_new_theta(
    mode: str, virtual: str
) -> None:
    """The real step's weights come from the updated theta (Eq. 4); with the default
    ``fast_virtual="real_step"`` the meta step follows the real step, so they come from the
    theta before it."""
    config = MetaConfig(mode=mode, fast_virtual=virtual)  # type: ignore[arg-type]
    trainer, method = _trainer(config)
    w0 = [p.detach().clone() for p in trainer.model.parameters()]
    captured: dict[str, torch.Tensor] = {}
    forward = trainer.forward

    def spy(images: torch.Tensor, *, params: dict | None = None) -> Forward:
        out = forward(images, params=params)
        if params is None:  # the step's own forward
            assert out.features is not None
            captured["features"] = out.features.detach()
        return out

    trainer.forward = spy  # type: ignore[method-assign]
    for i in range(2):
        before = [p.detach().clone() for p in method.policy.parameters()]
        alpha_before = method.alpha
        loss = trainer._step(_batch(8, i))
        if i == 0:
            assert alpha_before == 1.0  # not yet initialised: log(alpha) = 0
            assert abs(float(loss.stats["alpha"]) - 1e-3) < 2e-5  # starts at the task lr
    moved = [
        float((p.detach() - b).abs().max())
        for p, b in zip(method.policy.parameters(), before, strict=True)
    ]
    assert min(moved) > 0, "the meta step did not update theta"
    assert method.alpha != pytest.approx(alpha_before, rel=1e-7), "alpha was not updated"
    assert any(not torch.equal(p, q) for p, q in zip(trainer.model.parameters(), w0, strict=True))
    assert loss.weight is not None and not loss.weight.requires_grad
    torch.testing.assert_close(loss.weight.sum(), torch.tensor(1.0))
    assert loss.normalise
    assert {"alpha", "mean_weight", "meta_val_loss", "weight_ess"} <= set(loss.stats)
    # the real step's weights: the normalised outputs of the *updated* policy
    pending = method._pending
    assert pending is not None
    with torch.no_grad():
        expected = normalise_weights(method.policy(captured["features"], pending.embedding))
        old = PolicyNet(192)
        for p, b in zip(old.parameters(), before, strict=True):
            p.copy_(b)
        stale = normalise_weights(old(captured["features"], pending.embedding))
    if virtual == "real_step":
        expected, stale = stale, expected
    torch.testing.assert_close(loss.weight, expected)
    assert float((loss.weight - stale).abs().max()) > 1e-7


def test_the_equal_weights_ablation_keeps_the_meta_step_and_weighs_the_real_step_equally() -> None:
    """``real_weights="equal"``: theta and the sampler still learn from the meta step, but
    the real step weighs every sample 1/N."""
    trainer, method = _trainer(MetaConfig(mode="exact", real_weights="equal", every=1))
    before = [p.detach().clone() for p in method.policy.parameters()]
    probs = method.sampler.probs.clone()
    for i in range(2):
        loss = trainer._step(_batch(8, i))
        assert loss.weight is not None
        torch.testing.assert_close(loss.weight, torch.full((8,), 1 / 8))
    moved = [float((p.detach() - b).abs().max()) for p, b in
             zip(method.policy.parameters(), before, strict=True)]  # fmt: skip
    assert min(moved) > 0  # the policy net still trains
    assert not torch.equal(method.sampler.probs, probs)  # and the sampler still refreshes


def test_mean_weight_norm_is_eqs_2_and_4_as_printed() -> None:
    """``weight_norm="mean"``: both steps weigh sample i by P_i / N (no renormalisation by
    the sum), so the real step's loss is (1/N) sum_i P_i L_i; the default divides by the sum."""
    feats, emb = torch.randn(6, 192), torch.rand(6, 28) * 11
    for norm in ("sum", "mean"):
        config = MetaConfig(weight_norm=norm)  # type: ignore[arg-type]
        method = MetaAugmentMethod(build_model("small", 4), config, seed=0)
        raw, weight = method.weights(feats, emb)
        expected = raw / (raw.sum() if norm == "sum" else 6)
        torch.testing.assert_close(weight, expected)
    trainer, method = _trainer(MetaConfig(mode="exact", weight_norm="mean"))
    captured: dict[str, torch.Tensor] = {}
    forward = trainer.forward

    def spy(images: torch.Tensor, *, params: dict | None = None) -> Forward:
        out = forward(images, params=params)
        if params is None:
            assert out.features is not None
            captured["features"] = out.features.detach()
        return out

    trainer.forward = spy  # type: ignore[method-assign]
    loss = trainer._step(_batch(8, 0))
    assert loss.weight is not None and not loss.normalise
    pending = method._pending
    assert pending is not None
    with torch.no_grad():
        raw = method.policy(captured["features"], pending.embedding)
    torch.testing.assert_close(loss.weight, raw / 8)
    assert float(loss.weight.sum()) < 1.0  # sigmoid outputs below 1: a smaller step
    torch.testing.assert_close(loss.main(), (raw / 8 * loss.per_sample).sum())
    torch.testing.assert_close(
        torch.as_tensor(loss.stats["weight_ess"]), effective_sample_share(loss.weight)
    )


def test_effective_sample_share() -> None:
    torch.testing.assert_close(effective_sample_share(torch.full((8,), 0.3)), torch.tensor(1.0))
    one = torch.zeros(8)
    one[3] = 2.0
    torch.testing.assert_close(effective_sample_share(one), torch.tensor(1 / 8))
    half = torch.tensor([1.0, 1.0, 0.0, 0.0])  # two of four samples, equally: a half
    torch.testing.assert_close(effective_sample_share(half), torch.tensor(0.5))


def test_an_unnormalised_loss_reduces_by_the_sum_of_weighted_losses() -> None:
    from dali_aug.train import Loss

    per_sample, w = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.5, 0.25, 0.25])
    assert float(Loss(per_sample, weight=w).main()) == pytest.approx(2.0 / 1.0)
    assert float(Loss(per_sample, weight=w / 2).main()) == pytest.approx(2.0)
    assert float(Loss(per_sample, weight=w / 2, normalise=False).main()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("share", "samples", "used"), [(0.25, None, 2), (1.0, None, 8), (0.25, 3, 3)]
)
def test_the_meta_step_uses_val_share_of_the_validation_batch(
    share: float, samples: int | None, used: int
) -> None:
    trainer, method = _trainer(MetaConfig(mode="exact", val_share=share, val_samples=samples))
    seen: list[int] = []
    forward = trainer.forward

    def spy(images: torch.Tensor, *, params: dict | None = None) -> Forward:
        if params is not None and images.shape[0] != 16:  # not the training batch
            seen.append(images.shape[0])
        return forward(images, params=params)

    trainer.forward = spy  # type: ignore[method-assign]
    trainer._step(_batch(16, 0))
    assert seen == [used]  # the validation forward at the virtual weights


def test_real_step_fast_mode_takes_the_same_meta_step_after_the_real_step() -> None:
    """fast_virtual="real_step" uses the real step's gradient as the virtual step's: the
    same theta update as "current" (which computes that gradient by an extra backward);
    only the real step differs (it uses the weights before the theta update)."""
    ta, ma = _trainer(MetaConfig(mode="fast", fast_virtual="current", alpha_init=0.5))
    tb, mb = _trainer(MetaConfig(mode="fast", fast_virtual="real_step", alpha_init=0.5))
    for m in (ma, mb):  # plain SGD: theta's change is the gradient (Adam's first step is not)
        m.meta_optimizer = torch.optim.SGD(m._meta_tensors(), lr=1.0)
    theta0 = _flat([p.detach().clone() for p in ma._meta_tensors()])
    la, lb = ta._step(_batch(8, 0)), tb._step(_batch(8, 0))
    da = _flat([p.detach() for p in ma._meta_tensors()]) - theta0
    db = _flat([p.detach() for p in mb._meta_tensors()]) - theta0
    assert float(da.norm()) > 0
    torch.testing.assert_close(db, da, rtol=1e-3, atol=1e-4 * float(da.abs().max()))
    assert la.weight is not None and lb.weight is not None
    assert float((la.weight - lb.weight).abs().max()) > 1e-7  # new theta vs old theta
    torch.testing.assert_close(lb.stats["meta_val_loss"], la.stats["meta_val_loss"])


def test_copies_multiply_the_batch_and_the_record_matches_the_embedding() -> None:
    trainer, method = _trainer(MetaConfig(mode="uniform", copies=3))
    step = Step(trainer, 0, 0)
    batch = _batch(4, 0)
    aug = method.augment(step, batch)
    assert aug.images.shape == (12, 3, 32, 32) and aug.params is not None
    assert torch.equal(aug.labels, batch.labels.repeat_interleave(3))
    assert aug.params.num_layers == 3  # the flip, then the pair
    p = method._pending
    assert p is not None
    ops = torch.tensor([index(f) for f in FUNCTIONS])
    assert torch.equal(aug.params.op_ids[:, 1], ops[p.first])
    assert torch.equal(aug.params.op_ids[:, 2], ops[p.second])
    torch.testing.assert_close(p.embedding, embed(p.first, p.second, p.m1, p.m2))
    loss = trainer._step(batch)
    assert loss.per_sample.shape == (12,) and loss.weight is None  # uniform: equal weights


def test_sampler_refreshes_in_the_step_and_stays_above_the_floor() -> None:
    trainer, method = _trainer(MetaConfig(mode="fast", every=2, history=4, copies=2))
    for i in range(4):
        trainer._step(_batch(8, i))
    assert method.sampler.iteration == 4
    probs = method.sampler.probs
    assert not torch.allclose(probs, torch.full_like(probs, 1 / K**2))
    assert float(probs.min()) >= method.sampler.floor - 1e-15
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert int(method.pair_table()["count"].sum()) == 4 * 16


class _ScaledPolicy(nn.Module):
    """The method's policy net with its outputs times ``scale`` (set per step, so that the
    batch sums of the raw outputs differ from step to step); keeps its last output."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.scale = inner, 1.0
        self.last = torch.zeros(0)

    def forward(self, features: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        out = self.inner(features, embedding) * self.scale
        self.last = out.detach().double().clone()
        return out


def test_the_sampler_averages_the_raw_policy_outputs_not_the_normalised_weights() -> None:
    """Eq. 5's v_jk is the mean *raw* output P_i of each pair, not the normalised weight
    P~_i = P_i / sum_j P_j the real step uses: the sampler's totals, its window means, its
    refresh and the magnitude statistics follow the raw outputs of each step's final policy
    call (the one after the meta step, whose normalisation gives the real step's weights)."""
    trainer, method = _trainer(MetaConfig(mode="exact", every=3, history=8))
    policy = _ScaledPolicy(method.policy)
    method.policy = policy  # type: ignore[assignment]
    sums = torch.zeros(K * K, dtype=torch.float64)
    counts = torch.zeros(K * K, dtype=torch.float64)
    batch_sums = []
    for i, (n, scale) in enumerate([(8, 1.0), (12, 0.3), (6, 0.7)]):
        policy.scale = scale
        loss = trainer._step(_batch(n, i))
        pending, raw = method._pending, policy.last
        assert pending is not None and raw.shape == (n,)
        assert loss.weight is not None  # the real step's weights are the normalised raw outputs
        torch.testing.assert_close(loss.weight.double(), raw / raw.sum(), rtol=1e-5, atol=1e-7)
        flat = pending.first * K + pending.second
        sums += torch.bincount(flat, weights=raw, minlength=K * K)
        counts += torch.bincount(flat, minlength=K * K).double()
        batch_sums.append(float(raw.sum()))
    assert max(batch_sums) - min(batch_sums) > 1.0  # normalising would change the ratios
    torch.testing.assert_close(method.sampler.totals[:, 0], sums, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(method.sampler.totals[:, 1], counts)
    seen = counts > 0
    v = torch.where(seen, sums / counts, (sums[seen] / counts[seen]).mean())
    eps = method.config.eps
    expected = ((1 - eps) * v / v.sum() + eps / K**2).view(K, K)
    assert method.sampler.iteration == 3  # refreshed after the third step
    torch.testing.assert_close(method.sampler.probs, expected, rtol=1e-6, atol=1e-12)
    # each sample counts once for each of its two functions
    torch.testing.assert_close(
        method.magnitude_stats[..., 0].sum(), 2 * sums.sum(), rtol=1e-6, atol=1e-9
    )


def test_fast_gradient_is_close_to_exact_on_the_small_model() -> None:
    trainer, method = _trainer(MetaConfig(mode="fast"))
    for i in range(3):  # a previous real-step gradient exists
        trainer._step(_batch(16, i))
    step = Step(trainer, trainer.global_step, 0)
    aug = method.augment(step, _batch(16, 10))
    out = trainer.forward(aug.images)
    per_sample = trainer.losses(out.logits, aug.labels)
    val = _batch(16, 200)
    val = Batch(val.images / 255.0, val.labels, val.indices)
    exact, _ = method.meta_gradients(step, aug, out, per_sample, val=val, mode="exact")
    fast, _ = method.meta_gradients(step, aug, out, per_sample, val=val, mode="fast")
    cos = F.cosine_similarity(_flat(exact[:-1]), _flat(fast[:-1]), dim=0)
    assert float(cos) > 0.9, float(cos)


def test_method_state_round_trips_through_a_weights_only_checkpoint() -> None:
    trainer, method = _trainer(MetaConfig(mode="exact", every=1))
    trainer._step(_batch(8, 0))
    buf = io.BytesIO()
    torch.save(trainer.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    other, fresh = _trainer(MetaConfig(mode="exact", every=1), seed=5)
    other.load_state_dict(state)
    assert fresh.alpha == pytest.approx(method.alpha)
    torch.testing.assert_close(fresh.sampler.probs, method.sampler.probs)
    for a, b in zip(fresh.policy.parameters(), method.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert len(method.modules()) == 0  # the policy net is not in the main optimizer


# -- export and report -----------------------------------------------------------------------
def test_to_policy_exports_the_pair_distribution() -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(K, K, generator=g, dtype=torch.float64)
    probs /= probs.sum()
    policy = pairs_policy(probs, levels=3)
    assert isinstance(policy, Policy) and policy.num_layers == 2
    sel = policy.selection_probabilities()
    # the mass of pair (Rotate, Identity) is the sum over its 3 level bins
    rot, ident = FUNCTIONS.index("Rotate"), FUNCTIONS.index("Identity")
    mask = torch.tensor(
        [s[0].op == "Rotate" and s[1].op == "Identity" for s in policy.sub_policies]
    )
    assert int(mask.sum()) == 3
    torch.testing.assert_close(sel[mask].sum(), probs[rot, ident])
    levels = sorted(
        s[0].level for s, m in zip(policy.sub_policies, mask.tolist(), strict=True) if m
    )
    assert levels == pytest.approx([10 / 6, 5.0, 50 / 6], abs=1e-3)
    again = policy_from_dict(json.loads(json.dumps(policy.to_dict())))
    assert isinstance(again, Policy)
    torch.testing.assert_close(again.selection_probabilities(), sel)
    params = again.sample(64, generator=torch.Generator().manual_seed(1))
    assert params.op_ids.shape == (64, 2)


def test_report_files(tmp_path: object) -> None:
    from pathlib import Path

    trainer, method = _trainer(MetaConfig(mode="fast", every=1))
    trainer._step(_batch(8, 0))
    files = method.write_report(Path(str(tmp_path)))
    with Path(files["pairs_csv"]).open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["first", "second", "count", "mean_weight", "prob"]
    assert len(rows) == 1 + K * K
    assert rows[1][:2] == ["AutoContrast", "AutoContrast"]
    assert sum(int(r[2]) for r in rows[1:]) == 8
    assert abs(sum(float(r[4]) for r in rows[1:]) - 1.0) < 1e-4
    assert Path(files["pairs_png"]).stat().st_size > 1000
    assert isinstance(policy_from_dict(json.loads(Path(files["policy_json"]).read_text())), Policy)


class _ListLoader:
    """The loader interface Trainer.fit uses, over fixed batches."""

    skipped: tuple[str, ...] = ()

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.batches)

    def set_epoch(self, epoch: int) -> None:
        del epoch

    def state_dict(self) -> dict:
        return {}


def test_fit_calls_finish_once_after_the_last_epoch_and_not_when_cut_short() -> None:
    from dali_aug.train import Method

    calls: list[tuple[int, int]] = []

    class Recorder(Method):
        def finish(self, trainer: Trainer) -> None:
            calls.append((trainer.epoch, trainer.global_step))

    def trainer() -> Trainer:
        torch.manual_seed(0)
        model = build_model("small", 4)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        return Trainer(model, opt, methods=[Recorder()])

    train = _ListLoader([_batch(4, i) for i in range(3)])
    trainer().fit(train, None, 2, stop_after_steps=4, progress=False, log=lambda *_: None)
    assert calls == []  # cut short mid-run: not the end of training
    trainer().fit(train, None, 2, progress=False, log=lambda *_: None)
    assert calls == [(2, 6)]  # once, after both epochs


def test_meta_writes_its_report_files_at_the_end_of_training(tmp_path: object) -> None:
    from pathlib import Path

    from dali_aug.methods.meta.cli import describe

    trainer, method = _trainer(MetaConfig(mode="fast", every=2, history=2))
    out = Path(str(tmp_path))
    method.report_dir = out
    trainer.fit(_ListLoader([_batch(8, i) for i in range(2)]), None, 2, progress=False, log=print)
    files = {k: Path(v) for k, v in method.report_files.items()}
    assert set(files) == {"pairs_csv", "pairs_png", "policy_json"}
    assert all(f.parent == out and f.is_file() for f in files.values())
    with files["pairs_csv"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert sum(int(r["count"]) for r in rows) == 4 * 8  # every step of the run counted
    probs = torch.tensor([float(r["prob"]) for r in rows], dtype=torch.float64).view(K, K)
    torch.testing.assert_close(probs, method.sampler.probs, rtol=1e-3, atol=1e-6)  # CSV digits
    files["pairs_csv"].unlink()
    assert describe(method)["files"] == method.report_files  # describe writes nothing
    assert not files["pairs_csv"].exists()


# -- bad input -------------------------------------------------------------------------------
def test_a_model_without_penultimate_features_is_refused() -> None:
    with pytest.raises(TypeError, match="penultimate features"):
        MetaAugmentMethod(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4)))
    trainer, method = _trainer(MetaConfig())
    with pytest.raises(TypeError, match="penultimate features"):
        method.loss(
            Step(trainer, 0, 0),
            _batch(),
            Forward(torch.zeros(8, 4)),
            None,  # type: ignore[arg-type]
        )


def test_a_val_fraction_leaving_a_class_without_validation_is_refused() -> None:
    _, method = _trainer(MetaConfig(val_fraction=0.05))
    targets = torch.arange(4).repeat_interleave(6)  # 6 per class: 5% rounds to 0
    with pytest.raises(ValueError, match="--val-fraction"):
        stratified_holdout(targets, method.loader_needs().holdout, seed=0)
    with pytest.raises(ValueError, match="val_fraction"):
        MetaConfig(val_fraction=0.0)


def test_nan_features_give_a_clear_error_in_the_step() -> None:
    trainer, method = _trainer(MetaConfig(mode="exact"))
    batch = _batch(8, 0)
    step = Step(trainer, 0, 0)
    aug = method.augment(step, batch)
    out = trainer.forward(aug.images)
    bad = Forward(out.logits, torch.full_like(out.features, float("nan")), out.early)  # type: ignore[arg-type]
    from dali_aug.train import Loss

    with pytest.raises(ValueError, match="NaN"):
        method.loss(step, aug, bad, Loss(trainer.losses(out.logits, aug.labels)))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("exact_form", "double", "'jvp' or 'unrolled'"),
        ("fd", "backward", "'forward' or 'central'"),
        ("fast_virtual", "next", "'current', 'previous' or 'real_step'"),
        ("val_share", 0.0, r"val_share=0.0 must be in \(0, 1\]"),
        ("val_share", 1.5, r"val_share=1.5 must be in \(0, 1\]"),
        ("fd_eps", float("nan"), "fd_eps=nan must be a finite number"),
        ("mode", "slow", "'exact', 'fast' or 'uniform'"),
        ("weight_norm", "max", "'sum' or 'mean'"),
    ],
)
def test_bad_config_values_are_refused_naming_the_choices(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        MetaConfig(**{field: value})  # type: ignore[arg-type]


def test_all_zero_weights_raise_naming_the_fix() -> None:
    with pytest.raises(ValueError, match="every policy weight is 0.*--meta-lr"):
        normalise_weights(torch.zeros(4))


def test_fast_meta_grads_refuses_a_one_sided_difference_without_the_losses_at_w() -> None:
    t = _toy()
    lin: nn.Linear = t["lin"]  # type: ignore[assignment]
    net: PolicyNet = t["net"]  # type: ignore[assignment]
    params = dict(lin.named_parameters())
    weights = normalise_weights(net(t["feat"], t["emb"]))

    def loss(ps: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(torch.func.functional_call(lin, ps, (t["x"],)), t["y"])

    with pytest.raises(ValueError, match="losses_at_w"):
        fast_meta_grads(params, weights, torch.tensor(0.1), loss, loss, [], scheme="forward")
    with pytest.raises(ValueError, match="'forward' or 'central'"):
        fast_meta_grads(params, weights, torch.tensor(0.1), loss, loss, [], scheme="left")  # type: ignore[arg-type]


def test_the_method_needs_the_clean_crops_and_no_loader_policy() -> None:
    trainer, method = _trainer(MetaConfig())
    b = _batch()
    with pytest.raises(ValueError, match="clean crops"):
        method.augment(Step(trainer, 0, 0), Batch(b.images, b.labels, b.indices))
    needs = method.loader_needs()
    assert not needs.policy and needs.clean and needs.op_record and needs.holdout == 0.02


# -- the command line ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shapes64(tmp_path_factory: pytest.TempPathFactory) -> str:
    from dali_aug.datasets import make_shapes

    return str(make_shapes(tmp_path_factory.mktemp("meta") / "shapes", 64, seed=0, size=32))


def test_cli_refuses_a_val_fraction_that_leaves_a_class_without_validation(
    shapes64: str, tmp_path: object
) -> None:
    from dali_aug.cli import main

    argv = ["train", "--method", "meta", "--data", shapes64, "--size", "32", "--epochs", "1"]
    with pytest.raises(SystemExit, match="no validation sample.*--val-fraction"):
        main([*argv, "--out", str(tmp_path), "--no-progress", "--val-fraction", "0.01"])


def test_cli_alpha_init_sets_the_virtual_step_and_a_bad_one_is_an_error(
    shapes64: str, tmp_path: object
) -> None:
    from pathlib import Path

    from dali_aug.cli import main

    out = Path(str(tmp_path)) / "run"
    argv = ["train", "--method", "meta", "--data", shapes64, "--size", "32", "--epochs", "1"]
    argv += ["--batch-size", "16", "--no-progress", "--val-fraction", "0.25", "--out", str(out)]
    assert main([*argv, "--meta-alpha-init", "0.3"]) == 0
    alpha = json.loads((out / "metrics.json").read_text())["history"][0]["stat/alpha"]
    assert 0.25 < alpha < 0.35  # starts at 0.3 (Adam on log alpha moves it by ~1e-3 a step)
    with pytest.raises(SystemExit, match="alpha_init"):
        main([*argv, "--overwrite", "--meta-alpha-init", "0"])


def test_cli_trains_and_writes_the_pairs_and_the_policy(shapes64: str, tmp_path: object) -> None:
    from pathlib import Path

    from dali_aug.cli import main

    out = Path(str(tmp_path)) / "run"
    argv = ["train", "--method", "meta", "--meta-mode", "fast", "--data", shapes64]
    argv += ["--size", "32", "--batch-size", "16", "--epochs", "1", "--out", str(out)]
    assert main([*argv, "--no-progress", "--val-fraction", "0.25"]) == 0
    for name in ("meta_pairs.csv", "meta_pairs.png", "meta_policy.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert "stat/alpha" in metrics["history"][0] and "stat/mean_weight" in metrics["history"][0]
    assert metrics["meta"]["files"]["policy_json"].endswith("meta_policy.json")
    again = out / "transfer"
    transfer = ["train", "--policy", str(out / "meta_policy.json"), "--data", shapes64]
    transfer += ["--size", "32", "--batch-size", "16", "--epochs", "1", "--out", str(again)]
    assert main([*transfer, "--no-progress"]) == 0


# -- torch.distributed --------------------------------------------------------------------------
_DDP_META = """
import sys, torch, torch.distributed as dist
from dali_aug.batch import Batch
from dali_aug.methods.meta import MetaAugmentMethod, MetaConfig
from dali_aug.models import build_model
from dali_aug.ops import identity_params
from dali_aug.train import Trainer
from dali_aug.viz import normalize
dist.init_process_group("gloo")
rank = dist.get_rank()
out = {}
for mode in ("exact", "fast"):
    torch.manual_seed(0)  # the same initial weights on every rank
    model = build_model("small", 4)
    method = MetaAugmentMethod(model, MetaConfig(mode=mode, every=2, history=4), seed=5)
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    def batch():
        clean = torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8)
        y = torch.randint(0, 4, (8,), generator=g)
        return Batch(normalize(clean), y, torch.arange(8), params=identity_params(8), clean=clean)
    val = [batch()]
    trainer = Trainer(model, torch.optim.SGD(model.parameters(), lr=0.05), methods=[method],
                      meta_val=val)
    firsts = []
    for _ in range(5):
        trainer.step(batch())
        firsts.append(method._pending.first.clone())
    out[mode] = {"policy": {k: v.detach().clone() for k, v in method.policy.state_dict().items()},
                 "log_alpha": method.log_alpha.detach().clone(),
                 "probs": method.sampler.probs.clone(), "totals": method.sampler.totals.clone(),
                 "magnitudes": method.magnitude_stats.clone(), "first": torch.stack(firsts),
                 "model": {k: v.detach().clone() for k, v in model.named_parameters()}}
torch.save(out, f"{sys.argv[1]}/rank{rank}.pt")
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_torchrun_keeps_policy_alpha_and_sampler_identical_on_every_rank(tmp_path: Path) -> None:
    """Under torch.distributed each rank takes its meta step on its own batches; the (theta,
    alpha) gradients and the sampler's statistics are summed over the ranks, so after
    training the policy net, alpha and the sampler are equal on both ranks (they would drift
    apart otherwise: the ranks see different data), while the ranks draw different pairs."""
    script = tmp_path / "ddp_meta.py"
    script.write_text(_DDP_META)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for mode in ("exact", "fast"):
        x, y = a[mode], b[mode]
        for k, v in x["policy"].items():
            torch.testing.assert_close(v, y["policy"][k], rtol=1e-6, atol=1e-7, msg=(mode, k))
        torch.testing.assert_close(x["log_alpha"], y["log_alpha"], rtol=1e-6, atol=0.0)
        for k in ("probs", "totals", "magnitudes"):
            assert torch.equal(x[k], y[k]), (mode, k)
        for k, v in x["model"].items():  # the trainer's DDP keeps the task model equal
            torch.testing.assert_close(v, y["model"][k], rtol=1e-6, atol=1e-7)
        assert not torch.equal(x["first"], y["first"])  # each rank its own rows of the draw
        assert float(x["totals"][:, 1].sum()) == 2 * 5 * 8  # both ranks' samples counted
        assert not torch.allclose(x["probs"], torch.full_like(x["probs"], 1 / 196))  # refreshed
