"""The method interface of the training step: what a step gives a method, and what a method
may do in it.

A training step (:meth:`dali_aug.train.Trainer.step`) is::

    batch = method.augment(step, batch)              # per-sample augmentation on tensors
    out = step.forward(batch.images)                 # Forward(logits, features, early)
    loss = method.loss(step, batch, out, Loss(...))  # weights, named terms, meta steps
    zero_grad; backward(loss.total()); optimizer.step()
    method.after_step(step, batch, out)              # statistics, sampler refreshes

with ``augment`` outside the autocast region (saliency and the torch ops run in float32) and
``forward`` and ``loss`` inside it; and ``method.finish(trainer)`` once when
:meth:`~dali_aug.train.Trainer.fit` has trained its last epoch (end-of-training reports).
Several methods compose: each ``augment`` sees the previous one's batch, each ``loss`` the
previous one's :class:`Loss`.

Every member of :class:`Method` is optional. Trainable modules a method owns are returned by
:meth:`Method.modules`: the trainer moves them to the model's device, wraps them with the
model in one DistributedDataParallel, adds them to the optimizer and saves them in its
checkpoints, and never puts them into the exported model (``Trainer.export()``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from dali_aug.batch import Batch
    from dali_aug.train._trainer import Trainer

__all__ = ["Forward", "LoaderNeeds", "Loss", "Method", "Step", "frozen_norm"]


@dataclasses.dataclass(frozen=True)
class Forward:
    """What one forward pass gives a method.

    Attributes:
        logits: [B, C] (in the autocast dtype when autocast is on).
        features: [B, D], the input of ``model.head``; None for a model without the
            ``features``/``head`` protocol.
        early: the first block's feature map [B, C', H', W'] when the model has one
            (``model.forward_parts``), else None.
    """

    logits: torch.Tensor
    features: torch.Tensor | None = None
    early: torch.Tensor | None = None


@dataclasses.dataclass
class Loss:
    """The loss of one step.

    Attributes:
        per_sample: [B] losses of the (augmented) batch.
        weight: optional [B] per-sample weights; reduced as ``sum(w * l) / sum(w)``, or as
            ``sum(w * l)`` when ``normalise`` is False (weights that carry the step's scale).
        terms: named scalar terms added to the total (e.g. ``{"early": 0.3 * l_early}``);
            each is logged per epoch under ``loss/<name>``.
        stats: named scalars logged per epoch but not added (e.g. a meta step's
            validation loss).
        normalise: reduce the weighted losses by the weights' sum (the default), or not.
    """

    per_sample: torch.Tensor
    weight: torch.Tensor | None = None
    terms: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    stats: dict[str, torch.Tensor | float] = dataclasses.field(default_factory=dict)
    normalise: bool = True

    def main(self) -> torch.Tensor:
        """The (weighted) mean of the per-sample losses."""
        if self.weight is None:
            return self.per_sample.mean()
        w = self.weight.to(self.per_sample.dtype)
        if w.shape != self.per_sample.shape:
            raise ValueError(
                f"loss weights have shape {tuple(w.shape)} but the per-sample losses "
                f"{tuple(self.per_sample.shape)}; give one weight per sample"
            )
        if not torch.isfinite(w).all():
            raise ValueError("loss weights contain NaN/inf; check the method producing them")
        if not self.normalise:
            return (w * self.per_sample).sum()
        return (w * self.per_sample).sum() / w.sum().clamp_min(torch.finfo(w.dtype).tiny)

    def total(self) -> torch.Tensor:
        """The scalar the step back-propagates: :meth:`main` plus every term."""
        out = self.main()
        for value in self.terms.values():
            out = out + value
        return out


@dataclasses.dataclass(frozen=True)
class LoaderNeeds:
    """What a method needs from the Loader (the CLI builds the Loader from it).

    Attributes:
        policy: False when the method replaces the dataset-level policy (the Loader runs
            none).
        op_record: ``batch.params``, the ops the Loader applied (layer 0: the flip).
        clean: ``batch.clean``, the uint8 crops before flip and policy.
        holdout: the fraction of the *training* set held out (seeded, stratified:
            :func:`dali_aug.datasets.holdout`) as the step's validation batches
            (:meth:`Step.val_batch`; clean: the evaluation transform, shuffled); the rest is
            trained on. 0: none.
    """

    policy: bool = True
    op_record: bool = False
    clean: bool = False
    holdout: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout < 1.0:
            raise ValueError(f"holdout={self.holdout} must be in [0, 1), e.g. 0.02")

    def __or__(self, other: LoaderNeeds) -> LoaderNeeds:
        return LoaderNeeds(
            policy=self.policy and other.policy,
            op_record=self.op_record or other.op_record,
            clean=self.clean or other.clean,
            holdout=max(self.holdout, other.holdout),
        )


class Method:
    """A training-step method; override what you need (the defaults do nothing).

    Example:
        >>> class HalfLabelSmoothing(Method):
        ...     def loss(self, step, batch, out, loss):
        ...         loss.terms["uniform"] = -0.05 * out.logits.float().log_softmax(1).mean()
        ...         return loss
    """

    #: name used in checkpoints and logs (default: the class name)
    name: str = ""

    def modules(self) -> nn.ModuleDict:
        """Trainable modules owned by the method, trained with the model."""
        return nn.ModuleDict()

    def loader_needs(self) -> LoaderNeeds:
        return LoaderNeeds()

    def augment(self, step: Step, batch: Batch) -> Batch:
        return batch

    def loss(self, step: Step, batch: Batch, out: Forward, loss: Loss) -> Loss:
        return loss

    def after_step(self, step: Step, batch: Batch, out: Forward) -> None:
        return None

    def finish(self, trainer: Trainer) -> None:
        """End of training: called once by :meth:`Trainer.fit` after its last epoch (after
        the last checkpoint and the history row; not when ``stop_after_steps`` cuts the run
        short), e.g. to write a method's report files."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """What the method keeps across a checkpoint besides :meth:`modules` (generators,
        statistics); tensors, numbers, strings, lists and dicts only (checkpoints load with
        ``weights_only=True``)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def method_key(index: int, method: Method) -> str:
    """The key of a method in checkpoints: position and name."""
    return f"{index}:{method.name or type(method).__name__}"


