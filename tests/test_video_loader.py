"""Tests for the Loader in clip mode (``clip_length``): one augmentation per clip for every
op of the catalog, the crop and the flip, on the DALI path and the torch path
(``apply_clip_params``); frame order, windows, shards, determinism, resume, and damaged
frames (CPU pipelines, synthetic data)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_photo_batch
from PIL import Image

from dali_aug._image_format import _header_size
from dali_aug._pipeline import IMAGENET_MEAN, IMAGENET_STD
from dali_aug.loader import Batch, Loader
from dali_aug.ops import OpParams, get, index, names
from dali_aug.policies import NoAugment, OpSpec, Policy, RandAugment
from dali_aug.sources import looks_valid
from dali_aug.video import ClipArraySource, FrameFolderSource, apply_clip_params

SIZE = 16
T = 3
CPU = {"device": "cpu", "size": SIZE}
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
#: 6 photo-like clips of 4 identical frames, [6, 4, 48, 64, 3]
STILL = np.ascontiguousarray(np.repeat(make_photo_batch(n=6)[:, None], 4, axis=1))


def _single(name: str) -> Policy:
    level = 5.0 if get(name).has_magnitude else 0.0
    return Policy(name, ((OpSpec(name, 1.0, level),),))


def _pixels(images: torch.Tensor) -> torch.Tensor:
    """Normalised clips back to 0-255 (float)."""
    return images.float() * STD * 255 + MEAN * 255


def _same_frames(clips: torch.Tensor) -> bool:
    return all(torch.equal(clips[:, t], clips[:, 0]) for t in range(clips.shape[1]))


@pytest.fixture(scope="module")
def still_loader() -> Loader:
    """A clip loader over :data:`STILL`: one batch of all 6 clips, op record and clean
    crops; the tests replace its policy (the pipeline is reused)."""
    src = ClipArraySource.from_arrays(STILL, np.arange(6) % 3)
    return Loader(src, batch_size=6, clip_length=T, seed=3, provenance=True, **CPU)


def _one_batch(loader: Loader, policy: Policy | NoAugment) -> Batch:
    loader.set_policy(policy)
    (batch,) = list(loader)
    return batch


# -- one augmentation per clip ----------------------------------------------------------------
@pytest.mark.parametrize("name", names())
def test_every_op_gives_every_frame_of_a_clip_the_same_output(
    still_loader: Loader, name: str
) -> None:
    """Identical frames stay identical after the crop, the flip and the op, on the DALI path
    and on the torch path; the op record has one row per clip."""
    batch = _one_batch(still_loader, _single(name))
    assert batch.images.shape == (6, T, 3, SIZE, SIZE)
    assert batch.params is not None and batch.clean is not None
    assert batch.params.batch_size == 6 and batch.params.num_layers == 2
    assert (batch.params.op_ids[:, 1] == index(name)).all()
    assert batch.clean.shape == (6, T, 3, SIZE, SIZE) and batch.clean.dtype == torch.uint8
    assert _same_frames(batch.images), f"{name}: the frames of a clip differ (DALI)"
    assert _same_frames(batch.clean)
    replay = apply_clip_params(batch.clean, batch.params)
    assert replay.shape == batch.clean.shape
    assert _same_frames(replay), f"{name}: the frames of a clip differ (torch)"
    # the replay is the DALI batch (a loose bound: DALI's Equalize follows OpenCV)
    off = (replay.float() - _pixels(batch.images)).abs() > 2.5
    assert float(off.float().mean()) < (0.6 if name == "Equalize" else 0.05)


def test_torch_path_draws_per_clip(photo_batch: np.ndarray) -> None:
    """``apply_clip_params`` with a policy sampled per clip: every op, identical frames in,
    identical frames out; distinct frames keep their own content."""
    clips = torch.from_numpy(photo_batch[:4]).permute(0, 3, 1, 2)[:, None].repeat(1, 5, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    for name in names():
        params = OpParams.single(name, 5.0 if get(name).has_magnitude else 0.0, 4, generator=g)
        out = apply_clip_params(clips, params)
        assert out.shape == clips.shape and _same_frames(out), name
    moving = clips.clone()
    moving[:, 1] = 255 - moving[:, 1]
    out = apply_clip_params(moving, RandAugment(n=2, m=9).sample(4, generator=g))
    assert not torch.equal(out[:, 0], out[:, 1])
    with pytest.raises(ValueError, match="one row per clip"):
        apply_clip_params(clips, RandAugment().sample(20, generator=g))
    with pytest.raises(ValueError, match=r"\[B, T, 3, H, W\]"):
        apply_clip_params(clips[:, 0], RandAugment().sample(4, generator=g))


def test_crop_and_flip_are_per_clip(still_loader: Loader) -> None:
    """No policy: the crop window and the flip are the clip's; across clips they differ."""
    flips = 0
    for epoch in range(3):
        still_loader.set_epoch(epoch)
        batch = _one_batch(still_loader, NoAugment())
        assert batch.params is not None and batch.clean is not None
        assert _same_frames(batch.images) and _same_frames(batch.clean)
        flips += int((batch.params.op_ids[:, 0] == index("FlipLR")).sum())
    assert 0 < flips < 18


