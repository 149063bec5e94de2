"""LB-Aug: actor, splits, critics and rewards, search, trainer hook, reports and CLI.

The acceptance test runs the whole mechanism (critics on stratified shuffle splits -> rewards
-> REINFORCE) on the multi-label demo shapes with a seed that was not used while developing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from dali_aug.kernels import label_sample
from torch import nn
from torch.distributions import Categorical

from dali_aug.batch import Batch
from dali_aug.datasets import MULTI_LABELS, make_shapes
from dali_aug.methods import lbaug
from dali_aug.methods.lbaug import (
    DEMO_OPS,
    Actor,
    ActorConfig,
    LBAugMethod,
    SearchConfig,
    joint_log_prob,
    shuffle_splits,
    stratified_folds,
    to_op_params,
)
from dali_aug.ops import OpParams, get, identity_params, index
from dali_aug.viz import normalize

C = len(MULTI_LABELS)


def _labels(n: int, seed: int = 0, c: int = C) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    rates = torch.linspace(0.05, 0.6, c)
    return (torch.rand((n, c), generator=g) < rates).float()


def _tiny_critic(num_labels: int, size: int = 32, width: int = 8) -> nn.Module:
    """A small position-aware CNN (no global pooling: left/right labels need positions)."""
    w = width
    return nn.Sequential(
        nn.Conv2d(3, w, 3, 2, 1),
        nn.BatchNorm2d(w),
        nn.ReLU(),
        nn.Conv2d(w, 2 * w, 3, 2, 1),
        nn.BatchNorm2d(2 * w),
        nn.ReLU(),
        nn.Conv2d(2 * w, 2 * w, 3, 2, 1),
        nn.BatchNorm2d(2 * w),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * w * (size // 8) ** 2, num_labels),
    )


# -- actor -----------------------------------------------------------------------------------


def test_actor_architecture_and_shapes() -> None:
    actor = Actor(ActorConfig(num_labels=C))
    linears = [m for m in actor.trunk if isinstance(m, nn.Linear)]
    dropouts = [m for m in actor.trunk if isinstance(m, nn.Dropout)]
    relus = [m for m in actor.trunk if isinstance(m, nn.ReLU)]
    assert len(linears) == len(relus) == len(dropouts) == 3  # paper App. B
    assert all(d.p == 0.5 for d in dropouts)
    assert actor.config.ops == lbaug.AA_OPS == tuple(get(n).name for n in lbaug.AA_OPS)
    assert len(lbaug.AA_OPS) == 16 and DEMO_OPS[-2:] == ("FlipLR", "FlipUD")
    out = actor(_labels(5))
    assert out.op_logits.shape == (5, 16)
    assert out.prob_logits.shape == (5, 16, 11)
    assert out.mag_logits.shape == (5, 16, 10)
    small = Actor(ActorConfig(num_labels=3, ops=("Color", "FlipLR"), hidden=8, depth=2))
    assert small(torch.ones(2, 3)).prob_logits.shape == (2, 2, 11)
    assert small.catalog_ids.tolist() == [index("Color"), index("FlipLR")]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ops": ("Colour",)}, "unknown op"),
        ({"ops": ("Identity", "Color")}, "Identity"),
        ({"ops": ("Color", "Color")}, "duplicates"),
        ({"ops": ()}, "empty"),
        ({"num_labels": 0}, "num_labels"),
        ({"dropout": 1.0}, "dropout"),
        ({"prob_levels": 1}, "prob_levels"),
    ],
)
def test_actor_config_errors(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"num_labels": C, **kwargs}
    with pytest.raises(ValueError, match=match):
        ActorConfig(**args)  # type: ignore[arg-type]


def test_log_prob_matches_categorical() -> None:
    torch.manual_seed(0)
    actor = Actor(ActorConfig(num_labels=C, hidden=32)).eval()
    for layer in (actor.op_head, actor.prob_head, actor.mag_head):  # non-uniform logits
        nn.init.normal_(layer.weight, std=2.0)
    y = _labels(256, seed=1)
    out = actor(y)
    g = torch.Generator().manual_seed(3)
    op, pl, ml, log_prob = lbaug.sample(out.op_logits, out.prob_logits, out.mag_logits, generator=g)
    rows = torch.arange(len(y))
    expected = (
        Categorical(logits=out.op_logits).log_prob(op)
        + Categorical(logits=out.prob_logits[rows, op]).log_prob(pl)
        + Categorical(logits=out.mag_logits[rows, op]).log_prob(ml)
    )
    torch.testing.assert_close(log_prob, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(joint_log_prob(out, op, pl, ml), expected, atol=1e-5, rtol=0)
    # the sampler's log-prob carries the REINFORCE gradient into the actor
    log_prob.sum().backward()
    assert actor.op_head.weight.grad is not None and actor.op_head.weight.grad.abs().sum() > 0
    assert lbaug.sample is label_sample.sample


def test_bad_labels_and_logits() -> None:
    actor = Actor(ActorConfig(num_labels=C, hidden=16))
    with pytest.raises(ValueError, match=f"expects {C} labels"):
        actor(torch.zeros(4, C + 1))
    with pytest.raises(ValueError, match="multi-hot"):
        actor(torch.zeros(4))
    bad = torch.zeros(4, C)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        actor(bad)
    with pytest.raises(TypeError, match="torch.Tensor"):
        actor([[0.0] * C])  # type: ignore[arg-type]
    # all-zero rows (an image with no positive label) are valid input
    out = actor.eval()(torch.zeros(3, C))
    assert all(torch.isfinite(t).all() for t in (out.op_logits, out.prob_logits, out.mag_logits))
    op, pl, ml, lp = lbaug.sample(out.op_logits, out.prob_logits, out.mag_logits)
    assert torch.isfinite(lp).all() and op.shape == (3,)
    # a diverged actor: NaN logits are an error, in the actor and in the sampler
    with torch.no_grad():
        actor.op_head.bias.fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN op_logits"):
        actor(torch.zeros(2, C))
    with pytest.raises(ValueError, match="NaN"):
        lbaug.sample(torch.full((2, 3), float("nan")), torch.zeros(2, 3, 11), torch.zeros(2, 3, 10))


def test_to_op_params_levels() -> None:
    ops = ("Color", "Invert", "FlipLR", "Cutout")
    ids = torch.tensor([index(o) for o in ops])
    n = 4000
    g = torch.Generator().manual_seed(0)
    op = torch.randint(0, 4, (n,), generator=g)
    pl = torch.randint(0, 11, (n,), generator=g)
    ml = torch.randint(0, 10, (n,), generator=g)
    params, applied = to_op_params(
        ids, op, pl, ml, prob_levels_total=11, mag_levels_total=10, generator=g
    )
    assert isinstance(params, OpParams) and params.num_layers == 1
    assert not applied[pl == 0].any() and applied[pl == 10].all()
    rate = applied[pl == 3].float().mean().item()
    assert abs(rate - 0.3) < 0.06  # Bernoulli(k / 10)
    got_op = params.op_ids[:, 0]
    assert (got_op[~applied] == index("Identity")).all()
    assert (got_op[applied] == ids[op[applied]]).all()
    lv = params.levels[:, 0]
    assert (lv[~applied] == 0).all()
    torch.testing.assert_close(lv[applied].abs(), (ml[applied] + 1).float())
    color = applied & (op == 0)
    assert (lv[color] < 0).any() and (lv[color] > 0).any()  # signed: a fair random sign
    assert (lv[applied & (op == 3)] > 0).all()  # Cutout is unsigned
    # the search's variant: always applied, the apply probability returned
    p2, prob = to_op_params(
        ids, op, pl, ml, prob_levels_total=11, mag_levels_total=10, generator=g, draw_apply=False
    )
    torch.testing.assert_close(prob, pl.float() / 10)
    assert (p2.op_ids[pl > 0, 0] == ids[op[pl > 0]]).all()


# -- splits, critics, rewards -----------------------------------------------------------------


def test_stratified_shuffle_splits() -> None:
    y = _labels(1000, seed=2)
    y[:30] = 0  # all-zero rows are split too
    held = shuffle_splits(y, 8, generator=torch.Generator().manual_seed(0))
    assert held.shape == (8, 1000) and held.dtype == torch.bool
    sizes = held.sum(1)
    assert ((sizes - 200).abs() <= 1).all(), sizes  # D_A = 1/5, D_M = 4/5 (its complement)
    assert held.any(0).all()  # K >= 5: every sample has a critic
    assert (held[:5].sum(0) == 1).all()  # each round of 5 is a partition
    overall = y.mean(0)
    for k in range(8):
        rate = y[held[k]].mean(0)
        assert (rate - overall).abs().max() < 0.02, (k, rate, overall)
    again = shuffle_splits(y, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(held, again)
    other = shuffle_splits(y, 8, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(held, other)
    three = shuffle_splits(y, 3, generator=torch.Generator().manual_seed(0))
    assert abs(int(three.any(0).sum()) - 600) <= 3  # K < 5 leaves about (5 - K)/5 uncovered
    fold = stratified_folds(y, 4, generator=torch.Generator().manual_seed(0))
    assert sorted(torch.bincount(fold).tolist()) == [250, 250, 250, 250]
    with pytest.raises(ValueError, match="folds"):
        shuffle_splits(y, 0, generator=torch.Generator())


def _red_blue(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """16 px images of a red or a blue square on gray; label 0 = red present, 1 = blue."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n, 3, 16, 16), 128, dtype=torch.uint8)
    red = torch.rand(n, generator=g) < 0.5
    for c, mask in ((0, red), (2, ~red)):
        x[mask, :, 4:12, 4:12] = 40
        x[mask, c, 4:12, 4:12] = 200
    return x, torch.stack([red, ~red], 1).float()


