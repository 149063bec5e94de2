"""Mixup and CutMix in the training step, with timm's flag names and meanings.

Mixup (Zhang et al., arXiv:1710.09412) blends two images and their targets with a weight
``lam ~ Beta(alpha, alpha)``; CutMix (Yun et al., arXiv:1905.04899) pastes a box of the partner
image, of area ``1 - lam``, and weights the targets by the pasted area. The semantics follow
timm's ``timm.data.Mixup``:

- ``mode="batch"``: one ``lam`` and one choice (mixup or CutMix) for the whole batch;
  ``"pair"``: one per pair of samples ``(i, B-1-i)``; ``"elem"``: one per sample. The partner
  of sample ``i`` is sample ``B-1-i`` (the batch reversed).
- ``prob``: the probability that a batch (``batch``) or a sample (``pair``/``elem``) is mixed
  at all; ``switch_prob``: the probability of CutMix instead of mixup when both are on.
- CutMix's box: sides ``sqrt(1 - lam)`` of the image, centre uniform over the image, clipped
  to it; ``lam`` is then corrected to the area actually pasted (``correct_lam``).
- Targets become soft: single-label ``[B]`` class indices become ``[B, C]`` rows (one-hot,
  smoothed by ``smoothing`` as timm does: ``1 - s + s / C`` on the class, ``s / C`` elsewhere)
  mixed as ``lam * y_i + (1 - lam) * y_partner``; multi-label ``[B, C]`` multi-hot rows are
  mixed the same way (label smoothing is refused for multi-hot targets: it has no standard
  meaning there). The Trainer's loss takes the soft rows: cross-entropy against the row
  (single-label) or BCE against it (multi-label).

Randomness: every draw comes from the method's own seeded ``numpy.random.Generator`` (the
Beta draws have no ``torch.Generator`` form), saved in the checkpoint; the same seed gives the
same mixing. The draws are O(batch size) numbers per step; the mixing itself is batched
tensor code on the images' device.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from dali_aug.ops._torch_kernels import box_mask
from dali_aug.train._method import Method, Step

if TYPE_CHECKING:
    from dali_aug.batch import Batch

__all__ = ["MixMode", "MixupConfig", "MixupMethod", "soft_targets"]

MixMode = Literal["batch", "pair", "elem"]
MIX_MODES: tuple[MixMode, ...] = ("batch", "pair", "elem")


@dataclasses.dataclass(frozen=True)
class MixupConfig:
    """Mixup / CutMix settings (timm's ``--mixup``, ``--cutmix``, ``--mixup-prob``,
    ``--mixup-switch-prob``, ``--mixup-mode``, ``--smoothing``).

    Attributes:
        mixup_alpha: Beta parameter of mixup's ``lam``; 0 turns mixup off.
        cutmix_alpha: Beta parameter of CutMix's ``lam``; 0 turns CutMix off.
        prob: probability of mixing a batch (``batch`` mode) or a sample.
        switch_prob: probability of CutMix rather than mixup when both alphas are > 0.
        mode: ``batch``, ``pair`` or ``elem`` (module docstring).
        smoothing: label smoothing of the single-label targets, in [0, 1).
        correct_lam: CutMix's ``lam`` is the area actually kept after clipping the box.
    """

    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5
    mode: MixMode = "batch"
    smoothing: float = 0.1
    correct_lam: bool = True

    def __post_init__(self) -> None:
        for name in ("mixup_alpha", "cutmix_alpha"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value}; use a finite value >= 0 (0 turns it off)")
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError(
                "mixup_alpha and cutmix_alpha are both 0, so nothing would be mixed; set one "
                "of them > 0 (timm's --mixup 0.8 / --cutmix 1.0) or leave mixing off"
            )
        for name in ("prob", "switch_prob"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name}={value}; use a probability in [0, 1]")
        if self.mode not in MIX_MODES:
            raise ValueError(f"mode={self.mode!r}; use one of {', '.join(MIX_MODES)}")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"smoothing={self.smoothing}; use a value in [0, 1), e.g. 0.1")


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """[B] class indices -> [B, C] float rows: ``1 - s + s / C`` on the class, ``s / C``
    elsewhere (timm's smoothed one-hot); [B, C] multi-hot rows are returned as float."""
    if labels.dim() == 2:
        if smoothing:
            raise ValueError(
                "label smoothing is for single-label targets; drop --smoothing for multi-label data"
            )
        return labels.float()
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels.long().view(-1, 1), 1.0 - smoothing + off)


