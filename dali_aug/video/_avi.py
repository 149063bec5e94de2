"""A minimal MJPEG AVI writer: frames as JPEG files (Pillow) in a RIFF ``AVI `` container.

DALI's CPU video decoder reads MJPEG (and VP8/VP9), so this writes test clips and
benchmark data without FFmpeg, PyAV or OpenCV. The container follows the OpenDML-less AVI 1.0
layout (``hdrl`` with ``avih``/``strh``/``strf``, ``movi`` with one ``00dc`` chunk per frame,
then an ``idx1`` index), as Microsoft's AVI RIFF reference describes it; files under 1 GiB.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

__all__ = ["write_mjpeg_avi"]

_AVIF_HASINDEX = 0x10
_AVIIF_KEYFRAME = 0x10


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _list(kind: bytes, body: bytes) -> bytes:
    return b"LIST" + struct.pack("<I", len(body) + 4) + kind + body


def write_mjpeg_avi(
    path: str | Path, frames: Iterable[np.ndarray], *, fps: int = 25, quality: int = 95
) -> int:
    """Writes uint8 HWC RGB frames (all of one shape) as an MJPEG AVI file.

    Args:
        path: the file to write (``.avi``).
        frames: the frames, uint8 [H, W, 3] each.
        fps: frames per second recorded in the header.
        quality: the JPEG quality (Pillow's 1..95).

    Returns:
        The number of frames written.

    Raises:
        ValueError: no frames, frames of another dtype or shape, or a file over 1 GiB.
    """
    from PIL import Image

    jpegs: list[bytes] = []
    shape: tuple[int, ...] | None = None
    for f in frames:
        f = np.asarray(f)
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[-1] != 3 or shape not in (None, f.shape):
            raise ValueError(
                f"frame {len(jpegs)}: {f.dtype} {f.shape}; write_mjpeg_avi takes uint8 "
                f"[H, W, 3] frames of one shape{'' if shape is None else f' ({shape})'}"
            )
        shape = f.shape
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, "JPEG", quality=quality)
        jpegs.append(buf.getvalue())
    if shape is None:
        raise ValueError("write_mjpeg_avi got no frames; give at least one [H, W, 3] frame")
    h, w = shape[:2]
    n, big = len(jpegs), max(len(j) for j in jpegs)
    avih = struct.pack(
        "<14I", 1_000_000 // fps, 0, 0, _AVIF_HASINDEX, n, 0, 1, big, w, h, 0, 0, 0, 0
    )
    strh = (
        b"vids"
        + b"MJPG"
        + struct.pack("<IHHIIIIIIIIhhhh", 0, 0, 0, 0, 1, fps, 0, n, big, 0xFFFFFFFF, 0, 0, 0, w, h)
    )
    strf = struct.pack("<IiiHH4sIiiII", 40, w, h, 1, 24, b"MJPG", w * h * 3, 0, 0, 0, 0)
    strl = _list(b"strl", _chunk(b"strh", strh) + _chunk(b"strf", strf))
    hdrl = _list(b"hdrl", _chunk(b"avih", avih) + strl)
    movi, index, offset = [], [], 4  # idx1 offsets count from the 'movi' fourcc
    for j in jpegs:
        c = _chunk(b"00dc", j)
        index.append(b"00dc" + struct.pack("<III", _AVIIF_KEYFRAME, offset, len(j)))
        movi.append(c)
        offset += len(c)
    body = b"AVI " + hdrl + _list(b"movi", b"".join(movi)) + _chunk(b"idx1", b"".join(index))
    if len(body) >= 2**30:
        raise ValueError(f"{str(path)!r}: {len(body)} bytes; write_mjpeg_avi writes < 1 GiB")
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return n