def test_reward_sign_flips_when_op_destructive(one_thread: None) -> None:
    x, y = _red_blue(192, seed=0)
    torch.manual_seed(0)
    critic = nn.Sequential(
        nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, 2),
    )  # fmt: skip
    lbaug.train_critic(
        critic, x, y, epochs=4, batch_size=32, lr=1e-2, generator=torch.Generator().manual_seed(0)
    )
    members = torch.ones((1, len(x)), dtype=torch.bool)
    clean = lbaug.clean_losses([critic], x, y, members)
    ones = torch.ones(len(x))

    def reward(level: float) -> float:
        params = OpParams.single("Color", level, len(x))
        from dali_aug.ops import apply_params

        aug = apply_params(x, params)
        return float(lbaug.rewards([critic], aug, y, members, clean, ones).mean())

    saturate, grayscale = reward(10.0), reward(-10.0)
    assert saturate > 0 > grayscale, (saturate, grayscale)  # Color(0.1) destroys the colour
    # weights: 0 (not applied) gives reward 0; p scales it
    r = lbaug.rewards([critic], x, y, members, clean, torch.zeros(len(x)))
    assert torch.equal(r, torch.zeros(len(x)))


def test_search_small_is_deterministic(one_thread: None) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (60, 3, 16, 16), dtype=torch.uint8, generator=g)
    y = _labels(60, seed=3, c=4)
    y[:5] = 0
    cfg = SearchConfig(
        ops=("Color", "FlipLR", "Sharpness"),
        folds=2,
        critic_epochs=1,
        critic_batch_size=16,
        search_epochs=2,
        batch_size=16,
        hidden=8,
        seed=5,
    )

    def run(config: SearchConfig) -> lbaug.SearchResult:
        return lbaug.search(
            x, y, config, build_critic=lambda c: _tiny_critic(c, 16, 4), progress=False,
            log=lambda _: None,
        )  # fmt: skip

    state = torch.random.get_rng_state()
    a, b = run(cfg), run(cfg)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    sa, sb = a.actor.state_dict(), b.actor.state_dict()
    assert list(sa) == list(sb)
    for name, ta in sa.items():
        tb = sb[name]
        assert torch.equal(ta, tb), name
    c = run(dataclasses.replace(cfg, seed=6))
    assert not torch.equal(a.actor.op_head.weight, c.actor.op_head.weight)
    assert len(a.history) == 2 and a.uncovered == 60 - int(a.held_out.any(0).sum()) > 0
    assert all(np.isfinite(h["mean_reward"]) for h in a.history)
    with pytest.raises(ValueError, match="label rows"):
        lbaug.search(x, y[:10], cfg)
    with pytest.raises(ValueError, match="NaN"):
        lbaug.search(x, torch.full_like(y, float("nan")), cfg)


