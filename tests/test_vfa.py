"""VFA (dali_aug.methods.vfa): the per-label shuffle, the grouped modules against a per-label
reference, the loss terms against the paper's equations, training behaviour, the exported
model, bad inputs, the command line and (slow) the mechanism on decorrelated test data."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.vfa.synthetic import SyntheticSpec, TinyClassifier, make_split, run
from dali_aug.batch import Batch
from dali_aug.cli import main
from dali_aug.datasets import MULTI_LABELS, make_shapes
from dali_aug.methods.vfa import (
    TERMS,
    VFAConfig,
    VFAMethod,
    kl_divergence,
    label_mutual_information,
    shuffle,
)
from dali_aug.methods.vfa._balance import LabelCounts
from dali_aug.models import build_model
from dali_aug.train import Forward, Loss, Step, Trainer

SMALL = VFAConfig(sub_dim=8, latent_dim=4, hidden=16)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _coded(n: int, c: int, d: int = 3) -> torch.Tensor:
    """sub[i, j, :] = 1000 * i + j: every entry names its sample and label."""
    i = torch.arange(n, dtype=torch.float64)[:, None, None]
    j = torch.arange(c, dtype=torch.float64)[None, :, None]
    return (1000 * i + j).expand(n, c, d).clone()


# -- shuffle -----------------------------------------------------------------------------------
def test_shuffle_moves_each_labels_sub_feature_and_label_together() -> None:
    n, c = 12, 5
    sub = _coded(n, c)
    targets = (torch.rand(n, c, generator=_gen(1)) < 0.5).double()
    shuffled, y, perm = shuffle(sub, targets, generator=_gen(2))
    assert perm.dtype == torch.int64 and perm.shape == (c, n)
    assert torch.equal(perm.sort(dim=1).values, torch.arange(n).expand(c, n))
    for j in range(c):  # the property for every label, checked label by label
        assert torch.equal(shuffled[:, j], sub[perm[j], j])
        assert torch.equal(y[:, j], targets[perm[j], j])
        source = (shuffled[:, j, 0] // 1000).long()  # the sample each entry came from
        assert torch.equal(y[:, j], targets[source, j])
        assert torch.equal(shuffled[:, j, 0] % 1000, torch.full((n,), float(j), dtype=sub.dtype))


def test_shuffle_draws_a_different_permutation_per_label() -> None:
    n, c = 64, 16
    _, _, perm = shuffle(torch.zeros(n, c, 1), torch.zeros(n, c), generator=_gen(3))
    assert len({tuple(row.tolist()) for row in perm}) == c
    # independent permutations agree on about one position in n; a shared one on all
    same = (perm[:, None, :] == perm[None, :, :]).float().mean(-1)
    off = same[~torch.eye(c, dtype=torch.bool)]
    assert off.max() < 0.2


def test_shuffle_is_the_identity_for_one_sample_and_a_joint_row_permutation_for_one_label() -> None:
    sub, targets = torch.randn(1, 4, 3, generator=_gen(4)), torch.tensor([[1.0, 0, 1, 0]])
    shuffled, y, perm = shuffle(sub, targets, generator=_gen(5))
    assert torch.equal(shuffled, sub) and torch.equal(y, targets)
    assert torch.equal(perm, torch.zeros(4, 1, dtype=torch.int64))
    # C = 1: the batch is reordered as a whole; undoing the permutation restores everything
    sub, targets = torch.randn(9, 1, 3, generator=_gen(6)), torch.rand(9, 1, generator=_gen(7))
    shuffled, y, perm = shuffle(sub, targets, generator=_gen(8))
    undo = perm[0].argsort()
    assert torch.equal(shuffled[undo], sub) and torch.equal(y[undo], targets)


def test_shuffle_makes_label_co_occurrence_approach_the_product_of_marginals() -> None:
    n = 4096
    g = _gen(9)
    a = (torch.rand(n, generator=g) < 0.5).float()
    b = torch.where(torch.rand(n, generator=g) < 0.95, a, 1 - a)  # B = A in 95% of samples
    r = (torch.rand(n, generator=g) < 0.05).float() * a  # rare, only with A
    targets = torch.stack([a, b, r], 1)
    sub = targets[:, :, None].repeat(1, 1, 2)  # the sub-features carry their label
    shuffled, y, _ = shuffle(sub, targets, generator=_gen(10))
    before, after = label_mutual_information(targets), label_mutual_information(y)
    assert before[0, 1] > 0.4 and before[0, 2] > 0.01
    off = ~torch.eye(3, dtype=torch.bool)
    assert after[off].max() < 2e-3
    # the labels of the shuffled features: co-occurrence = outer product of the marginals
    joint = y.t() @ y / n
    marg = y.mean(0)
    assert torch.allclose(joint[off], torch.outer(marg, marg)[off], atol=0.02)
    assert torch.equal(shuffled[:, :, 0], y)  # the features still carry their labels
    assert torch.allclose(y.mean(0), targets.mean(0))  # marginals unchanged


def test_label_mutual_information_known_values() -> None:
    y = torch.tensor([[0.0, 0.0], [1.0, 1.0]] * 50)
    mi = label_mutual_information(y)
    assert math.isclose(float(mi[0, 1]), math.log(2), rel_tol=1e-6)  # one bit, shared
    y = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 25)
    assert abs(float(label_mutual_information(y)[0, 1])) < 1e-9


def test_shuffle_is_reproducible_and_checks_shapes() -> None:
    sub, t = torch.randn(7, 3, 2, generator=_gen(11)), torch.rand(7, 3, generator=_gen(12))
    first, second = shuffle(sub, t, generator=_gen(13)), shuffle(sub, t, generator=_gen(13))
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    with pytest.raises(ValueError, match=r"\[N, C, d\]"):
        shuffle(torch.zeros(7, 3), t, generator=_gen())
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        shuffle(sub, torch.zeros(7, 4), generator=_gen())


# -- grouped modules and the terms -------------------------------------------------------------
def test_grouped_modules_equal_a_per_label_reference() -> None:
    torch.manual_seed(0)
    model = build_model("small", 6)
    net = VFAMethod(model, 6, SMALL).net
    v = torch.randn(5, 192, generator=_gen(14))
    out = net.decouple(v, generator=_gen(15))
    eps = torch.randn(out.mu.shape, generator=_gen(15))
    f1 = net.first_layer_weight()
    for j in range(6):  # the reference loops over labels; the module does not
        hid = F.relu(v @ f1[:, j] + net.f1_bias[j])
        sub = hid @ net.f2_weight[j] + net.f2_bias[j]
        stats = sub @ net.enc_weight[j] + net.enc_bias[j]
        mu, logvar = stats[:, :4], stats[:, 4:]
        z = mu + torch.exp(0.5 * logvar) * eps[j]
        torch.testing.assert_close(out.sub[j], sub)
        torch.testing.assert_close(out.z[j], z)
        torch.testing.assert_close(out.decoded[j], z @ net.dec_weight[j] + net.dec_bias[j])
        ref = (z @ net.bin_weight[j] + net.bin_bias[j])[:, 0]
        torch.testing.assert_close(out.bin_logits[j], ref)
    parts = out.decoded.transpose(0, 1)
    flat = parts.reshape(5, -1)
    ref = F.relu(flat @ net.g1_weight + net.g1_bias) @ net.g2_weight + net.g2_bias
    torch.testing.assert_close(net.aggregate(parts), ref)


def test_chunked_first_layer_equals_one_tensor(monkeypatch: pytest.MonkeyPatch) -> None:
    from dali_aug.methods.vfa import _modules

    sizes = {"sub_dim": 3, "latent_dim": 2, "hidden": 4}
    whole = _modules.VFAModules(5, 6, seed=3, **sizes)
    monkeypatch.setattr(_modules, "CHUNK_NUMEL", 2 * 6 * 4)  # two labels per chunk
    chunked = _modules.VFAModules(5, 6, seed=3, **sizes)
    assert [w.shape[1] for w in chunked.f1_weights] == [2, 2, 1] and len(whole.f1_weights) == 1
    monkeypatch.setattr(_modules, "CHUNK_NUMEL", 6 * 4 - 1)  # one label is above the limit
    single = _modules.VFAModules(5, 6, seed=3, **sizes)
    assert [w.shape[1] for w in single.f1_weights] == [1] * 5
    torch.testing.assert_close(chunked.first_layer_weight(), whole.first_layer_weight())
    v = torch.randn(7, 6, generator=_gen(30))
    a = whole.decouple(v, generator=_gen(31))
    b = chunked.decouple(v, generator=_gen(31))
    torch.testing.assert_close(b.sub, a.sub)
    torch.testing.assert_close(b.bin_logits, a.bin_logits)
    a.sub.square().sum().backward()
    b.sub.square().sum().backward()
    grads = torch.cat([w.grad for w in chunked.f1_weights], 1)  # every chunk is trained
    torch.testing.assert_close(grads, whole.f1_weights[0].grad)
    torch.testing.assert_close(chunked.f1_bias.grad, whole.f1_bias.grad)


def test_kl_divergence_has_the_minimisation_sign() -> None:
    mu, logvar = torch.randn(3, 4, 5, generator=_gen(16)), torch.randn(3, 4, 5, generator=_gen(17))
    kl = kl_divergence(mu, logvar)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar)),
        torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu)),
    ).sum(-1)
    torch.testing.assert_close(kl, ref)
    assert (kl > 0).all()
    assert torch.equal(kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))


@pytest.mark.parametrize("source", ["decoded", "mlp"])
def test_terms_follow_the_equations(source: str) -> None:
    torch.manual_seed(0)
    model = build_model("small", 6)
    cfg = VFAConfig(sub_dim=8, latent_dim=4, hidden=16, beta=0.5, shuffle_source=source)  # type: ignore[arg-type]
    method = VFAMethod(model, 6, cfg, seed=3)
    v = torch.randn(10, 192, generator=_gen(18))
    y = (torch.rand(10, 6, generator=_gen(19)) < 0.4).float()
    state = method.generator.get_state()
    terms = method.terms(v, y, model.head)
    assert tuple(terms) == TERMS
    method.generator.set_state(state)  # replay the same noise and permutations
    out = method.net.decouple(v, generator=method.generator)
    parts = (out.decoded if source == "decoded" else out.sub).transpose(0, 1)
    shuffled, ys, _ = shuffle(parts, y, generator=method.generator)
    kl = (-0.5 * (1 + out.logvar - out.mu**2 - out.logvar.exp()).sum(-1)).sum(0).mean()
    expect = {
        "vfa_aug": 0.5
        * F.binary_cross_entropy_with_logits(model.head(method.net.aggregate(shuffled)), ys),
        "vfa_kl": kl,
        "vfa_vae_rec": (out.sub - out.decoded).norm(dim=-1).sum(0).mean(),
        "vfa_bin": F.binary_cross_entropy_with_logits(out.bin_logits.t(), y),
        "vfa_rec": (method.net.aggregate(parts) - v).norm(dim=1).mean(),
    }
    for name, value in expect.items():
        torch.testing.assert_close(terms[name], value, msg=name)
    assert terms["vfa_kl"] > 0
    # and the gradients: every term routes to the parameters as its equation does (g's
    # reconstruction target v is the one constant: the reference detaches it too)
    expect["vfa_rec"] = (method.net.aggregate(parts) - v.detach()).norm(dim=1).mean()
    params = [*method.net.parameters(), *model.head.parameters()]
    for name, value in expect.items():
        got = torch.autograd.grad(terms[name], params, retain_graph=True, allow_unused=True)
        want = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        for g, w in zip(got, want, strict=True):
            g = torch.zeros(()) if g is None else g
            w = torch.zeros(()) if w is None else w
            torch.testing.assert_close(g.expand_as(w) if g.dim() == 0 else g, w, msg=name)


def test_propensity_weights_make_each_label_independent_of_the_others() -> None:
    """``bin_balance="propensity"``: under label j's weights, label j carries no information
    about the others (weighted mutual information ~ 0, from 0.5 nats for a 95 % pair), the
    weights are 1 on average per label, about 1 for an independent label, and vfa_bin is
    the weighted mean of the per-sample, per-label BCE."""
    n = 4096
    g = _gen(31)
    a = (torch.rand(n, generator=g) < 0.4).float()
    b = torch.where(torch.rand(n, generator=g) < 0.95, a, 1 - a)
    free = (torch.rand(n, generator=g) < 0.3).float()
    y = torch.stack([a, b, free], 1)
    counts = LabelCounts(3)
    counts.update(y)
    w = counts.weights(y, clip=100.0)
    torch.testing.assert_close(w.mean(0), torch.ones(3))

    def weighted_mi(j: int, k: int) -> float:
        joint = torch.zeros(2, 2, dtype=torch.float64)
        for u in (0, 1):
            for v in (0, 1):
                cell = (y[:, j] == u) & (y[:, k] == v)
                joint[u, v] = w[cell, j].double().sum()
        joint /= joint.sum()
        outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
        return float((joint * (joint / outer).log()).sum())

    assert float(label_mutual_information(y)[0, 1]) > 0.4
    assert weighted_mi(1, 0) < 1e-3 and weighted_mi(0, 1) < 1e-3
    assert (w[:, 2] - 1).abs().max() < 0.25  # an independent label is barely reweighted
    # the off-diagonal (A != B) samples carry the weight: about P(B) / P(B | A) there
    assert float(w[a != b, 1].mean()) > 5 * float(w[a == b, 1].mean())
    clipped = counts.weights(y, clip=2.0)  # clipped to [1/2, 2] before the normalisation
    spread = clipped.max(0).values / clipped.min(0).values
    assert float(spread[1]) == pytest.approx(4.0, rel=1e-5) and (spread <= 4 + 1e-5).all()

    torch.manual_seed(0)
    model = build_model("small", 3)
    cfg = dataclasses.replace(SMALL, bin_balance="propensity", bin_balance_clip=100.0)
    method = VFAMethod(model, 3, cfg, seed=4)
    v = torch.randn(64, 192, generator=_gen(32))
    yb = y[:64]
    state = method.generator.get_state()
    terms = method.terms(v, yb, model.head)
    method.generator.set_state(state)
    out = method.net.decouple(v, generator=method.generator)
    expect = LabelCounts(3)
    expect.update(yb)
    bce = F.binary_cross_entropy_with_logits(out.bin_logits.t(), yb, reduction="none")
    torch.testing.assert_close(terms["vfa_bin"], (expect.weights(yb, clip=100.0) * bce).mean())
    assert torch.equal(method.state_dict()["label_counts"]["pair"], expect.pair)


def test_vae_reduction_kl_warmup_and_aug_start_schedule_the_terms() -> None:
    """The gap-fill options: ``vae_reduction="mean"`` divides L_vae by C; the KL weight
    ramps linearly over ``kl_warmup_steps``; ``vfa_aug`` is zero before ``aug_start_step``;
    the other terms are untouched (the same noise and permutations replayed)."""
    torch.manual_seed(0)
    model = build_model("small", 6)
    v = torch.randn(10, 192, generator=_gen(30))
    y = (torch.rand(10, 6, generator=_gen(31)) < 0.4).float()

    def terms(cfg: VFAConfig, step: int | None) -> dict[str, torch.Tensor]:
        return VFAMethod(model, 6, cfg, seed=4).terms(v, y, model.head, step=step)

    ref = terms(SMALL, None)
    at_zero = terms(SMALL, 0)  # no warm-up, no delayed start: the step does not matter
    for name in TERMS:
        torch.testing.assert_close(at_zero[name], ref[name])
    mean = terms(dataclasses.replace(SMALL, vae_reduction="mean"), None)
    for name in ("vfa_kl", "vfa_vae_rec"):
        torch.testing.assert_close(mean[name], ref[name] / 6)
    for name in ("vfa_aug", "vfa_bin", "vfa_rec"):
        torch.testing.assert_close(mean[name], ref[name])
    sched = dataclasses.replace(SMALL, kl_warmup_steps=8, aug_start_step=3)
    for step, kl_scale, aug_on in ((0, 0.0, False), (2, 0.25, False), (4, 0.5, True)):
        got = terms(sched, step)
        torch.testing.assert_close(got["vfa_kl"], kl_scale * ref["vfa_kl"])
        torch.testing.assert_close(got["vfa_aug"], ref["vfa_aug"] if aug_on else 0 * ref["vfa_aug"])
        torch.testing.assert_close(got["vfa_rec"], ref["vfa_rec"])
    for step in (8, 100, None):
        torch.testing.assert_close(terms(sched, step)["vfa_kl"], ref["vfa_kl"])
    for bad, match in (
        ({"vae_reduction": "max"}, "'sum' or 'mean'"),
        ({"kl_warmup_steps": -1}, "integer >= 0"),
        ({"aug_start_step": 1.5}, "integer >= 0"),
    ):
        with pytest.raises(ValueError, match=match):
            VFAConfig(**bad)  # type: ignore[arg-type]


def test_detach_backbone_keeps_the_vfa_terms_off_the_backbone() -> None:
    torch.manual_seed(0)
    model = build_model("small", 4)
    x = torch.randn(6, 3, 32, 32, generator=_gen(20))
    y = (torch.rand(6, 4, generator=_gen(21)) < 0.5).float()
    for detach in (False, True):
        model.zero_grad()
        method = VFAMethod(model, 4, VFAConfig(sub_dim=8, latent_dim=4, detach_backbone=detach))
        total = sum(method.terms(model.features(x), y, model.head).values())
        assert isinstance(total, torch.Tensor)
        total.backward()
        grad = next(model.stem.parameters()).grad
        assert (grad is None or not grad.any()) == detach
        assert model.head.weight.grad is not None and model.head.weight.grad.any()
        assert all(p.grad is not None for p in method.net.parameters())


#: which parameters each term's gradient must reach (True) or must not (False), by the
#: equations: f = the decoupling MLP, enc/dec/bin = the per-label VAE and classifier, g = the
#: aggregation, head = the model's classifier
_ROUTES = {
    "vfa_aug": {"f": True, "enc": False, "dec": False, "bin": False, "g": True, "head": True},
    "vfa_kl": {"f": True, "enc": True, "dec": False, "bin": False, "g": False, "head": False},
    "vfa_vae_rec": {"f": True, "enc": True, "dec": True, "bin": False, "g": False, "head": False},
    "vfa_bin": {"f": True, "enc": True, "dec": False, "bin": True, "g": False, "head": False},
    "vfa_rec": {"f": True, "enc": False, "dec": False, "bin": False, "g": True, "head": False},
}


def test_each_term_reaches_the_modules_its_equation_routes_it_to() -> None:
    """Gradient routing, not just values (``shuffle_source="mlp"``, the paper's): the
    augmented features reach the head through g and f (not detached before the head); the
    VAE's reconstruction ``||v^j - d_j(z)||`` trains f as well as the decoder (its target
    v^j is not detached); KL trains the encoder and f, not the decoder; the latent
    classifier trains h_j, the encoder and f; g's reconstruction trains g and f."""
    torch.manual_seed(0)
    model = build_model("small", 6)
    cfg = VFAConfig(sub_dim=8, latent_dim=4, hidden=16, shuffle_source="mlp")
    method = VFAMethod(model, 6, cfg, seed=3)
    net = method.net
    groups = {
        "f": [*net.f1_weights, net.f1_bias, net.f2_weight, net.f2_bias],
        "enc": [net.enc_weight, net.enc_bias],
        "dec": [net.dec_weight, net.dec_bias],
        "bin": [net.bin_weight, net.bin_bias],
        "g": [net.g1_weight, net.g1_bias, net.g2_weight, net.g2_bias],
        "head": list(model.head.parameters()),
    }
    v = torch.randn(12, 192, generator=_gen(30))
    y = (torch.rand(12, 6, generator=_gen(31)) < 0.5).float()
    terms = method.terms(v, y, model.head)
    for name, routes in _ROUTES.items():
        params = [p for ps in groups.values() for p in ps]
        grads = torch.autograd.grad(terms[name], params, retain_graph=True, allow_unused=True)
        it = iter(grads)
        for group, ps in groups.items():
            mine = [next(it) for _ in ps]
            reached = any(g is not None and bool(g.abs().sum() > 0) for g in mine)
            assert reached is routes[group], f"{name} -> {group}: {reached}"


