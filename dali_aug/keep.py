"""KeepAugment (Gong et al., arXiv:2011.11778): saliency-preserving augmentation.

Saliency is the vanilla gradient ``|d logit_y / d x|`` (max over colour channels), computed in
the training step in one of three modes:

* ``full``: on the input itself (one extra forward + backward);
* ``lowres``: on a half-resolution bicubic copy, upsampled back (paper: about 3x cheaper);
* ``early``: through an auxiliary :class:`EarlyHead` (avg-pool + linear) on the output of the
  first block of the network (``model.early_features``: the stem and the first stage), trained
  with coefficient 0.3 on its loss (paper: about 3x cheaper), so the gradient only traverses
  the first block. (With the stem alone, a single strided conv on the small model, the
  early maps did not track the full maps: box-score correlation 0.05 against 0.25-0.40 after
  the first stage, measured on trained small models.)

Targets: single-label -> the logit of the label; multi-label -> the sum of the positive
labels' logits; no labels (``targets=None``) -> the max logit.

The region choice is :func:`dali_aug.kernels.region_select.select_regions`: per-image
tau-quantile of all box scores (not the fixed 0.6 threshold of the unofficial code), exact
uniform choice among the qualifying boxes, a CUDA kernel on GPU tensors and a torch reference
elsewhere. The augmentations work on normalised float NCHW batches:

* :func:`keep_cutout`: fill a low-saliency box (Selective-Cut);
* :func:`keep_paste`: paste the original pixels of a high-saliency box back into the
  augmented image (Selective-Paste, after an image-level policy);
* :func:`keep_cutmix`: CutMix whose patch is a high-saliency box of the partner and whose
  target region avoids the target's high-saliency boxes; labels mixed by the pasted area.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dali_aug.kernels.region_select import select_regions
from dali_aug.loader import Batch
from dali_aug.ops import OpParams, apply_params
from dali_aug.ops._torch_kernels import box_mask
from dali_aug.train import Hook, Trainer
from dali_aug.viz import denormalize, draw_boxes, heatmap, normalize, save_grid

__all__ = [
    "EARLY_LOSS_WEIGHT",
    "CutoutHook",
    "EarlyHead",
    "KeepHook",
    "KeepMode",
    "KeepResult",
    "SaliencyMode",
    "box_mask",
    "keep_cutmix",
    "keep_cutout",
    "keep_paste",
    "saliency",
    "save_preview",
    "select_regions",
]

SaliencyMode = Literal["full", "lowres", "early"]

#: Coefficient of the early head's loss (paper, Sec. 3.3).
EARLY_LOSS_WEIGHT = 0.3


class EarlyHead(nn.Module):
    """Global average pool + linear classifier on the first block's feature map."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.LazyLinear(num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features.mean(dim=(2, 3)))