# -- method, reports -------------------------------------------------------------------------


def _fixed_actor(ops: tuple[str, ...], *, apply_level: int, op: str) -> Actor:
    """An actor that always picks ``op`` at apply-probability level ``apply_level``."""
    actor = Actor(ActorConfig(num_labels=C, ops=ops, hidden=4, depth=1))
    with torch.no_grad():
        for head in (actor.op_head, actor.prob_head, actor.mag_head):
            head.weight.zero_()
            head.bias.zero_()
        actor.op_head.bias[ops.index(op)] = 50.0
        actor.prob_head.bias.view(len(ops), 11)[:, apply_level] = 50.0
    return actor.eval()


def test_method_applies_and_records_ops() -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=g)
    flip = identity_params(6)
    flip = dataclasses.replace(flip, op_ids=torch.tensor([[index("FlipLR")]] * 3 + [[16]] * 3))
    labels = _labels(6, seed=4)
    labels[0] = 0  # an all-zero row
    batch = Batch(images=normalize(clean), labels=labels, indices=torch.arange(6), params=flip,
                  clean=clean)  # fmt: skip

    # never applied (p level 0): the image is the Loader's flipped crop (no FlipLR in the space)
    hook = LBAugMethod(_fixed_actor(("Invert", "Color"), apply_level=0, op="Invert"), seed=0)
    assert hook.keep_loader_flip
    out = hook.augment(None, batch)  # type: ignore[arg-type]
    from dali_aug.ops import apply_params

    torch.testing.assert_close(out.images, normalize(apply_params(clean, flip)))
    assert out.params is not None and out.params.num_layers == 2
    assert (out.params.op_ids[:, 1] == index("Identity")).all()
    assert hook.op_frequencies()["none"] == 1.0

    # always applied Invert, with FlipLR in the space: the Loader's flip is dropped
    hook = LBAugMethod(_fixed_actor(("Invert", "FlipLR"), apply_level=10, op="Invert"), seed=0)
    assert not hook.keep_loader_flip
    out = hook.augment(None, batch)  # type: ignore[arg-type]
    torch.testing.assert_close(out.images, normalize(255 - clean))
    assert (out.params.op_ids[:, 1] == index("Invert")).all()  # type: ignore[union-attr]
    assert (out.params.op_ids[:, 0] == index("Identity")).all()  # type: ignore[union-attr]
    assert hook.last_params is not None and hook.counts.tolist() == [6, 0, 0]

    with pytest.raises(ValueError, match="op_record=True, clean=True"):
        hook.augment(None, dataclasses.replace(batch, clean=None))  # type: ignore[arg-type]
    two = OpParams(*(torch.cat([t, t], 1) for t in dataclasses.astuple(flip)))
    with pytest.raises(ValueError, match="policy=None"):
        hook.augment(None, dataclasses.replace(batch, params=two))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"expects {C} labels"):
        hook.augment(None, dataclasses.replace(batch, labels=labels[:, :3]))  # type: ignore[arg-type]


