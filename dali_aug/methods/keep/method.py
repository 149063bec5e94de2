"""KeepAugment (Gong et al., arXiv:2011.11778) as a training-step method: saliency of the
model in the step, then Selective-Cut, Selective-Paste or KeepCutMix; with ``early``
saliency, the early head trained on the step's first-block map (loss term ``early``, weight
0.3).

Defaults follow the paper ("KeepAugment: A Simple Information-Preserving Data Augmentation
Approach", Sec. 4.1: tau 0.6 in all experiments; Cutout's default length, 16 px at 32 px, so
a box half of each side), with a zero fill and, for KeepCutMix, CutMix's
``lambda ~ Beta(1, 1)`` box; the per-image saliency maps (batch norm in eval mode for the
saliency pass) are our reading: the paper does not say.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from dali_aug.kernels.region_select import region_scores, score_threshold
from dali_aug.methods.keep._augment import (
    DEFAULT_BOX_FRACTION,
    CutMixVariant,
    FillMode,
    box_size,
    cutmix_size,
    keep_cutmix,
    keep_cutout,
    keep_paste,
)
from dali_aug.methods.keep._saliency import (
    EarlyHead,
    NormMode,
    SaliencyMode,
    SaliencyValue,
    saliency,
)
from dali_aug.train import DeviceGenerators, Forward, LoaderNeeds, Loss, Method, Step
from dali_aug.train._generators import generators_state, load_generators_state
from dali_aug.viz import normalize

if TYPE_CHECKING:
    from dali_aug.batch import Batch

__all__ = ["EARLY_LOSS_WEIGHT", "KeepMethod", "KeepMode", "KeepResult"]

#: Coefficient of the early head's loss (paper, Sec. 3.1: trained "the same as the Inception
#: Network", whose auxiliary loss has weight 0.3).
EARLY_LOSS_WEIGHT = 0.3

KeepMode = Literal["cutout", "paste", "cutmix"]


@dataclasses.dataclass(frozen=True)
class KeepResult:
    """What :meth:`KeepMethod.select` did: the new batch, the saliency maps [N, H, W] it used
    (of the pre-policy image for ``paste``), the box changed in each image [N, 4] (cut,
    pasted back, or the CutMix target box) and, for ``cutmix``, the source box in the
    partner (the batch rolled by one); ``size`` is the box (h, w) and ``tau`` the quantile."""

    batch: Batch
    saliency: torch.Tensor
    boxes: torch.Tensor
    partner_boxes: torch.Tensor | None
    size: tuple[int, int] = (1, 1)
    tau: float = 0.6

    def box_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(I(S) of each image's chosen box, the image's threshold q_tau), float64 [N] each:
        the box sum of :attr:`saliency` (Eq. 1) and the tau-quantile of all box sums, as the
        selection computed them (for logs and checks: cut boxes score below q, pasted boxes
        at or above it)."""
        scores = region_scores(self.saliency, self.size)
        q = score_threshold(scores, self.tau)
        rows = torch.arange(len(self.boxes), device=scores.device)
        b = self.boxes.to(scores.device)
        return scores[rows, b[:, 0], b[:, 1]], q


