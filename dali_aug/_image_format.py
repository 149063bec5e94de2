"""Image formats by their bytes: which format a file is (:func:`image_format`, by signature)
and whether it is complete (:func:`looks_valid`), with no decode.

The one place of these checks, shared by the sources (:mod:`dali_aug.sources`, which
re-exports all three names), the Loader's read check and the packed shards
(:mod:`dali_aug.shards`: the member extensions of the format, the packer's checks). Keeping
them apart from the sources lets the shard format import them without importing the
sources, which import the shard format (:func:`dali_aug.sources.open_source`).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

__all__ = ["IMAGE_FORMATS", "image_format", "looks_valid", "too_many_pixels"]

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


def too_many_pixels(data: bytes) -> str | None:
    """Why ``data`` is refused as a decompression bomb (its header, read by PIL without
    decoding, declares more pixels than Pillow's ``Image.MAX_IMAGE_PIXELS``, the limit
    ``dali-aug pack`` applies), or None (also when PIL cannot read the header: a damaged
    file is for :func:`looks_valid` and the decoder)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None:
        return None
    fix = "resize the image or raise Pillow's Image.MAX_IMAGE_PIXELS"
    size = _header_size(data)  # JPEG and PNG without PIL (~1 us instead of ~120 us)
    if size is not None:
        w, h = size
    else:
        try:
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            return f"a decompression bomb? {err}; {fix}"  # over twice the limit: PIL refuses
        except Exception:  # noqa: BLE001 - a damaged header is for looks_valid / the decoder
            return None
    if w * h <= limit:
        return None
    return (
        f"a decompression bomb? its header declares {w}x{h} = {w * h} pixels, over the "
        f"{limit}-pixel limit of Pillow's Image.MAX_IMAGE_PIXELS; {fix}"
    )


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR or a JPEG's first SOF marker, or None (another
    format, or a header this cheap parse does not follow: PIL reads those)."""
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 9 <= n and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(
                data[i + 5 : i + 7], "big"
            )
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


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
