"""The ImageNet normalisation of the Loader's output, the one place of its constants.

Pure torch (no DALI): the Loader's DALI graph (``fn.crop_mirror_normalize``), the pictures
(:mod:`dali_aug.viz`), the trainer-side methods and the benchmarks all read
:data:`IMAGENET_MEAN` and :data:`IMAGENET_STD` from here.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "denormalize", "normalize"]

#: Per-channel (R, G, B) mean of ImageNet on the [0, 1] scale (torchvision's constants).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
#: Per-channel (R, G, B) standard deviation of ImageNet on the [0, 1] scale.
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor, *, scale: float = 255.0) -> torch.Tensor:
    """uint8 NCHW -> normalised float32 NCHW (the Loader's output normalisation).

    Args:
        images: [N, 3, H, W], uint8 0-255 (``scale`` 255) or float in [0, 1] (``scale`` 1).
        scale: the value of a full-intensity pixel in ``images``.

    Returns:
        float32 [N, 3, H, W], ``(images - mean * scale) / (std * scale)``, on their device.
    """
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1) * scale
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1) * scale
    return (images.float() - mean) / std


def denormalize(images: torch.Tensor) -> np.ndarray:
    """Normalised float NCHW -> uint8 NHWC numpy (rounded and clipped), for pictures.

    Args:
        images: float [N, 3, H, W], as :func:`normalize` or the Loader returns them.

    Returns:
        uint8 [N, H, W, 3] numpy array on the host.
    """
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (images.detach().float().cpu() * std + mean) * 255
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
