"""The torch backend for clips: one op record row per clip, applied to every frame."""

from __future__ import annotations

import torch

from dali_aug.ops._params import OpParams
from dali_aug.ops._torch import apply_params

__all__ = ["apply_clip_params"]


def apply_clip_params(clips: torch.Tensor, params: OpParams) -> torch.Tensor:
    """Applies one row of ``params`` per clip to all the clip's frames (the same op, level,
    Cutout box and flip on every frame; a SamplePairing partner is the same frame of the
    partner clip). Ops that read image statistics (AutoContrast, Equalize, Contrast) use each
    frame's own statistics, as the Loader's DALI backend does.

    Args:
        clips: uint8 [B, T, 3, H, W] (e.g. a clip batch's ``clean``), on any device.
        params: the per-clip ops [B, L] (a clip batch's ``params``, or a policy's sample of
            ``B``).

    Returns:
        uint8 [B, T, 3, H, W], a new tensor.

    Raises:
        TypeError, ValueError: ``clips`` is not uint8 [B, T, 3, H, W], or ``params`` holds
            another number of clips.
    """
    if not isinstance(clips, torch.Tensor) or clips.dim() != 5:
        shape = tuple(clips.shape) if isinstance(clips, torch.Tensor) else type(clips).__name__
        raise ValueError(
            f"clips must be a uint8 tensor [B, T, 3, H, W], got {shape}; for images "
            "[B, 3, H, W] use dali_aug.ops.apply_params"
        )
    b, t = clips.shape[:2]
    if params.batch_size != b:
        raise ValueError(
            f"params hold {params.batch_size} rows but clips hold {b} clips; give one row per "
            "clip (a clip batch's params, or a policy sampled with the number of clips)"
        )
    out = apply_params(clips.reshape(b * t, *clips.shape[2:]), params.repeat_interleave(t))
    return out.view(clips.shape)