def test_frames_keep_their_content_and_order() -> None:
    """Frame t of each clip is the still image plus 20 t (frames 0, 2, 4 of 5 at stride 2):
    the crop, the flip and the resize keep the offset, frame after frame."""
    base = make_photo_batch(h=32, w=32)[:4] // 2  # <= 127: + 40 stays below 255
    clips = base[:, None].astype(np.int64) + 10 * np.arange(5).reshape(1, 5, 1, 1, 1)
    src = ClipArraySource.from_arrays(clips.astype(np.uint8), np.arange(4))
    loader = Loader(src, batch_size=4, clip_length=3, clip_stride=2, provenance=True, **CPU)
    (batch,) = list(loader)
    assert batch.clean is not None
    diff = batch.clean.float() - batch.clean[:, :1].float()
    for t in range(3):
        assert (diff[:, t] - 20 * t).abs().max() <= 1, f"frame {t}"
    mean = _pixels(batch.images).mean(dim=(2, 3, 4))
    assert (mean[:, 1:] > mean[:, :-1] + 15).all(), "frames out of order"


def test_sample_pairing_pairs_the_same_frame_of_the_partner_clip() -> None:
    """SamplePairing blends frame t with frame t of the partner clip: the frames' offsets
    (20 t) survive the blend, as with no op at all."""
    base = make_photo_batch(h=32, w=32)[:4] // 2
    clips = base[:, None].astype(np.int64) + 20 * np.arange(3).reshape(1, 3, 1, 1, 1)
    src = ClipArraySource.from_arrays(clips.astype(np.uint8), np.arange(4))
    loader = Loader(src, policy=_single("SamplePairing"), batch_size=4, clip_length=3, **CPU)
    (batch,) = list(loader)
    px = _pixels(batch.images)
    diff = px - px[:, :1]
    for t in range(3):
        assert (diff[:, t] - 20 * t).abs().max() <= 2, f"frame {t}"


