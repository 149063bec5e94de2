"""MetaAugment (Zhou et al., "MetaAugment: Sample-Aware Data Augmentation Policy Learning",
AAAI 2021, arXiv:2012.12076) as a training-step :class:`~dali_aug.train.Method`.

Per training step (Algorithm 1):

1. ``augment``: every sample (``copies`` times) gets an ordered pair of functions from the
   :class:`PairSampler` and magnitudes ``m1, m2 ~ U(0, 10)``, applied with the catalog's torch
   backend to the Loader's flipped clean crop (the Loader runs no policy); the embedding is
   built from what was applied.
2. ``loss`` (inside the step, before the real step): the policy net weighs every sample from
   the (detached) penultimate features of the trainer's forward and the embedding; the
   virtual step ``w^ = w - alpha * sum_i P~_i grad L_i`` (Eq. 2), the validation loss at w^
   on a clean held-out batch (``step.val_batch()``, under ``step.frozen_norm()``) and an Adam
   step of (theta, alpha) on its gradient (Eq. 3); then ``loss.weight`` = the weights
   recomputed under the updated theta (detached), which the trainer's real step uses (Eq. 4).
   ``mode="exact"`` gives the exact meta-gradient (by default from the per-sample dot
   products ``g_val . grad L_i`` as one forward-mode JVP, the same gradient as
   differentiating through the virtual step, ``exact_form="unrolled"``); ``mode="fast"``
   replaces the JVP by a one-sided finite difference (and, with
   ``fast_virtual="previous"``, the virtual step's gradient by the previous real step's);
   see :mod:`dali_aug.methods.meta._bilevel`. ``mode="uniform"`` is the control: uniform
   random pairs, equal weights, no policy.
3. ``after_step``: the sampler counts the iteration (refresh every ``every``).

Gap-fills (the paper gives its hyperparameters in an appendix, which is not in the text this
follows; "Proposed MetaAugment Algorithm" only calls alpha a learnable learning rate):
``alpha = exp(log_alpha)`` (kept positive; one scalar) initialised to the task optimizer's
learning rate at the first step; theta and log_alpha trained by their own Adam (lr 1e-3);
``every`` = 50, ``history`` = 200 iterations; the weights are ``P_i / sum_j P_j`` and the
reduced loss ``sum_i P~_i L_i`` (the Meta-Weight-Net convention); a meta step uses a
quarter of each validation batch (``val_share``; the paper gives no validation batch size).

The meta step calls ``torch.autograd.grad`` on the model's parameters, so it runs on the bare
model (outside DistributedDataParallel). Under torch.distributed (``torchrun``) each rank
takes the meta step on its own training and validation batches; the (theta, alpha)
gradients are averaged over the ranks and the sampler's statistics summed (one all-reduce
each per step), so every rank keeps the same policy net, alpha and sampler (test); every
rank draws the global batch's pairs from the same stream and applies its own rows. The
averaged gradient is the mean of the ranks' meta-gradients, each for its own virtual step
(ours; the paper trains on one process). Results are not reproducible across devices.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from dali_aug._dist import collective_device, rank_world
from dali_aug.batch import check_unaugmented
from dali_aug.methods.meta._bilevel import (
    FiniteDifference,
    exact_meta_grads,
    fast_meta_grads,
    unrolled_meta_grads,
    weighted_grad,
)
from dali_aug.methods.meta._policy_net import (
    PolicyNet,
    effective_sample_share,
    normalise_weights,
)
from dali_aug.methods.meta._sampler import PairSampler
from dali_aug.methods.meta._space import FUNCTIONS, draw_transforms
from dali_aug.ops import OpParams, apply_params
from dali_aug.train import Forward, LoaderNeeds, Loss, Method, Step
from dali_aug.viz import normalize

if TYPE_CHECKING:
    from dali_aug.batch import Batch
    from dali_aug.policies import Policy
    from dali_aug.train import Trainer

__all__ = ["MAGNITUDE_BINS", "ExactForm", "FastVirtual", "MetaAugmentMethod", "MetaConfig", "Mode"]

Mode = Literal["exact", "fast", "uniform"]
#: how ``exact`` mode computes the (same) meta-gradient
ExactForm = Literal["jvp", "unrolled"]
#: the gradient of ``fast`` mode's virtual step
FastVirtual = Literal["current", "previous", "real_step"]
#: magnitude bins of the per-function weight statistics (width 1 on the 0-10 scale)
MAGNITUDE_BINS = 10


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """MetaAugment's settings.

    Attributes:
        mode: ``exact`` (the paper's passes), ``fast`` (fewer passes, same meta-gradient up
            to the stated approximations) or ``uniform`` (the control: no policy).
        copies: M, augmented copies of every sample, all used (the paper's MT trick: 4).
        val_fraction: the fraction of the training set held out for the meta step.
        eps: the sampler's uniform share (Eq. 5), in (0, 1].
        history: r, iterations averaged by a sampler refresh.
        every: s, iterations between sampler refreshes.
        hidden: the policy net's branch width.
        meta_lr: Adam learning rate of theta.
        alpha_lr: Adam learning rate of log(alpha).
        alpha_init: the initial virtual learning rate; None: the task optimizer's at the first
            step.
        val_samples: validation samples per meta step (the first of each validation batch);
            None: ``val_share`` of it.
        val_share: the share of each validation batch a meta step uses when ``val_samples``
            is None, in (0, 1] ([gap-fill]: the paper gives no validation batch size; 0.25
            makes the meta step's validation forward and backward a quarter of the training
            step's, see ``docs/methods/meta.md``; 1: the whole batch).
        exact_form: ``jvp`` (the identity with the dot products by one forward-mode JVP, no
            double backward) or ``unrolled`` (differentiate through the virtual step with
            ``create_graph``); the same gradient (see :mod:`dali_aug.methods.meta._bilevel`).
        fd: ``fast`` mode's finite difference: ``forward`` (one extra forward, against the
            step's own losses; central instead under autocast, whose losses are not in the
            perturbed forward's precision) or ``central`` (two).
        fast_virtual: ``fast`` mode's virtual step: ``current`` (this batch's weighted
            gradient, one backward, as ``exact``), ``previous`` (the previous real step's
            gradient: no extra backward, but far from exact on ResNet-18) or ``real_step``
            (the meta step runs after the real step and takes its gradient, ``p.grad``, as
            the virtual step's from the weights before it: no extra backward and this
            batch's gradient, but the real step's weights come from theta before the meta
            step's update, one step stale, and ``p.grad`` includes any other method's loss
            terms).
        fd_eps: ``fast`` mode's perturbation ``h * g_val`` relative to ``||w||`` (1e-4: on
            ResNet-18 1e-2 and 1e-3 give a theta-gradient cosine to exact of 0.72-0.96,
            1e-4 0.99-1.0; the small CNN is at >= 0.999 from 1e-3 down).
        export_levels: level bins per function in :meth:`MetaAugmentMethod.to_policy`.
        real_weights: the weights of the real step (Eq. 4): ``policy`` (the method) or
            ``equal`` (an ablation, ours: the meta step, the policy's training and the
            sampler run as in ``policy``, but the real step weighs every sample equally;
            it separates the cost of the weights from the cost of the rest of the path).
        weight_norm: how the policy's sigmoid outputs P_i become the weights of the virtual
            and the real step: ``sum`` (each divided by the batch's sum, as the paper's text
            says: "normalized within each mini-batch"; the weights sum to 1) or ``mean``
            (``P_i / N``, Eqs. 2 and 4 as printed: ``(1/n) sum_i P_i grad L_i``; the weights
            sum to the mean output, so the policy also sets the step's size). The paper's
            text and equations disagree; ``sum`` is our default reading, ``mean`` the other.
    """

    mode: Mode = "exact"
    copies: int = 1
    val_fraction: float = 0.02
    eps: float = 0.1
    history: int = 200
    every: int = 50
    hidden: int = 100
    meta_lr: float = 1e-3
    alpha_lr: float = 1e-3
    alpha_init: float | None = None
    val_samples: int | None = None
    val_share: float = 0.25
    exact_form: ExactForm = "jvp"
    fd: FiniteDifference = "forward"
    fast_virtual: FastVirtual = "real_step"
    fd_eps: float = 1e-4
    export_levels: int = 3
    real_weights: Literal["policy", "equal"] = "policy"
    weight_norm: Literal["sum", "mean"] = "sum"

    def __post_init__(self) -> None:
        if self.mode not in ("exact", "fast", "uniform"):
            raise ValueError(f"MetaConfig: mode={self.mode!r}; use 'exact', 'fast' or 'uniform'")
        if self.exact_form not in ("jvp", "unrolled"):
            raise ValueError(f"MetaConfig: exact_form={self.exact_form!r}; use 'jvp' or 'unrolled'")
        if self.real_weights not in ("policy", "equal"):
            raise ValueError(
                f"MetaConfig: real_weights={self.real_weights!r}; use 'policy' or 'equal'"
            )
        if self.weight_norm not in ("sum", "mean"):
            raise ValueError(f"MetaConfig: weight_norm={self.weight_norm!r}; use 'sum' or 'mean'")
        if self.fd not in ("forward", "central"):
            raise ValueError(f"MetaConfig: fd={self.fd!r}; use 'forward' or 'central'")
        if self.fast_virtual not in ("current", "previous", "real_step"):
            raise ValueError(
                f"MetaConfig: fast_virtual={self.fast_virtual!r}; use 'current', 'previous' or "
                "'real_step'"
            )
        for name in ("copies", "history", "every", "hidden", "export_levels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"MetaConfig: {name}={v!r} must be a positive int")
        if self.val_samples is not None and (
            isinstance(self.val_samples, bool) or self.val_samples < 1
        ):
            raise ValueError(f"MetaConfig: val_samples={self.val_samples!r}; use None or >= 1")
        if not 0.0 < self.val_share <= 1.0:
            raise ValueError(
                f"MetaConfig: val_share={self.val_share} must be in (0, 1] (the share of each "
                "validation batch a meta step uses; 1: all of it)"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(
                f"MetaConfig: val_fraction={self.val_fraction} must be in (0, 1), e.g. 0.02 "
                "(--val-fraction)"
            )
        if not 0.0 < self.eps <= 1.0:
            raise ValueError(
                f"MetaConfig: eps={self.eps} must be in (0, 1] (the sampler's uniform share; "
                "the paper uses 0.1)"
            )
        for name in ("meta_lr", "alpha_lr", "fd_eps"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"MetaConfig: {name}={v} must be a finite number > 0")
        if self.alpha_init is not None and not (
            math.isfinite(self.alpha_init) and self.alpha_init > 0
        ):
            raise ValueError(
                f"MetaConfig: alpha_init={self.alpha_init} must be > 0 (or None: the task lr)"
            )


@dataclasses.dataclass(frozen=True)
class _Pending:
    """What ``augment`` drew for the step's ``loss``."""

    index: int
    first: torch.Tensor  # [N] CPU
    second: torch.Tensor
    m1: torch.Tensor
    m2: torch.Tensor
    embedding: torch.Tensor  # [N, 28] on the batch's device


@dataclasses.dataclass(frozen=True)
class _Deferred:
    """What ``loss`` keeps for a meta step after the real step (``fast_virtual="real_step"``)."""

    index: int
    weights: dict[str, torch.Tensor]  # w before the real step (detached copies)
    losses: torch.Tensor  # [N] the step's losses at w
    features: torch.Tensor  # [N, D] detached


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _feature_dim(model: nn.Module) -> int:
    head = getattr(model, "head", None)
    feats = getattr(model, "features", None)
    width = getattr(head, "in_features", None)
    if not callable(feats) or not isinstance(head, nn.Module) or not isinstance(width, int):
        raise TypeError(
            f"MetaAugment needs the task network's penultimate features: {type(model).__name__} "
            "has no features(x) -> [B, D] with a linear head (head.in_features); use a model of "
            "dali_aug.models.build_model or add those two members"
        )
    return width


class MetaAugmentMethod(Method):
    """Sample-aware augmentation by meta-learned loss reweighting.

    Args:
        model: the task network (the trainer's bare model); it must have ``features`` and a
            linear ``head`` (the policy net reads the penultimate features).
        config: :class:`MetaConfig`.
        seed: seeds the pair, magnitude, sign and policy-net initialisation draws.

    Attributes:
        policy: the :class:`PolicyNet` (own optimizer; checkpointed through
            :meth:`state_dict`, not returned by :meth:`modules`).
        sampler: the :class:`PairSampler`.
        magnitude_stats: float64 [14, MAGNITUDE_BINS, 2], sum and count of the raw weights by
            function and magnitude bin (each sample counts for both its functions).
        report_dir: where :meth:`finish` writes the report files (the CLI sets the run
            folder); None: nowhere.
        report_files: the files :meth:`finish` wrote, by kind.
    """

    name = "meta"

    def __init__(self, model: nn.Module, config: MetaConfig | None = None, *, seed: int = 0):
        self.config = config = config or MetaConfig()
        device = next(iter(model.parameters())).device
        fork = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=fork)))
            self.policy = PolicyNet(_feature_dim(model), hidden=config.hidden).to(device)
        self.log_alpha = nn.Parameter(torch.zeros((), device=device))
        self._alpha_ready = config.alpha_init is not None
        if config.alpha_init is not None:
            self.log_alpha.data.fill_(math.log(config.alpha_init))
        self.meta_optimizer = torch.optim.Adam(
            [
                {"params": list(self.policy.parameters()), "lr": config.meta_lr},
                {"params": [self.log_alpha], "lr": config.alpha_lr},
            ]
        )
        self.sampler = PairSampler(
            len(FUNCTIONS), eps=config.eps, history=config.history, every=config.every
        )
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.magnitude_stats = torch.zeros((len(FUNCTIONS), MAGNITUDE_BINS, 2), dtype=torch.float64)
        self.report_dir: Path | None = None
        self.report_files: dict[str, str] = {}
        self._pending: _Pending | None = None
        self._previous: dict[str, torch.Tensor] | None = None
        self._deferred: _Deferred | None = None
        self._loss: Loss | None = None

    # -- the interface ------------------------------------------------------------------
    @property
    def alpha(self) -> float:
        """The current virtual learning rate."""
        return float(self.log_alpha.detach().exp())

    def loader_needs(self) -> LoaderNeeds:
        holdout = 0.0 if self.config.mode == "uniform" else self.config.val_fraction
        return LoaderNeeds(policy=False, op_record=True, clean=True, holdout=holdout)

    def augment(self, step: Step, batch: Batch) -> Batch:
        clean, flip = check_unaugmented(batch, "MetaAugment")
        m = self.config.copies
        start = batch.flipped_clean()
        labels, indices = batch.labels, batch.indices
        if m > 1:
            start, clean = start.repeat_interleave(m, 0), clean.repeat_interleave(m, 0)
            labels = labels.repeat_interleave(m, 0)
            indices = indices.repeat_interleave(m, 0)
            flip = flip.select(torch.arange(flip.batch_size).repeat_interleave(m))
        n = start.shape[0]
        rank, world = rank_world()
        # every rank draws the whole global batch's pairs from the same stream and takes its
        # own rows: different draws per rank, one generator state (checkpoint, resume)
        first, second = self.sampler.sample(n * world, generator=self.generator)
        t = draw_transforms(first, second, generator=self.generator)
        if world > 1:
            t = t.select(slice(rank * n, (rank + 1) * n))
            first, second = t.first, t.second
        device = start.device
        images = _apply(start, t.params)
        self._pending = _Pending(
            step.index, first, second, t.m1, t.m2, t.embedding().to(device, non_blocking=True)
        )
        layers = flip.then(t.params)
        x = normalize(images).to(batch.images.dtype)
        return dataclasses.replace(
            batch, images=x, labels=labels, indices=indices, params=layers, clean=clean
        )

    def loss(self, step: Step, batch: Batch, out: Forward, loss: Loss) -> Loss:
        if self.config.mode == "uniform":
            return loss
        features = _check_features(out)
        pending = self._take_pending(step, loss)
        if not self._alpha_ready:  # alpha starts at the task learning rate
            lr = float(step.trainer.optimizer.param_groups[0]["lr"])
            self.log_alpha.data.fill_(math.log(max(lr, 1e-12)))
            self._alpha_ready = True
        deferred = self.config.mode == "fast" and self.config.fast_virtual == "real_step"
        if deferred:  # the meta step follows the real step (after_step)
            self._deferred = _Deferred(
                step.index,
                {n: p.detach().clone() for n, p in _trainable(step.model).items()},
                loss.per_sample.detach(),
                features,
            )
        else:
            val = self._val(step.val_batch())
            grads, val_loss = self.meta_gradients(step, batch, out, loss.per_sample, val=val)
            self._meta_update(grads)
            loss.stats["meta_val_loss"] = val_loss
        with torch.no_grad():  # Eq. 4: the real step's weights under the updated theta
            raw, weight = self.weights(features, pending.embedding)
        if self.config.real_weights == "equal":  # the ablation: equal weights
            weight = torch.full_like(weight, 1.0 / len(weight))
        if loss.weight is not None:  # composed after another weighting method
            weight = normalise_weights(weight * loss.weight.to(weight.dtype)) * weight.sum()
        loss.weight = weight
        loss.normalise = self.config.weight_norm == "sum"
        loss.stats["alpha"] = self.log_alpha.detach().exp()
        loss.stats["mean_weight"] = raw.mean()
        loss.stats["weight_ess"] = effective_sample_share(weight)
        self._loss = loss  # after_step adds the deferred meta step's validation loss
        # the sampler's and the report's statistics over the global batch (every rank
        # keeps the same sampler)
        pairs, mags = _sum_over_ranks(
            [
                self.sampler.batch_stats(pending.first, pending.second, raw),
                self._magnitude_increment(pending, raw),
            ]
        )
        self.sampler.record_stats(pairs)
        self.magnitude_stats += mags.cpu()
        return loss

    def after_step(self, step: Step, batch: Batch, out: Forward) -> None:
        if self.config.mode == "uniform":
            return
        deferred, self._deferred = self._deferred, None
        if deferred is not None and deferred.index == step.index:
            self._deferred_meta_step(step, batch, deferred)
        self.sampler.step()
        if self.config.mode == "fast" and self.config.fast_virtual == "previous":
            # the real step's gradient, for the next virtual step
            grads = {n: p.grad for n, p in step.model.named_parameters() if p.grad is not None}
            finite = bool(grads) and _finite(grads.values())
            self._previous = grads if finite else None

    def finish(self, trainer: Trainer) -> None:
        """End of training: writes the report files to :attr:`report_dir` (set by the CLI to
        the run folder; nothing when None; rank 0 only under torch.distributed) and keeps
        their paths in :attr:`report_files`."""
        if self.report_dir is not None and rank_world()[0] == 0:  # one writer under torchrun
            self.report_files = self.write_report(self.report_dir)

    # -- the meta-gradient --------------------------------------------------------------
    def weights(
        self, features: torch.Tensor, embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw sigmoid outputs, the steps' weights by ``weight_norm``), both [N]; the
        features are detached (P is a function of theta only)."""
        raw = self.policy(features.detach(), embedding)
        weight = normalise_weights(raw)  # also refuses NaN/inf and an all-zero batch
        if self.config.weight_norm == "mean":  # Eqs. 2 and 4 as printed: P_i / N
            weight = raw / len(raw)
        return raw, weight

    def _meta_update(self, grads: list[torch.Tensor]) -> None:
        """One step of (theta, alpha); under torch.distributed with the gradients averaged
        over the ranks, so that every rank keeps the same policy and alpha."""
        grads = _mean_over_ranks(grads)
        for p, g in zip(self._meta_tensors(), grads, strict=True):
            p.grad = g.to(p.dtype)
        self.meta_optimizer.step()
        self.meta_optimizer.zero_grad(set_to_none=True)

    def _deferred_meta_step(self, step: Step, batch: Batch, saved: _Deferred) -> None:
        """``fast_virtual="real_step"``: the meta step of the step just taken, with the real
        step's gradient (``p.grad``) as the virtual step's and the weights before it."""
        model = step.model
        real = {n: p.grad for n, p in _trainable(model).items() if p.grad is not None}
        if not real or not _finite(real.values()):
            return  # e.g. a step the GradScaler skipped: no meta step
        pending = self._pending
        assert pending is not None
        params = {n: p.requires_grad_(True) for n, p in saved.weights.items()}
        _, weights = self.weights(saved.features, pending.embedding)
        val = self._val(step.val_batch())

        val_loss, train_losses_at = _loss_fns(step, batch, val)

        scheme: FiniteDifference = "central" if step.trainer.amp is not None else self.config.fd
        grads, lv = fast_meta_grads(
            params,
            weights,
            self.log_alpha.exp(),
            val_loss,
            train_losses_at,
            self._meta_tensors(),
            previous=real,
            fd_eps=self.config.fd_eps,
            scheme=scheme,
            losses_at_w=saved.losses,
        )
        self._meta_update(grads)
        if self._loss is not None:
            self._loss.stats["meta_val_loss"] = lv

    def _meta_tensors(self) -> list[torch.Tensor]:
        return [*self.policy.parameters(), self.log_alpha]

    def meta_gradients(
        self,
        step: Step,
        batch: Batch,
        out: Forward,
        per_sample: torch.Tensor,
        *,
        val: Batch,
        mode: Mode | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The gradient of the validation loss at the virtual weights with respect to the
        policy net's parameters and log(alpha) (in :meth:`_meta_tensors` order), without
        stepping; ``mode`` overrides the config's (to compare ``exact`` and ``fast``).

        Args:
            step: the training step.
            batch: the augmented batch (after :meth:`augment`).
            out: the step's forward of ``batch.images`` (its graph is kept).
            per_sample: [N] losses of ``out`` (with their graph to the model).
            val: the clean validation batch.
            mode: ``exact`` or ``fast``.

        Returns:
            (gradients, the validation loss where the validation gradient was taken).
        """
        mode = mode or self.config.mode
        if self._pending is None:
            raise ValueError("MetaAugment.meta_gradients: call augment(step, batch) first")
        features = _check_features(out).detach()
        _, weights = self.weights(features, self._pending.embedding)
        alpha = self.log_alpha.exp()
        params = {n: p for n, p in step.model.named_parameters() if p.requires_grad}

        val_loss, train_losses_at = _loss_fns(step, batch, val)

        meta = self._meta_tensors()
        cfg = self.config
        if mode == "exact" and cfg.exact_form == "unrolled":
            return unrolled_meta_grads(params, per_sample, weights, alpha, val_loss, meta)
        if mode == "exact":
            return exact_meta_grads(
                params, per_sample, weights, alpha, val_loss, train_losses_at, meta
            )
        if mode == "fast":
            scheme: FiniteDifference = "central" if step.trainer.amp is not None else cfg.fd
            virtual: dict[str, torch.Tensor] | None = self._previous
            if cfg.fast_virtual == "current":
                virtual = weighted_grad(params, per_sample, weights)
            return fast_meta_grads(
                params,
                weights,
                alpha,
                val_loss,
                train_losses_at,
                meta,
                previous=virtual,
                fd_eps=cfg.fd_eps,
                scheme=scheme,
                losses_at_w=per_sample.detach(),
            )
        raise ValueError(f"meta_gradients: mode={mode!r}; use 'exact' or 'fast'")

    def _val(self, val: Batch) -> Batch:
        n = self.config.val_samples
        if n is None:
            n = max(1, math.ceil(self.config.val_share * len(val.labels)))
        if n >= len(val.labels):
            return val
        return dataclasses.replace(
            val, images=val.images[:n], labels=val.labels[:n], indices=val.indices[:n]
        )

    def _take_pending(self, step: Step, loss: Loss) -> _Pending:
        pending = self._pending
        if pending is None or pending.index != step.index:
            raise ValueError(
                "MetaAugment.loss runs without this step's augment (the trainer calls augment "
                "first); put the method in Trainer(methods=[...])"
            )
        if pending.embedding.shape[0] != loss.per_sample.shape[0]:
            raise ValueError(
                f"MetaAugment: {pending.embedding.shape[0]} augmented samples but "
                f"{loss.per_sample.shape[0]} losses; a method after MetaAugment changed the batch"
            )
        return pending

    def _magnitude_increment(self, pending: _Pending, raw: torch.Tensor) -> torch.Tensor:
        """float64 [14, MAGNITUDE_BINS, 2]: this batch's addition to :attr:`magnitude_stats`."""
        values = raw.detach().double().cpu()
        k = MAGNITUDE_BINS
        out = torch.zeros_like(self.magnitude_stats)
        for fn, mag in ((pending.first, pending.m1), (pending.second, pending.m2)):
            b = (mag.double() / 10.0 * k).long().clamp(0, k - 1)
            flat = fn * k + b
            out[..., 0] += torch.bincount(flat, weights=values, minlength=len(FUNCTIONS) * k).view(
                len(FUNCTIONS), k
            )
            out[..., 1] += torch.bincount(flat, minlength=len(FUNCTIONS) * k).view(
                len(FUNCTIONS), k
            )
        return out

    # -- results ------------------------------------------------------------------------
    def pair_table(self) -> dict[str, torch.Tensor]:
        """[14, 14] tensors over the whole run: ``count``, ``mean_weight`` (NaN where never
        drawn) and the sampler's current ``prob``."""
        totals = self.sampler.totals.view(len(FUNCTIONS), len(FUNCTIONS), 2)
        count = totals[..., 1]
        return {"count": count, "mean_weight": totals[..., 0] / count, "prob": self.sampler.probs}

    def to_policy(self, *, levels: int | None = None) -> Policy:
        """The learned pair distribution as a dataset-level weighted :class:`Policy` (see
        :func:`dali_aug.methods.meta._report.pairs_policy`)."""
        from dali_aug.methods.meta._report import pairs_policy

        return pairs_policy(self.sampler.probs, levels=levels or self.config.export_levels)

    def write_report(self, out: str | Path) -> dict[str, str]:
        """Writes ``meta_pairs.csv``, ``meta_pairs.png`` and ``meta_policy.json`` to ``out``."""
        from dali_aug.methods.meta._report import write_report

        return write_report(self, Path(out))

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": {k: v.detach().clone() for k, v in self.policy.state_dict().items()},
            "log_alpha": self.log_alpha.detach().clone(),
            "alpha_ready": self._alpha_ready,
            "meta_optimizer": self.meta_optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "generator": self.generator.get_state(),
            "magnitude_stats": self.magnitude_stats.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self._alpha_ready = bool(state["alpha_ready"])
        self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.generator.set_state(state["generator"])
        self.magnitude_stats = state["magnitude_stats"].double().cpu().clone()


def _loss_fns(
    step: Step, batch: Any, val: Any
) -> tuple[
    Callable[[dict[str, torch.Tensor]], torch.Tensor],
    Callable[[dict[str, torch.Tensor]], torch.Tensor],
]:
    """(mean validation loss, per-sample training losses) as functions of substituted
    weights, both under the step's frozen normalisation (no running-statistics update)."""

    def val_loss(ps: dict[str, torch.Tensor]) -> torch.Tensor:
        with step.frozen_norm():
            logits = step.forward(val.images, params=ps).logits
        return step.losses(logits, val.labels).mean()

    def train_losses_at(ps: dict[str, torch.Tensor]) -> torch.Tensor:
        with step.frozen_norm():
            logits = step.forward(batch.images, params=ps).logits
        return step.losses(logits, batch.labels)

    return val_loss, train_losses_at


def _sum_over_ranks(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The element-wise sums of ``tensors`` over the ranks (one all-reduce; on the CUDA
    device of the model under NCCL); the tensors themselves when not distributed."""
    _, world = rank_world()
    if world == 1 or not tensors:
        return tensors
    device = collective_device(tensors[0].device)
    flat = torch.cat([t.detach().double().flatten().to(device) for t in tensors])
    torch.distributed.all_reduce(flat)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].view_as(t).to(t.device, t.dtype))
        start += t.numel()
    return out


def _mean_over_ranks(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    _, world = rank_world()
    return [t / world for t in _sum_over_ranks(tensors)] if world > 1 else tensors


def _finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every entry of ``tensors`` is finite (one fused norm, one sync)."""
    return bool(torch.isfinite(torch.nn.utils.get_total_norm(list(tensors))))


def _check_features(out: Forward) -> torch.Tensor:
    if out.features is None:
        raise TypeError(
            "MetaAugment needs the task network's penultimate features (Forward.features is "
            "None): use a model with features(x) -> [B, D] and a head (dali_aug.models)"
        )
    return out.features.detach().float()


def _apply(images: torch.Tensor, params: OpParams) -> torch.Tensor:
    return apply_params(images, params.to(images.device))
