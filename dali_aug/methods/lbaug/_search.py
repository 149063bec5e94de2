"""LB-Aug search: critics on K stratified shuffle splits (stage A), then the actor trained by
REINFORCE on the critics' rewards (stage B, Eqs. 5-7).

Policy gradient (the paper's choice, Sec. 4.4.3 and Table 7) with a moving-average baseline
(gap-fill): for a batch of samples from ``D_A`` union, the actor maps their labels to the three
distributions, one (op, p-level, lambda-level) is drawn per sample
(:func:`dali_aug.kernels.label_sample.sample`, the joint log-probability comes with it), the op
is applied by the torch backend, the critics score it, and the actor minimises
``-mean((reward - baseline) * log_prob) - beta * entropy``.

Choices beyond the paper (gap-fills: Sec. 3.2.1 of "Fine-Grained AutoAugmentation for
Multi-Label Classification" leaves them open):

* The reward is read as 0 when the op is not applied, so the reward of (op, p, lambda) is
  ``p * reward(applied op)`` in expectation over the apply draw. The search uses that
  expectation directly (every sampled op is applied, its reward weighted by ``p``): the same
  objective with less variance than drawing the Bernoulli, and no critic pass wasted on
  unchanged images. Training (:class:`~dali_aug.methods.lbaug.LBAugMethod`) draws the Bernoulli.
* The baseline is an exponential moving average of the batch-mean reward.
* A small entropy bonus (``entropy_weight``, in reward units: mean BCE per label) on the joint
  distribution. Without it the actor collapses onto the single least harmful op, since with
  critics trained on clean images almost every op has a negative reward.
* ``draws`` Monte-Carlo samples of (op, p, lambda) per instance and step (the number of
  samples of Eq. 5's expectation is not given; default 1).
* LB-Aug_E (``variant="e"``): only the op is sampled from the actor and reinforced (the
  log-probability is the op's), with the apply probability 0.5 and the maximum magnitude; the
  entropy bonus is the op distribution's.
* ``reward="label"`` (not the default): the reward per label. Every label's own loss change
  ``BCE_c(x) - BCE_c(x_hat)`` minus a moving average of that label's change over the samples in
  the same state of that label, averaged over labels. The expected gradient is Eq. 5's (the
  baseline depends on the labels only). Tried for the actor's label specificity: on the demo
  shapes it made the actor less specific, not more (see tests/test_lbaug.py).

Images: the critics and the rewards see the images the final training augments.
:func:`load_images` decodes them with the training Loader's transform by default (one
random-resized crop per image, the crop before the Loader's flip, or with ``flip`` after it,
which is where :class:`~dali_aug.methods.lbaug.LBAugMethod` starts: the flipped crop when the
actor's space has no FlipLR), so the rewards are measured on the distribution of crops the
actor's ops are applied to in training. ``transform="eval"`` decodes with the evaluation
transform instead (resize + centre crop).

Clips: the same search on uint8 clips [N, T, 3, S, S] (a clip is a sample with a time axis):
:func:`load_images` with ``clip_length`` reads one fixed window per clip through the clip
Loader, the critics are clip models (``SearchConfig.model``, ``clip-r2plus1d-small`` by
default on the command line), one (op, p, lambda) is drawn per clip and applied to every frame
(:func:`~dali_aug.methods.lbaug._actor.apply_ops`), and the reward is the critics' loss change
on the augmented clips. Nothing else differs: the splits, the critics' training, the actor and
its update are the image code.

Randomness: everything derives from ``SearchConfig.seed``. The splits, batch order, signs and
Cutout/SamplePairing extras use explicit generators; network initialisation and dropout use
torch's global RNG inside :func:`torch.random.fork_rng` seeded from the seed, so the caller's
RNG state is untouched and the same seed gives the same actor (on one device).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from dali_aug.methods.lbaug._actor import (
    AA_OPS,
    Actor,
    ActorConfig,
    ActorOutput,
    Variant,
    apply_ops,
    check_labels,
    draw_ops,
    entropy,
)
from dali_aug.methods.lbaug._critics import clean_losses, rewards, shuffle_splits, train_critic
from dali_aug.models import CLIP_AVG_PREFIX, CLIP_MODEL_NAMES, build_model

__all__ = ["SearchConfig", "SearchResult", "is_clip_model", "load_images", "search"]

CriticFactory = Callable[[int], nn.Module]

#: How :func:`load_images` decodes: the training Loader's crop or the evaluation transform.
Transform = Literal["train", "eval"]

#: The actor's advantage: ``sample`` (Eq. 7's per-sample reward minus the batch moving average)
#: or ``label`` (every label's loss change minus that label's moving average, then averaged).
RewardMode = Literal["sample", "label"]


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """LB-Aug search settings (copy with ``dataclasses.replace``).

    Attributes:
        ops: the search space (catalog op names; default the 16 AutoAugment ops).
        folds: K, the number of stratified shuffle splits and critics (paper: 8).
        model: the critics' architecture (use the final classifier's): an image model
            (``small``, ``resnet18``, ...) for images, a clip model (``clip-r2plus1d-small``,
            ``clip-avg-NAME``) for clips.
        critic_epochs: epochs of each critic on its ``D_M``.
        critic_batch_size: critic mini-batch.
        critic_lr: AdamW learning rate of the critics.
        search_epochs: actor epochs, each one pass over ``D_A`` union.
        batch_size: actor mini-batch (samples per REINFORCE step).
        actor_lr: Adam learning rate of the actor (gap-fill 1e-3).
        hidden: actor hidden width (gap-fill 256).
        depth: actor FC layers with ReLU + dropout (paper: 3).
        dropout: actor dropout (paper: 0.5).
        prob_levels: apply-probability levels (paper: 11).
        mag_levels: magnitude levels (paper: 10).
        baseline_momentum: momentum of the moving-average reward baseline.
        entropy_weight: weight of an entropy bonus on the joint distribution (gap-fill).
        variant: ``h`` (LB-Aug_H) or ``e`` (LB-Aug_E: op only, p 0.5, maximum magnitude).
        draws: Monte-Carlo samples per instance and actor step (gap-fill, 1).
        critic_shift: random translation (pixels) of the critics' training batches (0: none,
            the default; an option tried for the specificity of the rewards).
        reward: the advantage REINFORCE weighs the log-probability by (ours; the paper's
            Eq. 5 uses the reward itself). ``sample`` (default): the per-sample reward of
            Eq. 7 minus the moving-average baseline. ``label``: the reward per label: every
            label's own loss change ``BCE_c(x) - BCE_c(x_hat)`` (p-weighted, mean over the
            holding critics) minus a moving average of that label's loss change over the
            samples in the same state of that label (positive / negative), then the mean over
            labels. Its expectation is Eq. 7's (the baseline depends on the labels only), with
            each label's reward level removed separately (an option tried for the
            specificity of the actor).
        seed: the one seed everything derives from.
    """

    ops: tuple[str, ...] = AA_OPS
    folds: int = 8
    model: str = "small"
    critic_epochs: int = 10
    critic_batch_size: int = 64
    critic_lr: float = 1e-3
    search_epochs: int = 20
    batch_size: int = 256
    actor_lr: float = 1e-3
    hidden: int = 256
    depth: int = 3
    dropout: float = 0.5
    prob_levels: int = 11
    mag_levels: int = 10
    baseline_momentum: float = 0.9
    entropy_weight: float = 0.003
    variant: Variant = "h"
    draws: int = 1
    critic_shift: int = 0
    reward: RewardMode = "sample"
    seed: int = 0

    def __post_init__(self) -> None:
        for field in ("folds", "critic_epochs", "critic_batch_size", "search_epochs", "draws"):
            if getattr(self, field) < 1:
                raise ValueError(f"SearchConfig.{field}={getattr(self, field)} must be >= 1")
        if self.batch_size < 2 or self.critic_batch_size < 2:
            raise ValueError("SearchConfig: batch_size and critic_batch_size must be >= 2")
        if not 0.0 <= self.baseline_momentum < 1.0:
            raise ValueError(
                f"SearchConfig.baseline_momentum={self.baseline_momentum} must be in [0, 1)"
            )
        if not (self.actor_lr > 0 and self.critic_lr > 0):
            raise ValueError("SearchConfig: actor_lr and critic_lr must be > 0")
        if self.reward not in ("sample", "label"):
            raise ValueError(f"SearchConfig.reward={self.reward!r}; use 'sample' or 'label'")

    def actor_config(self, num_labels: int) -> ActorConfig:
        return ActorConfig(
            num_labels=num_labels,
            ops=tuple(self.ops),
            hidden=self.hidden,
            depth=self.depth,
            dropout=self.dropout,
            prob_levels=self.prob_levels,
            mag_levels=self.mag_levels,
            variant=self.variant,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ops": list(self.ops)}


@dataclasses.dataclass
class SearchResult:
    """What :func:`search` returns.

    Attributes:
        actor: the trained actor (eval mode).
        held_out: bool [K, N], ``D_A^(k)`` membership.
        uncovered: samples in no ``D_A`` (left out of actor training; 0 for K >= 5).
        critic_seconds: wall time of stage A (critics and clean losses).
        history: one row per actor epoch (mean reward, applied fraction, baseline, seconds).
    """

    actor: Actor
    held_out: torch.Tensor
    uncovered: int
    critic_seconds: float
    history: list[dict[str, float]]

    @property
    def seconds_per_epoch(self) -> float:
        """Mean wall time of one actor epoch."""
        return sum(h["seconds"] for h in self.history) / max(len(self.history), 1)


def is_clip_model(name: str) -> bool:
    """Whether the model ``name`` takes clips [B, T, C, H, W] (else images)."""
    return name in CLIP_MODEL_NAMES or name.startswith(CLIP_AVG_PREFIX)


def _check_inputs(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if (
        not isinstance(images, torch.Tensor)
        or images.dtype != torch.uint8
        or images.dim() not in (4, 5)
    ):
        raise TypeError(
            "images must be a uint8 tensor: images [N, 3, H, W] or clips [N, T, 3, H, W] "
            "(the clean images or clips; see load_images)"
        )
    if images.shape[-3] != 3:
        raise ValueError(f"images must have 3 channels, got shape {tuple(images.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 2:
        raise ValueError("labels must be a multi-hot tensor [N, C]")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} label rows")
    return check_labels(labels, labels.shape[1])


def search(
    images: torch.Tensor,
    labels: torch.Tensor,
    config: SearchConfig | None = None,
    *,
    build_critic: CriticFactory | None = None,
    progress: bool = True,
    log: Callable[[str], object] = print,
) -> SearchResult:
    """Runs the LB-Aug search on in-memory data: images, or clips (a sample with a time axis).

    Clips take the same path as images: the critics are clip models (``config.model``), one
    (op, p, lambda) is drawn per clip and applied to all its frames
    (:func:`~dali_aug.methods.lbaug._actor.apply_ops`), and the critics score the augmented
    clips.

    Args:
        images: uint8 [N, 3, H, W], the clean training images, or clips [N, T, 3, H, W], on
            the device to search on.
        labels: multi-hot [N, C] (all-zero rows allowed).
        config: a :class:`SearchConfig`.
        build_critic: ``num_labels -> nn.Module`` for the critics (default:
            ``dali_aug.models.build_model(config.model, num_labels)``).
        progress: show tqdm progress bars.
        log: where one line per stage/epoch goes.

    Returns:
        a :class:`SearchResult` holding the trained actor.

    Raises:
        TypeError, ValueError: bad images or labels, or (without ``build_critic``) a clip
            model for images or an image model for clips, naming the model to use.
    """
    from tqdm import tqdm

    cfg = config or SearchConfig()
    y = _check_inputs(images, labels).to(images.device)
    device = images.device
    n, c = y.shape
    actor_cfg = cfg.actor_config(c)
    if build_critic is None:
        _check_model(cfg.model, clips=images.dim() == 5)
    factory = build_critic or (lambda k: build_model(cfg.model, k))
    g = torch.Generator().manual_seed(cfg.seed)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed)
        t0 = time.perf_counter()
        held_out = shuffle_splits(y, cfg.folds, generator=g)
        covered = held_out.any(0)
        uncovered = int((~covered).sum())
        if uncovered:
            log(
                f"lbaug: {uncovered} of {n} samples are in no D_A (K={cfg.folds} < 5) and are "
                "left out of actor training"
            )
        steps = cfg.folds * cfg.critic_epochs * math.ceil(0.8 * n / cfg.critic_batch_size)
        bar = tqdm(total=steps, desc="lbaug critics", disable=not progress, leave=False)
        critics: list[nn.Module] = []
        for k in range(cfg.folds):
            train_rows = torch.nonzero(~held_out[k]).squeeze(1).to(device)
            critic = factory(c).to(device)
            critics.append(
                train_critic(
                    critic,
                    images[train_rows],
                    y[train_rows],
                    epochs=cfg.critic_epochs,
                    batch_size=cfg.critic_batch_size,
                    lr=cfg.critic_lr,
                    generator=g,
                    on_step=lambda: bar.update(1),
                    shift=cfg.critic_shift,
                )
            )
        bar.close()
        members = held_out.to(device)
        clean = clean_losses(critics, images, y, members, per_label=cfg.reward == "label")
        critic_seconds = time.perf_counter() - t0
        log(f"lbaug: {cfg.folds} critics trained in {critic_seconds:.1f} s")

        actor = Actor(actor_cfg).to(device)
        history = _train_actor(
            actor, critics, images, y, members, clean, covered, cfg, g, progress=progress, log=log
        )
    return SearchResult(actor.eval(), held_out, uncovered, critic_seconds, history)


def _check_model(model: str, *, clips: bool) -> None:
    """A clip critic for clips, an image critic for images (ValueError naming the fix)."""
    if clips and not is_clip_model(model):
        raise ValueError(
            f"the samples are clips [N, T, 3, H, W] but the critic model {model!r} takes "
            f"images; use a clip model: {', '.join(CLIP_MODEL_NAMES)} or "
            f"{CLIP_AVG_PREFIX}{model} (the image model on every frame, averaged)"
        )
    if not clips and is_clip_model(model):
        raise ValueError(
            f"the samples are images [N, 3, H, W] but the critic model {model!r} takes clips; "
            "use an image model (e.g. small), or give clips (load_images(..., clip_length=T))"
        )


def _train_actor(
    actor: Actor,
    critics: list[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    members: torch.Tensor,
    clean: torch.Tensor,
    covered: torch.Tensor,
    cfg: SearchConfig,
    generator: torch.Generator,
    *,
    progress: bool,
    log: Callable[[str], object],
) -> list[dict[str, float]]:
    """Stage B: REINFORCE epochs over the covered samples; returns the per-epoch history."""
    from tqdm import tqdm

    device = images.device
    opt = torch.optim.Adam(actor.parameters(), lr=cfg.actor_lr)
    pool = torch.nonzero(covered).squeeze(1)
    g_dev = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    baseline: torch.Tensor | None = None
    label_baseline: torch.Tensor | None = None  # [2, C]: negative / positive state
    history: list[dict[str, float]] = []
    per_epoch = math.ceil(len(pool) / cfg.batch_size)
    bar = tqdm(
        total=per_epoch * cfg.search_epochs, desc="lbaug actor", disable=not progress, leave=False
    )
    for epoch in range(cfg.search_epochs):
        t1 = time.perf_counter()
        order = pool[torch.randperm(len(pool), generator=generator)].to(device)
        sums = torch.zeros(3, device=device)
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s : s + cfg.batch_size].repeat(cfg.draws)
            r, prob, log_prob, out = _step_rewards(
                actor,
                critics,
                images[idx],
                labels[idx],
                members[:, idx],
                clean[:, idx],
                generator=generator,
                device_generator=g_dev,
                per_label=cfg.reward == "label",
            )
            m = cfg.baseline_momentum
            if cfg.reward == "label":
                r, adv, label_baseline = _label_advantage(r, labels[idx], label_baseline, m)
            mean_r = r.mean()
            baseline = mean_r if baseline is None else baseline
            if cfg.reward == "sample":
                adv = r - baseline
            loss = -(adv * log_prob).mean()
            if cfg.entropy_weight:
                ent = entropy(out, op_only=cfg.variant == "e")
                loss = loss - cfg.entropy_weight * ent.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            baseline = m * baseline + (1 - m) * mean_r
            sums += torch.stack([r.sum(), prob.sum(), torch.ones((), device=device) * len(idx)])
            bar.update(1)
        tot = sums.tolist()
        row = {
            "epoch": float(epoch + 1),
            "mean_reward": tot[0] / max(tot[2], 1),
            "applied": tot[1] / max(tot[2], 1),
            "baseline": float(baseline) if baseline is not None else 0.0,
            "seconds": time.perf_counter() - t1,
        }
        history.append(row)
        bar.set_postfix(reward=f"{row['mean_reward']:+.4f}")
        if not progress:
            log(
                f"lbaug actor epoch {epoch + 1}/{cfg.search_epochs}: mean reward "
                f"{row['mean_reward']:+.4f}, mean apply probability {row['applied']:.2f}, "
                f"{row['seconds']:.1f} s"
            )
    bar.close()
    return history


def _label_advantage(
    r: torch.Tensor, labels: torch.Tensor, base: torch.Tensor | None, momentum: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``reward="label"``: from the per-label rewards [B, C], (the per-sample reward [B] (their
    mean over labels), the advantage [B], the updated per-label baseline [2, C]). The baseline
    of label c in state s (0 negative, 1 positive) is a moving average of the mean loss change
    of c over the batch's samples in state s (a state with no sample keeps its value)."""
    state = (labels > 0.5).long()  # [B, C]
    hot = torch.nn.functional.one_hot(state, 2).to(r.dtype)  # [B, C, 2]
    count = hot.sum(0)  # [C, 2]
    batch = ((r.unsqueeze(-1) * hot).sum(0) / count.clamp(min=1)).T  # [2, C]
    seen = (count > 0).T
    if base is None:
        base = torch.where(seen, batch, torch.zeros_like(batch))
    adv = (r - base.T.gather(1, state.T).T).mean(1)
    new = torch.where(seen, momentum * base + (1 - momentum) * batch, base)
    return r.mean(1), adv, new