@contextlib.contextmanager
def frozen_norm(model: nn.Module) -> Iterator[None]:
    """Batch-norm running statistics are neither used nor updated inside: a side pass (a
    saliency pass, a validation or virtual forward) normalises with its batch statistics
    like the training step does, but does not count as a batch for the statistics used at
    evaluation. The statistics are not written at all (no in-place update), so a side pass
    may run between the step's forward and its backward."""
    norms = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


class Step:
    """One training step as a method sees it (built by the trainer for every step).

    Attributes:
        index: the global step counter (0-based, over all epochs; kept in checkpoints).
        epoch: the epoch (0-based).
        trainer: the trainer (``step.model`` is its bare model).
    """

    def __init__(self, trainer: Trainer, index: int, epoch: int) -> None:
        self.trainer, self.index, self.epoch = trainer, index, epoch

    @property
    def model(self) -> nn.Module:
        """The bare model (not the DDP wrapper)."""
        return self.trainer.bare_model

    @property
    def device(self) -> torch.device:
        return self.trainer.device

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The step's autocast region (a no-op without ``amp``)."""
        amp = self.trainer.amp
        return torch.autocast(self.device.type, dtype=amp, enabled=amp is not None)

    def frozen_norm(self) -> contextlib.AbstractContextManager[None]:
        """Batch-norm running statistics are left unchanged inside (for side passes)."""
        return frozen_norm(self.model)

    def forward(
        self, images: torch.Tensor, params: dict[str, torch.Tensor] | None = None
    ) -> Forward:
        """The model's forward under the step's autocast and memory format.

        Args:
            images: normalised float images [B, 3, H, W].
            params: substituted weights by name (``model.named_parameters()`` names), e.g.
                a virtual step's ``w - alpha * grad``; run with
                :func:`torch.func.functional_call` on the bare model (outside DDP). Names
                not given keep the model's own tensors.
        """
        return self.trainer.forward(images, params=params)

    def losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample losses [B] of the trainer's criterion (float32)."""
        return self.trainer.losses(logits.float(), labels)

    def val_batch(self) -> Batch:
        """The next batch of the trainer's ``meta_val`` loader (cycled over epochs); for
        bilevel methods. Raises ValueError when the trainer has none."""
        return self.trainer.next_meta_val()