def test_save_load_table_and_heatmap(tmp_path: Path) -> None:
    actor = _fixed_actor(("Color", "FlipLR", "Sharpness"), apply_level=5, op="FlipLR")
    with torch.no_grad():  # FlipLR unlikely for samples carrying "left" (column 6)
        actor.op_head.bias.zero_()
        actor.trunk[0].weight.zero_()
        actor.trunk[0].weight[0, 6] = 1.0
        actor.trunk[0].bias.zero_()
        actor.op_head.weight[1, 0] = -3.0
    path = lbaug.save_actor(tmp_path / "a" / "actor.pt", actor, MULTI_LABELS, extra={"x": 1})
    loaded, names = lbaug.load_actor(path)
    assert names == MULTI_LABELS
    y = _labels(200, seed=5)
    y[:7] = 0
    torch.testing.assert_close(loaded(y).op_logits, actor(y).op_logits)
    table = lbaug.op_table(loaded, y, MULTI_LABELS)
    assert table.rows[: C + 2] == (*MULTI_LABELS, "(all)", "(no label)")
    assert table.counts[C + 1] == int((y.sum(1) == 0).sum()) >= 7
    third = 1 / 3
    assert table.value("not left", "FlipLR") == pytest.approx(third, abs=1e-6)
    assert table.value("left", "FlipLR") == pytest.approx(np.exp(-3) / (2 + np.exp(-3)))
    assert table.value("left", "FlipLR", applied=True) == pytest.approx(
        table.value("left", "FlipLR") * 0.5, rel=1e-4
    )
    csv_path = lbaug.write_op_table(table, tmp_path / "t.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "row,samples,quantity,Color,FlipLR,Sharpness"
    assert len(lines) == 1 + 2 * len(table.rows)
    png = lbaug.write_heatmap(table, tmp_path / "t.png")
    from PIL import Image

    with Image.open(png) as im:
        assert im.width > 3 * 34 and im.height > (C + 2) * 34
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not an LB-Aug actor"):
        lbaug.load_actor(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="does not exist"):
        lbaug.load_actor(tmp_path / "missing.pt")


# -- CLI ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("lb") / "shapes", 160, seed=3, multi_label=True,
                       size=32)  # fmt: skip


def test_cli_search_then_train(shapes32: Path, tmp_path: Path, one_thread: None) -> None:
    from dali_aug.cli import main

    actor = tmp_path / "actor.pt"
    rc = main(
        ["search", "lbaug", "--data", str(shapes32), "--size", "32", "--folds", "2",
         "--critic-epochs", "1", "--search-epochs", "1", "--batch-size", "32",
         "--ops", "Color,FlipLR,Sharpness", "--hidden", "16", "--device", "cpu",
         "--no-progress", "--out", str(actor)]
    )  # fmt: skip
    assert rc == 0
    for suffix in ("_op_probs.csv", "_op_probs.png", "_search.json"):
        assert (tmp_path / f"actor{suffix}").is_file()
    summary = json.loads((tmp_path / "actor_search.json").read_text())
    assert summary["search_config"]["folds"] == 2 and summary["seconds_per_epoch"] > 0
    run = tmp_path / "run"
    rc = main(
        ["train", "--data", str(shapes32), "--multi-label", "--method", "lbaug", "--actor",
         str(actor), "--size", "32", "--epochs", "1", "--batch-size", "32", "--device", "cpu",
         "--no-progress", "--out", str(run)]
    )  # fmt: skip
    assert rc == 0
    metrics = json.loads((run / "metrics.json").read_text())
    freq = metrics["lbaug"]["frequencies"]
    assert set(freq) == {"Color", "FlipLR", "Sharpness", "none"}
    assert sum(freq.values()) == pytest.approx(1.0) and freq["none"] < 1.0
    assert "mAP" in metrics["history"][-1] or metrics["history"]
    with pytest.raises(SystemExit, match="needs --actor"):
        main(["train", "--data", str(shapes32), "--method", "lbaug", "--size", "32",
              "--device", "cpu", "--out", str(run), "--overwrite"])  # fmt: skip
    other = tmp_path / "other.pt"
    lbaug.save_actor(other, Actor(ActorConfig(num_labels=C)), [f"l{i}" for i in range(C)])
    with pytest.raises(SystemExit, match="searched on labels"):
        main(["train", "--data", str(shapes32), "--method", "lbaug", "--actor", str(other),
              "--size", "32", "--device", "cpu", "--out", str(run), "--overwrite"])  # fmt: skip
    with pytest.raises(SystemExit, match="unknown op"):
        main(["search", "lbaug", "--data", str(shapes32), "--ops", "Colour", "--out",
              str(tmp_path / "x.pt")])  # fmt: skip


# -- acceptance ---------------------------------------------------------------------------------

#: Chosen after development (dev used seeds 0-5), run once, kept.
ACCEPTANCE_SEED = 8191

#: Why the specificity test fails; the ratios are prob(op | group) / prob(op | other).
SPECIFICITY_XFAIL = (
    "the learned avoidance leaks across co-occurring labels, and not even the reward-optimal "
    "policy keeps every ratio within the margin "
    "(benchmarks/lbaug/NOTES.md, 'Label specificity of the learned actor')"
)


