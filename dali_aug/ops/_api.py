"""The public helpers of the op catalog: ``names``, ``param``, ``apply``."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from dali_aug.ops._catalog import CATALOG, Mapping, check_level, get
from dali_aug.ops._optional import require_dali
from dali_aug.ops._params import OpParams
from dali_aug.ops._torch import apply_params

__all__ = ["apply", "check_numpy_images", "names", "param"]

Backend = Literal["torch", "dali"]


def names() -> tuple[str, ...]:
    """The names of every op in the catalog, in op-id order."""
    return tuple(op.name for op in CATALOG)


def param(name: str, magnitude: float, *, size: tuple[int, int] | None = None) -> float:
    """The PIL-level parameter of op ``name`` at ``magnitude`` (a level on the 0-10 scale).

    Args:
        name: an op name (see :func:`names`).
        magnitude: the level; negative means the mirrored direction (signed ops only).
        size: (H, W) of the image. TranslateX/Y and Cutout are relative to the image size;
            with ``size`` they return pixels, without it the fraction of the size.

    Returns:
        degrees (Rotate), shear factor, pixels or fraction (Translate, Cutout side),
        enhancement factor, bits (Posterize), threshold (Solarize), blend weight
        (SamplePairing), or 0.0 for ops without a magnitude.

    Example:
        >>> param("Rotate", -5)
        -15.0
        >>> param("TranslateX", 10, size=(224, 224))
        100.8
    """
    op = get(name)
    check_level(op, float(magnitude))
    value = float(op.param(float(magnitude)))
    if size is not None and op.mapping is not Mapping.NONE:
        h, w = size
        if name == "TranslateX":
            value *= w
        elif name == "TranslateY":
            value *= h
        elif name == "Cutout":
            value = float(np.floor(value * min(h, w) + 0.5))
    return value


def check_numpy_images(images: object) -> np.ndarray:
    """Raises TypeError/ValueError unless ``images`` is a uint8 [N, H, W, 3] numpy array."""
    if isinstance(images, torch.Tensor):
        raise TypeError(
            "images must be a numpy array [N, H, W, 3]; for torch tensors use "
            "dali_aug.ops.apply_params(tensor_nchw, params)"
        )
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy uint8 array [N, H, W, 3], got {type(images)}")
    if images.dtype != np.uint8:
        raise TypeError(
            f"images must be uint8 (0-255), got {images.dtype}; convert with "
            "np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)"
        )
    if images.ndim != 4:
        raise ValueError(
            f"images must be 4-D [N, H, W, 3], got shape {images.shape}; "
            "add a batch axis with images[None] for a single image"
        )
    if images.shape[-1] != 3:
        hint = (
            " (this looks like NCHW: use images.transpose(0, 2, 3, 1))"
            if (images.shape[1] == 3)
            else ""
        )
        raise ValueError(
            f"images must have 3 channels last [N, H, W, 3], got shape {images.shape}{hint}; "
            "convert gray or RGBA images to RGB"
        )
    return images


def apply(
    name: str,
    images: np.ndarray,
    magnitude: float,
    *,
    backend: Backend = "torch",
    generator: torch.Generator | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Applies op ``name`` at ``magnitude`` to every image of a batch.

    Args:
        name: an op name (see :func:`names`).
        images: uint8 [N, H, W, 3]; not modified.
        magnitude: level on the 0-10 AutoAugment scale; negative = mirrored (signed ops).
        backend: ``"torch"`` (batched tensor kernels) or ``"dali"`` (a DALI pipeline).
        generator: draws the Cutout centres and SamplePairing partners.
        device: ``"cpu"`` or ``"cuda"``, where the backend runs.

    Returns:
        uint8 [N, H, W, 3], a new array.

    Raises:
        ImportError: ``backend="dali"`` without NVIDIA DALI installed (the message names the
            package, :data:`~dali_aug.ops.DALI_PACKAGE`).

    Example:
        >>> out = apply("Rotate", images, 9, backend="dali")
    """
    op = get(name)
    if backend not in ("torch", "dali"):
        raise ValueError(f"unknown backend {backend!r}; use 'torch' or 'dali'")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda'")
    if isinstance(magnitude, bool) or not isinstance(magnitude, (int, float, np.number)):
        raise TypeError(f"{name}: magnitude must be a number, got {type(magnitude).__name__}")
    check_level(op, float(magnitude))
    images = check_numpy_images(images)
    params = OpParams.single(name, float(magnitude), images.shape[0], generator=generator)
    if backend == "dali":
        require_dali()  # an ImportError naming the package, before any DALI import
        from dali_aug.ops._dali_run import run_dali

        return run_dali(images, params, device_id=0 if device == "cuda" else None)
    x = torch.tensor(images, device=device).permute(0, 3, 1, 2)  # a copy: input untouched
    out = apply_params(x.contiguous(), params)
    return out.permute(0, 2, 3, 1).cpu().numpy()
