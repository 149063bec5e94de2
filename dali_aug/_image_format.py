"""Image formats by their bytes: which format a file is (:func:`image_format`, by signature)
and whether it is complete (:func:`looks_valid`), with no decode.

The one place of these checks, shared by the sources (:mod:`dali_aug.sources`, which
re-exports all three names), the Loader's read check and the packed shards
(:mod:`dali_aug.shards`: the member extensions of the format, the packer's checks). Keeping
them apart from the sources lets the shard format import them without importing the
sources, which import the shard format (:func:`dali_aug.sources.open_source`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["IMAGE_FORMATS", "image_format", "looks_valid"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The formats :func:`image_format` tells apart (by signature), in its names.
IMAGE_FORMATS = ("jpg", "png", "webp", "bmp", "tif")
_TIFF_TYPES = {3: "u2", 4: "u4"}  # SHORT, LONG: the types TIFF 6.0 allows for offsets/counts
#: bytes per value of each TIFF field type 0..13 (0 and unknown types: not checked)
_TIFF_SIZES = np.array([0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4], dtype=np.int64)
_TIFF_STRIPS = ((273, 279), (324, 325))  # (StripOffsets, StripByteCounts), (Tile...)


def looks_valid(data: bytes) -> bool:
    """True if ``data`` starts like a loaded image format and is complete.

    Per format: JPEG ends with its EOI marker, PNG with its IEND chunk; WebP is at least as
    long as its RIFF size, BMP as its file-size field (a BMP whose field is 0 is rejected);
    a TIFF's first IFD, its values and the strips or tiles it points to lie inside it (classic
    TIFF only, not BigTIFF). This catches non-image files with an image name and truncated
    files (the cases where decoders either fail or silently fill the missing part with gray).
    """
    fmt = image_format(data)
    if fmt == "jpg":
        return data.rstrip(b"\x00")[-2:] == b"\xff\xd9"
    if fmt == "png":
        return data[-8:-4] == b"IEND"
    if fmt == "webp":
        return len(data) >= 8 + int.from_bytes(data[4:8], "little")
    if fmt == "bmp":
        return len(data) >= 26 and 26 <= int.from_bytes(data[2:6], "little") <= len(data)
    if fmt == "tif":
        return _tiff_complete(data)
    return False


def image_format(data: bytes) -> str | None:
    """The format of ``data`` by its signature (one of :data:`IMAGE_FORMATS`), or None: says
    nothing of completeness (that is :func:`looks_valid`)."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == _PNG_SIGNATURE:
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tif"
    return None


def _tiff_complete(data: bytes) -> bool:
    """True if the first IFD of a classic TIFF, the values it stores outside itself and the
    pixel data it points to all fit in ``data``."""
    order = "<" if data[:2] == b"II" else ">"
    n = len(data)
    ifd = int(np.frombuffer(data, f"{order}u4", 1, 4)[0]) if n >= 8 else 0
    if ifd < 8 or ifd + 2 > n:
        return False
    count = int(np.frombuffer(data, f"{order}u2", 1, ifd)[0])
    if ifd + 2 + 12 * count + 4 > n:
        return False
    entry = np.dtype(
        [("tag", f"{order}u2"), ("type", f"{order}u2"), ("n", f"{order}u4"), ("value", "V4")]
    )
    entries = np.frombuffer(data, entry, count, ifd + 2)
    types = entries["type"].astype(np.int64)
    last = len(_TIFF_SIZES) - 1
    sizes = np.where(types <= last, _TIFF_SIZES[np.minimum(types, last)], 0)
    sizes *= entries["n"]
    at = entries["value"].view(f"{order}u4").astype(np.int64)
    if np.any((sizes > 4) & (at + sizes > n)):  # a value stored outside the IFD is cut
        return False
    for offsets_tag, counts_tag in _TIFF_STRIPS:
        offsets = _tiff_values(data, entries, offsets_tag, order)
        counts = _tiff_values(data, entries, counts_tag, order)
        if offsets is not None and counts is not None:
            return len(offsets) == len(counts) and int((offsets + counts).max()) <= n
    return False


def _tiff_values(data: bytes, entries: np.ndarray, tag: int, order: str) -> np.ndarray | None:
    """The SHORT/LONG values of IFD entry ``tag`` as int64, or None if missing or outside."""
    hit = entries[entries["tag"] == tag]
    if len(hit) != 1 or int(hit["type"][0]) not in _TIFF_TYPES or int(hit["n"][0]) == 0:
        return None
    dtype = np.dtype(order + _TIFF_TYPES[int(hit["type"][0])])
    n = int(hit["n"][0])
    raw = hit["value"][0].tobytes()
    if n * dtype.itemsize <= 4:  # the values sit in the entry itself
        return np.frombuffer(raw, dtype, n).astype(np.int64)
    at = int(np.frombuffer(raw, f"{order}u4", 1)[0])
    if at + n * dtype.itemsize > len(data):
        return None
    return np.frombuffer(data, dtype, n, at).astype(np.int64)