def test_eval_reads_the_centred_window() -> None:
    """Evaluation: frames 3..6 of 10 (frame t is the value 10 t), in order, every epoch."""
    clips = (10 * np.arange(10, dtype=np.uint8)).reshape(1, 10, 1, 1, 1)
    clips = np.broadcast_to(clips, (2, 10, 20, 20, 3)).copy()
    src = ClipArraySource.from_arrays(clips, np.array([0, 1]))
    loader = Loader(src, batch_size=2, clip_length=4, train=False, clean=True, **CPU)
    for _ in range(2):
        (batch,) = list(loader)
        assert batch.clean is not None
        got = batch.clean[:, :, :, SIZE // 2, SIZE // 2].float().mean(-1)
        assert got.tolist() == [[30.0, 40.0, 50.0, 60.0]] * 2


def test_train_windows_vary_with_the_epoch() -> None:
    """Training windows start anywhere the clip allows, drawn per clip and per epoch."""
    clips = (10 * np.arange(10, dtype=np.uint8)).reshape(1, 10, 1, 1, 1)
    clips = np.broadcast_to(clips, (8, 10, 20, 20, 3)).copy()
    src = ClipArraySource.from_arrays(clips, np.zeros(8, dtype=np.int64))
    kw = {"batch_size": 8, "clip_length": 2, "clip_stride": 3, "clean": True, "shuffle": False}
    loader = Loader(src, **kw, **CPU)  # in order: position k is clip k every epoch
    per_epoch: list[list[int]] = []
    for _ in range(3):
        (batch,) = list(loader)
        assert batch.clean is not None
        first = batch.clean[:, :, 0].float().mean(dim=(-1, -2))  # [B, T]
        assert torch.equal(first[:, 1] - first[:, 0], torch.full((8,), 30.0))
        start = (first[:, 0] / 10).long()
        per_epoch.append(start[torch.argsort(batch.indices)].tolist())  # by clip
    starts = {s for row in per_epoch for s in row}
    assert len(starts) >= 4 and max(starts) <= 6
    assert per_epoch[0] != per_epoch[1] != per_epoch[2], "a clip's window ignores the epoch"


# -- order, shards, determinism, resume -------------------------------------------------------
def _moving_source(n: int = 10) -> ClipArraySource:
    rng = np.random.default_rng(1)
    clips = rng.integers(0, 256, (n, 6, 20, 20, 3), dtype=np.uint8)
    return ClipArraySource.from_arrays(clips, np.arange(n) % 3)


def test_shards_see_every_clip_exactly_once() -> None:
    src = _moving_source()
    seen = []
    for shard in range(2):
        loader = Loader(
            src, batch_size=3, clip_length=T, shard_id=shard, num_shards=2, seed=4, **CPU
        )
        batches = list(loader)
        assert len(batches) == len(loader) == 2
        for b in batches:
            assert b.images.shape == (len(b.indices), T, 3, SIZE, SIZE)
            assert torch.equal(b.labels, src.targets[b.indices])
        seen.append(torch.cat([b.indices for b in batches]).tolist())
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(10))


def test_same_seed_same_batches_and_epochs_differ() -> None:
    src = _moving_source()
    kw = {"batch_size": 4, "clip_length": T, "clip_stride": 2, "seed": 9, "op_record": True}
    policy = RandAugment(n=2, m=9)
    a, b = Loader(src, policy=policy, **kw, **CPU), Loader(src, policy=policy, **kw, **CPU)
    first = []
    for _ in range(2):
        xs, ys = list(a), list(b)
        for x, y in zip(xs, ys, strict=True):
            assert torch.equal(x.images, y.images) and torch.equal(x.indices, y.indices)
            assert x.params is not None and y.params is not None
            assert torch.equal(x.params.op_ids, y.params.op_ids)
            assert torch.equal(x.params.levels, y.params.levels)
        first.append(xs[0])
    assert not torch.equal(first[0].images, first[1].images)
    assert first[0].params is not None and first[1].params is not None
    assert not torch.equal(first[0].params.op_ids, first[1].params.op_ids)


def test_resume_mid_epoch() -> None:
    src = _moving_source()
    kw = {"batch_size": 3, "clip_length": T, "seed": 2, "policy": RandAugment(), **CPU}
    whole = list(Loader(src, **kw))
    first = Loader(src, **kw)
    it = iter(first)
    next(it)
    state = first.state_dict()
    assert state["config"]["clip_length"] == T
    resumed = Loader(src, **kw)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(whole) - 1
    for x, y in zip(rest, whole[1:], strict=True):
        assert torch.equal(x.images, y.images)


def test_channels_last_clips() -> None:
    src = _moving_source(4)
    kw = {"batch_size": 4, "clip_length": T, "seed": 1, **CPU}
    (plain,) = list(Loader(src, **kw))
    (last,) = list(Loader(src, channels_last=True, **kw))
    assert last.images.shape == plain.images.shape == (4, T, 3, SIZE, SIZE)
    assert last.images.stride(2) == 1, "C is innermost"
    assert torch.equal(last.images, plain.images)
    assert last.images.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)


# -- damaged frames ---------------------------------------------------------------------------
def _jpeg(value: int, side: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), value, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _frame_folders(root: Path, clips: int = 5) -> None:
    for c in range(clips):
        folder = root / ("a" if c % 2 else "b") / f"clip{c}"
        folder.mkdir(parents=True)
        for k in range(T):
            (folder / f"{k + 1:06d}.jpg").write_bytes(_jpeg(40 * c + 5 * k))


