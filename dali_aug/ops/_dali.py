"""The DALI backend: the op catalog as DALI operators inside a pipeline (CPU or GPU).

Per-sample op choice uses DALI conditionals (``enable_conditionals=True``): a binary ``if``
tree on the kernel family splits the batch, so each family's operators run only on the
samples that chose it (as ``nvidia.dali.auto_aug.core._select`` does). The per-sample numbers
come from the host through ``external_source``: the same :class:`Resolved` parameters the
torch backend uses, so a DALI batch can be replayed with the torch backend.

DALI's own operators are reused (``warp_affine``, ``equalize``, ``filter``, ``erase``,
``color_space_conversion``, reductions, arithmetic); what DALI lacks is composed from them
(PIL's truncating blends, PIL's border-preserving SMOOTH, per-sample posterize masks).
Differences from PIL that remain are the per-op ``tolerance["dali"]`` in the catalog:
``fn.equalize`` follows OpenCV's LUT formula; ``color_space_conversion`` rounds the luma
differently from PIL's fixed point by at most 1.

This module must live in a ``.py`` file: DALI's conditionals rewrite the source of the
functions below with AutoGraph. It and ``_dali_run`` (which runs it on in-memory batches) are
the only modules of ``dali_aug.ops`` that import DALI at their top (``dali_aug.ops`` itself
does not import it); without DALI importing this one raises an ImportError naming the package
to install.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from dali_aug.ops._catalog import FILL, Family
from dali_aug.ops._optional import missing_dali
from dali_aug.ops._params import OpParams, resolve

try:
    from nvidia.dali import fn, types
    from nvidia.dali import math as dmath
    from nvidia.dali.data_node import DataNode
except ImportError as _err:  # the backend is optional: say what to install
    raise missing_dali(_err) from _err

__all__ = ["LayerNodes", "apply_layers", "host_inputs", "NUM_LAYER_INPUTS"]

_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13.0

#: Inputs fed per layer: family, value, matrix, box anchor, box shape, posterize mask, partner.
NUM_LAYER_INPUTS = 7


@dataclasses.dataclass(frozen=True)
class LayerNodes:
    """The per-sample DALI inputs of one layer (see :func:`host_inputs`)."""

    family: DataNode
    value: DataNode
    matrix: DataNode
    anchor: DataNode
    shape: DataNode
    mask: DataNode
    partner: DataNode


def host_inputs(params: OpParams, height: int, width: int) -> list[np.ndarray]:
    """The batches fed to the pipeline's ``external_source(batch=True)``, layer after layer.

    Args:
        params: the per-sample ops [N, L], on the CPU.
        height: H of every sample.
        width: W of every sample.

    Returns:
        ``NUM_LAYER_INPUTS * L`` dense C-contiguous numpy arrays, each with the batch as its
        first dimension (one sample per row): per layer the family (int32 [N]), value
        (float32 [N]), matrix (float32 [N, 2, 3]), box anchor and shape (float32 [N, 2]),
        posterize mask (uint8 [N]) and partner (int32 [N]).
    """
    out: list[np.ndarray] = []
    for layer in range(params.num_layers):
        r = resolve(
            params.op_ids[:, layer],
            params.levels[:, layer],
            params.centers[:, layer],
            params.partners[:, layer],
            height,
            width,
        )
        bits = r.value.long().clamp(0, 8)
        mask = 255 - (torch.bitwise_left_shift(torch.ones_like(bits), 8 - bits) - 1)
        arrays = (
            r.family.int().numpy(),
            r.value.numpy(),
            r.matrix.numpy(),
            r.box[:, :2].float().numpy(),
            (r.box[:, 2:] - r.box[:, :2]).float().numpy(),
            mask.to(torch.uint8).numpy(),
            # only SamplePairing rows read their partner: others point at themselves, so a
            # sub-batch with foreign partner indices stays valid for fn.permute_batch
            torch.where(
                r.family == int(Family.SAMPLE_PAIRING), r.partners, torch.arange(len(r.partners))
            )
            .int()
            .numpy(),
        )
        out.extend(np.ascontiguousarray(a) for a in arrays)
    return out


def _to_float(x: DataNode) -> DataNode:
    return fn.cast(x, dtype=types.FLOAT)


#: 1.5 * 2**23: adding it to an integer-valued float32 ``v`` with ``|v| < 2**22`` is exact and
#: leaves ``v`` in the low mantissa bits: the int32 bit pattern is ``_MAGIC_BITS + v``.
_MAGIC = 12582912.0
_MAGIC_BITS = 0x4B400000


def _to_uint8(v: DataNode) -> DataNode:
    """An integer-valued float32 batch as uint8, saturated to [0, 255].

    ``fn.cast(float -> uint8)`` rounds every element with a library call (~0.6 ms per 224 x 224
    image on a 2-core CPU, more than the blend arithmetic); reading the integer out of the
    mantissa (``v + 1.5 * 2**23`` reinterpreted as int32) and saturating it with an
    ``int32 -> uint8`` cast gives the same values several times faster. Exact because ``v`` is
    integer-valued (floored) and small.
    """
    bits = fn.reinterpret(v + _MAGIC, dtype=types.INT32)
    return fn.cast(bits - types.Constant(_MAGIC_BITS, dtype=types.INT32), dtype=types.UINT8)


def _blend(degenerate: DataNode, x: DataNode, factor: DataNode) -> DataNode:
    """PIL ``Image.blend``: ``floor(deg + f * (x - deg))`` clipped (values are >= 0 here,
    where PIL truncates toward zero, floor is the same). ``degenerate`` is float32 (so that
    ``x - deg`` is signed); ``x`` may be uint8 (DALI arithmetic promotes it exactly)."""
    return _to_uint8(dmath.floor(degenerate + factor * (x - degenerate)))


def _brightness(x: DataNode, factor: DataNode) -> DataNode:
    """``_blend(0, x, f)`` with DALI's uint8 brightness kernel, about 10x faster than the
    float blend. The kernel computes ``round(x * f - 0.5)`` saturated, which equals PIL's
    ``floor(f * x)`` in float32: checked for all 256 values of ``x`` against the factors of
    every level on a 1/256 grid in [-11, 11] and 4000 random factors in [0, 2.2] (CPU; the
    GPU kernel is held to the catalog's DALI tolerance like every other op)."""
    return fn.brightness(x, brightness=factor, brightness_shift=-0.5 / 255, dtype=types.UINT8)


def _luma(x: DataNode) -> DataNode:
    return _to_float(fn.color_space_conversion(x, image_type=types.RGB, output_type=types.GRAY))


def _border_mask(height: int, width: int) -> np.ndarray:
    m = np.zeros((height, width, 1), dtype=np.float32)
    if height > 2 and width > 2:
        m[1:-1, 1:-1] = 1.0
    return m


def _kernel(family: Family, x: DataNode, p: LayerNodes, size: tuple[int, int]) -> DataNode:
    """The DALI operators of one kernel family."""
    if family is Family.IDENTITY:
        return x
    if family is Family.AFFINE:
        return fn.warp_affine(
            x, matrix=p.matrix, fill_value=FILL, interp_type=types.INTERP_NN, inverse_map=True
        )
    if family is Family.AUTOCONTRAST:
        lo = _to_float(fn.reductions.min(x, axis_names="HW", keep_dims=True))
        hi = _to_float(fn.reductions.max(x, axis_names="HW", keep_dims=True))
        flat = hi <= lo
        # a flat channel maps through (x - 0) * 1 = x; the others through (x - lo) * scale
        # (per-channel scalars, so the image itself sees one subtraction and one product)
        scale = flat + (flat ^ True) * (255.0 / (hi - lo + flat))
        return _to_uint8(dmath.floor((x - lo * (flat ^ True)) * scale))
    if family is Family.INVERT:
        return types.Constant(255, dtype=types.UINT8) - x
    if family is Family.EQUALIZE:
        return fn.equalize(x)
    if family is Family.SOLARIZE:
        # 255 - x == x ^ 255 for uint8: flip the bits of the pixels at or above the threshold
        return x ^ ((x >= p.value) * types.Constant(255, dtype=types.UINT8))
    if family is Family.POSTERIZE:
        return x & p.mask
    if family is Family.SOLARIZE_ADD:
        # timm's solarize_add: min(255, x + add) below 128 (the add is a whole number)
        return _to_uint8(x + (x < 128) * p.value)
    if family is Family.BLEND_MEAN:
        mean = dmath.floor(fn.reductions.mean(_luma(x)) + 0.5)
        return _blend(mean, x, p.value)
    if family is Family.BLEND_GRAY:
        return _blend(_luma(x), x, p.value)
    if family is Family.BLEND_BLACK:
        return _brightness(x, p.value)
    if family is Family.BLEND_SMOOTH:
        # PIL keeps the 1-px border: there the degenerate is x itself. With d = x - degenerate
        # (zeroed on the border by the constant mask), x - d is the degenerate, exactly.
        inner = types.Constant(_border_mask(*size))
        d = (x - _to_float(fn.filter(x, _SMOOTH))) * inner
        return _to_uint8(dmath.floor((x - d) + p.value * d))
    if family is Family.CUTOUT:
        return fn.erase(x, anchor=p.anchor, shape=p.shape, axis_names="HW", fill_value=FILL)
    if family is Family.SAMPLE_PAIRING:
        raise AssertionError("SamplePairing is handled by apply_layers")
    raise AssertionError(f"no DALI kernel for {family}")  # pragma: no cover


def _select(
    families: Sequence[Family],
    x: DataNode,
    p: LayerNodes,
    partner: DataNode | None,
    size: tuple[int, int],
) -> DataNode:
    """Binary ``if`` tree on the family id: each branch sees only its samples."""
    if len(families) == 1:
        family = families[0]
        if family is Family.SAMPLE_PAIRING:
            assert partner is not None
            return _blend(_to_float(x), partner, p.value)
        return _kernel(family, x, p, size)
    mid = len(families) // 2
    if p.family < int(families[mid]):
        out = _select(families[:mid], x, p, partner, size)
    else:
        out = _select(families[mid:], x, p, partner, size)
    return out


def apply_layers(
    images: DataNode,
    layers: Sequence[LayerNodes],
    *,
    size: tuple[int, int],
    families: Sequence[Family] = tuple(Family),
) -> DataNode:
    """Applies the per-sample ops of every layer inside a DALI pipeline definition.

    Args:
        images: uint8 HWC batch, all samples of shape ``size``.
        layers: the per-sample inputs of each layer, from ``external_source`` fed with
            :func:`host_inputs`.
        size: (H, W) of every sample.
        families: the kernel families the pipeline supports (smaller trees are cheaper);
            the default supports every op of the catalog.

    Returns:
        the augmented uint8 HWC batch.
    """
    fams = sorted(set(families), key=int)
    for p in layers:
        partner = None
        if Family.SAMPLE_PAIRING in fams:
            partner = fn.permute_batch(images, indices=p.partner)
        images = _select(fams, images, p, partner, size)
    return images
