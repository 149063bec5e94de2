"""Batched torch kernels of the op catalog, one per kernel family, on uint8 NCHW tensors.

Each kernel has the form ``(x, r, *, batch) -> y`` where ``x`` [n, 3, H, W] holds the samples
that chose the family, ``r`` their :class:`~dali_aug.ops._params.Resolved` rows, and ``batch``
the whole layer input (SamplePairing reads its partners there). Kernels draw no random numbers.

Own tensor code (checked against PIL in ``tests/test_ops_pil.py``), not Kornia, whose
semantics differ from PIL: Kornia's ``adjust_brightness`` is additive and its
``adjust_contrast`` has no mean-gray centre, ``adjust_saturation`` works in HSV where PIL's
Color blends toward the ITU-R 601 luma, its warps sample with ``align_corners`` conventions
and bilinear/nearest rounding that differ from PIL's pixel-centre NEAREST, and its float
``equalize``/``sharpness`` skip PIL's integer rounding. Where Kornia does match PIL bit for bit
(``kornia.enhance.invert``, i.e. ``255 - x``) the same arithmetic is written in torch, so the
torch backend needs no Kornia.

The point ops (AutoContrast, Equalize, Solarize, Posterize) are per-sample, per-channel
lookup tables [n, 3, 256] applied with one ``gather``, which is exactly how PIL applies them
(``Image.point``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from dali_aug.ops._catalog import FILL, Family
from dali_aug.ops._params import Resolved

__all__ = ["KERNELS", "box_mask"]

Kernel = Callable[[torch.Tensor, Resolved, torch.Tensor], torch.Tensor]


def _affine(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    """PIL ``Image.transform(AFFINE, NEAREST, fillcolor=128)``: the output pixel (x, y) reads
    the input at ``floor(M @ (x + 0.5, y + 0.5, 1))`` or gets the fill if that is outside."""
    n, c, h, w = x.shape
    dev = x.device
    ys = torch.arange(h, device=dev, dtype=torch.float32) + 0.5
    xs = torch.arange(w, device=dev, dtype=torch.float32) + 0.5
    m = r.matrix
    # [n, h, w] input coordinates
    x_in = m[:, 0, 0, None, None] * xs[None, None, :] + m[:, 0, 1, None, None] * ys[None, :, None]
    x_in = x_in + m[:, 0, 2, None, None]
    y_in = m[:, 1, 0, None, None] * xs[None, None, :] + m[:, 1, 1, None, None] * ys[None, :, None]
    y_in = y_in + m[:, 1, 2, None, None]
    xi = torch.floor(x_in).long()
    yi = torch.floor(y_in).long()
    valid = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    flat = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).reshape(n, 1, h * w).expand(n, c, h * w)
    out = torch.gather(x.reshape(n, c, h * w), 2, flat).reshape(n, c, h, w)
    return torch.where(valid.unsqueeze(1), out, torch.full_like(out, FILL))


def _apply_lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Applies per-sample, per-channel LUTs [n, c, 256] (int64) to uint8 x [n, c, H, W]."""
    n, c, h, w = x.shape
    idx = x.reshape(n, c, h * w).long()
    return torch.gather(lut.clamp(0, 255).to(torch.uint8), 2, idx).reshape(n, c, h, w)


def _ramp(x: torch.Tensor) -> torch.Tensor:
    return torch.arange(256, device=x.device, dtype=torch.int64)


def _autocontrast(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    """``ImageOps.autocontrast`` (cutoff 0): per channel, lo -> 0 and hi -> 255, computed in
    float64 as PIL does (``int(i * scale + offset)``); a flat channel is left unchanged."""
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1)
    lo = flat.amin(dim=2).double().unsqueeze(-1)
    hi = flat.amax(dim=2).double().unsqueeze(-1)
    ramp = _ramp(x).double()
    scale = torch.full_like(hi, 255.0) / (hi - lo).clamp(min=1.0)  # a true division, as PIL
    offset = -lo * scale
    lut = torch.trunc(ramp * scale + offset).long()
    lut = torch.where(hi > lo, lut, _ramp(x).expand(n, c, 256))
    return _apply_lut(x, lut)


