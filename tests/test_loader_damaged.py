"""Tests for dali_aug.Loader on damaged images that pass the cheap check (intact signature and
end marker) but that DALI's decoder rejects: found, named, skipped, replaced by a substitute,
and the epoch equal to one where the file was known to be bad from the start (CPU pipeline)."""

from __future__ import annotations

import collections
import io
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_loader import _assert_same_batches

from dali_aug.batch import Batch
from dali_aug.loader import Loader
from dali_aug.policies import RandAugment
from dali_aug.sources import looks_valid

SIZE = 32
CPU = {"device": "cpu", "size": SIZE}


def damaged_image(kind: str, seed: int = 0) -> bytes:
    """A random 40x48 image encoded with PIL, then damaged in its middle: a JPEG with bytes
    10%-50% zeroed (its tables and frame header), a PNG with its IDAT data scrambled (libpng:
    "bad adaptive filter value"). The signature and the end marker stay intact."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
        buf, "JPEG" if kind == "jpeg" else "PNG"
    )
    data = bytearray(buf.getvalue())
    n = len(data)
    if kind == "jpeg":
        data[n // 10 : n // 2] = bytes(n // 2 - n // 10)
    else:
        lo, hi = n // 3, 2 * n // 3
        data[lo:hi] = bytes(b ^ 0x5A for b in data[lo:hi])
    out = bytes(data)
    assert looks_valid(out), "the damage must pass the cheap check to reach the decoder"
    return out


def _damaged_dir(root: Path, shapes_dir: Path, files: dict[str, bytes]) -> Path:
    shutil.copytree(shapes_dir, root)
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    return root


def _suffix(kind: str) -> str:
    return ".jpg" if kind == "jpeg" else ".png"


def _epoch(loader: Loader, epoch: int) -> list[Batch]:
    loader.set_epoch(epoch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return list(loader)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_damaged_image_is_named_skipped_and_the_epoch_completes(
    tmp_path: Path, shapes_dir: Path, kind: str, train: bool
) -> None:
    """The file is in ``loader.skipped`` and the warning; every batch comes out full; every
    other sample appears exactly once but its substitute (the next sample in order), twice."""
    rel = f"circle/zz_damaged{_suffix(kind)}"
    root = _damaged_dir(tmp_path / "data", shapes_dir, {rel: damaged_image(kind)})
    loader = Loader(root, policy=RandAugment(n=2, m=9), batch_size=8, train=train, **CPU)
    names = [loader.source.name(i) for i in range(len(loader.source))]
    bad = names.index(str(root / rel))
    with pytest.warns(RuntimeWarning, match="skipped 1 unreadable") as record:
        batches = list(loader)
    assert str(root / rel) in " ".join(str(w.message) for w in record)
    assert loader.skipped == [str(root / rel)]
    assert len(batches) == len(loader) == 9  # 65 samples
    assert [len(b.indices) for b in batches] == [8] * 8 + [1]
    order = loader.shard_indices(0).tolist()
    substitute = order[(order.index(bad) + 1) % len(order)]
    counts = collections.Counter(torch.cat([b.indices for b in batches]).tolist())
    assert bad not in counts
    assert counts[substitute] == 2
    assert {i for i, c in counts.items() if c != 1} == {substitute}
    assert set(counts) == set(range(len(names))) - {bad}
    for b in batches:
        assert torch.isfinite(b.images).all()
        assert torch.equal(b.labels, loader.source.targets[b.indices])


@pytest.mark.parametrize("kind", ["jpeg", pytest.param("png", marks=pytest.mark.slow)])
def test_recovered_epoch_equals_the_epoch_with_the_file_known_bad(
    tmp_path: Path, shapes_dir: Path, kind: str
) -> None:
    """The epoch that met the damaged file mid-way (and refed the batches in flight) is
    bitwise the epoch of a loader that knew it was bad from the start: the same loader
    repeating the epoch (the file is in its bad set) and a fresh loader over a folder where
    the same file is truncated (caught by the cheap check before the decoder)."""
    rel = f"square/zz_damaged{_suffix(kind)}"
    damaged = _damaged_dir(tmp_path / "damaged", shapes_dir, {rel: damaged_image(kind)})
    truncated = _damaged_dir(tmp_path / "truncated", shapes_dir, {rel: b"\xff\xd8\xff\xe0"})

    def make(root: Path) -> Loader:
        return Loader(
            root, policy=RandAugment(n=2, m=9), batch_size=4, seed=3, provenance=True, **CPU
        )

    loader = make(damaged)
    first = _epoch(loader, 0)
    assert loader.skipped == [str(damaged / rel)]
    again = _epoch(loader, 0)  # known bad: no pipeline failure
    assert all(b.params is not None and b.clean is not None for b in first)
    _assert_same_batches(first, again)
    _assert_same_batches(first, _epoch(make(truncated), 0))


def test_later_epochs_skip_the_file_without_a_rebuild(tmp_path: Path, shapes_dir: Path) -> None:
    rel = "circle/zz_damaged.jpg"
    root = _damaged_dir(tmp_path / "data", shapes_dir, {rel: damaged_image("jpeg")})
    loader = Loader(root, batch_size=8, **CPU)
    _epoch(loader, 0)
    assert loader._idle is not None
    pipe = loader._idle[1]
    with pytest.warns(RuntimeWarning, match="epoch 1: skipped 1 unreadable"):
        list(loader)  # epoch 1, by itself
    assert loader._idle is not None and loader._idle[1] is pipe
    assert loader.skipped == [str(root / rel)]  # listed once


@pytest.mark.parametrize("batch_size", [1, 3])
def test_several_damaged_images_in_flight(
    tmp_path: Path, shapes_dir: Path, batch_size: int
) -> None:
    """Three damaged files (JPEG and PNG) next to each other in the order: with batch 1 they
    sit in the batches in flight together (the pipeline prefetches two)."""
    files = {
        f"cross/zz_{k}{_suffix(kind)}": damaged_image(kind, k)
        for k, kind in enumerate(["jpeg", "png", "jpeg"])
    }
    root = _damaged_dir(tmp_path / "data", shapes_dir, files)
    loader = Loader(root, batch_size=batch_size, shuffle=False, **CPU)
    with pytest.warns(RuntimeWarning, match="skipped 3 unreadable"):
        batches = list(loader)
    assert sorted(loader.skipped) == sorted(str(root / r) for r in files)
    assert len(batches) == len(loader)
    assert sum(len(b.indices) for b in batches) == len(loader.source)
    bad = {loader.source.name(i) for i in torch.cat([b.indices for b in batches]).tolist()}
    assert not bad & set(loader.skipped)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_strict_names_the_damaged_image(
    tmp_path: Path, shapes_dir: Path, kind: str, train: bool
) -> None:
    rel = f"circle/zz_damaged{_suffix(kind)}"
    root = _damaged_dir(tmp_path / "data", shapes_dir, {rel: damaged_image(kind)})
    loader = Loader(root, batch_size=8, strict=True, train=train, **CPU)
    with pytest.raises(ValueError, match="undecodable image") as info:
        list(loader)
    message = str(info.value)
    assert str(root / rel) in message
    assert "strict=False" in message and "fix or remove" in message
