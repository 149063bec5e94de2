"""Video clips for the Loader: clip sources, frame windows and the torch backend for clips.

A clip batch holds ``B`` clips of ``T`` frames; every frame of a clip gets the same crop,
flip and policy ops (one row of the op record per clip). See ``docs/video.md``.

Example:
    >>> from dali_aug import Loader, RandAugment
    >>> loader = Loader("data/clips", policy=RandAugment(), clip_length=8, clip_stride=2)
    >>> for clips, labels in loader:  # clips: [B, 8, 3, S, S]
    ...     ...
"""

from __future__ import annotations

from dali_aug.video._avi import write_mjpeg_avi
from dali_aug.video._files import UnsupportedCodecError, VideoFileSource, holds_videos
from dali_aug.video._frames import clip_frame_indices, clip_span
from dali_aug.video._ops import apply_clip_params
from dali_aug.video._protocol import ClipSource, is_clip_source
from dali_aug.video._sources import ClipArraySource, FrameFolderSource, open_clip_source

__all__ = [
    "ClipArraySource",
    "ClipSource",
    "FrameFolderSource",
    "UnsupportedCodecError",
    "VideoFileSource",
    "apply_clip_params",
    "clip_frame_indices",
    "clip_span",
    "holds_videos",
    "is_clip_source",
    "open_clip_source",
    "write_mjpeg_avi",
]