def _trained(steps: int, cfg: VFAConfig, seed: int = 0) -> tuple[Trainer, list[dict[str, float]]]:
    spec = SyntheticSpec(n_train=1024, steps=steps)
    g = _gen(seed)
    directions = torch.linalg.qr(torch.randn(spec.dim, spec.dim, generator=g))[0][:5]
    x, y = make_split(spec, train=True, generator=g, directions=directions)
    torch.manual_seed(seed)
    model = TinyClassifier(spec.dim, 64, 5)
    method = VFAMethod(model, 5, cfg, seed=seed)
    trainer = Trainer(
        model, torch.optim.Adam(model.parameters(), 3e-3), multi_label=True, methods=[method]
    )
    logs = []
    for step in range(steps):
        i = torch.arange(step * 64, (step + 1) * 64) % len(x)
        loss = trainer._step(Batch(x[i], y[i], i))
        logs.append({k: float(v.detach()) for k, v in loss.terms.items()})
    return trainer, logs


def test_training_shrinks_the_reconstruction_and_the_vae_and_latent_terms() -> None:
    cfg = VFAConfig(sub_dim=16, latent_dim=8, hidden=64)
    trainer, logs = _trained(150, cfg)
    first = {k: sum(r[k] for r in logs[:10]) / 10 for k in TERMS}
    last = {k: sum(r[k] for r in logs[-10:]) / 10 for k in TERMS}
    assert all(r["vfa_kl"] >= 0 for r in logs)  # a KL, minimised (not the misprinted sign)
    assert last["vfa_kl"] < first["vfa_kl"]
    assert last["vfa_vae_rec"] < 0.5 * first["vfa_vae_rec"]
    assert last["vfa_bin"] < 0.9 * first["vfa_bin"]  # the h_j learn (at least the marginals)
    assert last["vfa_aug"] < 0.9 * first["vfa_aug"]
    # g(unshuffled) -> V (L_rec, Eq. 5-6 of "Enhance via Decoupling: Improving Multi-Label
    # Classifiers with Variational Feature Augmentation", Sec. 2): the trained modules
    # reconstruct the trained model's features much better than fresh ones (relative error;
    # |V| grows in training)
    spec = SyntheticSpec(n_train=1024)
    g = _gen(0)
    directions = torch.linalg.qr(torch.randn(spec.dim, spec.dim, generator=g))[0][:5]
    x, _ = make_split(spec, train=True, generator=g, directions=directions)
    method, model = trainer.methods[0], trainer.model
    assert isinstance(method, VFAMethod) and isinstance(model, TinyClassifier)
    errors = []
    with torch.no_grad():
        v = model.features(x)
        for net in (method.net, VFAMethod(model, 5, cfg, seed=9).net):
            out = net.decouple(v, generator=_gen(1))
            rec = net.aggregate(out.decoded.transpose(0, 1))
            errors.append(float((rec - v).norm(dim=1).mean() / v.norm(dim=1).mean()))
    assert errors[0] < 0.75 * errors[1]


