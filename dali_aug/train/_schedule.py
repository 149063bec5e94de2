"""The learning-rate schedule: linear warm-up, then cosine to ``min_lr`` (timm's ``--sched
cosine --warmup-epochs --warmup-lr --min-lr``, with the warm-up as a prefix of the schedule).
Its time unit is the caller's: epochs (timm's default, the lr changes once per epoch) or
updates (timm's ``--sched-on-updates``)."""

from __future__ import annotations

import dataclasses
import math

__all__ = ["WarmupCosine"]


@dataclasses.dataclass(frozen=True)
class WarmupCosine:
    """``lr(t)`` for ``t`` = 0, 1, ... of ``total`` (epochs or updates).

    - ``t < warmup``: ``warmup_lr + (base_lr - warmup_lr) * t / warmup``;
    - then ``min_lr + (base_lr - min_lr) * (1 + cos(pi * u)) / 2`` with
      ``u = (t - warmup) / (total - warmup)``, held at ``min_lr`` after ``total``.

    Attributes:
        base_lr: the peak learning rate (``--lr``).
        total: the run's length (epochs, or epochs x updates per epoch).
        warmup: the linear warm-up's length, in the same unit (may be fractional).
        warmup_lr: the learning rate at update 0 of the warm-up (``--warmup-lr``).
        min_lr: the learning rate the cosine ends at (``--min-lr``).
    """

    base_lr: float
    total: float
    warmup: float = 0
    warmup_lr: float = 1e-6
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        for name in ("base_lr", "warmup_lr", "min_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value}; use a finite learning rate >= 0")
        if not (math.isfinite(self.total) and self.total > 0):
            raise ValueError(f"total={self.total}; the schedule needs a positive length")
        if not 0 <= self.warmup < self.total:
            raise ValueError(
                f"warmup={self.warmup} of {self.total}; the warm-up must be shorter "
                "than the run (lower --warmup-epochs or raise --epochs)"
            )

    def __call__(self, t: float) -> float:
        if t < self.warmup:
            return self.warmup_lr + (self.base_lr - self.warmup_lr) * t / self.warmup
        u = min(1.0, (t - self.warmup) / (self.total - self.warmup))
        return self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * u)) / 2

    def factor(self, t: float) -> float:
        """``lr(t) / base_lr`` (for ``torch.optim.lr_scheduler.LambdaLR``)."""
        return self(t) / self.base_lr if self.base_lr else 0.0