def _step_rewards(
    actor: Actor,
    critics: list[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    members: torch.Tensor,
    clean: torch.Tensor,
    *,
    generator: torch.Generator,
    device_generator: torch.Generator,
    per_label: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, ActorOutput]:
    """One policy sample per instance: (rewards [B] (``per_label``: [B, C]), apply
    probabilities [B], joint log-prob [B], the actor's output). The sampled op is always
    applied and its reward weighed by its apply probability: the expectation of Eq. 7 over
    the apply draw."""
    actor.train()
    out = actor(labels)
    params, prob, _, log_prob = draw_ops(
        actor, out, generator=generator, device_generator=device_generator, draw_apply=False
    )
    augmented = apply_ops(images, params)
    if per_label:
        r = rewards(critics, augmented, labels, members, clean, prob, per_label=True)
    else:
        r = rewards(critics, augmented, labels, members, clean, prob)
    return r, prob, log_prob, out


def load_images(
    data: str | Path,
    *,
    size: int,
    device: str = "auto",
    batch_size: int = 256,
    num_threads: int = 2,
    transform: Transform = "train",
    scale: tuple[float, float] = (0.08, 1.0),
    flip: bool = False,
    seed: int = 0,
    crop: str = "rrc",
    pad: int = 4,
    clip_length: int | None = None,
    clip_stride: int = 1,
) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Decodes a multi-label folder (``labels.csv``) or source once: uint8 images
    [N, 3, size, size] (in the data's order) and multi-hot labels [N, C] on the Loader's
    device, plus the label names. With ``clip_length`` (a clip source or a folder of frame
    folders): uint8 clips [N, T, 3, size, size], one fixed window per clip.

    Args:
        transform: ``train`` (default): the training Loader's random-resized crop (area
            ``scale``, epoch 0 of ``seed``; what ``dali-aug train`` crops: ``scale`` (0.5, 1)
            on the demo data, (0.08, 1) otherwise), the crop before the flip; ``eval``: resize
            + centre crop.
        flip: with ``train``, the crops after the Loader's random flip (for an actor without
            FlipLR, whose training starts from the flipped crop).
        crop, pad: the training crop, as ``LoaderConfig`` (``rrc`` with ``scale``, or
            ``pad`` shifting by up to ``pad`` pixels), what ``dali-aug train --crop`` gives.
        clip_length, clip_stride: read clips of ``clip_length`` frames ``clip_stride`` apart
            (the Loader's clip mode). The window is fixed for the whole search: with
            ``train``, the training Loader's window of epoch 0 of ``seed`` (a uniform start
            per clip, the same crop and flip on every frame); with ``eval`` the centred
            window.
    """
    from dali_aug.loader import Loader

    if transform not in ("train", "eval"):
        raise ValueError(f"unknown transform {transform!r}; use 'train' or 'eval'")
    train = transform == "train"
    loader = Loader(
        data,
        batch_size=batch_size,
        size=size,
        train=train,
        provenance=True,
        device=device,  # type: ignore[arg-type]
        num_threads=num_threads,
        shuffle=False,
        scale=scale,
        flip=flip and train,
        seed=seed,
        crop=crop,  # type: ignore[arg-type]
        pad=pad,
        clip_length=clip_length,
        clip_stride=clip_stride,
    )
    if not loader.multi_label:
        raise ValueError(
            f"{data} is not a multi-label folder; LB-Aug needs a folder with labels.csv "
            "(header 'path,labels')"
        )
    xs, ys, ids = [], [], []
    for batch in loader:
        assert batch.clean is not None
        xs.append(batch.flipped_clean() if flip and train else batch.clean)
        ys.append(batch.labels)
        ids.append(batch.indices.cpu())
    if not xs:
        raise ValueError(f"no readable {'clips' if clip_length else 'images'} in {data}")
    order = torch.argsort(torch.cat(ids)).to(xs[0].device)
    return torch.cat(xs)[order], torch.cat(ys).float()[order], loader.classes
