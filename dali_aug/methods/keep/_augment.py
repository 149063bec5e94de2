"""KeepAugment's augmentations on normalised float NCHW batches (Gong et al.,
arXiv:2011.11778, Sec. 3.2).

The region choice is :func:`dali_aug.kernels.region_select.select_regions`: per-image
tau-quantile of all box scores (not the fixed 0.6 threshold of the unofficial code), exact
uniform choice among the qualifying boxes, a CUDA kernel on GPU tensors and a torch reference
elsewhere.

* :func:`keep_cutout`: fill a low-saliency box (Selective-Cut);
* :func:`keep_paste`: paste the original pixels of a high-saliency box back into the
  augmented image (Selective-Paste, after an image-level policy);
* :func:`keep_cutmix`: CutMix whose patch is a high-saliency box of the partner and whose
  target region avoids the target's high-saliency boxes; labels mixed by the pasted area.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dali_aug.kernels.region_select import select_regions
from dali_aug.ops._torch_kernels import box_mask

__all__ = ["box_size", "keep_cutmix", "keep_cutout", "keep_paste"]


def box_size(h: int, w: int, fraction: float) -> tuple[int, int]:
    """The (height, width) of a box ``fraction`` of each side (at least one pixel)."""
    return max(1, round(h * fraction)), max(1, round(w * fraction))


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
