"""Tests for the DataLoader ergonomics of dali_aug.Loader: ``images, labels`` unpacking, epochs
that advance by themselves unless pinned, ``op_record`` / ``clean`` / ``provenance``, the
batch inputs fed as dense arrays (pinned output) and the one DALI -> torch conversion."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from dali_aug import _pipeline
from dali_aug.batch import Batch
from dali_aug.bench import _e2e
from dali_aug.loader import Loader, LoaderConfig
from dali_aug.policies import RandAugment

SIZE = 32
CPU = {"device": "cpu", "size": SIZE}


def _order(batches: list[Batch]) -> list[int]:
    return torch.cat([b.indices for b in batches]).tolist()


def test_batch_unpacks_to_images_and_labels(shapes_dir: Path) -> None:
    loader = Loader(shapes_dir, batch_size=16, provenance=True, **CPU)
    n = 0
    for images, labels in loader:
        assert images.shape == (len(labels), 3, SIZE, SIZE) and labels.dtype == torch.int64
        n += len(labels)
    assert n == len(loader.source)
    batch = next(iter(loader))
    images, labels = batch
    assert images is batch.images and labels is batch.labels
    assert batch.params is not None and batch.clean is not None  # still attributes


def test_iterating_twice_without_set_epoch_runs_two_epochs(shapes_dir: Path) -> None:
    loader = Loader(shapes_dir, batch_size=16, seed=1, **CPU)
    first = _order(list(loader))
    assert loader.epoch == 0
    second = _order(list(loader))
    assert loader.epoch == 1
    assert first != second
    assert second == loader.shard_indices(1).tolist()
    # a started (abandoned) iteration counts too
    next(iter(loader))
    assert loader.epoch == 2
    assert loader.shard_indices().tolist() == loader.shard_indices(3).tolist()  # the next one


def test_set_epoch_pins_the_next_iteration(shapes_dir: Path) -> None:
    loader = Loader(shapes_dir, policy=RandAugment(n=2, m=9), batch_size=16, seed=1, **CPU)
    list(loader)
    loader.set_epoch(3)
    assert loader.epoch == 3
    a = list(loader)
    loader.set_epoch(3)
    b = list(loader)
    assert loader.epoch == 3
    assert _order(a) == _order(b) == loader.shard_indices(3).tolist()
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.images, y.images)
    list(loader)  # no set_epoch: the epoch after the pinned one
    assert loader.epoch == 4


@pytest.mark.parametrize(
    ("flags", "params", "clean"),
    [
        ({"op_record": True}, True, False),
        ({"clean": True}, False, True),
        ({"provenance": True}, True, True),
        ({"op_record": True, "clean": True}, True, True),
        ({}, False, False),
    ],
)
def test_op_record_and_clean_are_separate(
    shapes_dir: Path, flags: dict[str, bool], params: bool, clean: bool
) -> None:
    """Only ``clean`` (or ``provenance``) adds the clean output to the DALI graph; the op
    record alone is host tensors; the images are the same whatever is asked."""

    def make(**kw: bool) -> Loader:
        return Loader(shapes_dir, policy=RandAugment(n=2, m=9), batch_size=16, seed=2, **CPU, **kw)

    loader = make(**flags)
    full = list(make(provenance=True))
    got = list(loader)
    assert loader._idle is not None and loader._idle[0].clean is clean  # the graph's outputs
    for b, ref in zip(got, full, strict=True):
        assert torch.equal(b.images, ref.images)
        assert (b.params is not None) is params and (b.clean is not None) is clean
        if b.params is not None:
            assert ref.params is not None and torch.equal(b.params.op_ids, ref.params.op_ids)
        if b.clean is not None:
            assert ref.clean is not None and torch.equal(b.clean, ref.clean)


#: sha256 prefixes of (indices, images, clean, op ids) of epoch 1 of the loader below, recorded
#: with the per-sample lists fed before the inputs became dense batch arrays (DALI 2.4, CPU).
PINNED = {True: "2608d5ffb77ae2c0", False: "bcbf83bb8083194f"}


@pytest.mark.parametrize("train", [True, False])
def test_dense_batch_inputs_keep_the_output_bitwise(shapes_dir: Path, train: bool) -> None:
    cfg = LoaderConfig(batch_size=8, seed=3, provenance=True, train=train, device="cpu", size=SIZE)
    loader = Loader(shapes_dir, policy=RandAugment(n=2, m=9), config=cfg)
    loader.set_epoch(1)
    h = hashlib.sha256()
    for b in loader:
        assert b.clean is not None and b.params is not None
        for t in (b.indices, b.images, b.clean, b.params.op_ids):
            h.update(t.numpy().tobytes())
    assert h.hexdigest()[:16] == PINNED[train]


def test_crop_uniforms_is_one_dense_array() -> None:
    u = _pipeline.crop_uniforms(5, (0.08, 1.0), torch.Generator().manual_seed(0))
    assert isinstance(u, np.ndarray) and u.dtype == np.float32
    assert u.shape == (5, 2 * _pipeline.CROP_ATTEMPTS + 2) and u.flags.c_contiguous


def test_one_dali_to_torch_conversion() -> None:
    assert _e2e.dali_to_torch is _pipeline.to_torch


@pytest.mark.parametrize("train", [True, False])
def test_channels_last_and_float16_come_out_of_the_pipeline(shapes_dir: Path, train: bool) -> None:
    """channels_last: the same values, NCHW shape with channels-last strides (written so by
    the pipeline); float16: the pipeline's own half output, within half rounding of float32."""
    kw = dict(batch_size=8, size=32, device="cpu", seed=3, train=train, scale=(0.5, 1.0))
    plain = next(iter(Loader(shapes_dir, **kw)))  # type: ignore[arg-type]
    last = next(iter(Loader(shapes_dir, channels_last=True, **kw)))  # type: ignore[arg-type]
    assert last.images.shape == plain.images.shape == (8, 3, 32, 32)
    assert last.images.is_contiguous(memory_format=torch.channels_last)
    assert not plain.images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(last.images, plain.images)
    half = next(iter(Loader(shapes_dir, dtype=torch.float16, **kw)))  # type: ignore[arg-type]
    assert half.images.dtype == torch.float16
    torch.testing.assert_close(half.images.float(), plain.images, atol=2e-3, rtol=1e-3)
    both = Loader(shapes_dir, dtype=torch.float16, channels_last=True, **kw)  # type: ignore[arg-type]
    out = next(iter(both)).images
    assert out.dtype == torch.float16 and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, half.images)