@pytest.mark.slow
def test_learned_actor_avoids_label_destroying_ops(tmp_path: Path, one_thread: None) -> None:
    """On the demo shapes, colour ops destroy red/green/blue and FlipLR/TranslateX destroy
    left/right. The actor learned from the critics' rewards must give those ops clearly less
    probability on samples carrying the affected labels than on samples without them, while
    label-preserving ops (Sharpness, Posterize, Cutout) do not lose probability."""
    seed = ACCEPTANCE_SEED
    x, y, names, result = _demo_search(tmp_path, seed)
    assert result.uncovered == 0
    with torch.no_grad():
        probs = result.actor(y).op_logits.softmax(-1)
    pos = y > 0.5
    colour = pos[:, [names.index(n) for n in ("red", "green", "blue")]].any(1)
    side = pos[:, [names.index(n) for n in ("left", "right")]].any(1)
    assert 30 < int((~colour).sum()) and 30 < int((~side).sum())

    def ratio(group: torch.Tensor, op: str) -> float:
        j = DEMO_OPS.index(op)
        return float(probs[group, j].mean() / probs[~group, j].mean())

    report = {
        f"{split}/{op}": round(ratio(group, op), 3)
        for split, group in (("colour", colour), ("side", side))
        for op in ("Color", "Invert", "Solarize", "FlipLR", "TranslateX", "Sharpness",
                   "Posterize", "Cutout")
    }  # fmt: skip
    for op in ("Color", "Invert", "Solarize"):
        assert ratio(colour, op) < 0.7, report
    for op in ("FlipLR", "TranslateX"):
        assert ratio(side, op) < 0.7, report
    for op in ("Sharpness", "Posterize", "Cutout"):  # the drop is op-specific, not global
        assert ratio(colour, op) > 0.85, report
        assert ratio(side, op) > 0.85, report


def _demo_search(
    tmp_path: Path, seed: int, **overrides: Any
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...], lbaug.SearchResult]:
    """The acceptance search on 1200 multi-label demo shapes, on the training crops (scale
    (0.5, 1) as `dali-aug train` on the demo data)."""
    root = make_shapes(tmp_path / "shapes", 1200, seed=seed, multi_label=True, size=32)
    x, y, names = lbaug.load_images(root, size=32, device="cpu", scale=(0.5, 1.0))
    assert names == MULTI_LABELS
    cfg = SearchConfig(
        ops=DEMO_OPS,
        folds=5,
        critic_epochs=3,
        critic_batch_size=64,
        critic_lr=3e-3,
        search_epochs=20,
        batch_size=128,
        actor_lr=3e-3,
        hidden=64,
        seed=seed,
    )
    cfg = dataclasses.replace(cfg, **overrides)
    result = lbaug.search(x, y, cfg, build_critic=_tiny_critic, progress=False, log=lambda _: None)
    return x, y, names, result


#: Chosen for the specificity test after its development (dev used seeds 1 and 8191), run once.
SPECIFICITY_SEED = 5003

#: An op's probability may differ by this factor between two groups and still count as equal.
SPECIFICITY_MARGIN = 1.25


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason=SPECIFICITY_XFAIL)
def test_learned_actor_is_label_specific(tmp_path: Path, one_thread: None) -> None:
    """Specificity: the learned avoidance follows the label the op destroys, not the number
    of labels. Among samples without left/right labels, FlipLR's (and TranslateX's)
    probability must not depend on carrying a colour label; among samples without colour
    labels, the colour ops' probability must not depend on carrying left/right; within a
    factor SPECIFICITY_MARGIN, on a seed not used in development."""
    x, y, names, result = _demo_search(tmp_path, SPECIFICITY_SEED)
    with torch.no_grad():
        probs = result.actor(y).op_logits.softmax(-1)
    pos = y > 0.5
    colour = pos[:, [names.index(n) for n in ("red", "green", "blue")]].any(1)
    side = pos[:, [names.index(n) for n in ("left", "right")]].any(1)

    def ratio(group: torch.Tensor, within: torch.Tensor, op: str) -> float:
        j = DEMO_OPS.index(op)
        a, b = group & within, ~group & within
        assert int(a.sum()) >= 30 and int(b.sum()) >= 30, (int(a.sum()), int(b.sum()))
        return float(probs[a, j].mean() / probs[b, j].mean())

    report = {f"no side: colour/{op}": ratio(colour, ~side, op) for op in ("FlipLR", "TranslateX")}
    report |= {
        f"no colour: side/{op}": ratio(side, ~colour, op) for op in ("Color", "Invert", "Solarize")
    }
    print("specificity ratios:", {k: round(v, 3) for k, v in report.items()})
    for key, value in report.items():
        assert 1 / SPECIFICITY_MARGIN < value < SPECIFICITY_MARGIN, (key, report)


# -- rewards, REINFORCE, LB-Aug_E, the search's images, specificity -------------------------------


class _MeanCritic(nn.Module):
    """A fixed critic whose logits are ``scale * mean(image)`` for every label (no training):
    its BCE depends on the image, so clean and augmented images get different losses."""

    def __init__(self, scale: float, num_labels: int = C) -> None:
        super().__init__()
        self.scale, self.num_labels = scale, num_labels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.scale * x.mean(dim=(1, 2, 3))).unsqueeze(1).expand(-1, self.num_labels)