def _target_score(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """The per-sample scalar whose input gradient is the saliency."""
    if targets is None:
        return logits.max(dim=1).values
    if targets.dim() == 2:  # multi-hot (or soft) targets: the positive labels' logits
        return (logits * (targets > 0).to(logits.dtype)).sum(dim=1)
    return logits.gather(1, targets.long().view(-1, 1)).squeeze(1)


@contextlib.contextmanager
def _running_stats_kept(model: nn.Module) -> Iterator[None]:
    """Restores the batch-norm running statistics after the saliency pass: in training mode
    it normalises with batch statistics like the step does, but it must not count as a
    batch (a half-resolution copy would skew the statistics used at evaluation)."""
    norms = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    saved = [[t.clone() for t in m.buffers()] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved, strict=True):
                for t, old in zip(m.buffers(), buffers, strict=True):
                    t.copy_(old)


def saliency(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | None,
    *,
    mode: SaliencyMode = "full",
    early_head: EarlyHead | None = None,
    first_block: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Saliency maps [N, H, W] (float32, >= 0) of ``images`` [N, 3, H, W].

    The model runs in its current mode (batch statistics in training mode); its batch-norm
    running statistics are left unchanged.

    Args:
        model: the classifier (its parameters receive no gradient from this call).
        images: normalised float images.
        targets: [N] int64 labels, [N, C] multi-hot, or None (max logit).
        mode: ``full``, ``lowres`` or ``early``.
        early_head: required for ``early``.
        first_block: the network's first block, for ``early`` (default:
            ``model.early_features``).

    Raises:
        ValueError: bad shapes, an unknown mode, or ``early`` without a head.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
    if targets is not None and targets.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {targets.shape[0]} targets")
    h, w = images.shape[-2:]
    if mode == "lowres":
        x = F.interpolate(images.detach(), scale_factor=0.5, mode="bicubic", align_corners=False)
    elif mode in ("full", "early"):
        x = images.detach()
    else:
        raise ValueError(f"unknown saliency mode {mode!r}; use 'full', 'lowres' or 'early'")
    x = x.clone().requires_grad_(True)
    with torch.enable_grad(), _running_stats_kept(model):
        if mode == "early":
            first = first_block or getattr(model, "early_features", None)
            if early_head is None or first is None:
                raise ValueError(
                    "saliency mode 'early' needs early_head=EarlyHead(num_classes) and the "
                    "network's first block (first_block=... or a model with .early_features, "
                    "e.g. dali_aug.models.build_model)"
                )
            logits = early_head(first(x))
        else:
            logits = model(x)
        score = _target_score(logits.float(), targets).sum()
        (grad,) = torch.autograd.grad(score, x)
    sal = grad.abs().amax(dim=1)
    if mode == "lowres":
        sal = F.interpolate(sal.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False)
        sal = sal.squeeze(1).clamp(min=0)
    return sal.float().contiguous()


def keep_cutout(
    images: torch.Tensor,
    sal: torch.Tensor,
    size: tuple[int, int],
    *,
    tau: float = 0.6,
    fill: float = 0.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective-Cut: fills a box whose saliency is below the image's tau-quantile.

    Returns the new images and the boxes [N, 4]. ``fill`` 0 is the dataset mean of
    normalised images.
    """
    boxes = select_regions(sal, size, tau=tau, mode="cut", generator=generator)
    mask = box_mask(boxes, *images.shape[-2:])
    return torch.where(mask, torch.full_like(images, fill), images), boxes


def keep_paste(
    augmented: torch.Tensor,
    original: torch.Tensor,
    sal: torch.Tensor,
    size: tuple[int, int],
    *,
    tau: float = 0.6,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective-Paste: the original pixels of a box at or above the tau-quantile of the
    original's saliency are pasted back into the augmented image."""
    if augmented.shape != original.shape:
        raise ValueError(f"augmented {augmented.shape} and original {original.shape} differ")
    boxes = select_regions(sal, size, tau=tau, mode="paste", generator=generator)
    mask = box_mask(boxes, *original.shape[-2:])
    return torch.where(mask, original, augmented), boxes


def keep_cutmix(
    images: torch.Tensor,
    targets: torch.Tensor,
    sal: torch.Tensor,
    size: tuple[int, int],
    num_classes: int,
    *,
    tau: float = 0.6,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """KeepCutMix: paste a high-saliency box of a partner (the batch rolled by one) into a
    low-saliency box of each image; targets become ``(1 - a) * y + a * y_partner`` with ``a``
    the pasted area fraction (one-hot for int labels, multi-hot for multi-label).

    Returns (images, mixed targets [N, C] float32, source boxes in the partner, target boxes).
    """
    n, _, h, w = images.shape
    partner = torch.roll(torch.arange(n, device=images.device), 1)
    src = select_regions(sal[partner], size, tau=tau, mode="paste", generator=generator)
    dst = select_regions(sal, size, tau=tau, mode="cut", generator=generator)
    bh, bw = size
    # gather the partner's box [N, 3, bh, bw] and scatter it at the destination box
    ys = src[:, 0].view(n, 1, 1) + torch.arange(bh, device=images.device).view(1, bh, 1)
    xs = src[:, 1].view(n, 1, 1) + torch.arange(bw, device=images.device).view(1, 1, bw)
    patch = images[partner][torch.arange(n, device=images.device).view(n, 1, 1), :, ys, xs]
    patch = patch.permute(0, 3, 1, 2)  # [N, 3, bh, bw]
    out = images.clone()
    yd = dst[:, 0].view(n, 1, 1) + torch.arange(bh, device=images.device).view(1, bh, 1)
    xd = dst[:, 1].view(n, 1, 1) + torch.arange(bw, device=images.device).view(1, 1, bw)
    out[torch.arange(n, device=images.device).view(n, 1, 1), :, yd, xd] = patch.permute(0, 2, 3, 1)
    if targets.dim() == 1:
        y = F.one_hot(targets.long(), num_classes).float()
    else:
        y = targets.float()
    area = bh * bw / (h * w)
    mixed = (1 - area) * y + area * y[partner]
    return out, mixed, src, dst


KeepMode = Literal["cutout", "paste", "cutmix"]


@dataclasses.dataclass(frozen=True)
class KeepResult:
    """What :meth:`KeepHook.augment` did: the new batch, the saliency maps [N, H, W] it used
    (of the pre-policy image for ``paste``), the box changed in each image [N, 4] (cut,
    pasted back, or the CutMix target box) and, for ``cutmix``, the source box in the
    partner (the batch rolled by one)."""

    batch: Batch
    saliency: torch.Tensor
    boxes: torch.Tensor
    partner_boxes: torch.Tensor | None


class CutoutHook(Hook):
    """Cutout (DeVries & Taylor, arXiv:1708.04552) in the training step: KeepCutout's
    baseline, with the same box (``box_fraction`` of each side, fully inside the image, placed
    uniformly) and the same fill (0, the mean of normalised images), but blind to saliency."""

    def __init__(self, *, box_fraction: float = 0.25, seed: int = 0) -> None:
        if not 0 < box_fraction <= 1:
            raise ValueError(f"box_fraction={box_fraction} must be in (0, 1]")
        self.box_fraction = box_fraction
        self.generator = torch.Generator().manual_seed(seed)

    def before_forward(self, trainer: Trainer, batch: Batch) -> Batch:
        x = batch.images
        n, _, h, w = x.shape
        bh, bw = _box_size(h, w, self.box_fraction)
        y0 = torch.randint(0, h - bh + 1, (n,), generator=self.generator)
        x0 = torch.randint(0, w - bw + 1, (n,), generator=self.generator)
        boxes = torch.stack([y0, x0, y0 + bh, x0 + bw], 1).to(x.device)
        images = torch.where(box_mask(boxes, h, w), torch.zeros_like(x), x)
        return dataclasses.replace(batch, images=images)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def _box_size(h: int, w: int, fraction: float) -> tuple[int, int]:
    return max(1, round(h * fraction)), max(1, round(w * fraction))


class KeepHook(Hook):
    """Trainer hook: saliency in the training step, then Selective-Cut (``cutout``),
    Selective-Paste of the pre-policy image into the policy's output (``paste``, needs a
    Loader with ``provenance=True``), or KeepCutMix (``cutmix``).

    With ``saliency="early"`` the hook also trains its :class:`EarlyHead` on the first
    block's features (captured by a forward hook on ``model.early_layer``, no extra forward)
    with weight 0.3; add the parameters returned by ``hook.attach`` to the optimizer. The
    head and the hook's generator are part of :meth:`state_dict` (saved in checkpoints).
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        *,
        mode: KeepMode = "cutout",
        saliency_mode: SaliencyMode = "lowres",
        box_fraction: float = 0.25,
        tau: float = 0.6,
        seed: int = 0,
    ) -> None:
        if mode not in ("cutout", "paste", "cutmix"):
            raise ValueError(f"unknown keep mode {mode!r}; use 'cutout', 'paste' or 'cutmix'")
        if not 0 < box_fraction <= 1:
            raise ValueError(f"box_fraction={box_fraction} must be in (0, 1]")
        self.model, self.num_classes, self.mode = model, num_classes, mode
        self.saliency_mode, self.box_fraction, self.tau = saliency_mode, box_fraction, tau
        self.generator = torch.Generator().manual_seed(seed)
        self.early_head = EarlyHead(num_classes) if saliency_mode == "early" else None
        self._early_out: torch.Tensor | None = None
        if self.early_head is not None:
            layer = getattr(model, "early_layer", None)
            if not isinstance(layer, nn.Module) or not hasattr(model, "early_features"):
                raise ValueError(
                    "saliency='early' needs a model with .early_features and .early_layer "
                    "(dali_aug.models.build_model gives one)"
                )
            layer.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, args: object, output: torch.Tensor) -> None:
        if module.training:
            self._early_out = output

    def attach(self, example: torch.Tensor) -> list[nn.Parameter]:
        """Initialises the early head's lazy layer; returns the parameters to optimise."""
        if self.early_head is None:
            return []
        first = getattr(self.model, "early_features")  # noqa: B009 (checked in __init__)
        with torch.no_grad():
            self.early_head.to(example.device)(first(example[:1]))
        self._early_out = None
        return list(self.early_head.parameters())

    def state_dict(self) -> dict[str, Any]:
        return {
            "early_head": None if self.early_head is None else self.early_head.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.early_head is not None:
            if state.get("early_head") is None:
                raise ValueError("the checkpoint has no early head; it was trained without it")
            self.early_head.load_state_dict(state["early_head"])
        self.generator.set_state(state["generator"])

    def before_forward(self, trainer: Trainer, batch: Batch) -> Batch:
        return self.augment(batch).batch

    def augment(self, batch: Batch) -> KeepResult:
        """The hook's augmentation of ``batch``, with the saliency maps and boxes it used."""
        x = batch.images
        h, w = x.shape[-2:]
        size = _box_size(h, w, self.box_fraction)
        g = self.generator
        source = x
        if self.mode == "paste":
            if batch.clean is None or batch.params is None:
                raise ValueError("keep mode 'paste' needs a Loader with provenance=True")
            flip = OpParams(*(t[:, :1] for t in dataclasses.astuple(batch.params)))
            source = normalize(apply_params(batch.clean, flip)).to(x.dtype)
        sal = saliency(
            self.model, source, batch.labels, mode=self.saliency_mode, early_head=self.early_head
        )
        if self.mode == "paste":
            images, boxes = keep_paste(x, source, sal, size, tau=self.tau, generator=g)
            return KeepResult(dataclasses.replace(batch, images=images), sal, boxes, None)
        if self.mode == "cutout":
            images, boxes = keep_cutout(x, sal, size, tau=self.tau, generator=g)
            return KeepResult(dataclasses.replace(batch, images=images), sal, boxes, None)
        images, mixed, src, dst = keep_cutmix(
            x, batch.labels, sal, size, self.num_classes, tau=self.tau, generator=g
        )
        return KeepResult(dataclasses.replace(batch, images=images, labels=mixed), sal, dst, src)

    def on_loss(
        self, trainer: Trainer, batch: Batch, logits: torch.Tensor, losses: torch.Tensor
    ) -> torch.Tensor:
        if self.early_head is None or self._early_out is None:
            return losses
        early = trainer.losses(self.early_head(self._early_out).float(), batch.labels)
        self._early_out = None
        return losses + EARLY_LOSS_WEIGHT * early


def save_preview(result: KeepResult, mode: KeepMode, path: str | Path, *, cols: int = 8) -> Path:
    """Writes a PNG of a :class:`KeepResult`: rows of augmented images with the changed box
    (red: cut or CutMix target; green: pasted back) above rows of the saliency maps with the
    same box (blue: cut or CutMix target; green: pasted back; cyan: for CutMix, the source box
    that image gave to its partner)."""
    images = denormalize(result.batch.images)
    maps = heatmap(result.saliency)
    color = (0, 255, 0) if mode == "paste" else (255, 0, 0)
    images = draw_boxes(images, result.boxes, color)
    maps = draw_boxes(maps, result.boxes, (0, 255, 0) if mode == "paste" else (0, 96, 255))
    what = {"cutout": "cut", "paste": "pasted back", "cutmix": "CutMix target"}[mode]
    captions_top = [f"{what} {tuple(b)}" for b in result.boxes.tolist()]
    captions_bottom = ["saliency"] * len(maps)
    if result.partner_boxes is not None:  # the source box, drawn in the partner's map
        n = len(maps)
        partner = torch.roll(torch.arange(n), 1)
        src = torch.empty_like(result.partner_boxes)
        src[partner] = result.partner_boxes  # image partner[i] gave partner_boxes[i]
        maps = draw_boxes(maps, src.cpu(), (0, 255, 255))
        captions_bottom = ["saliency (cyan: patch given)"] * n
    tiles, captions = [], []
    for start in range(0, len(images), cols):
        tiles += [images[start : start + cols], maps[start : start + cols]]
        captions += captions_top[start : start + cols] + captions_bottom[start : start + cols]
    return save_grid(np.concatenate(tiles), captions, path, cols=cols)
