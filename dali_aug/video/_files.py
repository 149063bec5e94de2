"""A clip source of video files (:class:`VideoFileSource`), decoded by DALI's CPU video
decoder (``nvidia.dali.fn.decoders.video``, FFmpeg's libavformat and libavcodec inside DALI).

Layouts, as :class:`~dali_aug.video.FrameFolderSource` with a file in place of a frame
folder: ``root/<class>/<video>.webm`` (classes: the sorted class folders), or
``root/labels.csv`` (``path,labels``, the video files relative to ``root``) for multi-label
data. Suffixes: ``.webm .mkv .avi .mp4 .mov``; what decodes is the codec inside: DALI's CPU
backend decodes VP8, VP9 and MJPEG; H.264, H.265, AV1 and MPEG-4 need its GPU ("mixed")
backend, and are refused here with :class:`UnsupportedCodecError`.

Cost (see ``docs/video.md``): one small DALI pipeline per source (batch 1, one thread,
synchronous), built once (about 2 ms) and rebuilt only after a decoder error (DALI leaves a
pipeline unusable after one). A file's frame count is not in DALI's outputs, so the first
read of a file decodes all its frames, keeps the count (one int per file) and cuts the window
from them; later reads decode only the window (``frames=``, with DALI's seek index).
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dali_aug.sources import VIDEO_SUFFIXES, Ignored, IgnoreReason, list_top_folders
from dali_aug.video._sources import _listing, folder_files, scan_class_layout, scan_label_csv

__all__ = ["UnsupportedCodecError", "VideoFileSource", "holds_videos"]

_LAYOUT = "video layout root/<class>/<video>.webm"
_FIX = (
    "re-encode it to VP9 or MJPEG (ffmpeg -i IN -c:v libvpx-vp9 OUT.webm, or -c:v mjpeg "
    "OUT.avi), or decode it on a GPU (DALI's mixed backend)"
)
# codec tags (Matroska CodecID, MP4 sample entry, AVI FourCC) of the codecs DALI decodes on
# the GPU only; looked for after a decoder error, to tell such a file from a damaged one
_GPU_ONLY = {
    "H.264": (b"V_MPEG4/ISO/AVC", b"avc1", b"avc3", b"H264", b"h264", b"X264", b"x264"),
    "H.265/HEVC": (b"V_MPEGH/ISO/HEVC", b"hvc1", b"hev1", b"HEVC", b"H265"),
    "AV1": (b"V_AV1", b"av01", b"AV01"),
    "MPEG-4 Part 2": (b"V_MPEG4/ISO/ASP", b"V_MPEG4/ISO/SP", b"mp4v", b"XVID", b"DIVX", b"FMP4"),
}


class UnsupportedCodecError(ValueError):
    """A video in a codec DALI's CPU decoder cannot read (H.264, H.265, AV1, MPEG-4).

    The Loader does not skip such a file as damaged: it raises, since every file of that
    codec would fail the same way."""


def _video_reason(name: str) -> IgnoreReason | None:
    return None if os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES else IgnoreReason.NOT_VIDEO


def holds_videos(root: str | Path) -> bool:
    """Whether a clip folder holds video files (:class:`VideoFileSource`) rather than frame
    folders: the first row of ``root/labels.csv`` names a video file, or else the first
    non-hidden entry of the first class folder is one."""
    root = Path(root)
    csv = root / "labels.csv"
    if csv.is_file():
        with open(csv, encoding="utf-8", errors="replace") as fh:
            fh.readline()
            first = fh.readline().split(",", 1)[0].strip()
        return _video_reason(first) is None
    try:
        folders, _ = list_top_folders(root, _LAYOUT)
        entries = [e for e in _listing(root / folders[0]) if not e.name.startswith(".")]
    except ValueError:
        return False  # the frame folder scan reports the folder's problem
    return bool(entries) and entries[0].is_file() and _video_reason(entries[0].name) is None


@dataclasses.dataclass(frozen=True)
class VideoFileSource:
    """Clips stored as video files (see the module docstring); implements
    :class:`~dali_aug.video.ClipSource` with ``encoded=False`` (HWC uint8 frames).

    Attributes:
        root: the data folder.
        videos: the video files, relative to ``root``.
        targets: labels, int64 [N] (float32 [N, C] multi-hot with ``labels.csv``).
        classes: class names, in label order.
        multi_label: whether ``targets`` is multi-hot.
        ignored: the files and folders under ``root`` that were not loaded, with the reason.

    Example:
        >>> src = VideoFileSource.scan("data/videos")  # data/videos/<class>/<clip>.webm
        >>> src.read_frames(0, np.array([0, 2, 4]))  # three [H, W, 3] uint8 frames
    """

    root: Path
    videos: tuple[str, ...]
    targets: torch.Tensor
    classes: tuple[str, ...]
    multi_label: bool = False
    ignored: tuple[Ignored, ...] = ()
    encoded: bool = dataclasses.field(default=False, init=False)
    _decoder: _Decoder = dataclasses.field(
        default_factory=lambda: _Decoder(), init=False, repr=False, compare=False
    )

    @classmethod
    def scan(cls, root: str | Path, *, classes: tuple[str, ...] | None = None) -> VideoFileSource:
        """Lists ``root``: ``root/labels.csv`` if it exists, else the class folders. Reads no
        video (a damaged or unsupported one is found when it is read).

        Args:
            classes: the class (label) names to index by (a validation folder gets the
                training source's ``classes``); a folder or label not among them is refused.

        Raises:
            ValueError: naming the path and the fix: a missing or empty data folder, a class
                folder without videos or with a subfolder, a CSV row naming a missing file or
                one that is not a video (and the label CSV's errors).
        """
        root = Path(root)
        ignored: list[Ignored] = []
        if (root / "labels.csv").is_file():

            def check(path: str, line: int) -> None:
                if not (root / path).is_file() or _video_reason(path) is not None:
                    raise ValueError(
                        f"{root / 'labels.csv'}: row {line} names {path!r}, which is not a "
                        f"video file ({'/'.join(VIDEO_SUFFIXES)}) under {str(root)!r}; fix the "
                        "row or add the file"
                    )

            paths, targets, names = scan_label_csv(root, classes, check)
            return cls(root, paths, targets, names, multi_label=True, ignored=tuple(ignored))

        def videos(name: str) -> list[str]:
            files = folder_files(
                root, name, ignored, _video_reason,
                nested=f"class folder {str(root / name)!r} holds the folder {{}}: videos go "
                f"directly in their class folder ({_LAYOUT}); for frame folders, put no video "
                "files in the class folders",
                empty=f"class folder {str(root / name)!r} has no video files "
                f"({'/'.join(VIDEO_SUFFIXES)}); add its videos or remove the folder",
            )  # fmt: skip
            return [os.path.join(name, f) for f in files]

        paths, targets, names = scan_class_layout(root, classes, _LAYOUT, videos, ignored)
        return cls(root, paths, targets, names, ignored=tuple(ignored))

    def __len__(self) -> int:
        return len(self.videos)

    def name(self, i: int) -> str:
        return str(self.root / self.videos[i])

    def num_frames(self, i: int) -> int:
        """The frames of video ``i``: decodes it all on the first call (the count is kept).

        Raises:
            OSError: the file cannot be read.
            ValueError: the decoder rejects it (damaged, truncated, not a video).
            UnsupportedCodecError: a codec the CPU decoder cannot read.
        """
        return self._decoder.count(i, self.name(i))

    def read_frames(self, i: int, frames: np.ndarray) -> list[np.ndarray]:
        """The decoded frames ``frames`` of video ``i`` (uint8 [H, W, 3] each), in order.

        Raises:
            OSError, ValueError, UnsupportedCodecError: as :meth:`num_frames`, and an index
                outside the video (DALI would pad with black frames).
        """
        idx = np.asarray(frames, dtype=np.int64).reshape(-1)
        return list(self._decoder.frames(i, self.name(i), idx))


class _Decoder:
    """Two persistent one-sample DALI pipelines (all frames; chosen frames), the frame
    counts, and the last fully decoded video; a lock makes the reads of concurrent
    iterations take turns."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipes: dict[bool, Any] = {}
        self._counts: dict[int, int] = {}
        self._last: tuple[int, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:  # pipelines and locks are not pickled
        return {"_counts": dict(self._counts)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]
        self._counts = state["_counts"]

    def count(self, i: int, path: str) -> int:
        with self._lock:
            if i not in self._counts:
                self._decode_all(i, path)
            return self._counts[i]

    def frames(self, i: int, path: str, idx: np.ndarray) -> np.ndarray:
        with self._lock:
            if i not in self._counts:
                self._decode_all(i, path)
            n = self._counts[i]
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(
                    f"{path!r} has {n} frames; frame indices {idx.tolist()} are outside [0, {n})"
                )
            if self._last is not None and self._last[0] == i:
                return self._last[1][idx]
            out = self._run(path, idx)
            if len(out) != len(idx):
                raise ValueError(
                    f"{path!r}: the decoder gave {len(out)} frames for indices {idx.tolist()}; "
                    "the file is damaged (re-encode it)"
                )
            return out

    def _decode_all(self, i: int, path: str) -> None:
        self._last = None
        out = self._run(path, None)
        if len(out) == 0:
            raise ValueError(f"{path!r} has no video frames; fix or remove the file")
        self._counts[i] = len(out)
        self._last = (i, out)

    def _run(self, path: str, idx: np.ndarray | None) -> np.ndarray:
        data = _load(path)
        pipe = self._pipes.get(idx is not None)
        if pipe is None:
            pipe = self._build(idx is not None)
        pipe.feed_input("encoded", [data])
        if idx is not None:
            pipe.feed_input("frames", [idx.astype(np.int32)])
        try:
            (out,) = pipe.run()
        except RuntimeError as err:
            self._pipes.pop(idx is not None, None)  # DALI: "pipeline object is no longer valid"
            raise _decoder_error(path, data, err) from None
        # a copy: DALI reuses the output's memory in the next run
        return np.array(out[0], copy=True)

    def _build(self, chosen: bool) -> Any:
        from nvidia.dali import fn, pipeline_def, types

        @pipeline_def(
            batch_size=1, num_threads=1, device_id=None, prefetch_queue_depth=1,
            exec_async=False, exec_pipelined=False,
        )  # fmt: skip
        def pipe() -> Any:
            encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
            if not chosen:
                return fn.decoders.video(encoded, device="cpu")
            frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1)
            return fn.decoders.video(encoded, device="cpu", frames=frames)

        p = pipe()
        p.build()
        self._pipes[chosen] = p
        return p


def _load(path: str) -> np.ndarray:
    """The bytes of a video file; an AVI (RIFF) file shorter than its header says is refused
    (DALI decodes a truncated AVI's missing frames as garbage without an error)."""
    data = Path(path).read_bytes()
    if not data:
        raise ValueError(f"{path!r} is empty; fix or remove the file")
    if data[:4] == b"RIFF" and len(data) >= 8:
        declared = int.from_bytes(data[4:8], "little") + 8
        if len(data) < declared:
            raise ValueError(
                f"{path!r} is truncated: {len(data)} bytes, its RIFF header says {declared}; "
                "fix or remove the file"
            )
    return np.frombuffer(data, np.uint8)


def _codec(data: np.ndarray) -> str | None:
    """The GPU-only codec whose tag appears in a file's bytes, if any."""
    raw = data.tobytes()
    for codec, tags in _GPU_ONLY.items():
        if any(t in raw for t in tags):
            return codec
    return None


def _decoder_error(path: str, data: np.ndarray, err: RuntimeError) -> ValueError:
    """A decoder failure as a ValueError naming the file (UnsupportedCodecError for a codec
    of the GPU backend)."""
    text = str(err)
    found = re.search(r"encountered:\s*\n\s*(.+)", text)
    why = (found.group(1) if found else text.strip().splitlines()[-1]).strip()
    codec = _codec(data)
    if codec is not None and "Failed to create video decoder" in why:
        return UnsupportedCodecError(
            f"{path!r} looks {codec}-encoded, which DALI's CPU video decoder cannot read (it "
            f"reads VP8, VP9 and MJPEG); {_FIX}"
        )
    return ValueError(
        f"{path!r} cannot be decoded by DALI's CPU video decoder ({why}); the file is "
        "damaged or not a VP8/VP9/MJPEG video: fix or remove it"
    )
