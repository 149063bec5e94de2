"""KeepAugment's saliency maps (Gong et al., arXiv:2011.11778: the vanilla-gradient map in
Sec. 3, the low-resolution and early-head approximations in Sec. 3.1).

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

What the map measures (``value``; ours, not the paper's, which uses the vanilla gradient):
``gradient`` (the paper's ``|d logit_y / d x|``) or ``gradient_x_input`` (``|g * (x - b)|``,
max over channels, with ``b`` the normalised value of a black pixel: the first-order change
of the logit if the pixel went black, i.e. gradient times input against a black baseline).
On images with an empty black background (Fashion-MNIST) the vanilla gradient spreads about
as much over the background as over the object (``benchmarks/keep/NOTES.md``); the product is
0 wherever the pixel is already black.

Targets: single-label -> the logit of the label; multi-label -> the sum of the positive
labels' logits; no labels (``targets=None``) -> the max logit.

Batch norm during the pass (``norm``; the paper does not say): ``eval`` (default) runs the
model's batch-norm layers in eval mode for the pass (running statistics; the mode is restored
after), so each image's map depends on that image only: the input gradient of the batch sum
of target logits is then exactly the per-image gradient. ``batch`` normalises with the
batch's statistics, as the training forward does (the earlier behaviour): the other images'
logits reach each map through the batch mean and variance. Neither updates the running
statistics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dali_aug.ops import normalize
from dali_aug.train import frozen_norm

__all__ = ["EarlyHead", "NormMode", "SaliencyMode", "SaliencyValue", "saliency"]

SaliencyMode = Literal["full", "lowres", "early"]
#: What the map measures: the vanilla gradient (the paper) or gradient x input (ours).
SaliencyValue = Literal["gradient", "gradient_x_input"]
#: Batch norm in the saliency pass: running statistics (per-image maps) or batch statistics.
NormMode = Literal["eval", "batch"]

#: The downsampling factor of ``lowres`` saliency (paper, Sec. 3.1: 224 -> 112 on ImageNet).
LOWRES_SCALE = 0.5


@contextlib.contextmanager
def _eval_norm(*modules: nn.Module | None) -> Iterator[None]:
    """Batch-norm layers in training mode are put in eval mode inside, and back after."""
    norms = [
        m
        for module in modules
        if module is not None
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
    ]
    for m in norms:
        m.eval()
    try:
        yield
    finally:
        for m in norms:
            m.train()


class EarlyHead(nn.Module):
    """Global average pool + linear classifier on the first block's feature map.

    Args:
        in_channels: channels of the first-block map (``model.early_channels``).
        num_classes: number of classes (labels).
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

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
    first_block: Callable[[torch.Tensor], torch.Tensor] | None = None,
    norm: NormMode = "eval",
    value: SaliencyValue = "gradient",
) -> torch.Tensor:
    """Saliency maps [N, H, W] (float32, >= 0) of ``images`` [N, 3, H, W].

    Batch norm follows ``norm`` (module docstring); its running statistics are left unchanged
    either way, and the model's modes are as before after the call.

    Args:
        model: the classifier (its parameters receive no gradient from this call).
        images: normalised float images.
        targets: [N] int64 labels, [N, C] multi-hot, or None (max logit).
        mode: ``full``, ``lowres`` or ``early``.
        early_head: required for ``early``.
        first_block: the network's first block, for ``early`` (default:
            ``model.early_features``).
        norm: ``eval`` (per-image maps) or ``batch`` (batch statistics).
        value: ``gradient`` or ``gradient_x_input`` (module docstring).

    Raises:
        ValueError: bad shapes, an unknown mode, norm or value, or ``early`` without a head.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
    if targets is not None and targets.shape[0] != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {targets.shape[0]} targets")
    if norm not in ("eval", "batch"):
        raise ValueError(f"unknown saliency norm {norm!r}; use 'eval' or 'batch'")
    if value not in ("gradient", "gradient_x_input"):
        raise ValueError(f"unknown saliency value {value!r}; use 'gradient' or 'gradient_x_input'")
    h, w = images.shape[-2:]
    if mode == "lowres":
        x = F.interpolate(
            images.detach(), scale_factor=LOWRES_SCALE, mode="bicubic", align_corners=False
        )
    elif mode in ("full", "early"):
        x = images.detach()
    else:
        raise ValueError(f"unknown saliency mode {mode!r}; use 'full', 'lowres' or 'early'")
    x = x.clone().requires_grad_(True)
    per_image = _eval_norm(model, early_head) if norm == "eval" else contextlib.nullcontext()
    with torch.enable_grad(), per_image, frozen_norm(model):
        if mode == "early":
            first = first_block or getattr(model, "early_features", None)
            if early_head is None or first is None:
                raise ValueError(
                    "saliency mode 'early' needs early_head=EarlyHead(channels, num_classes) "
                    "and the network's first block (first_block=... or a model with "
                    ".early_features, e.g. dali_aug.models.build_model)"
                )
            logits = early_head(first(x))
        else:
            logits = model(x)
        score = _target_score(logits.float(), targets).sum()
        (grad,) = torch.autograd.grad(score, x)
    if value == "gradient_x_input":  # against a black image: normalize(0) per channel
        black = normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8)).to(x.device, x.dtype)
        grad = grad * (x.detach() - black)
    sal = grad.abs().amax(dim=1)
    if mode == "lowres":
        sal = F.interpolate(sal.unsqueeze(1), size=(h, w), mode="bilinear", align_corners=False)
        sal = sal.squeeze(1).clamp(min=0)
    return sal.float().contiguous()