def test_rewards_are_the_mean_over_the_holding_critics_times_the_apply_probability() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8, generator=g)
    aug = 255 - x
    y = _labels(3, seed=1)
    critics = [_MeanCritic(1.0), _MeanCritic(-2.0)]
    members = torch.tensor([[True, True, False], [True, False, False]])  # sample 0: two critics
    clean = lbaug.clean_losses(critics, x, y, members)
    weights = torch.tensor([0.5, 0.3, 1.0])
    r = lbaug.rewards(critics, aug, y, members, clean, weights)
    delta = [lbaug.critic_losses(c, x, y) - lbaug.critic_losses(c, aug, y) for c in critics]
    assert float((delta[0][0] - delta[1][0]).abs()) > 1e-3  # the two critics disagree
    expected = torch.stack(
        [0.5 * (delta[0][0] + delta[1][0]) / 2, 0.3 * delta[0][1], torch.tensor(0.0)]
    )
    torch.testing.assert_close(r, expected)


def test_per_label_rewards_are_each_labels_loss_change() -> None:
    """``rewards(per_label=True)``: label c's own BCE change, averaged over the holding critics
    and weighed by p; its mean over labels is the per-sample reward of Eq. 7."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8, generator=g)
    aug = 255 - x
    y = _labels(3, seed=1)
    critics = [_MeanCritic(1.0), _MeanCritic(-2.0)]
    members = torch.tensor([[True, True, False], [True, False, False]])
    weights = torch.tensor([0.5, 0.3, 1.0])
    clean = lbaug.clean_losses(critics, x, y, members, per_label=True)
    assert clean.shape == (2, 3, C)
    r = lbaug.rewards(critics, aug, y, members, clean, weights, per_label=True)
    delta = [
        lbaug.critic_losses(c, x, y, per_label=True)
        - lbaug.critic_losses(c, aug, y, per_label=True)
        for c in critics
    ]
    expected = torch.stack(
        [0.5 * (delta[0][0] + delta[1][0]) / 2, 0.3 * delta[0][1], torch.zeros(C)]
    )
    torch.testing.assert_close(r, expected)
    assert float((r[0] - r[0].mean()).abs().max()) > 1e-3  # the labels' changes differ
    sample = lbaug.rewards(
        critics, aug, y, members, lbaug.clean_losses(critics, x, y, members), weights
    )
    torch.testing.assert_close(r.mean(1), sample)


def test_label_advantage_subtracts_each_labels_own_baseline() -> None:
    """``reward="label"``: the advantage is the mean over labels of (label c's loss change -
    the moving average of label c's change over the samples in the same state of c); the
    baseline starts at the first batch's state means and moves with the momentum."""
    from dali_aug.methods.lbaug import _search

    g = torch.Generator().manual_seed(4)
    y = _labels(12, seed=6, c=3)
    y[0] = torch.tensor([1.0, 0.0, 1.0])
    y[1] = torch.tensor([0.0, 1.0, 0.0])  # both states of every label occur
    r = torch.randn((12, 3), generator=g) + 3 * y  # a label-state-dependent reward level
    mean_r, adv, base = _search._label_advantage(r, y, None, 0.9)
    torch.testing.assert_close(mean_r, r.mean(1))
    expected_base = torch.tensor(
        [[float(r[y[:, c] == s, c].mean()) for c in range(3)] for s in (0, 1)]
    )
    torch.testing.assert_close(base, expected_base)  # the first batch starts the baseline
    expected = torch.stack(
        [
            torch.stack([r[i, c] - expected_base[int(y[i, c]), c] for c in range(3)]).mean()
            for i in range(12)
        ]
    )
    torch.testing.assert_close(adv, expected)
    # second batch: the baseline used is the old one, then it moves by the momentum
    r2 = torch.randn((12, 3), generator=g)
    _, adv2, base2 = _search._label_advantage(r2, y, base, 0.9)
    batch2 = torch.tensor([[float(r2[y[:, c] == s, c].mean()) for c in range(3)] for s in (0, 1)])
    torch.testing.assert_close(base2, 0.9 * base + 0.1 * batch2)
    old = torch.stack([base[y[:, c].long(), c] for c in range(3)], 1)
    torch.testing.assert_close(adv2, (r2 - old).mean(1))
    # a state absent from the batch keeps its baseline
    ones = torch.ones((4, 3))
    _, _, kept = _search._label_advantage(torch.zeros((4, 3)), ones, base, 0.5)
    torch.testing.assert_close(kept[0], base[0])
    torch.testing.assert_close(kept[1], 0.5 * base[1])


def test_search_with_the_per_label_reward(
    monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    """With ``reward="label"`` the search weighs the log-probability by the per-label
    advantage (a zero advantage leaves the actor where it started, with per-label rewards
    [B, C] reaching it) and trains the actor; a bad reward mode is refused."""
    from dali_aug.methods.lbaug import _search

    x, y, cfg = _tiny_search_setup()
    cfg = dataclasses.replace(cfg, reward="label")
    shapes: list[tuple[int, ...]] = []

    def zero(r, labels, base, momentum):  # type: ignore[no-untyped-def]
        shapes.append(tuple(r.shape))
        return r.mean(1), torch.zeros(r.shape[0]), torch.zeros((2, r.shape[1]))

    with monkeypatch.context() as m:
        m.setattr(_search, "_label_advantage", zero)
        result, initial, _ = _run_search(x, y, cfg)
    assert shapes and all(s == (len(x), y.shape[1]) for s in shapes), shapes
    for name, value in result.actor.state_dict().items():
        assert torch.equal(value, initial[name]), name
    result, initial, _ = _run_search(x, y, cfg)
    assert len(result.history) == cfg.search_epochs
    assert all(np.isfinite(h["mean_reward"]) for h in result.history)
    assert not torch.equal(result.actor.op_head.weight, initial["op_head.weight"])
    with pytest.raises(ValueError, match="reward"):
        SearchConfig(reward="labels")  # type: ignore[arg-type]


def test_step_rewards_weigh_by_the_apply_probability() -> None:
    from dali_aug.methods.lbaug import _search

    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = _labels(5, seed=2)
    critics = [_MeanCritic(1.5)]
    members = torch.ones((1, 5), dtype=torch.bool)
    clean = lbaug.clean_losses(critics, x, y, members)
    actor = _fixed_actor(("Invert", "Color"), apply_level=3, op="Invert")  # p = 0.3
    r, prob, log_prob, _ = _search._step_rewards(
        actor, critics, x, y, members, clean, generator=g, device_generator=torch.Generator()
    )
    delta = lbaug.critic_losses(critics[0], x, y) - lbaug.critic_losses(critics[0], 255 - x, y)
    torch.testing.assert_close(prob, torch.full((5,), 0.3))
    torch.testing.assert_close(r, 0.3 * delta)
    assert torch.isfinite(log_prob).all()


def _tiny_search_setup() -> tuple[torch.Tensor, torch.Tensor, SearchConfig]:
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=g)
    y = _labels(40, seed=4, c=3)
    cfg = SearchConfig(
        ops=("Invert", "Color", "Sharpness"),
        folds=5,
        critic_epochs=1,
        critic_batch_size=16,
        search_epochs=3,
        batch_size=64,  # one actor step per epoch
        hidden=8,
        entropy_weight=0.0,
        seed=7,
    )
    return x, y, cfg


def _run_search(
    x: torch.Tensor, y: torch.Tensor, cfg: SearchConfig
) -> tuple[lbaug.SearchResult, dict[str, torch.Tensor], list[bool]]:
    """The search with a recording of the actor's initial parameters and of the training
    flag of every dropout call (the critics have no dropout)."""
    from torch.nn.modules.module import (
        register_module_forward_hook,
        register_module_forward_pre_hook,
    )

    initial: dict[str, torch.Tensor] = {}
    dropout_modes: list[bool] = []

    def pre(module: nn.Module, _: object) -> None:
        if isinstance(module, Actor) and not initial:
            initial.update({k: v.detach().clone() for k, v in module.state_dict().items()})

    def post(module: nn.Module, _: object, __: object) -> None:
        if isinstance(module, nn.Dropout):
            dropout_modes.append(module.training)

    handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post)]
    try:
        result = lbaug.search(
            x, y, cfg, build_critic=lambda c: _tiny_critic(c, 8, 2), progress=False,
            log=lambda _: None,
        )  # fmt: skip
    finally:
        for h in handles:
            h.remove()
    return result, initial, dropout_modes


