"""KeepAugment (Gong et al., arXiv:2011.11778): saliency-preserving augmentation.

Saliency is the vanilla gradient ``|d logit_y / d x|`` (max over colour channels), computed in
the training step in one of three modes:

* ``full``: on the input itself (one extra forward + backward);
* ``lowres``: on a half-resolution bicubic copy, upsampled back (paper: about 3x cheaper);
* ``early``: through an auxiliary :class:`EarlyHead` (avg-pool + linear) on the output of the
  first block of the network, trained with coefficient 0.3 on its loss (paper: about 3x
  cheaper), so the gradient only traverses the first block.

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

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dali_aug.kernels.region_select import select_regions

__all__ = [
    "EARLY_LOSS_WEIGHT",
    "EarlyHead",
    "SaliencyMode",
    "box_mask",
    "keep_cutmix",
    "keep_cutout",
    "keep_paste",
    "saliency",
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


def saliency(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor | None,
    *,
    mode: SaliencyMode = "full",
    early_head: EarlyHead | None = None,
    stem: nn.Module | None = None,
) -> torch.Tensor:
    """Saliency maps [N, H, W] (float32, >= 0) of ``images`` [N, 3, H, W].

    Args:
        model: the classifier (its parameters receive no gradient from this call).
        images: normalised float images.
        targets: [N] int64 labels, [N, C] multi-hot, or None (max logit).
        mode: ``full``, ``lowres`` or ``early``.
        early_head: required for ``early``.
        stem: the network's first block, required for ``early`` (default: ``model.stem``).

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
    with torch.enable_grad():
        if mode == "early":
            first = stem if stem is not None else getattr(model, "stem", None)
            if early_head is None or first is None:
                raise ValueError(
                    "saliency mode 'early' needs early_head=EarlyHead(num_classes) and the "
                    "network's first block (stem=... or a model with a .stem)"
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


def box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boolean masks [N, 1, H, W] of half-open boxes (y0, x0, y1, x1) [N, 4]."""
    ys = torch.arange(height, device=boxes.device).view(1, height, 1)
    xs = torch.arange(width, device=boxes.device).view(1, 1, width)
    b = boxes.view(-1, 4, 1, 1)
    inside = (ys >= b[:, 0]) & (ys < b[:, 2]) & (xs >= b[:, 1]) & (xs < b[:, 3])
    return inside.unsqueeze(1)


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
