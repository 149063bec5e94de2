"""The clip source protocol: what the Loader reads a video data set through.

A clip source lists clips and reads some frames of one clip; it never decodes (DALI does).
:class:`~dali_aug.video.ClipArraySource` (in-memory arrays),
:class:`~dali_aug.video.FrameFolderSource` (folders of frame files) and
:class:`~dali_aug.video.VideoFileSource` (video files) implement it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

__all__ = ["ClipSource", "is_clip_source"]


@runtime_checkable
class ClipSource(Protocol):
    """A data set of clips, one label (or multi-hot row) per clip.

    Attributes:
        classes: the class names, in label order.
        targets: int64 [N] class indices, or float32 [N, C] multi-hot (``multi_label``).
        multi_label: whether ``targets`` is multi-hot.
        encoded: True: :meth:`read_frames` gives encoded image bytes (1-D uint8 arrays of
            JPEG or PNG files, decoded by DALI); False: HWC uint8 arrays.
    """

    # read-only members (properties), so that frozen dataclasses and plain attributes both
    # satisfy the protocol
    @property
    def classes(self) -> tuple[str, ...]: ...
    @property
    def targets(self) -> torch.Tensor: ...
    @property
    def multi_label(self) -> bool: ...
    @property
    def encoded(self) -> bool: ...

    def __len__(self) -> int:
        """The number of clips."""
        ...

    def name(self, i: int) -> str:
        """What error messages and ``loader.skipped`` show for clip ``i`` (a path or an id)."""
        ...

    def num_frames(self, i: int) -> int:
        """The frames of clip ``i``.

        Raises:
            OSError, ValueError: the clip is unreadable (the Loader skips it).
        """
        ...

    def read_frames(self, i: int, frames: np.ndarray) -> list[np.ndarray]:
        """One array per index in ``frames`` (int64 [T], indices into the clip), in order.

        Raises:
            OSError, ValueError: damaged data (the Loader skips the clip).
        """
        ...


def is_clip_source(data: Any) -> bool:
    """Whether ``data`` is a clip source (has the members of :class:`ClipSource`)."""
    return isinstance(data, ClipSource)