def _invert(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    """``ImageOps.invert``: ``255 - x`` (exact in uint8, as ``kornia.enhance.invert``)."""
    return 255 - x


def _equalize(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    """``ImageOps.equalize``: per channel, ``step = (N - h[max]) // 255`` and
    ``lut[i] = (step // 2 + sum(h[:i])) // step``; identity if step == 0."""
    n, c, h, w = x.shape
    idx = x.reshape(n * c, h * w).long()
    hist = torch.zeros((n * c, 256), dtype=torch.int64, device=x.device)
    hist.scatter_add_(1, idx, torch.ones_like(idx))
    top = idx.amax(dim=1, keepdim=True)
    step = (h * w - hist.gather(1, top)) // 255
    before = torch.cumsum(hist, dim=1) - hist
    lut = (step // 2 + before) // step.clamp(min=1)
    lut = torch.where(step > 0, lut, _ramp(x).expand(n * c, 256))
    return _apply_lut(x, lut.reshape(n, c, 256))


def _solarize(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    """``ImageOps.solarize``: pixels at or above the threshold are inverted."""
    ramp = _ramp(x)
    thr = r.value[:, None, None]
    lut = torch.where(ramp[None, None, :] >= thr, 255 - ramp, ramp).expand(-1, x.shape[1], 256)
    return _apply_lut(x, lut)


def _solarize_add(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    """timm's ``solarize_add``: ``min(255, x + add)`` for pixels below 128, others kept."""
    add = r.value.reshape(-1, 1, 1, 1).to(torch.int32)
    return torch.where(x < 128, (x.to(torch.int32) + add).clamp(0, 255).to(torch.uint8), x)


def _posterize(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    """``ImageOps.posterize``: keep the top ``bits`` bits of each channel."""
    bits = r.value.long().clamp(0, 8)
    mask = 255 - (torch.bitwise_left_shift(torch.ones_like(bits), 8 - bits) - 1)
    lut = (_ramp(x)[None, :] & mask[:, None]).unsqueeze(1).expand(-1, x.shape[1], 256)
    return _apply_lut(x, lut)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``Image.blend(degenerate, x, f)`` in float32: ``deg + f * (x - deg)``, truncated."""
    f = factor.float().reshape(-1, 1, 1, 1)
    deg = degenerate.float()
    out = deg + f * (x.float() - deg)
    return torch.trunc(out).clamp(0, 255).to(torch.uint8)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """PIL ``convert("L")``: ``(19595 R + 38470 G + 7471 B + 0x8000) >> 16``, [n, 1, H, W]."""
    xi = x.to(torch.int32)
    y = (xi[:, 0] * 19595 + xi[:, 1] * 38470 + xi[:, 2] * 7471 + 0x8000) >> 16
    return y.unsqueeze(1)


def _contrast(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Contrast``: blend with the solid gray ``int(mean(L) + 0.5)``."""
    luma = _luma(x).double()
    mean = torch.floor(luma.mean(dim=(1, 2, 3), keepdim=True) + 0.5)
    return _blend(mean.expand_as(x), x, r.value)


def _color(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Color``: blend with the luma image."""
    return _blend(_luma(x).expand_as(x), x, r.value)


def _brightness(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Brightness``: blend with black."""
    return _blend(torch.zeros_like(x), x, r.value)


_SMOOTH = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL ``ImageFilter.SMOOTH`` (3x3, rounded) on the interior; the 1-px border is copied."""
    n, c, h, w = x.shape
    if h < 3 or w < 3:
        return x
    k = _SMOOTH.to(x.device).expand(c, 1, 3, 3)
    inner = F.conv2d(x.float(), k, groups=c)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = torch.floor(inner + 0.5).clamp(0, 255).to(torch.uint8)
    return out


def _sharpness(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Sharpness``: blend with the SMOOTH-filtered image."""
    return _blend(_smooth(x), x, r.value)


def box_mask(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boolean masks [N, 1, H, W] of half-open boxes (y0, x0, y1, x1) [N, 4]."""
    ys = torch.arange(height, device=boxes.device).view(1, height, 1)
    xs = torch.arange(width, device=boxes.device).view(1, 1, width)
    b = boxes.view(-1, 4, 1, 1)
    inside = (ys >= b[:, 0]) & (ys < b[:, 2]) & (xs >= b[:, 1]) & (xs < b[:, 3])
    return inside.unsqueeze(1)


def _cutout(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    """Fills the half-open box (y0, x0, y1, x1) with gray 128 (AutoAugment Cutout)."""
    inside = box_mask(r.box, *x.shape[-2:])
    return torch.where(inside, torch.full_like(x, FILL), x)


def _sample_pairing(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    """SamplePairing (arXiv:1801.02929) as PIL ``Image.blend(x, partner, w)``."""
    partner = batch[r.partners]
    return _blend(x, partner, r.value)


def _identity(x: torch.Tensor, r: Resolved, batch: torch.Tensor) -> torch.Tensor:
    return x


#: One torch kernel per kernel family.
KERNELS: dict[Family, Kernel] = {
    Family.IDENTITY: _identity,
    Family.AFFINE: _affine,
    Family.AUTOCONTRAST: _autocontrast,
    Family.INVERT: _invert,
    Family.EQUALIZE: _equalize,
    Family.SOLARIZE: _solarize,
    Family.POSTERIZE: _posterize,
    Family.SOLARIZE_ADD: _solarize_add,
    Family.BLEND_MEAN: _contrast,
    Family.BLEND_GRAY: _color,
    Family.BLEND_BLACK: _brightness,
    Family.BLEND_SMOOTH: _sharpness,
    Family.CUTOUT: _cutout,
    Family.SAMPLE_PAIRING: _sample_pairing,
}