class KeepMethod(Method):
    """KeepAugment in the training step: Selective-Cut (``cutout``), Selective-Paste of the
    pre-policy image into the policy's output (``paste``: the Loader gives the op record and
    the clean crops, see :meth:`loader_needs`), or KeepCutMix (``cutmix``).

    With ``saliency_mode="early"`` the method owns an :class:`EarlyHead` (in
    :meth:`modules`: trained with the model, checkpointed, not exported) trained on the
    step's first-block map with weight 0.3.

    Args:
        model: the classifier (for ``early``: it must have ``early_features`` and
            ``early_channels``, as :func:`dali_aug.models.build_model`'s do).
        num_classes: number of classes (labels).
        mode: ``cutout``, ``paste`` or ``cutmix``.
        saliency_mode: ``full``, ``lowres`` or ``early``.
        box_fraction: the box side as a fraction of the image side (default 0.5: Cutout's
            16 px at 32 px); for ``cutmix`` with the paper's variant the box comes from
            ``lambda ~ Beta(1, 1)`` instead.
        tau: the quantile of the box scores that separates low from high saliency (0.6).
        fill: ``zero`` (Cutout) or ``random`` (Random Erasing), for ``cutout``.
        cutmix: ``paper`` (CutMix's box and paste, Selective-Cut on the target) or
            ``salient-source`` (a salient fixed-size partner patch; see
            :func:`~dali_aug.methods.keep.keep_cutmix`).
        norm: batch norm in the saliency pass: ``eval`` (per-image maps, running statistics)
            or ``batch`` (the batch's statistics).
        value: what the saliency measures: ``gradient`` (the paper's vanilla gradient) or
            ``gradient_x_input`` (ours: gradient times input against a black image).
        seed: seeds the box choice and the random fill.
    """

    name = "keep"

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        *,
        mode: KeepMode = "cutout",
        saliency_mode: SaliencyMode = "lowres",
        box_fraction: float = DEFAULT_BOX_FRACTION,
        tau: float = 0.6,
        fill: FillMode = "zero",
        cutmix: CutMixVariant = "paper",
        norm: NormMode = "eval",
        value: SaliencyValue = "gradient",
        seed: int = 0,
    ) -> None:
        if mode not in ("cutout", "paste", "cutmix"):
            raise ValueError(f"unknown keep mode {mode!r}; use 'cutout', 'paste' or 'cutmix'")
        if saliency_mode not in ("full", "lowres", "early"):
            raise ValueError(
                f"unknown saliency mode {saliency_mode!r}; use 'full', 'lowres' or 'early'"
            )
        if not 0 < box_fraction <= 1:
            raise ValueError(f"box_fraction={box_fraction} must be in (0, 1], e.g. 0.5")
        if not 0 <= tau <= 1:
            raise ValueError(f"tau={tau} must be in [0, 1] (a quantile; the paper uses 0.6)")
        if fill not in ("zero", "random"):
            raise ValueError(f"unknown fill {fill!r}; use 'zero' or 'random'")
        if cutmix not in ("paper", "salient-source"):
            raise ValueError(f"unknown cutmix variant {cutmix!r}; use 'paper' or 'salient-source'")
        if norm not in ("eval", "batch"):
            raise ValueError(f"unknown saliency norm {norm!r}; use 'eval' or 'batch'")
        if value not in ("gradient", "gradient_x_input"):
            raise ValueError(
                f"unknown saliency value {value!r}; use 'gradient' or 'gradient_x_input'"
            )
        self.model, self.num_classes, self.mode = model, num_classes, mode
        self.saliency_mode, self.box_fraction, self.tau = saliency_mode, box_fraction, tau
        self.fill, self.cutmix, self.norm, self.value = fill, cutmix, norm, value
        self.generator = torch.Generator().manual_seed(seed)
        self._fill_generators = DeviceGenerators(seed + 1)
        self.early_head: EarlyHead | None = None
        if saliency_mode == "early":
            channels = getattr(model, "early_channels", None)
            if not isinstance(channels, int) or not hasattr(model, "early_features"):
                raise ValueError(
                    "saliency='early' needs a model with .early_features and .early_channels "
                    "(dali_aug.models.build_model gives one)"
                )
            device = next(model.parameters()).device
            self.early_head = EarlyHead(channels, num_classes).to(device)

    def modules(self) -> nn.ModuleDict:
        if self.early_head is None:
            return nn.ModuleDict()
        return nn.ModuleDict({"early_head": self.early_head})

    def loader_needs(self) -> LoaderNeeds:
        paste = self.mode == "paste"
        return LoaderNeeds(op_record=paste, clean=paste)

    def state_dict(self) -> dict[str, Any]:
        return generators_state(self.generator, self._fill_generators)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_generators_state(self.generator, self._fill_generators, state)

    def augment(self, step: Step, batch: Batch) -> Batch:
        return self.select(batch, model=step.model).batch

    def select(self, batch: Batch, *, model: nn.Module | None = None) -> KeepResult:
        """The method's augmentation of ``batch``, with the saliency maps and boxes it used
        (``model``: whose saliency; default: the model given at construction)."""
        x = batch.images
        h, w = x.shape[-2:]
        size = box_size(h, w, self.box_fraction)
        g = self.generator
        source = x
        if self.mode == "paste":
            if batch.clean is None or batch.params is None:
                raise ValueError(
                    "keep mode 'paste' needs a Loader with the op record and the clean crops "
                    "(op_record=True, clean=True)"
                )
            source = normalize(batch.flipped_clean()).to(x.dtype)
        sal = saliency(
            model if model is not None else self.model,
            source,
            batch.labels,
            mode=self.saliency_mode,
            early_head=self.early_head,
            norm=self.norm,
            value=self.value,
        )
        tau = self.tau
        if self.mode == "paste":
            images, boxes = keep_paste(x, source, sal, size, tau=tau, generator=g)
            new = dataclasses.replace(batch, images=images)
            return KeepResult(new, sal, boxes, None, size, tau)
        if self.mode == "cutout":
            images, boxes = keep_cutout(
                x,
                sal,
                size,
                tau=tau,
                fill=self.fill,
                generator=g,
                fill_generator=self._fill_generators(x.device) if self.fill == "random" else None,
            )
            new = dataclasses.replace(batch, images=images)
            return KeepResult(new, sal, boxes, None, size, tau)
        if self.cutmix == "paper":
            size = cutmix_size(h, w, generator=g)
        images, mixed, src, dst = keep_cutmix(
            x, batch.labels, sal, size, self.num_classes, tau=tau, variant=self.cutmix, generator=g
        )
        batch = dataclasses.replace(batch, images=images, labels=mixed)
        return KeepResult(batch, sal, dst, src, size, tau)

    def loss(self, step: Step, batch: Batch, out: Forward, loss: Loss) -> Loss:
        if self.early_head is None:
            return loss
        if out.early is None:
            raise ValueError(
                "saliency='early' needs the first-block map in the step: a model with "
                "forward_parts(x) -> (features, early), as dali_aug.models.build_model gives"
            )
        early = step.losses(self.early_head(out.early), batch.labels)
        loss.terms["early"] = EARLY_LOSS_WEIGHT * early.mean()
        return loss
