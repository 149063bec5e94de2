"""The torch backend: applies :class:`OpParams` to uint8 NCHW tensors on any device.

Samples are grouped by kernel family (one ``argsort`` and one ``bincount`` per layer), and
each family's kernel runs once on the samples that chose it, so the cost is proportional to
the samples per op, never a per-sample Python loop.

Host syncs on a CUDA device (the host waits for the device): reading the ``bincount`` back
(``.tolist()``, once per layer) is one, and not the only one. :func:`apply_params` also
checks the SamplePairing partners with a ``bool(...)`` (a sync when the params are on the
device), moves the params to the images' device (``OpParams.to``: blocking host-to-device
copies for CPU params, and the new record's validation reads the op ids' min and max back),
and :func:`~dali_aug.ops.resolve` copies the image size to the device every layer. Copies:
``dataclasses.astuple``, used by ``OpParams.to`` and to split :class:`Resolved` by family,
deep-copies every tensor of the record it is given.
"""

from __future__ import annotations

import dataclasses

import torch

from dali_aug.ops._catalog import Family, index
from dali_aug.ops._params import OpParams, Resolved, resolve
from dali_aug.ops._torch_kernels import KERNELS

__all__ = ["apply_params", "apply_resolved", "check_images"]


def check_images(images: torch.Tensor) -> None:
    """Raises TypeError/ValueError unless ``images`` is a uint8 [N, 3, H, W] tensor."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images must be a torch.Tensor, got {type(images).__name__}; "
            "use torch.from_numpy(array).permute(0, 3, 1, 2) for NHWC numpy arrays"
        )
    if images.dtype != torch.uint8:
        raise TypeError(
            f"images must be uint8 (0-255), got {images.dtype}; convert with "
            "(x * 255).round().clamp(0, 255).to(torch.uint8) before augmenting"
        )
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must be NCHW with 3 channels, got shape {tuple(images.shape)}; "
            "permute NHWC with .permute(0, 3, 1, 2) and convert gray/RGBA to RGB"
        )


def apply_resolved(x: torch.Tensor, r: Resolved) -> torch.Tensor:
    """Applies one layer of resolved parameters to x [N, 3, H, W] uint8."""
    n = x.shape[0]
    if n == 0:
        return x.clone()
    counts = torch.bincount(r.family, minlength=len(Family)).tolist()  # a host sync
    out = x.clone()
    if counts[Family.IDENTITY] == n:
        return out
    order = torch.argsort(r.family, stable=True)
    start = 0
    for family, count in zip(Family, counts, strict=True):
        if count and family is not Family.IDENTITY:
            rows = order[start : start + count]
            sub = Resolved(*(t[rows] for t in dataclasses.astuple(r)))
            out[rows] = KERNELS[family](x[rows], sub, x)
        start += count
    return out


def apply_params(images: torch.Tensor, params: OpParams) -> torch.Tensor:
    """Applies every layer of ``params`` to uint8 NCHW ``images`` (on their device).

    Args:
        images: uint8 [N, 3, H, W], CPU or CUDA; not modified.
        params: the per-sample ops, [N, L].

    Returns:
        uint8 [N, 3, H, W], a new tensor.
    """
    check_images(images)
    if params.batch_size != images.shape[0]:
        raise ValueError(
            f"params hold {params.batch_size} samples but images hold {images.shape[0]}; "
            "sample the policy with the batch size of the images"
        )
    pairing = params.op_ids == index("SamplePairing")
    if bool(((params.partners >= images.shape[0]) & pairing).any()):
        raise ValueError(
            "a SamplePairing partner index is outside the batch; partners index the batch "
            "the params are applied to (draw them for this batch size)"
        )
    p = params.to(images.device)
    h, w = images.shape[-2:]
    x = images
    for layer in range(p.num_layers):
        r = resolve(
            p.op_ids[:, layer], p.levels[:, layer], p.centers[:, layer], p.partners[:, layer], h, w
        )
        x = apply_resolved(x, r)
    return x if x is not images else images.clone()
