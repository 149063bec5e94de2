"""Tests for dali_aug.video's sources and frame windows: ``clip_frame_indices``,
``ClipArraySource``, ``FrameFolderSource`` (class folders and ``labels.csv``), their errors,
and the Loader's clip-mode argument errors. Synthetic data only."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dali_aug.loader import Loader, LoaderConfig
from dali_aug.ops import OpParams
from dali_aug.sources import ArraySource
from dali_aug.video import (
    ClipArraySource,
    ClipSource,
    FrameFolderSource,
    clip_frame_indices,
    is_clip_source,
)


def _jpeg(value: int, side: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), value, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _frames(folder: Path, count: int, value: int = 100) -> None:
    folder.mkdir(parents=True)
    for k in range(count):
        (folder / f"{k + 1:06d}.jpg").write_bytes(_jpeg(value + 10 * k))


# -- clip_frame_indices -----------------------------------------------------------------------
def test_train_windows_are_in_range_and_strided() -> None:
    u = np.random.default_rng(0).random(1000)
    idx = clip_frame_indices(20, 4, 3, u)  # span 10: starts 0 .. 10
    assert idx.shape == (1000, 4) and idx.dtype == np.int64
    assert (idx >= 0).all() and (idx < 20).all()
    assert (np.diff(idx, axis=1) == 3).all()
    assert set(idx[:, 0].tolist()) == set(range(11)), "every start is reachable"
    assert clip_frame_indices(20, 4, 3, 0.0).tolist() == [0, 3, 6, 9]
    assert clip_frame_indices(20, 4, 3, 0.999999).tolist() == [10, 13, 16, 19]


def test_eval_window_is_centred() -> None:
    assert clip_frame_indices(10, 4, 1, 0.5).tolist() == [3, 4, 5, 6]  # 3 frames each side
    assert clip_frame_indices(9, 3, 2, 0.5).tolist() == [2, 4, 6]  # span 5: 2 each side
    assert clip_frame_indices(4, 4, 1, 0.5).tolist() == [0, 1, 2, 3]


def test_short_clips_wrap_around() -> None:
    assert clip_frame_indices(3, 4, 1, 0.5).tolist() == [0, 1, 2, 0]
    assert clip_frame_indices(3, 3, 2, 0.9).tolist() == [0, 2, 1]
    assert clip_frame_indices(1, 3, 1, 0.2).tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("args", "match"),
    [((0, 2, 1, 0.5), "num_frames=0"), ((5, 0, 1, 0.5), "length=0"),
     ((5, 2, 0, 0.5), "stride=0"), ((5, 2, 1, 1.0), r"\[0, 1\)")],
)  # fmt: skip
def test_clip_frame_indices_errors(args: tuple[int, int, int, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        clip_frame_indices(*args)


# -- OpParams.repeat_interleave ---------------------------------------------------------------
def test_repeat_interleave_repeats_rows_and_maps_partners_to_the_same_frame() -> None:
    params = OpParams.single("SamplePairing", 5, 3, generator=torch.Generator().manual_seed(0))
    rep = params.repeat_interleave(4)
    assert rep.batch_size == 12
    assert torch.equal(rep.op_ids, params.op_ids.repeat_interleave(4, 0))
    assert torch.equal(rep.levels, params.levels.repeat_interleave(4, 0))
    assert torch.equal(rep.centers, params.centers.repeat_interleave(4, 0))
    want = torch.tensor([[4 * int(params.partners[i // 4, 0]) + i % 4] for i in range(12)])
    assert torch.equal(rep.partners, want)
    assert params.repeat_interleave(1) is params
    with pytest.raises(ValueError, match="repeats=0"):
        params.repeat_interleave(0)


# -- ClipArraySource --------------------------------------------------------------------------
def test_clip_array_source_reads_windows() -> None:
    clips = np.arange(2 * 5, dtype=np.uint8).reshape(2, 5, 1, 1, 1).repeat(3, -1)
    src = ClipArraySource.from_arrays(clips, [1, 0], classes=("a", "b"))
    assert is_clip_source(src) and isinstance(src, ClipSource) and not src.encoded
    assert len(src) == 2 and src.num_frames(1) == 5 and src.classes == ("a", "b")
    frames = src.read_frames(1, np.array([0, 2, 4]))
    assert [int(f[0, 0, 0]) for f in frames] == [5, 7, 9]
    assert all(f.shape == (1, 1, 3) and f.flags.c_contiguous for f in frames)
    assert src.name(1) == "<clip array index 1>"
    multi = ClipArraySource.from_arrays(clips, np.array([[1, 0, 1], [0, 1, 0]]))
    assert multi.multi_label and multi.targets.dtype == torch.float32
    strided = ClipArraySource.from_arrays(clips[:, ::2], [0, 1])
    assert strided.clips.flags.c_contiguous


@pytest.mark.parametrize(
    ("clips", "labels", "error", "match"),
    [
        (np.zeros((2, 3, 4, 4, 3), np.float32), [0, 1], TypeError, r"uint8 numpy array \[N, T"),
        (np.zeros((2, 4, 4, 3), np.uint8), [0, 1], ValueError, r"\[N, T, H, W, 3\], got shape"),
        (np.zeros((2, 3, 4, 4, 1), np.uint8), [0, 1], ValueError, r"\[N, T, H, W, 3\]"),
        (np.zeros((0, 3, 4, 4, 3), np.uint8), [], ValueError, "empty; give at least one clip"),
        (np.zeros((2, 0, 4, 4, 3), np.uint8), [0, 1], ValueError, "no frames"),
        (np.zeros((2, 3, 4, 4, 3), np.uint8), [0, 1, 1], ValueError, "2 clips but 3 labels"),
        (np.zeros((2, 3, 4, 4, 3), np.uint8), [0.5, 1], TypeError, "integer class indices"),
        (np.zeros((2, 3, 4, 4, 3), np.uint8), [-1, 1], ValueError, "negative class index"),
    ],
)
def test_clip_array_source_errors(
    clips: np.ndarray, labels: list[float], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ClipArraySource.from_arrays(clips, np.asarray(labels) if labels else np.zeros(0, int))


def test_clip_array_source_targets_must_be_a_tensor() -> None:
    with pytest.raises(TypeError, match="ClipArraySource.from_arrays"):
        ClipArraySource(np.zeros((1, 2, 4, 4, 3), np.uint8), [0], ("0",))  # type: ignore[arg-type]


# -- FrameFolderSource ------------------------------------------------------------------------
def test_frame_folders_by_class(tmp_path: Path) -> None:
    _frames(tmp_path / "run" / "c2", 2)
    _frames(tmp_path / "run" / "c1", 3)
    _frames(tmp_path / "jump" / "c9", 4)
    (tmp_path / "run" / "c1" / "notes.txt").write_text("x")
    (tmp_path / "run" / "c1" / ".hidden.jpg").write_bytes(b"")
    src = FrameFolderSource.scan(tmp_path)
    assert is_clip_source(src) and src.encoded and not src.multi_label
    assert src.classes == ("jump", "run")
    assert src.clips == ("jump/c9", "run/c1", "run/c2")
    assert src.targets.tolist() == [0, 1, 1]
    assert [src.num_frames(i) for i in range(3)] == [4, 3, 2]
    assert src.frames[1] == ("000001.jpg", "000002.jpg", "000003.jpg")
    assert sorted(i.path for i in src.ignored) == ["run/c1/.hidden.jpg", "run/c1/notes.txt"]
    frames = src.read_frames(1, np.array([2, 0]))
    want = [(tmp_path / "run/c1" / f).read_bytes() for f in ("000003.jpg", "000001.jpg")]
    assert [f.tobytes() for f in frames] == want and frames[0].dtype == np.uint8
    assert src.name(1) == str(tmp_path / "run" / "c1")
    val = FrameFolderSource.scan(tmp_path, classes=("jump", "run", "walk"))
    assert val.classes == ("jump", "run", "walk")


def test_frame_folders_with_a_label_csv(tmp_path: Path) -> None:
    _frames(tmp_path / "v1", 2)
    _frames(tmp_path / "v2", 3)
    (tmp_path / "labels.csv").write_text("path,labels\nv1,run;jump\nv2,walk run\n")
    src = FrameFolderSource.scan(tmp_path)
    assert src.multi_label and src.classes == ("jump", "run", "walk")
    assert src.targets.tolist() == [[1, 1, 0], [0, 1, 1]]
    assert src.clips == ("v1", "v2") and src.num_frames(1) == 3


def test_empty_data_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no class subfolders; expected the clip layout"):
        FrameFolderSource.scan(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        FrameFolderSource.scan(tmp_path / "nope")


def test_class_folder_without_clip_folders(tmp_path: Path) -> None:
    _frames(tmp_path / "run" / "c1", 2)
    (tmp_path / "jump").mkdir()
    with pytest.raises(ValueError, match=r"'.*jump' has no clip folders"):
        FrameFolderSource.scan(tmp_path)


def test_image_folder_is_not_a_frame_folder(tmp_path: Path) -> None:
    _frames(tmp_path / "run", 2)
    with pytest.raises(ValueError, match="holds the file '000001.jpg'.*drop clip_length"):
        FrameFolderSource.scan(tmp_path)


def test_clip_folder_without_frames(tmp_path: Path) -> None:
    _frames(tmp_path / "run" / "c1", 2)
    (tmp_path / "run" / "c2").mkdir()
    (tmp_path / "run" / "c2" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"clip folder '.*c2' has no frames.*000001.jpg"):
        FrameFolderSource.scan(tmp_path)


def test_csv_naming_a_missing_folder(tmp_path: Path) -> None:
    _frames(tmp_path / "v1", 2)
    (tmp_path / "labels.csv").write_text("path,labels\nv1,a\nv2,b\n")
    with pytest.raises(ValueError, match=r"row 3 names clip folder 'v2', which is not a folder"):
        FrameFolderSource.scan(tmp_path)


def test_csv_label_outside_the_given_classes(tmp_path: Path) -> None:
    _frames(tmp_path / "v1", 2)
    (tmp_path / "labels.csv").write_text("path,labels\nv1,a;zz\n")
    with pytest.raises(ValueError, match="not among the 1 training classes: 'zz'"):
        FrameFolderSource.scan(tmp_path, classes=("a",))


# -- Loader arguments -------------------------------------------------------------------------
CLIPS = ClipArraySource.from_arrays(np.zeros((4, 3, 8, 8, 3), np.uint8), [0, 1, 0, 1])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("clip_length", 0, "clip_length=0 must be >= 1"), ("clip_stride", 0, "clip_stride=0")],
)
def test_bad_clip_length_and_stride(field: str, value: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LoaderConfig(**{field: value})
    with pytest.raises(ValueError, match=match):
        Loader(CLIPS, device="cpu", **{"clip_length": 2, field: value})


def test_clip_source_needs_clip_length() -> None:
    with pytest.raises(ValueError, match=r"ClipArraySource\) needs clip_length=T"):
        Loader(CLIPS, device="cpu")


def test_clip_length_needs_a_clip_source() -> None:
    images = ArraySource.from_arrays(np.zeros((2, 8, 8, 3), np.uint8), np.array([0, 1]))
    with pytest.raises(ValueError, match="clip_length=2 needs a clip source.*drop clip_length"):
        Loader(images, device="cpu", clip_length=2)


def test_clip_length_refuses_erasing() -> None:
    from dali_aug.train import ErasingConfig

    with pytest.raises(ValueError, match="erasing is not supported with clip_length"):
        LoaderConfig(clip_length=2, erasing=ErasingConfig())
