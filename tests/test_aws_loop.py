"""The AWS search loop (``dali_aug.methods.aws._search.search``) does what Algorithm 1 says,
checked on a real tiny search (16 px, two classes, batch 8, one thread, CPU) with spies on
``Trainer.fit``, ``Trainer.evaluate`` and ``policy_update`` (the library runs unchanged):

* every reward is scored on the held-out split of the training data, not the fine-tune part;
* every fine-tune starts from the shared checkpoint's weights (``shared.pt``), at the
  schedule's tail;
* every fine-tune's Loader draws its pairs from p_theta of that step;
* the entropy bonus of the PPO update raises the entropy (a unit test of ``policy_update``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.aws.synthetic import halves_config, halves_task
from dali_aug.datasets import holdout
from dali_aug.methods.aws import AWSConfig, PairPolicy, _search, search
from dali_aug.train import Trainer, load_checkpoint

# 48 images: 36 fine-tuned on (5 batches of up to 8), 12 held out; neg_loss so that the
# rewards of two fine-tunes differ and the second update moves theta
CONFIG = halves_config(seed=4, steps=3, batch_size=8, reward="neg_loss")


@pytest.fixture(autouse=True)
def _single_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DALI_AUG_CACHE", str(tmp_path / "cache"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


class _Spies:
    """Records the start of every ``Trainer.fit`` (epoch, weights, the Loader's policy), every
    ``Trainer.evaluate`` (its loader and metrics) and every ``policy_update`` (theta before the
    update, the rewards and the counts)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.fits: list[dict[str, Any]] = []
        self.evals: list[tuple[Any, dict[str, Any]]] = []
        self.updates: list[dict[str, torch.Tensor]] = []
        fit, evaluate, update = Trainer.fit, Trainer.evaluate, _search.policy_update

        def spy_fit(trainer: Trainer, train: Any, val: Any, epochs: int, **kw: Any) -> Any:
            weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            policy = train.loader.policy  # train is the search's epoch-shifted Loader
            self.fits.append({"epoch": trainer.epoch, "model": weights, "policy": policy})
            return fit(trainer, train, val, epochs, **kw)

        def spy_evaluate(trainer: Trainer, loader: Any, model: Any = None) -> dict[str, Any]:
            out = evaluate(trainer, loader, model)
            self.evals.append((loader, out))
            return out

        def spy_update(policy: PairPolicy, *args: Any, **kw: Any) -> Any:
            rewards, counts = args[1], args[2]
            theta = policy.theta.detach().clone()
            self.updates.append({"theta": theta, "rewards": rewards.clone(), "counts": counts})
            return update(policy, *args, **kw)

        monkeypatch.setattr(Trainer, "fit", spy_fit)
        monkeypatch.setattr(Trainer, "evaluate", spy_evaluate)
        monkeypatch.setattr(_search, "policy_update", spy_update)


def _quiet(source: Any, config: AWSConfig, out: Path, **kw: Any) -> PairPolicy:
    return search(source, config, out, progress=False, log=lambda _: None, **kw)


@pytest.fixture(scope="module")
def source() -> Any:
    return halves_task(48, seed=4)


@pytest.fixture(scope="module")
def run(source: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[_Spies, Path]:
    """One real 3-step search with the spies on (shared by the checks below)."""
    out = tmp_path_factory.mktemp("aws_loop")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DALI_AUG_CACHE", str(out / "cache"))
        for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            mp.delenv(var, raising=False)
        spies = _Spies(mp)
        _quiet(source, CONFIG, out)
    return spies, out


def test_reward_is_scored_on_the_held_out_split(source: Any, run: tuple[_Spies, Path]) -> None:
    spies, out = run
    kept, held = holdout(source, CONFIG.holdout, seed=CONFIG.seed)
    assert len(kept) == 36 and len(held) == 12  # the two parts differ (the check can fail)
    assert len(spies.evals) == CONFIG.steps  # one evaluation per fine-tune, none in fit
    rows = [json.loads(x) for x in (out / "aws_search.jsonl").read_text().splitlines()]
    for (loader, metrics), row, update in zip(spies.evals, rows, spies.updates, strict=True):
        evaluated = loader.source
        assert evaluated.images.shape == held.images.shape
        assert (evaluated.images == held.images).all()
        assert torch.equal(evaluated.targets, held.targets)
        assert not loader.config.train  # the evaluation transform, no policy
        # the logged and the PPO rewards are this evaluation's (minus its loss)
        assert row["rewards"] == [-metrics["val_loss"]]
        assert update["rewards"].tolist() == [-metrics["val_loss"]]


def test_every_finetune_starts_from_the_shared_checkpoint(run: tuple[_Spies, Path]) -> None:
    spies, out = run
    shared = load_checkpoint(out / "shared.pt", map_location="cpu")["model"]
    stage1, *finetunes = spies.fits
    assert stage1["epoch"] == 0 and len(finetunes) == CONFIG.steps
    assert any(not torch.equal(stage1["model"][k], v) for k, v in shared.items())  # trained
    for i, start in enumerate(finetunes):
        assert start["epoch"] == CONFIG.share_epochs, i  # the tail of the shared schedule
        assert start["model"].keys() == shared.keys()
        for k, v in shared.items():
            assert torch.equal(start["model"][k], v), (i, k)


def test_every_finetune_samples_from_that_steps_p_theta(run: tuple[_Spies, Path]) -> None:
    spies, _ = run
    finetunes = spies.fits[1:]
    assert len(finetunes) == len(spies.updates) == CONFIG.steps
    uniform = PairPolicy(elements=CONFIG.elements).to_policy().weights
    assert spies.fits[0]["policy"].weights is None or spies.fits[0]["policy"].weights == uniform
    for i, (start, update) in enumerate(zip(finetunes, spies.updates, strict=True)):
        want = PairPolicy(update["theta"], CONFIG.elements).to_policy()
        assert start["policy"].weights == want.weights, i
        assert start["policy"].sub_policies == want.sub_policies, i
    # theta has moved by the last step, so its fine-tune's policy is not the uniform one
    assert spies.fits[-1]["policy"].weights != uniform


def test_a_concentrated_theta_concentrates_the_finetune_pairs(
    source: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed theta of +12 on one pair and -12 elsewhere (p ~ 0.9998 on it): the fine-tune
    applies that pair to every sample (uniform draws would give it 1/36)."""
    config = dataclasses.replace(CONFIG, steps=1)
    pair = 7
    theta = torch.full((36,), -12.0)
    theta[pair] = 12.0
    policy = PairPolicy(elements=config.elements)
    adam = torch.optim.Adam([policy.theta], lr=config.policy_lr, betas=config.betas)
    state = {"theta": theta, "adam": adam.state_dict(), "baseline": None, "step": 0,
             "config": config.to_dict()}  # fmt: skip
    torch.save(state, tmp_path / "aws_state.pt")
    spies = _Spies(monkeypatch)
    _quiet(source, config, tmp_path, resume=True)
    (update,) = spies.updates
    assert torch.equal(update["theta"], theta)
    counts = update["counts"][0]
    assert int(counts.sum()) == 36  # every fine-tune sample (the last batch is kept)
    assert int(counts[pair]) == 36


def test_entropy_bonus_alone_raises_the_entropy() -> None:
    """With equal rewards the advantages are 0 and the PPO surrogate has no gradient: only the
    entropy bonus moves theta, and it must raise the entropy of p_theta (the bonus is
    maximised, its negative minimised); without the bonus theta stays put."""
    theta = torch.linspace(-3.0, 3.0, 36)
    counts = torch.arange(72).reshape(2, 36) % 5
    rewards = torch.tensor([0.5, 0.5], dtype=torch.float64)
    config = halves_config(entropy_weight=0.1, ppo_epochs=5)
    policy = PairPolicy(theta, config.elements)
    adam = torch.optim.Adam([policy.theta], lr=config.policy_lr, betas=config.betas)
    before = policy.entropy()
    _, stats = _search.policy_update(policy, adam, rewards, counts, None, config)
    assert stats["advantage"] == 0.0
    assert policy.entropy() > before + 1e-3
    # the first loss is the bonus alone: minus the weight times the entropy
    assert stats["loss"] == pytest.approx(-0.1 * before, rel=1e-6)
    off = dataclasses.replace(config, entropy_weight=0.0)
    still = PairPolicy(theta, config.elements)
    adam = torch.optim.Adam([still.theta], lr=config.policy_lr, betas=config.betas)
    _search.policy_update(still, adam, rewards, counts, None, off)
    assert torch.equal(still.theta.detach(), theta)