def test_a_truncated_frame_skips_its_clip(tmp_path: Path) -> None:
    _frame_folders(tmp_path)
    bad = tmp_path / "a" / "clip3" / "000002.jpg"
    bad.write_bytes(bad.read_bytes()[:-200])
    loader = Loader(tmp_path, batch_size=2, clip_length=T, seed=0, **CPU)
    assert isinstance(loader.source, FrameFolderSource)
    name = str(tmp_path / "a" / "clip3")
    with pytest.warns(RuntimeWarning, match=f"skipped 1 unreadable file.*{name}"):
        batches = list(loader)
    assert loader.skipped == [name]
    idx = torch.cat([b.indices for b in batches]).tolist()
    assert len(batches) == 3 and len(idx) == 5 and 1 not in idx  # clip3 is source index 1
    assert all(b.images.shape[1:] == (T, 3, SIZE, SIZE) for b in batches)
    with pytest.raises(ValueError, match="unreadable clip .*clip3"):
        list(Loader(tmp_path, batch_size=2, clip_length=T, strict=True, **CPU))


def test_a_frame_of_another_shape_skips_its_clip(tmp_path: Path) -> None:
    _frame_folders(tmp_path, clips=3)
    (tmp_path / "b" / "clip0" / "000003.jpg").write_bytes(_jpeg(10, side=30))
    loader = Loader(tmp_path, batch_size=3, clip_length=T, train=False, **CPU)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (batch,) = list(loader)
    assert loader.skipped == [str(tmp_path / "b" / "clip0")]
    assert any("clip0" in str(w.message) for w in caught)
    assert batch.indices.tolist() == [0, 2, 2]  # b/clip0 (index 1) replaced by the next clip


@pytest.mark.parametrize("train", [True, False])
def test_a_frame_the_decoder_rejects_skips_its_clip(tmp_path: Path, train: bool) -> None:
    """A frame that passes the cheap check but that DALI's decoder rejects: the pipeline
    fails, the Loader finds the clip by decoding its frames one by one, skips it and
    refeeds the batches in flight; the epoch has every other clip, in full batches."""
    noise = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    n = len(data)
    data[n // 3 : n // 2] = bytes(n // 2 - n // 3)  # the scan data, after the frame header
    assert looks_valid(bytes(data)) and _header_size(bytes(data)) == (24, 24)
    _frame_folders(tmp_path, clips=6)
    (tmp_path / "a" / "clip3" / "000003.jpg").write_bytes(bytes(data))
    loader = Loader(tmp_path, batch_size=2, clip_length=T, train=train, seed=1, **CPU)
    name = str(tmp_path / "a" / "clip3")
    with pytest.warns(RuntimeWarning, match=f"skipped 1 unreadable file.*{name}"):
        batches = list(loader)
    assert loader.skipped == [name]
    idx = torch.cat([b.indices for b in batches]).tolist()
    assert [len(b.indices) for b in batches] == [2, 2, 2]
    assert 1 not in idx and set(idx) == {0, 2, 3, 4, 5}  # a/clip3 is source index 1


def test_copies_of_a_clip_read_the_same_frames() -> None:
    """``copies=2``: both copies of a clip hold its window (frame values 10 t), each with its
    own crop, flip and ops; one op record row per copy."""
    clips = (10 * np.arange(8, dtype=np.uint8)).reshape(1, 8, 1, 1, 1)
    src = ClipArraySource.from_arrays(np.broadcast_to(clips, (3, 8, 20, 20, 3)).copy(), [0, 1, 2])
    loader = Loader(src, batch_size=3, clip_length=2, copies=2, provenance=True, **CPU)
    (batch,) = list(loader)
    assert batch.images.shape == (6, 2, 3, SIZE, SIZE) and batch.indices.shape == (6,)
    assert batch.params is not None and batch.params.batch_size == 6
    assert batch.clean is not None
    values = batch.clean[:, :, 0, 0, 0].view(3, 2, 2)  # [clip, copy, frame]
    assert torch.equal(values[:, 0], values[:, 1])
    assert torch.equal(values[..., 1] - values[..., 0], torch.full((3, 2), 10, dtype=torch.uint8))