def test_search_trains_every_head_of_the_actor_with_dropout(
    monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    """REINFORCE reaches the op, apply-probability and magnitude heads (the joint log-prob of
    Eq. 6), and the actor trains in training mode (dropout 0.5 active); the result is in eval
    mode."""
    from dali_aug.methods.lbaug import _search

    noise = torch.Generator().manual_seed(8)

    def random_rewards(critics, augmented, labels, members, clean, weights):  # type: ignore[no-untyped-def]
        return torch.randn(augmented.shape[0], generator=noise)

    monkeypatch.setattr(_search, "rewards", random_rewards)
    x, y, cfg = _tiny_search_setup()
    result, initial, dropout_modes = _run_search(x, y, cfg)
    assert dropout_modes and all(dropout_modes[: cfg.search_epochs])  # the search's passes
    assert not result.actor.training
    for head in ("op_head", "prob_head", "mag_head"):
        w = result.actor.state_dict()[f"{head}.weight"]
        assert not torch.allclose(w, initial[f"{head}.weight"]), head


def test_search_subtracts_a_moving_average_baseline(
    monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    """With a constant reward and the baseline's momentum 0, reward - baseline is 0 at every
    step, so the actor does not move (no entropy bonus); with momentum 0.9 the recorded
    baseline is the exponential moving average of the batch-mean rewards."""
    from dali_aug.methods.lbaug import _search

    def constant(critics, augmented, labels, members, clean, weights):  # type: ignore[no-untyped-def]
        return torch.full((augmented.shape[0],), 0.7)

    monkeypatch.setattr(_search, "rewards", constant)
    x, y, cfg = _tiny_search_setup()
    result, initial, _ = _run_search(x, y, dataclasses.replace(cfg, baseline_momentum=0.0))
    for name, value in result.actor.state_dict().items():
        assert torch.equal(value, initial[name]), name
    # momentum 0.9: the baseline follows the rewards' moving average
    means = iter([1.0, -1.0, 3.0])
    current: list[float] = []

    def scripted(critics, augmented, labels, members, clean, weights):  # type: ignore[no-untyped-def]
        current.append(next(means))
        return torch.full((augmented.shape[0],), current[-1])

    monkeypatch.setattr(_search, "rewards", scripted)
    result, initial, _ = _run_search(x, y, cfg)
    b, expected = 1.0, []
    for r in current:
        b = 0.9 * b + 0.1 * r
        expected.append(b)
    assert [h["baseline"] for h in result.history] == pytest.approx(expected, abs=1e-6)
    assert not torch.equal(result.actor.op_head.weight, initial["op_head.weight"])


def test_lbaug_e_learns_the_op_only(one_thread: None) -> None:
    """LB-Aug_E: apply probability 0.5 and the maximum magnitude, fixed; the policy gradient
    reaches the op head only."""
    cfg = ActorConfig(num_labels=C, ops=("Color", "Rotate", "Invert"), hidden=16, variant="e")
    assert cfg.fixed_levels == (5, 9)
    actor = Actor(cfg)
    with torch.no_grad():
        actor.prob_head.bias.view(3, 11)[:, 0] = 50.0  # the heads say "never": ignored
    y = _labels(4000, seed=5)
    out = actor(y)
    g = torch.Generator().manual_seed(0)
    params, applied, op, log_prob = lbaug.draw_ops(
        actor, out, generator=g, device_generator=torch.Generator().manual_seed(1)
    )
    assert abs(float(applied.float().mean()) - 0.5) < 0.03
    lv = params.levels[applied, 0].abs()
    torch.testing.assert_close(lv, torch.full_like(lv, 10.0))  # the maximum magnitude
    torch.testing.assert_close(log_prob, out.op_logits.log_softmax(-1).gather(1, op[:, None])[:, 0])
    log_prob.sum().backward()
    assert actor.op_head.weight.grad is not None
    assert actor.prob_head.weight.grad is None and actor.mag_head.weight.grad is None
    table = lbaug.op_table(actor, y[:50], MULTI_LABELS)
    assert table.value("(all)", "Color", applied=True) == pytest.approx(
        table.value("(all)", "Color") * 0.5, rel=1e-5
    )
    with pytest.raises(ValueError, match="odd prob_levels"):
        ActorConfig(num_labels=C, prob_levels=10, variant="e")
    # the search with variant e: the reward's weight is 0.5 (history "applied")
    g2 = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=g2)
    scfg = SearchConfig(
        ops=("Invert", "Color"), folds=2, critic_epochs=1, critic_batch_size=16,
        search_epochs=1, batch_size=16, hidden=8, variant="e", seed=1,
    )  # fmt: skip
    res = lbaug.search(
        x, _labels(40, seed=4), scfg, build_critic=lambda c: _tiny_critic(c, 8, 2),
        progress=False, log=lambda _: None,
    )  # fmt: skip
    assert res.actor.config.variant == "e" and res.history[0]["applied"] == pytest.approx(0.5)


def test_search_images_are_the_training_crops(shapes32: Path) -> None:
    """The rewards come from the distribution the final training augments: by default the
    search decodes the training Loader's random-resized crops (in the folder's order, the
    labels unchanged), not the evaluation transform's centre crops."""
    xt, yt, names = lbaug.load_images(shapes32, size=32, device="cpu", scale=(0.5, 1.0))
    xe, ye, _ = lbaug.load_images(shapes32, size=32, device="cpu", transform="eval")
    assert names == MULTI_LABELS and xt.shape == xe.shape and xt.dtype == torch.uint8
    assert torch.equal(yt, ye)
    differ = (xt.float() - xe.float()).abs().flatten(1).mean(1) > 2
    assert float(differ.float().mean()) > 0.5
    again, _, _ = lbaug.load_images(shapes32, size=32, device="cpu", scale=(0.5, 1.0))
    assert torch.equal(again, xt)  # seeded
    # flip=True: the same crops after the Loader's random flip (where LBAugMethod starts
    # when the actor's space has no FlipLR)
    xf, _, _ = lbaug.load_images(shapes32, size=32, device="cpu", scale=(0.5, 1.0), flip=True)
    same = (xf == xt).flatten(1).all(1)
    mirrored = (xf == xt.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and 0.3 < float(mirrored.float().mean()) < 0.7
    with pytest.raises(ValueError, match="transform"):
        lbaug.load_images(shapes32, size=32, device="cpu", transform="bad")  # type: ignore[arg-type]


def test_cli_reward_flag_reaches_the_search_config(
    shapes32: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dali-aug search lbaug --reward label`` sets ``SearchConfig.reward`` (default
    ``sample``)."""
    from dali_aug.cli import main
    from dali_aug.methods.lbaug import _search

    seen: list[SearchConfig] = []

    class _Stop(Exception):
        pass

    def fake_load(*args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        return torch.zeros((5, 3, 8, 8), dtype=torch.uint8), torch.zeros((5, C)), MULTI_LABELS

    def fake_search(images: object, labels: object, config: SearchConfig, **_: object) -> None:
        seen.append(config)
        raise _Stop

    monkeypatch.setattr(_search, "load_images", fake_load)
    monkeypatch.setattr(_search, "search", fake_search)
    for flags, expected in (([], "sample"), (["--reward", "label"], "label")):
        with pytest.raises(_Stop):
            main(["search", "lbaug", "--data", str(shapes32), "--device", "cpu", *flags])
        assert seen[-1].reward == expected