class MixupMethod(Method):
    """Mixup / CutMix on the batch (module docstring); ``num_classes`` sizes the soft rows
    of single-label targets.

    Example:
        >>> mix = MixupMethod(MixupConfig(mixup_alpha=0.8, cutmix_alpha=1.0), 10, seed=0)
        >>> trainer = Trainer(model, optimizer, methods=[mix])
    """

    name = "mixup"

    def __init__(self, config: MixupConfig, num_classes: int, *, seed: int = 0) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes={num_classes}; use the number of classes (>= 1)")
        self.config, self.num_classes = config, num_classes
        self.rng = np.random.default_rng(seed)

    # -- the draws --------------------------------------------------------------------
    def _draw(self, groups: int) -> tuple[np.ndarray, np.ndarray]:
        """Per group: ``lam`` (1.0 where not mixed) and whether CutMix is used."""
        c = self.config
        use_cutmix = np.zeros(groups, dtype=bool)
        if c.mixup_alpha > 0 and c.cutmix_alpha > 0:
            use_cutmix = self.rng.random(groups) < c.switch_prob
        elif c.cutmix_alpha > 0:
            use_cutmix[:] = True
        alpha = np.where(use_cutmix, c.cutmix_alpha, c.mixup_alpha)
        lam = self.rng.beta(np.maximum(alpha, 1e-12), np.maximum(alpha, 1e-12))
        mixed = self.rng.random(groups) < c.prob
        return np.where(mixed, lam, 1.0), use_cutmix & mixed

    def _boxes(self, lam: np.ndarray, h: int, w: int) -> np.ndarray:
        """CutMix boxes (y0, x0, y1, x1) [N, 4] for ``lam`` [N] (timm's ``rand_bbox``)."""
        ratio = np.sqrt(1.0 - lam)
        ch, cw = (h * ratio).astype(np.int64), (w * ratio).astype(np.int64)
        cy = self.rng.integers(0, h, size=lam.shape[0])
        cx = self.rng.integers(0, w, size=lam.shape[0])
        y0, y1 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
        x0, x1 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
        return np.stack([y0, x0, y1, x1], 1)

    def mix(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mixed images [B, C, H, W] and soft targets [B, num_classes] (module docstring)."""
        c = self.config
        n, _, h, w = images.shape
        if labels.dim() == 2 and labels.shape[1] != self.num_classes:
            raise ValueError(
                f"multi-hot labels have {labels.shape[1]} columns but num_classes is "
                f"{self.num_classes}; build the method with the data's number of labels"
            )
        # each sample's draw: the batch's one, its pair's (i and B-1-i share it), or its own
        rows = np.arange(n)
        group = {"batch": 0 * rows, "pair": np.minimum(rows, n - 1 - rows), "elem": rows}[c.mode]
        lam_g, cut_g = self._draw(int(group.max()) + 1)
        lam, cut = lam_g[group], cut_g[group]
        boxes = np.zeros((n, 4), dtype=np.int64)
        if cut.any():
            boxes[:] = self._boxes(lam_g, h, w)[group]
            boxes[~cut] = 0
            if c.correct_lam:
                area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
                lam = np.where(cut, 1.0 - area / float(h * w), lam)
        device = images.device
        lam_t = torch.as_tensor(lam, dtype=torch.float32, device=device)
        cut_t = torch.as_tensor(cut, device=device)
        partner = images.flip(0)
        blend = lam_t.view(-1, 1, 1, 1).to(images.dtype)
        mixed = images * blend + partner * (1 - blend)
        inside = box_mask(torch.as_tensor(boxes, device=device), h, w)
        pasted = torch.where(inside, partner, images)
        out = torch.where(cut_t.view(-1, 1, 1, 1), pasted, mixed)
        y = soft_targets(labels, self.num_classes, c.smoothing)
        targets = y * lam_t.view(-1, 1) + y.flip(0) * (1 - lam_t.view(-1, 1))
        return out, targets

    # -- the method interface ---------------------------------------------------------------
    def augment(self, step: Step, batch: Batch) -> Batch:
        images, targets = self.mix(batch.images, batch.labels)
        return dataclasses.replace(batch, images=images, labels=targets)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
