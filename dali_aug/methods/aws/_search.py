"""The AWS search (arXiv:2009.14737, Algorithm 1): a shared checkpoint, many short fine-tunes,
PPO on the pair distribution.

* Stage 1: train the network once from scratch for ``share_epochs`` with pairs drawn
  uniformly; save the shared checkpoint (weights, optimizer and schedule state).
* Stage 2, ``steps`` times: load the shared checkpoint, fine-tune ``finetune_epochs`` with
  pairs drawn from p_theta (the tail of the same cosine schedule of ``share_epochs +
  finetune_epochs`` epochs), reward = accuracy on a held-out split of the *training* data
  (or, with ``reward="neg_loss"``, ours, minus its mean cross-entropy), then one PPO update
  (:mod:`dali_aug.methods.aws._ppo`) from the rewards and the pair counts.

Scale-out: under torchrun every rank runs ``finetunes_per_step`` fine-tunes from the same
shared checkpoint with its own data order and draws (not DDP: each Trainer is built with
``distributed=False``); rewards and counts are all-gathered and every rank computes the same
PPO update from all of them, so theta stays identical (checked bitwise in the tests). Stage 1
runs on rank 0 alone; the others wait for its checkpoint.

Gap-fills (the paper's values, Sec. 4.2, are missing from the text this follows; these are
the unofficial reimplementation's, github.com/tgisaturday/aws_autoaugment): policy Adam lr
0.1, betas (0.5, 0.999), PPO clip 0.2, 10 PPO epochs per update, entropy weight 1e-5; the
first update's baseline is the mean of its rewards (ours).

Search-time augmentation besides the pairs (the paper's search trains with pad-and-random-
crop, flip and Cutout): ``crop="pad"`` with ``pad`` pixels (the Loader's pad-and-random-crop;
default ``"rrc"``, the random-resized crop of area ``scale``), ``flip``, and ``cutout`` (a box
of that fraction of the image side, :class:`~dali_aug.methods.cutout.method.CutoutMethod`, in
the training step of stage 1 and of every fine-tune; default off). The defaults are the
searches of before these options.

Randomness: the data order, crops, flips and pair draws come from the Loader's seeded
generators; fine-tune ``g`` (counted over all ranks and steps) runs the Loader's epochs
``(g + 1) * (share_epochs + finetune_epochs) + e``, so no two fine-tunes share draws; the
Cutout boxes come from a generator seeded with ``seed`` in stage 1 and re-seeded from ``seed``
and ``g`` for fine-tune ``g``. Network initialisation uses torch's global RNG inside
:func:`torch.random.fork_rng` seeded from ``seed``. Same seed, same device, same world size:
same search.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import pickle
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch

from dali_aug._crop import CROPS, Crop
from dali_aug._dist import DEVICES, Device, collective_device, rank_world, resolve_device
from dali_aug.batch import Batch
from dali_aug.methods.aws._policy import PairPolicy
from dali_aug.methods.aws._ppo import check_reward, ema_baseline, ppo_loss
from dali_aug.methods.aws._space import AWS_ELEMENTS, Element, elements_of
from dali_aug.methods.cutout.method import CutoutMethod
from dali_aug.models import ModelName, build_model
from dali_aug.sources import Source
from dali_aug.train import (
    Forward,
    LoaderNeeds,
    Method,
    Step,
    Trainer,
    check_resume,
    load_checkpoint,
)

__all__ = ["AWSConfig", "PairCounter", "policy_update", "search"]

Reward = Literal["accuracy", "neg_loss"]
SHARED = "shared.pt"
STATE = "aws_state.pt"
LOG = "aws_search.jsonl"


@dataclasses.dataclass(frozen=True)
class AWSConfig:
    """AWS search settings (copy with ``dataclasses.replace``).

    Attributes:
        share_epochs: stage 1 epochs (uniform pairs, from scratch).
        finetune_epochs: epochs of each stage 2 fine-tune.
        steps: policy updates (each from ``finetunes_per_step`` fine-tunes per rank).
        model: the network (``dali_aug.models.build_model``).
        batch_size, size: loader batch and image side.
        lr: the network's peak lr (default: AdamW 1e-3 for ``small``, SGD + Nesterov
            0.1 * batch / 256 for the ResNets, as ``dali-aug train``).
        holdout: fraction of the training data held out for the reward (stratified).
        policy_lr, betas: Adam on theta (gap-fill 0.1, (0.5, 0.999)).
        clip: PPO ratio clip epsilon (gap-fill 0.2).
        ppo_epochs: Adam steps on the surrogate per update (gap-fill 10).
        entropy_weight: entropy bonus on p_theta (gap-fill 1e-5).
        baseline_decay: EMA weight of the baseline (paper: 0.9).
        finetunes_per_step: fine-tunes per rank per update.
        reward: what a fine-tune scores on the held-out split: ``"accuracy"`` (the paper's)
            or ``"neg_loss"``, minus the mean cross-entropy (ours: a smoother reward, which
            moves with the label noise a policy adds even where the argmax, and so the
            accuracy, does not; see ``docs/methods/aws.md``).
        elements: the search space (default: the paper's 36).
        crop: the Loader's training crop: ``"rrc"`` (random-resized crop of area ``scale``)
            or ``"pad"`` (pad-and-random-crop by up to ``pad`` pixels, the paper's search-time
            crop on CIFAR; evaluation then takes the whole image).
        pad: ``crop="pad"``: the largest shift in pixels, in [0, size) (default 4).
        scale, flip: the random-resized crop's area range and the horizontal flip.
        cutout: Cutout's box side as a fraction of the image side, in (0, 1] (the paper's
            search uses Cutout; 0.5 is 16 px at 32 px), applied in the training step of stage
            1 and every fine-tune; None (default): no Cutout.
        device: where the network trains.
        seed: everything derives from it.
        num_threads: DALI CPU threads.
    """

    share_epochs: int = 10
    finetune_epochs: int = 1
    steps: int = 40
    model: ModelName = "small"
    batch_size: int = 64
    size: int = 32
    lr: float | None = None
    holdout: float = 0.2
    policy_lr: float = 0.1
    betas: tuple[float, float] = (0.5, 0.999)
    clip: float = 0.2
    ppo_epochs: int = 10
    entropy_weight: float = 1e-5
    baseline_decay: float = 0.9
    finetunes_per_step: int = 1
    reward: Reward = "accuracy"
    elements: tuple[Element, ...] = AWS_ELEMENTS
    scale: tuple[float, float] = (0.08, 1.0)
    flip: bool = True
    crop: Crop = "rrc"
    pad: int = 4
    cutout: float | None = None
    device: Device = "auto"
    seed: int = 0
    num_threads: int = 2

    def __post_init__(self) -> None:
        for name in ("share_epochs", "finetune_epochs", "steps", "ppo_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"AWSConfig.{name}={value!r} must be an int >= 1")
        if self.finetunes_per_step < 1:
            raise ValueError(f"AWSConfig.finetunes_per_step={self.finetunes_per_step} must be >= 1")
        if self.device not in DEVICES:
            raise ValueError(f"AWSConfig.device={self.device!r}; use 'auto', 'cpu' or 'cuda'")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"AWSConfig.holdout={self.holdout} must be in (0, 1), e.g. 0.2")
        if not 0.0 < self.clip < 1.0:
            raise ValueError(f"AWSConfig.clip={self.clip} must be in (0, 1), e.g. 0.2")
        if not 0.0 <= self.baseline_decay < 1.0:
            raise ValueError(f"AWSConfig.baseline_decay={self.baseline_decay} must be in [0, 1)")
        if self.reward not in ("accuracy", "neg_loss"):
            raise ValueError(
                f"AWSConfig.reward={self.reward!r}: use 'accuracy' (the paper's) or 'neg_loss'"
            )
        if not self.policy_lr > 0:
            raise ValueError(f"AWSConfig.policy_lr={self.policy_lr} must be > 0, e.g. 0.1")
        if self.crop not in CROPS:
            raise ValueError(
                f"AWSConfig.crop={self.crop!r}; use one of {', '.join(CROPS)} (pad: the "
                "paper's pad-and-random-crop)"
            )
        pad = self.pad
        if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad < self.size:
            raise ValueError(
                f"AWSConfig.pad={pad!r} must be an int in [0, size={self.size}), e.g. 4"
            )
        cut = self.cutout
        if cut is not None and (
            isinstance(cut, bool) or not isinstance(cut, (int, float)) or not 0 < cut <= 1
        ):
            raise ValueError(
                f"AWSConfig.cutout={cut!r} must be None (no Cutout) or a box side fraction in "
                "(0, 1], e.g. 0.5"
            )
        PairPolicy(elements=self.elements)  # validates the elements

    @property
    def total_epochs(self) -> int:
        """The length of the one cosine schedule: stage 1 plus one fine-tune."""
        return self.share_epochs + self.finetune_epochs

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["elements"] = [{"op": e.op, "level": e.level} for e in self.elements]
        return d


class PairCounter(Method):
    """Counts the pairs the Loader applied, from the op record (layers 1 and 2 after the
    flip); a training-step method that changes nothing and keeps no checkpoint state."""

    name = "aws_counts"

    def __init__(self, elements: tuple[Element, ...] = AWS_ELEMENTS) -> None:
        self.elements = elements
        self.counts = torch.zeros(len(elements) ** 2, dtype=torch.int64)

    def loader_needs(self) -> LoaderNeeds:
        return LoaderNeeds(op_record=True)

    def reset(self) -> None:
        self.counts.zero_()

    def after_step(self, step: Step, batch: Batch, out: Forward) -> None:
        self.add(batch)

    def add(self, batch: Batch) -> None:
        """Adds the pairs of ``batch`` (ValueError if it has no op record of pairs)."""
        p = batch.params
        if p is None or p.op_ids.shape[1] != 3:
            raise ValueError(
                "AWS counts need the Loader's op record of a pair policy: build the Loader with "
                "op_record=True and policy=PairPolicy(...).to_policy()"
            )
        el = elements_of(p.op_ids[:, 1:], p.levels[:, 1:], self.elements)
        if bool((el < 0).any()):
            raise ValueError(
                "the op record holds an op that is not one of the search's elements; the "
                "Loader must run PairPolicy.to_policy() of the same elements"
            )
        k = el[:, 0] * len(self.elements) + el[:, 1]
        self.counts += torch.bincount(k, minlength=self.counts.numel())


def policy_update(
    policy: PairPolicy,
    optimizer: torch.optim.Optimizer,
    rewards: torch.Tensor,
    counts: torch.Tensor,
    baseline: float | None,
    config: AWSConfig,
) -> tuple[float, dict[str, float]]:
    """One PPO update of ``policy.theta`` from the fine-tunes' rewards [R] and counts [R, K].

    Returns:
        (the new baseline, {"loss": first surrogate value, "advantage": mean advantage}).
    """
    values = [check_reward(r) for r in rewards.tolist()]
    start = sum(values) / len(values) if baseline is None else baseline
    adv = torch.tensor([r - start for r in values], dtype=torch.float64)
    old = policy.probs().detach().double()
    first = math.nan
    for epoch in range(config.ppo_epochs):
        optimizer.zero_grad(set_to_none=True)
        p = policy.probs().double()
        loss = ppo_loss(p, old, counts, adv, config.clip)
        if config.entropy_weight:
            loss = loss + config.entropy_weight * (p * p.clamp_min(1e-300).log()).sum()
        loss.backward()
        optimizer.step()
        if epoch == 0:
            first = float(loss.detach())
    b: float | None = baseline if baseline is not None else start
    for r in values:
        b = ema_baseline(b, r, config.baseline_decay)
    assert b is not None
    return b, {"loss": first, "advantage": float(adv.mean())}


class _Epochs:
    """A Loader whose epochs are shifted by ``offset`` (its own draws per fine-tune)."""

    def __init__(self, loader: Any, offset: int) -> None:
        self.loader, self.offset = loader, offset
        self.skipped = loader.skipped

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch + self.offset)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        return iter(self.loader)


def _gather(rewards: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All ranks' rewards [W*F] and counts [W*F, K], in rank order."""
    _, world = rank_world()
    if world == 1:
        return rewards, counts
    d = torch.distributed
    local = [t.to(collective_device(t.device)) for t in (rewards, counts)]
    r_all = [torch.zeros_like(local[0]) for _ in range(world)]
    c_all = [torch.zeros_like(local[1]) for _ in range(world)]
    d.all_gather(r_all, local[0])
    d.all_gather(c_all, local[1])
    return torch.cat(r_all).cpu(), torch.cat(c_all).cpu()


def _cutout_seed(seed: int, finetune: int | None) -> int:
    """The Cutout generator's seed: ``seed`` in stage 1, one of its own per fine-tune."""
    return seed if finetune is None else (seed << 24) + finetune + 1


def _trainer(config: AWSConfig, classes: int, counter: PairCounter) -> Trainer:
    """A fresh network, optimizer and cosine schedule over ``total_epochs``; its methods are
    ``counter`` and, with ``config.cutout``, a :class:`CutoutMethod` (seeded from
    ``config.seed``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_model(config.model, classes).to(resolve_device(config.device))
    opt: torch.optim.Optimizer
    if config.model == "small":  # as `dali-aug train`
        lr = config.lr if config.lr is not None else 1e-3
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    else:
        lr = config.lr if config.lr is not None else 0.1 * config.batch_size / 256
        opt = torch.optim.SGD(
            model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-5, nesterov=True
        )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.total_epochs)
    methods: tuple[Method, ...] = (counter,)
    if config.cutout is not None:
        seed = _cutout_seed(config.seed, None)
        methods += (CutoutMethod(box_fraction=float(config.cutout), seed=seed),)
    return Trainer(model, opt, methods=methods, scheduler=sched, distributed=False)


def _loaders(source: Source, config: AWSConfig) -> tuple[Any, Any]:
    from dali_aug.datasets import holdout
    from dali_aug.loader import Loader, LoaderConfig

    train_src, held_src = holdout(source, config.holdout, seed=config.seed)
    cfg = LoaderConfig(
        batch_size=config.batch_size,
        size=config.size,
        device=config.device,
        seed=config.seed,
        shard_id=0,  # every rank fine-tunes on the whole training part
        num_shards=1,
        num_threads=config.num_threads,
        crop=config.crop,
        pad=config.pad,
        scale=config.scale,
        flip=config.flip,
        op_record=True,
    )
    uniform = PairPolicy(elements=config.elements).to_policy("aws-uniform")
    train = Loader(train_src, policy=uniform, config=cfg)
    plain = dataclasses.replace(cfg, train=False, op_record=False)
    return train, Loader(held_src, config=plain)


def _run_config(d: dict[str, Any]) -> dict[str, Any]:
    """The settings a resumed search must share with the one it continues (not ``steps``)."""
    return {k: v for k, v in d.items() if k != "steps"}


def _load_state(path: Path) -> dict[str, Any]:
    """The search state of ``aws_state.pt`` (ValueError naming the fix)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(
            f"{path} is not a loadable AWS search state ({type(err).__name__}); delete it and "
            "search again without --resume"
        ) from None
    if not isinstance(state, dict) or not {"theta", "adam", "baseline", "step"} <= set(state):
        raise ValueError(f"{path} is not an AWS search state; search again without --resume")
    return state


def _reward(metrics: dict[str, Any], kind: Reward) -> float:
    """The fine-tune's reward from :meth:`Trainer.evaluate`'s metrics."""
    return float(metrics["val_acc"]) if kind == "accuracy" else -float(metrics["val_loss"])


def _silent(*_: Any) -> None:
    return None


def search(
    source: Source,
    config: AWSConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> PairPolicy:
    """Runs the AWS search on ``source`` (the training data) and writes to folder ``out``:
    ``shared.pt`` (stage 1), ``aws_state.pt`` (theta, Adam, baseline; after every update)
    and ``aws_search.jsonl`` (one line per update).

    Args:
        source: the training data; ``config.holdout`` of it is held out for the reward.
        config: the settings.
        out: the output folder (created).
        resume: continue from ``out/aws_state.pt`` and ``out/shared.pt`` if present.
        progress: tqdm bars (rank 0).
        log: one line per stage (rank 0).
        on_step: called with each update's log row (on every rank).

    Returns:
        the searched :class:`PairPolicy` (identical on every rank).
    """
    from tqdm import tqdm

    rank, world = rank_world()
    lead = rank == 0
    say = log if lead else _silent
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    counter = PairCounter(config.elements)
    trainer = _trainer(config, len(source.classes), counter)
    train, held = _loaders(source, config)
    shared = root / SHARED
    # -- stage 1 ------------------------------------------------------------------------
    if not (resume and shared.is_file()):
        if lead:
            say(f"aws stage 1: {config.share_epochs} epochs with uniform pairs")
            t0 = time.perf_counter()
            trainer.fit(
                _Epochs(train, 0),
                None,
                config.share_epochs,
                progress=progress,
                log=say,
            )
            trainer.save(shared, {"aws_config": config.to_dict()})
            say(f"aws stage 1: {time.perf_counter() - t0:.1f} s; wrote {shared}")
        if world > 1:
            torch.distributed.barrier()
    # -- stage 2 ------------------------------------------------------------------------
    policy = PairPolicy(elements=config.elements)
    adam = torch.optim.Adam([policy.theta], lr=config.policy_lr, betas=config.betas)
    baseline: float | None = None
    start = 0
    state_path, log_path = root / STATE, root / LOG
    if resume and state_path.is_file():
        state = _load_state(state_path)
        check_resume(_run_config(state["config"]), _run_config(config.to_dict()))
        policy.theta.data.copy_(state["theta"])
        adam.load_state_dict(state["adam"])
        baseline, start = state["baseline"], int(state["step"])
        say(f"aws: resumed at step {start} of {config.steps}")
    if lead and start == 0:
        log_path.write_text("")
    elif lead and log_path.is_file():  # drop a line written after the last saved state
        kept = [x for x in log_path.read_text().splitlines() if json.loads(x)["step"] <= start]
        log_path.write_text("".join(x + "\n" for x in kept))
    shared_state = load_checkpoint(shared, map_location=trainer.device)
    if "aws_config" in shared_state:  # a stage 1 of other settings (e.g. --cutout) is refused
        check_resume(_run_config(shared_state["aws_config"]), _run_config(config.to_dict()))
    per = config.finetunes_per_step
    bar = tqdm(
        total=config.steps, initial=start, desc="aws stage 2", disable=not (progress and lead)
    )
    for step in range(start, config.steps):
        t0 = time.perf_counter()
        train.set_policy(policy.to_policy())
        rewards = torch.zeros(per, dtype=torch.float64)
        counts = torch.zeros((per, policy.num_pairs), dtype=torch.int64)
        for j in range(per):
            g = (step * world + rank) * per + j
            trainer.load_state_dict(copy.deepcopy(shared_state))  # the optimizer steps in place
            counter.reset()
            for m in trainer.methods:  # Cutout: this fine-tune's own boxes
                if isinstance(m, CutoutMethod):
                    m.generator.manual_seed(_cutout_seed(config.seed, g))
            offset = (g + 1) * config.total_epochs
            trainer.fit(
                _Epochs(train, offset), None, config.total_epochs, progress=False, log=_silent
            )
            rewards[j] = check_reward(_reward(trainer.evaluate(held), config.reward))
            counts[j] = counter.counts
        all_rewards, all_counts = _gather(rewards, counts)
        baseline, stats = policy_update(policy, adam, all_rewards, all_counts, baseline, config)
        row = {
            "step": step + 1,
            "reward": float(all_rewards.mean()),
            "rewards": all_rewards.tolist(),
            "applied": all_counts.sum(1).tolist(),  # pairs applied per fine-tune
            "baseline": baseline,
            "entropy": policy.entropy(),
            "top_pairs": policy.top_pairs(5),
            "marginals": policy.marginals().tolist(),
            "seconds": time.perf_counter() - t0,
            "theta_sha256": hashlib.sha256(policy.theta.detach().numpy().tobytes()).hexdigest(),
            **stats,
        }
        if lead:
            with log_path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            tmp = state_path.with_suffix(".tmp")
            torch.save(
                {
                    "theta": policy.theta.detach().clone(),
                    "adam": adam.state_dict(),
                    "baseline": baseline,
                    "step": step + 1,
                    "config": config.to_dict(),
                },
                tmp,
            )
            tmp.replace(state_path)
        if on_step is not None:
            on_step(row)
        bar.update(1)
        bar.set_postfix(stage=2, reward=f"{row['reward']:.3f}", baseline=f"{baseline:.3f}")
    bar.close()
    return policy
