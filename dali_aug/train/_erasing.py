"""Random Erasing (Zhong et al., arXiv:1708.04896) in the training step, with timm's flag
names and meanings (``--reprob``, ``--remode``, ``--recount``; ``timm.data.RandomErasing``).

Per sample, with probability ``prob``, ``count`` boxes are erased (``count`` is drawn
uniformly from 1..``max_count`` per sample when ``max_count > 1``, as timm's ``num_splits``-free
default). Each box has a target area ``U(min_area, max_area) * H * W / count`` and an aspect
ratio log-uniform in ``(min_aspect, 1 / min_aspect)``; up to 10 attempts are drawn and the
first that fits inside the image is used (none fits: no box, as in timm). The box is filled
in the normalised space: ``const`` with 0 (the dataset mean), ``rand`` with one standard
normal value per channel (shared by a sample's boxes; timm draws one per box), ``pixel`` with
one per pixel and channel.

Unlike timm, which erases each image in the DataLoader's workers, this runs on the batch on
the images' device, with every draw from the method's own seeded ``torch.Generator`` (the box
parameters on the CPU, the fill values on the images' device), so the same seed gives the
same boxes. Boxes reuse the op catalog's box masks (``box_mask``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Literal

import torch

from dali_aug.ops._torch_kernels import box_mask
from dali_aug.train._generators import (
    DeviceGenerators,
    generators_state,
    load_generators_state,
)
from dali_aug.train._method import Method, Step

if TYPE_CHECKING:
    from dali_aug.batch import Batch

__all__ = ["EraseMode", "ErasingConfig", "RandomErasingMethod"]

EraseMode = Literal["const", "rand", "pixel"]
ERASE_MODES: tuple[EraseMode, ...] = ("const", "rand", "pixel")
_ATTEMPTS = 10


@dataclasses.dataclass(frozen=True)
class ErasingConfig:
    """Random Erasing settings (timm's defaults but ``prob``, which timm's train.py sets with
    ``--reprob``, default 0 there).

    Attributes:
        prob: probability that a sample is erased.
        mode: ``const``, ``rand`` or ``pixel`` fill (module docstring).
        max_count: boxes per erased sample, drawn from 1..max_count (``--recount``).
        min_area, max_area: the boxes' total area as a fraction of the image.
        min_aspect: aspect ratios in (min_aspect, 1 / min_aspect), log-uniform.
    """

    prob: float = 0.25
    mode: EraseMode = "pixel"
    max_count: int = 1
    min_area: float = 0.02
    max_area: float = 1 / 3
    min_aspect: float = 0.3

    def __post_init__(self) -> None:
        if not 0 < self.prob <= 1:
            raise ValueError(f"prob={self.prob}; use a probability in (0, 1] (0 is no erasing)")
        if self.mode not in ERASE_MODES:
            raise ValueError(f"mode={self.mode!r}; use one of {', '.join(ERASE_MODES)}")
        if self.max_count < 1:
            raise ValueError(f"max_count={self.max_count}; use at least 1 box per sample")
        if not 0 < self.min_area <= self.max_area <= 1:
            raise ValueError(
                f"areas ({self.min_area}, {self.max_area}); use 0 < min_area <= max_area <= 1"
            )
        if not 0 < self.min_aspect <= 1:
            raise ValueError(f"min_aspect={self.min_aspect}; use a value in (0, 1]")


class RandomErasingMethod(Method):
    """Random Erasing on the batch (module docstring).

    Example:
        >>> erase = RandomErasingMethod(ErasingConfig(prob=0.25, mode="pixel"), seed=0)
        >>> trainer = Trainer(model, optimizer, methods=[erase])
    """

    name = "erasing"

    def __init__(self, config: ErasingConfig, *, seed: int = 0) -> None:
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)
        self._fill_generators = DeviceGenerators(seed + 1)

    def boxes(self, n: int, h: int, w: int) -> torch.Tensor:
        """Boxes (y0, x0, y1, x1) [n, max_count, 4] on the CPU; an all-zero box is none."""
        c, g = self.config, self.generator
        k = c.max_count
        erased = torch.rand(n, generator=g) < c.prob
        if k > 1:
            count = torch.randint(1, k + 1, (n,), generator=g)
        else:
            count = torch.ones(n, dtype=torch.int64)
        used = erased[:, None] & (torch.arange(k)[None, :] < count[:, None])  # [n, k]
        shape = (n, k, _ATTEMPTS)
        area = h * w * (c.min_area + (c.max_area - c.min_area) * torch.rand(shape, generator=g))
        area = area / count.view(n, 1, 1)
        log_lo = math.log(c.min_aspect)
        aspect = torch.exp(log_lo + (-2 * log_lo) * torch.rand(shape, generator=g))
        bh = torch.sqrt(area * aspect).round().long()
        bw = torch.sqrt(area / aspect).round().long()
        fits = (bh < h) & (bw < w) & (bh > 0) & (bw > 0)
        first = torch.where(fits, torch.arange(_ATTEMPTS), _ATTEMPTS).min(-1).values  # [n, k]
        found = first < _ATTEMPTS
        pick = first.clamp(max=_ATTEMPTS - 1).unsqueeze(-1)
        bh, bw = bh.gather(-1, pick).squeeze(-1), bw.gather(-1, pick).squeeze(-1)
        # top-left uniform in [0, H - bh] x [0, W - bw]
        y0 = (torch.rand((n, k), generator=g) * (h - bh + 1).clamp(min=1)).long()
        x0 = (torch.rand((n, k), generator=g) * (w - bw + 1).clamp(min=1)).long()
        boxes = torch.stack([y0, x0, y0 + bh, x0 + bw], -1)
        return torch.where((used & found).unsqueeze(-1), boxes, torch.zeros_like(boxes))

    def erase(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` [B, C, H, W] (normalised float) with the boxes filled."""
        n, ch, h, w = images.shape
        boxes = self.boxes(n, h, w).to(images.device)
        k = boxes.shape[1]
        inside = box_mask(boxes.view(-1, 4), h, w).view(n, k, 1, h, w).any(1)  # [n, 1, H, W]
        mode = self.config.mode
        if mode == "const":
            fill = torch.zeros_like(images)
        else:
            gen = self._fill_generators(images.device)
            shape = (n, ch, 1, 1) if mode == "rand" else images.shape
            fill = torch.randn(shape, generator=gen, device=images.device, dtype=images.dtype)
        return torch.where(inside, fill.expand_as(images), images)

    # -- the method interface ---------------------------------------------------------------
    def augment(self, step: Step, batch: Batch) -> Batch:
        return dataclasses.replace(batch, images=self.erase(batch.images))

    def state_dict(self) -> dict[str, Any]:
        return generators_state(self.generator, self._fill_generators)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_generators_state(self.generator, self._fill_generators, state)
