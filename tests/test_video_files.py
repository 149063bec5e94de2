"""Tests for :class:`~dali_aug.video.VideoFileSource` (video files decoded by DALI's CPU
video decoder) and :func:`~dali_aug.video.write_mjpeg_avi`: frames read back, frame order,
the Loader over folders of videos (class folders, labels.csv, shards), damaged and
unsupported files, bad folders. The videos are MJPEG AVI files written by the tests (VP9 too
where PyAV is installed)."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dali_aug.loader import Loader
from dali_aug.sources import IgnoreReason
from dali_aug.video import (
    ClipArraySource,
    FrameFolderSource,
    UnsupportedCodecError,
    VideoFileSource,
    holds_videos,
    write_mjpeg_avi,
)

SIZE = 16
T = 3
CPU = {"device": "cpu", "size": SIZE}
FRAMES = 8


def _frames(c: int, n: int = FRAMES) -> np.ndarray:
    """Smooth frames uint8 [n, 48, 64, 3] (JPEG keeps them within a few levels); frame k of
    clip c has red level 20 k + 3 c above a ramp, so frames differ by 20 in mean red."""
    yy, xx = np.mgrid[0:48, 0:64]
    out = [
        np.stack([xx + 20 * k + 3 * c, yy * 2 + 10, np.full_like(xx, 200 - 20 * k)], -1)
        for k in range(n)
    ]
    return np.stack(out).astype(np.uint8)


def _videos(root: Path, n: int = 6) -> None:
    """``n`` videos in class folders a/ and b/: clip c in (b, a)[c % 2] as clip{c}.avi."""
    for c in range(n):
        folder = root / ("a" if c % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        write_mjpeg_avi(folder / f"clip{c}.avi", _frames(c))


def _mean_red(frames: list[np.ndarray]) -> list[int]:
    return [round(float(f[..., 0].mean() - 31.5) / 20) for f in frames]


# -- reading ---------------------------------------------------------------------------------
def test_frames_read_back_within_jpeg_error(tmp_path: Path) -> None:
    _videos(tmp_path, n=2)
    src = VideoFileSource.scan(tmp_path)
    assert src.videos == ("a/clip1.avi", "b/clip0.avi") and not src.encoded
    assert src.classes == ("a", "b") and src.targets.tolist() == [0, 1]
    for i, c in enumerate((1, 0)):
        got = np.stack(src.read_frames(i, np.arange(FRAMES)))  # first read: decodes all
        assert got.shape == (FRAMES, 48, 64, 3) and got.dtype == np.uint8
        err = np.abs(got.astype(int) - _frames(c).astype(int))
        assert err.mean() < 2 and err.max() < 24, (err.mean(), err.max())
        assert src.num_frames(i) == FRAMES


@pytest.mark.parametrize("count_first", [False, True])
def test_requested_indices_in_their_order(tmp_path: Path, count_first: bool) -> None:
    write_mjpeg_avi(tmp_path / "v.avi", _frames(0))
    (tmp_path / "x").mkdir()
    (tmp_path / "v.avi").rename(tmp_path / "x" / "v.avi")
    src = VideoFileSource.scan(tmp_path)
    if count_first:  # the count decodes all; a new read of another file drops them
        assert src.num_frames(0) == FRAMES
        src._decoder._last = None  # read through DALI's frames= path
    want = [5, 1, 1, 7, 0]
    assert _mean_red(src.read_frames(0, np.array(want))) == want
    assert _mean_red(src.read_frames(0, np.array([6, 2]))) == [6, 2]  # frames= path
    with pytest.raises(ValueError, match=r"has 8 frames; frame indices \[3, 8\] are outside"):
        src.read_frames(0, np.array([3, 8]))


def test_vp9_webm_reads_back(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    (tmp_path / "x").mkdir()
    with av.open(str(tmp_path / "x" / "v.webm"), "w") as out:
        stream = out.add_stream("libvpx-vp9", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for f in _frames(0):
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    src = VideoFileSource.scan(tmp_path)
    assert src.num_frames(0) == FRAMES
    src._decoder._last = None
    assert _mean_red(src.read_frames(0, np.array([4, 0, 7]))) == [4, 0, 7]


def test_source_pickles_without_its_pipelines(tmp_path: Path) -> None:
    _videos(tmp_path, n=2)
    src = VideoFileSource.scan(tmp_path)
    src.num_frames(0)
    copy = pickle.loads(pickle.dumps(src))
    assert copy.videos == src.videos and copy._decoder._counts == {0: FRAMES}
    assert _mean_red(copy.read_frames(0, np.array([2]))) == [2]


# -- the Loader ------------------------------------------------------------------------------
def test_loader_over_video_folders_matches_the_decoded_frames(tmp_path: Path) -> None:
    _videos(tmp_path)
    loader = Loader(tmp_path, batch_size=4, clip_length=T, clip_stride=2, train=False, **CPU)
    assert isinstance(loader.source, VideoFileSource)
    src = loader.source
    clips = np.stack([np.stack(src.read_frames(i, np.arange(FRAMES))) for i in range(len(src))])
    ref = Loader(
        ClipArraySource.from_arrays(clips, src.targets), batch_size=4, clip_length=T,
        clip_stride=2, train=False, **CPU,
    )  # fmt: skip
    for got, want in zip(loader, ref, strict=True):
        assert torch.equal(got.indices, want.indices)
        assert torch.equal(got.labels, src.targets[got.indices])
        assert torch.equal(got.images, want.images)
    train = Loader(tmp_path, batch_size=4, clip_length=T, clip_stride=2, seed=1, **CPU)
    batches = list(train)
    assert [b.images.shape for b in batches] == [(4, T, 3, SIZE, SIZE), (2, T, 3, SIZE, SIZE)]


def test_loader_over_labels_csv(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    for c in range(3):
        write_mjpeg_avi(tmp_path / "v" / f"c{c}.avi", _frames(c))
    (tmp_path / "labels.csv").write_text(
        "path,labels\nv/c0.avi,run;jump\nv/c1.avi,sit\nv/c2.avi,jump\n"
    )
    loader = Loader(tmp_path, batch_size=3, clip_length=T, **CPU)
    src = loader.source
    assert isinstance(src, VideoFileSource) and src.multi_label
    assert src.classes == ("jump", "run", "sit")
    assert src.targets.tolist() == [[1, 1, 0], [0, 0, 1], [1, 0, 0]]
    (batch,) = list(loader)
    assert batch.images.shape == (3, T, 3, SIZE, SIZE)
    assert torch.equal(batch.labels, src.targets[batch.indices])


def test_shards_see_every_video_exactly_once(tmp_path: Path) -> None:
    _videos(tmp_path, n=8)
    seen = []
    for shard in range(2):
        loader = Loader(
            tmp_path, batch_size=2, clip_length=T, shard_id=shard, num_shards=2, seed=4, **CPU
        )
        seen.append(torch.cat([b.indices for b in loader]).tolist())
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(8))


@pytest.mark.parametrize("damage", ["truncated", "junk", "empty"])
def test_a_damaged_video_is_skipped_and_named(tmp_path: Path, damage: str) -> None:
    _videos(tmp_path)
    bad = tmp_path / "a" / "clip3.avi"
    data = bad.read_bytes()
    if damage == "truncated":
        bad.write_bytes(data[: len(data) * 6 // 10])
    elif damage == "junk":
        bad.write_bytes(b"not a video " * 100)
    else:
        bad.write_bytes(b"")
    loader = Loader(tmp_path, batch_size=2, clip_length=T, seed=0, **CPU)
    with pytest.warns(RuntimeWarning, match=f"skipped 1 unreadable file.*{bad}"):
        batches = list(loader)
    assert loader.skipped == [str(bad)]
    idx = torch.cat([b.indices for b in batches]).tolist()
    assert len(batches) == 3 and len(idx) == 6 and 1 not in idx  # clip3 is source index 1
    src = loader.source
    with pytest.raises(ValueError, match=f"{bad.name}.*(truncated|cannot be decoded|empty)"):
        src.num_frames(1)
    assert src.num_frames(0) == FRAMES  # the pipeline is rebuilt after the error
    with pytest.raises(ValueError, match=f"unreadable clip .*{bad.name}.*decoder rejects\\) \\["):
        list(Loader(tmp_path, batch_size=2, clip_length=T, strict=True, **CPU))


def _avi_of_codec(path: Path, fourcc: bytes) -> None:
    """An MJPEG AVI relabelled as ``fourcc`` in its stream header and format."""
    write_mjpeg_avi(path, _frames(0, 2))
    data = bytearray(path.read_bytes())
    for tag, at in ((b"strh", 12), (b"strf", 24)):
        k = data.index(tag)
        data[k + at : k + at + 4] = fourcc
    path.write_bytes(bytes(data))


def test_an_unsupported_codec_names_the_codec_and_the_fix(tmp_path: Path) -> None:
    _videos(tmp_path, n=2)
    _avi_of_codec(tmp_path / "a" / "clip1.avi", b"H264")
    src = VideoFileSource.scan(tmp_path)
    with pytest.raises(UnsupportedCodecError, match=r"clip1.avi' looks H.264.*re-encode it"):
        src.num_frames(0)
    loader = Loader(tmp_path, batch_size=2, clip_length=T, seed=0, **CPU)
    with pytest.raises(UnsupportedCodecError, match="VP8, VP9 and MJPEG"):
        list(loader)  # not skipped as damaged: every H.264 file would fail


# -- folders ---------------------------------------------------------------------------------
def test_frame_folders_and_video_folders_are_told_apart(tmp_path: Path) -> None:
    _videos(tmp_path / "videos", n=2)
    (tmp_path / "frames" / "a" / "clip0").mkdir(parents=True)
    assert holds_videos(tmp_path / "videos") and not holds_videos(tmp_path / "frames")
    assert not holds_videos(tmp_path / "missing")
    (tmp_path / "videos" / "a" / ".hidden").write_text("x")
    (tmp_path / "videos" / "a" / "notes.txt").write_text("x")
    src = VideoFileSource.scan(tmp_path / "videos")
    assert {(i.path, i.reason) for i in src.ignored} == {
        ("a/.hidden", IgnoreReason.HIDDEN),
        ("a/notes.txt", IgnoreReason.NOT_VIDEO),
    }
    with pytest.raises(ValueError, match="clip0' has no frames"):  # read as frame folders
        Loader(tmp_path / "frames", clip_length=T, **CPU)
    assert isinstance(
        Loader(tmp_path / "videos", clip_length=T, **CPU).source, VideoFileSource
    ) and not isinstance(
        Loader(tmp_path / "videos", clip_length=T, **CPU).source, FrameFolderSource
    )


@pytest.mark.parametrize(
    ("layout", "match"),
    [
        ({"a/x.txt": ""}, r"class folder .*a' has no video files \(.webm/"),
        ({"a/v.avi": "video", "a/sub/f.jpg": ""}, r"holds the folder 'sub': videos go directly"),
        ({"labels.csv": "path,labels\nnope.avi,x\n"}, r"row 2 names 'nope.avi', which is not a"),
        ({"labels.csv": "path,labels\nv.txt,x\n", "v.txt": ""}, r"row 2 names 'v.txt'"),
        ({}, "has no class subfolders"),
    ],
)
def test_bad_folders_are_refused(tmp_path: Path, layout: dict[str, str], match: str) -> None:
    for rel, text in layout.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        if text == "video":
            write_mjpeg_avi(tmp_path / rel, _frames(0, 2))
        else:
            (tmp_path / rel).write_text(text)
    with pytest.raises(ValueError, match=match):
        VideoFileSource.scan(tmp_path)


def test_write_mjpeg_avi_checks_its_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames"):
        write_mjpeg_avi(tmp_path / "v.avi", [])
    with pytest.raises(ValueError, match=r"frame 1: uint8 \(4, 4, 3\).*\(8, 8, 3\)"):
        write_mjpeg_avi(
            tmp_path / "v.avi",
            [np.zeros((8, 8, 3), np.uint8)] * 1 + [np.zeros((4, 4, 3), np.uint8)],
        )
    n = write_mjpeg_avi(tmp_path / "v.avi", _frames(0, 3))
    data = (tmp_path / "v.avi").read_bytes()
    assert n == 3 and data[:4] == b"RIFF" and data[8:12] == b"AVI "
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