# -- the trainer, the exported model -----------------------------------------------------------
def test_exported_model_is_the_baseline_architecture(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("small", 6)
    method = VFAMethod(model, 6, SMALL)
    trainer = Trainer(
        model, torch.optim.AdamW(model.parameters(), 1e-3), multi_label=True, methods=[method]
    )
    x = torch.randn(8, 3, 32, 32, generator=_gen(22))
    y = (torch.rand(8, 6, generator=_gen(23)) < 0.5).float()
    for _ in range(2):
        loss = trainer._step(Batch(x, y, torch.arange(8)))
    assert set(loss.terms) == set(TERMS)
    exported = trainer.export()
    assert not any("net" in k or "f1_weights" in k for k in exported)
    baseline = build_model("small", 6)
    assert baseline.load_state_dict(exported, strict=True)  # no missing or unexpected keys
    count = sum(p.numel() for p in baseline.parameters())
    assert count == sum(p.numel() for p in trainer.model.parameters())
    assert count == sum(p.numel() for p in build_model("small", 6).parameters())
    baseline.eval()
    trainer.model.eval()
    with torch.no_grad():
        assert torch.equal(baseline(x), trainer.model(x))
    # the VFA modules are trained and checkpointed, not exported
    state = trainer.state_dict()["methods"]
    assert any("net.f1_weights.0" in k for v in state.values() for k in v["modules"])
    trainer.save(tmp_path / "ckpt.pt")
    again = Trainer(
        build_model("small", 6),
        torch.optim.AdamW(model.parameters(), 1e-3),
        multi_label=True,
        methods=[VFAMethod(build_model("small", 6), 6, SMALL, seed=5)],
    )
    again.load(tmp_path / "ckpt.pt")
    restored = again.methods[0]
    assert isinstance(restored, VFAMethod)
    assert torch.equal(restored.net.g1_weight, method.net.g1_weight)
    assert torch.equal(restored.generator.get_state(), method.generator.get_state())


def test_checkpoint_of_other_vfa_sizes_is_a_clear_error(tmp_path: Path) -> None:
    def trainer(config: VFAConfig) -> Trainer:
        model = build_model("small", 6)
        method = VFAMethod(model, 6, config)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        return Trainer(model, opt, multi_label=True, methods=[method])

    trainer(SMALL).save(tmp_path / "ckpt.pt")
    other = trainer(
        dataclasses.replace(SMALL, hidden=32)
    )  # e.g. a layout written by another version
    with pytest.raises(ValueError, match=r"(?s)vfa.s modules does not fit this trainer.*--resume"):
        other.load(tmp_path / "ckpt.pt")


# -- bad input ---------------------------------------------------------------------------------
class _NoFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_bad_inputs_raise_errors_that_name_the_fix() -> None:
    torch.manual_seed(0)
    model = build_model("small", 4)
    method = VFAMethod(model, 4, SMALL)
    v = torch.randn(6, 192)
    y = (torch.rand(6, 4) < 0.5).float()
    with pytest.raises(ValueError, match="--multi-label"):
        method.terms(v, torch.tensor([0, 1, 2, 3, 0, 1]), model.head)
    with pytest.raises(ValueError, match="num_classes=5"):
        VFAMethod(model, 5, SMALL)
    with pytest.raises(ValueError, match="label count"):
        method.terms(v, torch.zeros(6, 5), model.head)
    with pytest.raises(ValueError, match="label count"):
        method.terms(v, y, nn.Linear(192, 5))
    with pytest.raises(ValueError, match="penultimate"):
        method.terms(torch.randn(6, 100), y, model.head)
    with pytest.raises(ValueError, match="NaN/inf.*learning rate"):
        method.terms(v.index_fill(0, torch.tensor([2]), float("nan")), y, model.head)
    with pytest.raises(TypeError, match="linear .head"):
        VFAMethod(nn.Sequential(nn.Linear(3, 3)), 3)
    with pytest.raises(ValueError, match="positive integer"):
        VFAConfig(sub_dim=0)
    with pytest.raises(ValueError, match="'decoded' or 'mlp'"):
        VFAConfig(shuffle_source="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'none' or 'propensity'"):
        VFAConfig(bin_balance="inverse")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bin_balance_clip.*>= 1"):
        VFAConfig(bin_balance_clip=0.5)
    # through the trainer: single-label training, and a model without penultimate features
    single = Trainer(
        model, torch.optim.SGD(model.parameters(), 0.1), multi_label=False, methods=[method]
    )
    images = torch.randn(6, 3, 32, 32)
    with pytest.raises(ValueError, match="--multi-label"):
        single._step(Batch(images, torch.tensor([0, 1, 2, 3, 0, 1]), torch.arange(6)))
    plain = _NoFeatures()
    no_features = VFAMethod(plain, 3, SMALL)
    trainer = Trainer(
        plain, torch.optim.SGD(plain.parameters(), 0.1), multi_label=True, methods=[no_features]
    )
    step = Step(trainer, 0, 0)
    out = trainer.forward(torch.randn(2, 4))
    assert out.features is None
    batch = Batch(torch.randn(2, 4), torch.ones(2, 3), torch.arange(2))
    with pytest.raises(ValueError, match="out.features is None.*features\\(x\\) and head"):
        no_features.loss(step, batch, Forward(out.logits), Loss(torch.zeros(2)))


# -- the command line --------------------------------------------------------------------------
def test_vfa_trains_from_the_cli(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    data = tmp_path_factory.getbasetemp() / "vfa-shapes"
    make_shapes(data / "train", 48, seed=4, multi_label=True, size=32)
    make_shapes(data / "val", 16, seed=5, multi_label=True, size=32)
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--multi-label", "--no-flip", "--size", "32"]
    argv += ["--batch-size", "16", "--epochs", "1", "--out", str(out), "--no-progress"]
    argv += ["--method", "vfa", "--vfa-beta", "0.5", "--vfa-sub-dim", "16", "--vfa-latent", "8"]
    argv += ["--vfa-vae-reduction", "mean", "--vfa-kl-weight", "0.1", "--vfa-bin-weight", "2"]
    argv += ["--vfa-kl-warmup", "4", "--vfa-aug-start", "1", "--vfa-bin-balance", "propensity"]
    assert main([*argv, "--policy", "ra-m9-n2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    row = metrics["history"][0]
    assert all(math.isfinite(row[f"loss/{t}"]) for t in TERMS)
    assert "mA" in row and "mAP" in row
    config = metrics["vfa"]["config"]
    assert config["beta"] == 0.5 and config["sub_dim"] == 16
    assert config["vae_reduction"] == "mean" and config["kl_weight"] == 0.1
    assert config["bin_weight"] == 2 and config["kl_warmup_steps"] == 4
    assert config["aug_start_step"] == 1 and config["rec_weight"] == 1  # unset: the default
    assert config["bin_balance"] == "propensity"
    model = build_model("small", len(MULTI_LABELS))
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True), strict=True)


def test_presets_set_their_fields_and_flags_override_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--vfa-preset detached`` is the configuration the mechanism results are for; each
    flag given explicitly wins over the preset, a flag not given leaves the preset's value
    (checked with a probe preset on the other fields), and an unknown preset is a clear
    error."""
    import argparse

    from dali_aug.methods import BuildContext
    from dali_aug.methods.vfa import PRESETS
    from dali_aug.methods.vfa import cli as vfa_cli

    assert VFAConfig.from_preset("paper") == VFAConfig()
    assert VFAConfig.from_preset("detached") == VFAConfig(
        vae_reduction="mean", detach_backbone=True, kl_weight=0.1
    )
    assert set(PRESETS) == {"paper", "detached"}
    with pytest.raises(ValueError, match="preset 'tuned'; use one of paper, detached"):
        VFAConfig.from_preset("tuned")
    monkeypatch.setitem(PRESETS, "probe", {"beta": 0.5, "shuffle_source": "mlp"})
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    vfa_cli.add_arguments(parser)
    model = build_model("small", 4)
    ctx = BuildContext(model, ("a", "b", "c", "d"), True, torch.device("cpu"), 32, 0)
    small = ["--vfa-sub-dim", "8", "--vfa-latent", "4", "--vfa-hidden", "16"]

    def config(*flags: str) -> VFAConfig:
        return vfa_cli.build(parser.parse_args([*small, *flags]), ctx).config

    assert config() == VFAConfig(sub_dim=8, latent_dim=4, hidden=16)
    detached = config("--vfa-preset", "detached")
    assert (detached.vae_reduction, detached.detach_backbone, detached.kl_weight) == (
        "mean",
        True,
        0.1,
    )
    assert config("--vfa-preset", "detached", "--vfa-kl-weight", "0.5").kl_weight == 0.5
    assert not config("--vfa-preset", "detached", "--no-vfa-detach-backbone").detach_backbone
    assert config("--vfa-preset", "detached", "--vfa-vae-reduction", "sum").vae_reduction == "sum"
    assert config("--vfa-detach-backbone").detach_backbone
    probe = config("--vfa-preset", "probe")
    assert (probe.beta, probe.shuffle_source, probe.sub_dim) == (0.5, "mlp", 8)
    assert config("--vfa-preset", "probe", "--vfa-beta", "2").beta == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["--vfa-preset", "tuned"])


def test_vfa_on_single_label_data_exits_with_the_fix(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    data = tmp_path_factory.getbasetemp() / "vfa-single"
    make_shapes(data, 16, seed=5, size=32)
    argv = ["train", "--data", str(data), "--size", "32", "--epochs", "1"]
    with pytest.raises(SystemExit, match="--multi-label"):
        main([*argv, "--out", str(tmp_path), "--no-progress", "--method", "vfa"])


def test_vfa_combines_with_lbaug_from_the_cli(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """``--method lbaug vfa``: LB-Aug's label-conditioned image ops and VFA's feature terms in
    one run (image-level and feature-level augmentation are orthogonal, paper Sec. 1). The
    actor is an unsearched one written by ``save_actor``: a valid actor file, which is all
    the trainer needs (``dali-aug search lbaug`` writes the same format)."""
    from dali_aug.methods import lbaug

    data = tmp_path_factory.getbasetemp() / "vfa-shapes-lb"
    make_shapes(data / "train", 32, seed=6, multi_label=True, size=32)
    make_shapes(data / "val", 16, seed=7, multi_label=True, size=32)
    actor = lbaug.Actor(lbaug.ActorConfig(num_labels=len(MULTI_LABELS), hidden=16))
    path = lbaug.save_actor(tmp_path / "actor.pt", actor, MULTI_LABELS)
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--multi-label", "--size", "32", "--policy", "none"]
    argv += ["--batch-size", "16", "--epochs", "1", "--out", str(out), "--no-progress"]
    argv += ["--device", "cpu", "--method", "lbaug", "vfa", "--actor", str(path)]
    argv += ["--vfa-sub-dim", "8", "--vfa-latent", "4", "--vfa-hidden", "16"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    freq = metrics["lbaug"]["frequencies"]  # LB-Aug ran: its ops were applied
    assert sum(freq.values()) == pytest.approx(1.0) and freq["none"] < 1.0
    row = metrics["history"][-1]
    assert all(math.isfinite(row[f"loss/{t}"]) for t in TERMS)  # and so did VFA
    assert metrics["vfa"]["config"]["sub_dim"] == 8
    model = build_model("small", len(MULTI_LABELS))  # the export is still the baseline model
    model.load_state_dict(torch.load(out / "model.pt", weights_only=True), strict=True)


# -- the mechanism (benchmarks/vfa/NOTES.md, 'The mechanism check') --------------------------------
#: The configuration both mechanism tests use, the ``detached`` preset (chosen on
#: the development seeds 0-3 of the weak-B data, before either equal-strength run): L_vae as
#: a mean over labels, no VFA gradient into the backbone, KL weight 0.1.
MECHANISM_CONFIG = VFAConfig.from_preset("detached")
#: Every label with the same signal strength: B is as visible as A, and still equal to A in
#: 95% of the training samples.
EQUAL = SyntheticSpec(strengths=(1.5, 1.5, 1.5, 1.5, 1.5))


@pytest.mark.slow
def test_mechanism_equal_strengths_beats_baseline_on_rare_combinations() -> None:
    seed = 7  # this spec was run on seeds 0-3 (development) and 41-43 (the table), not on 7
    base = run(seed, vfa=None, spec=EQUAL)
    vfa = run(seed, vfa=MECHANISM_CONFIG, spec=EQUAL)
    assert vfa["terms"]["vfa_rec"] < 5 and math.isfinite(vfa["mA"])
    # mA: as first written (bac0842) this was ``vfa > base``; seed 7 turned out a near-tie
    # (0.74075 against 0.74054), which a different CPU's rounding could flip, so after that
    # first run the bound became "no mA lost" (half a point). The held-out table (seeds
    # 41-43; benchmarks/vfa/NOTES.md, 'Mechanism with every label equally visible') is where
    # the mA gain is measured (+0.5 to +1.1). The bound still fails when the features are
    # shuffled without their labels (mA 0.730).
    assert vfa["mA"] > base["mA"] - 0.005
    assert vfa["recall_rare_combos"] > base["recall_rare_combos"]
    # and it is the mechanism: the head's B logit leans less on A's evidence
    assert vfa["probe"]["head_B_vs_A"] < base["probe"]["head_B_vs_A"]


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False,
    reason="on the weak-B data label B's own evidence is too weak in the features for any "
    "decoupling to find, so the per-label shuffle moves A's cue with label B and VFA does not "
    "beat the baseline (benchmarks/vfa/NOTES.md, 'Mechanism on the weak-B data')",
)
def test_mechanism_on_decorrelated_test_data() -> None:
    seed = 7  # not used in development (seeds 0-3) nor in the benchmark table (21-23)
    base = run(seed, vfa=None)
    vfa = run(seed, vfa=MECHANISM_CONFIG)
    assert vfa["terms"]["vfa_rec"] < 5 and math.isfinite(vfa["mA"])
    assert vfa["mA"] > base["mA"]
    assert vfa["recall_R"] > base["recall_R"]
    assert vfa["recall_rare_combos"] > base["recall_rare_combos"]
