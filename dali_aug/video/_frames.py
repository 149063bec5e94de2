"""Which frames of a clip a sample reads: a window of ``length`` frames ``stride`` apart."""

from __future__ import annotations

import numpy as np

__all__ = ["clip_frame_indices", "clip_span"]


def clip_span(length: int, stride: int) -> int:
    """The frames a window of ``length`` frames ``stride`` apart covers: ``(length - 1) *
    stride + 1``."""
    return (length - 1) * stride + 1


def clip_frame_indices(
    num_frames: int, length: int, stride: int, u: float | np.ndarray
) -> np.ndarray:
    """The frame indices of a window of ``length`` frames, ``stride`` apart.

    The window starts at frame ``floor(u * (num_frames - span + 1))`` with ``span = (length -
    1) * stride + 1``: ``u`` uniform in [0, 1) gives a uniformly random window (training), ``u
    = 0.5`` the centred one (evaluation). A clip shorter than the span (our choice) starts at
    frame 0 and wraps around: the indices are taken ``mod num_frames``, so a 3-frame clip read
    with ``length=4, stride=1`` gives frames 0, 1, 2, 0 (other readers repeat the last frame
    or loop; all keep the clip's length).

    Args:
        num_frames: the clip's frames (>= 1).
        length: frames per window (>= 1).
        stride: the step between the window's frames (>= 1).
        u: the start uniform(s) in [0, 1): a float, or an array of any shape.

    Returns:
        int64 [length] for a scalar ``u``, else [*u.shape, length].

    Raises:
        ValueError: ``num_frames``, ``length`` or ``stride`` below 1, or ``u`` outside [0, 1).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames={num_frames}: a clip needs at least one frame")
    if length < 1 or stride < 1:
        raise ValueError(f"length={length} and stride={stride} must both be >= 1")
    uu = np.asarray(u, dtype=np.float64)
    if not ((uu >= 0) & (uu < 1)).all():
        raise ValueError(f"u={u} must be in [0, 1) (0.5: the centred window)")
    room = max(num_frames - clip_span(length, stride) + 1, 1)
    start = np.floor(uu * room).astype(np.int64)
    return (start[..., None] + np.arange(length, dtype=np.int64) * stride) % num_frames
