"""KeepAugment's augmentations on normalised float NCHW batches (Gong et al., "KeepAugment: A
Simple Information-Preserving Data Augmentation Approach", arXiv:2011.11778: Selective-Cut and
Selective-Paste in Sec. 3, KeepCutMix in Sec. 4.2).

The region choice is :func:`dali_aug.kernels.region_select.select_regions`: per-image
tau-quantile of all box scores (not the fixed 0.6 threshold of the unofficial code), exact
uniform choice among the qualifying boxes, a CUDA kernel on GPU tensors and a torch reference
elsewhere.

* :func:`keep_cutout`: fill a low-saliency box (Selective-Cut) with zeros (Cutout) or with
  random values (``fill="random"``: Random Erasing, per-pixel standard normal in the
  normalised space, as torchvision's ``RandomErasing(value="random")`` and timm's
  ``mode="pixel"``);
* :func:`keep_paste`: paste the original pixels of a high-saliency box back into the
  augmented image (Selective-Paste, after an image-level policy);
* :func:`keep_cutmix`: KeepCutMix. ``variant="paper"`` (default, Sec. 4.2): the box size
  comes from ``lambda ~ Beta(1, 1)`` as in CutMix (:func:`cutmix_size`), Selective-Cut picks
  a low-saliency box of that size in the target, and the partner's patch at the *same*
  position replaces it (CutMix's paste). ``variant="salient-source"`` (an earlier variant,
  kept as an option): a fixed-size high-saliency box of the partner is pasted into
  a low-saliency box of the target, so the patch carries the partner's object. Labels are
  mixed by the pasted area either way.

The default box is :data:`DEFAULT_BOX_FRACTION` of each side: Cutout's length 16 at 32 px
(CIFAR-10: the paper, Sec. 4.1, uses Cutout's default length, and 16 is Cutout's best in its
Table 2).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from dali_aug.kernels.region_select import select_regions
from dali_aug.ops._torch_kernels import box_mask

__all__ = [
    "DEFAULT_BOX_FRACTION",
    "CutMixVariant",
    "FillMode",
    "box_size",
    "cutmix_size",
    "fill_boxes",
    "keep_cutmix",
    "keep_cutout",
    "keep_paste",
]

#: The box side as a fraction of the image side: Cutout's 16 px at 32 px (CIFAR-10).
DEFAULT_BOX_FRACTION = 0.5

#: ``zero`` (Cutout: 0, the dataset mean of normalised images) or ``random`` (Random Erasing).
FillMode = Literal["zero", "random"]
CutMixVariant = Literal["paper", "salient-source"]


def box_size(h: int, w: int, fraction: float) -> tuple[int, int]:
    """The (height, width) of a box ``fraction`` of each side (at least one pixel)."""
    return max(1, round(h * fraction)), max(1, round(w * fraction))


def cutmix_size(h: int, w: int, generator: torch.Generator | None = None) -> tuple[int, int]:
    """CutMix's box for one batch: ``lambda ~ Beta(1, 1)`` (i.e. uniform on [0, 1)), sides
    ``round(h * sqrt(1 - lambda))`` and ``round(w * sqrt(1 - lambda))``, at least one pixel
    (Yun et al., arXiv:1905.04899, Eq. 2 and the reference code's ``rand_bbox``)."""
    lam = float(torch.rand((), generator=generator))
    ratio = (1.0 - lam) ** 0.5
    return max(1, round(h * ratio)), max(1, round(w * ratio))


def fill_boxes(
    images: torch.Tensor,
    boxes: torch.Tensor,
    fill: FillMode = "zero",
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``images`` with each box filled: zeros, or per-pixel standard normal values
    (``random``; drawn with ``generator``, which must be on the images' device)."""
    mask = box_mask(boxes, *images.shape[-2:])
    if fill == "zero":
        return torch.where(mask, torch.zeros_like(images), images)
    if fill == "random":
        noise = torch.randn(
            images.shape, generator=generator, device=images.device, dtype=images.dtype
        )
        return torch.where(mask, noise, images)
    raise ValueError(f"unknown fill {fill!r}; use 'zero' (Cutout) or 'random' (Random Erasing)")


def keep_cutout(
    images: torch.Tensor,
    sal: torch.Tensor,
    size: tuple[int, int],
    *,
    tau: float = 0.6,
    fill: FillMode = "zero",
    generator: torch.Generator | None = None,
    fill_generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective-Cut: fills a box whose saliency is below the image's tau-quantile.

    Returns the new images and the boxes [N, 4]. ``fill``: ``zero`` (0, the dataset mean of
    normalised images) or ``random`` (Random Erasing; values from ``fill_generator``, on the
    images' device).
    """
    boxes = select_regions(sal, size, tau=tau, mode="cut", generator=generator)
    return fill_boxes(images, boxes, fill, generator=fill_generator), boxes


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
    variant: CutMixVariant = "paper",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """KeepCutMix with a ``size`` box: Selective-Cut picks a low-saliency box of each image
    and the partner's patch (the batch rolled by one; a shuffled batch makes it a random
    partner) replaces it; targets become ``(1 - a) * y + a * y_partner`` with ``a`` the pasted
    area fraction (one-hot for int labels, multi-hot for multi-label).

    ``variant``: ``paper`` (the partner's patch at the same position, as CutMix; draw ``size``
    with :func:`cutmix_size`) or ``salient-source`` (a high-saliency box of the partner).

    Returns (images, mixed targets [N, C] float32, source boxes in the partner, target boxes).
    """
    if variant not in ("paper", "salient-source"):
        raise ValueError(f"unknown KeepCutMix variant {variant!r}; use 'paper' or 'salient-source'")
    n, _, h, w = images.shape
    partner = torch.roll(torch.arange(n, device=images.device), 1)
    dst = select_regions(sal, size, tau=tau, mode="cut", generator=generator)
    if variant == "paper":
        src = dst
    else:
        src = select_regions(sal[partner], size, tau=tau, mode="paste", generator=generator)
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
