"""The trainer: one training step with explicit extension points, metrics, checkpoints.

A step is ``before_forward`` (batch -> batch: sample-aware augmentation on tensors) ->
forward -> per-sample loss -> ``on_loss`` (per-sample losses -> scalar loss: reweighting,
extra terms) -> backward -> optimizer step -> ``after_backward`` (meta steps, policy updates).
Methods plug in as :class:`Hook` objects without changing the step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dali_aug.loader import Batch, Loader

__all__ = ["Hook", "Trainer", "accuracy", "multilabel_metrics"]


class Hook:
    """Extension points of the training step; override what you need."""

    def before_forward(self, trainer: Trainer, batch: Batch) -> Batch:
        return batch

    def on_loss(
        self, trainer: Trainer, batch: Batch, logits: torch.Tensor, losses: torch.Tensor
    ) -> torch.Tensor:
        """Maps per-sample losses [B] to the losses the step averages (default: unchanged)."""
        return losses

    def after_backward(self, trainer: Trainer, batch: Batch) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        """What the hook must keep across a checkpoint (learned heads, generators)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of single-label logits."""
    if len(labels) == 0:
        return float("nan")
    return float((logits.argmax(1) == labels).float().mean())


def _average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    order = torch.argsort(scores, descending=True)
    t = targets[order]
    if t.sum() == 0:
        return float("nan")
    hits = torch.cumsum(t, 0)
    precision = hits / torch.arange(1, len(t) + 1, device=t.device)
    return float((precision * t).sum() / t.sum())


def multilabel_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
    """mAP (mean over labels with a positive), mA (label-mean of (TPR + TNR) / 2, as in
    pedestrian-attribute papers), and per-label F1 at threshold 0.5 of the sigmoid."""
    pred = (logits.sigmoid() >= 0.5).float()
    t = targets.float()
    tp = (pred * t).sum(0)
    fp = (pred * (1 - t)).sum(0)
    fn = ((1 - pred) * t).sum(0)
    tn = ((1 - pred) * (1 - t)).sum(0)
    tpr = tp / (tp + fn).clamp(min=1)
    tnr = tn / (tn + fp).clamp(min=1)
    f1 = 2 * tp / (2 * tp + fp + fn).clamp(min=1)
    aps = [_average_precision(logits[:, k], t[:, k]) for k in range(t.shape[1])]
    valid = [a for a in aps if not math.isnan(a)]
    return {
        "mAP": sum(valid) / max(len(valid), 1),
        "mA": float(((tpr + tnr) / 2).mean()),
        "f1": f1.tolist(),
    }


@dataclasses.dataclass
class Trainer:
    """Trains ``model`` on a :class:`Loader`.

    Args:
        model: any ``nn.Module`` mapping images to logits.
        optimizer: its optimizer.
        multi_label: BCE on multi-hot targets instead of cross-entropy.
        hooks: extension points, called in order.
        amp: autocast dtype (``torch.bfloat16``/``torch.float16``) or None.
        channels_last: use the channels-last memory format.
        scheduler: optional LR scheduler, stepped once per epoch.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    multi_label: bool = False
    hooks: Sequence[Hook] = ()
    amp: torch.dtype | None = None
    channels_last: bool = False
    scheduler: Any = None
    epoch: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample losses [B]."""
        if self.multi_label:
            bce = F.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none")
            return bce.mean(1)
        if labels.dim() == 2:  # soft labels (mixing methods)
            return -(labels * logits.log_softmax(1)).sum(1)
        return F.cross_entropy(logits, labels, reduction="none")

    def step(self, batch: Batch) -> float:
        """One training step; returns the loss."""
        self.model.train()
        for h in self.hooks:
            batch = h.before_forward(self, batch)
        x = self._prepare(batch.images)
        with torch.autocast(x.device.type, dtype=self.amp, enabled=self.amp is not None):
            logits = self.model(x)
        losses = self.losses(logits.float(), batch.labels)
        for h in self.hooks:
            losses = h.on_loss(self, batch, logits, losses)
        loss = losses.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()}; lower the learning rate")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        for h in self.hooks:
            h.after_backward(self, batch)
        return float(loss.detach())

    @torch.no_grad()
    def evaluate(self, loader: Loader) -> dict[str, Any]:
        """Loss and accuracy (single-label) or mAP/mA/F1 (multi-label) over ``loader``."""
        # the bare module: a DDP wrapper's forward is a collective (buffer broadcast), and
        # evaluation may run on one rank only
        model = self._bare_model()
        model.eval()
        all_logits, all_labels = [], []
        for batch in loader:
            with torch.autocast(
                batch.images.device.type, dtype=self.amp, enabled=self.amp is not None
            ):
                logits = model(self._prepare(batch.images))
            all_logits.append(logits.float().cpu())
            all_labels.append(batch.labels.cpu())
        logits, labels = torch.cat(all_logits), torch.cat(all_labels)
        out: dict[str, Any] = {"val_loss": float(self.losses(logits, labels).mean())}
        if self.multi_label:
            out.update(multilabel_metrics(logits, labels))
        else:
            out["val_acc"] = accuracy(logits, labels)
        return out

    # -- checkpoints --------------------------------------------------------------------
    def _bare_model(self) -> nn.Module:
        inner = getattr(self.model, "module", self.model)
        assert isinstance(inner, nn.Module)
        return inner

    def state_dict(self) -> dict[str, Any]:
        model = self._bare_model()
        return {
            "model": model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "epoch": self.epoch,
            "history": self.history,
            "hooks": {
                _hook_key(i, h): st for i, h in enumerate(self.hooks) if (st := h.state_dict())
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = dict(state.get("hooks", {}))
        keys = [_hook_key(i, h) for i, h in enumerate(self.hooks)]
        missing = [
            k for k, h in zip(keys, self.hooks, strict=True) if h.state_dict() and k not in saved
        ]
        extra = sorted(set(saved) - set(keys))
        if missing or extra:
            raise ValueError(
                f"the checkpoint's hook states {sorted(saved)} do not match this trainer's hooks "
                f"{keys}; resume with the same --method options"
            )
        model = self._bare_model()
        model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        for key, hook in zip(keys, self.hooks, strict=True):
            if key in saved:
                hook.load_state_dict(saved[key])

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        tmp = Path(path).with_suffix(".tmp")
        torch.save({**self.state_dict(), **(extra or {})}, tmp)
        tmp.replace(path)

    def fit(
        self,
        train: Loader,
        val: Loader | None,
        epochs: int,
        *,
        checkpoint: str | Path | None = None,
        progress: bool = True,
        log: Any = print,
    ) -> list[dict[str, Any]]:
        """Trains from ``self.epoch`` to ``epochs`` (so a resumed trainer continues), with a
        checkpoint after every epoch. Returns the per-epoch history."""
        from tqdm import tqdm

        while self.epoch < epochs:
            train.set_epoch(self.epoch)
            t0 = time.perf_counter()
            total, count = 0.0, 0
            bar = tqdm(
                train,
                total=len(train),
                desc=f"epoch {self.epoch + 1}/{epochs}",
                disable=not progress,
                leave=False,
            )
            for batch in bar:
                loss = self.step(batch)
                total, count = total + loss * len(batch.labels), count + len(batch.labels)
                bar.set_postfix(loss=f"{loss:.3f}")
            if self.scheduler is not None:
                self.scheduler.step()
            row: dict[str, Any] = {
                "epoch": self.epoch + 1,
                "train_loss": total / max(count, 1),
                "seconds": time.perf_counter() - t0,
                "images": count,
                "skipped": len(train.skipped),
            }
            if val is not None:
                row.update(self.evaluate(val))
            self.history.append(row)
            self.epoch += 1
            log(_format_row(row))
            if checkpoint is not None:
                self.save(checkpoint)
        return self.history


def _hook_key(index: int, hook: Hook) -> str:
    return f"{index}:{type(hook).__name__}"


def _format_row(row: dict[str, Any]) -> str:
    parts = []
    for k, v in row.items():
        if isinstance(v, float):
            parts.append(f"{k}={v:.4f}")
        elif not isinstance(v, list):
            parts.append(f"{k}={v}")
    return " ".join(parts)


def write_metrics(path: str | Path, payload: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(payload, indent=2, default=str))
