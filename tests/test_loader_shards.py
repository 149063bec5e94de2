"""Tests for dali_aug.Loader sharding: every shard yields the same number of batches whatever
the dataset size and the unreadable files (torchrun would hang otherwise), the padding wraps
around the epoch's order, and an unreadable sample is replaced by a deterministic substitute
(CPU pipeline)."""

from __future__ import annotations

import collections
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from dali_aug.batch import Batch
from dali_aug.datasets import make_shapes
from dali_aug.loader import Loader
from dali_aug.sources import ArraySource

SIZE = 32
CPU = {"device": "cpu", "size": SIZE}


@pytest.fixture(scope="module")
def shapes37(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("shapes37") / "data", 37, seed=4, size=SIZE)


@pytest.fixture(scope="module")
def shapes36_truncated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 images, one of them truncated (replaced by its first half)."""
    root = make_shapes(tmp_path_factory.mktemp("shapes36") / "data", 36, seed=5, size=SIZE)
    victim = sorted(root.glob("triangle/*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    return root


def _quiet(loader: Loader, epoch: int | None = None) -> list[Batch]:
    if epoch is not None:
        loader.set_epoch(epoch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return list(loader)


def _shards(root: Path | ArraySource, n: int = 3, **kw: object) -> list[Loader]:
    return [Loader(root, shard_id=s, num_shards=n, seed=1, **CPU, **kw) for s in range(n)]


@pytest.mark.parametrize(("batch_size", "drop_last"), [(1, False), (4, False), (4, True)])
def test_every_shard_yields_the_same_number_of_batches(
    shapes37: Path, batch_size: int, drop_last: bool
) -> None:
    """37 images over 3 shards: 13 samples each (two padded by wrapping around the order);
    the same len() everywhere, equal to what each shard yields; every image at least once."""
    loaders = _shards(shapes37, batch_size=batch_size, drop_last=drop_last)
    want = 13 // batch_size if drop_last else -(-13 // batch_size)
    assert [len(x) for x in loaders] == [want] * 3
    assert [len(x.shard_indices()) for x in loaders] == [13] * 3
    for epoch in (0, 1):
        seen: list[int] = []
        for loader in loaders:
            batches = _quiet(loader, epoch)
            assert len(batches) == len(loader) == want
            assert all(len(b.indices) == batch_size for b in batches[: 13 // batch_size])
            seen += torch.cat([b.indices for b in batches]).tolist()
        if not drop_last:
            assert set(seen) == set(range(37))
            assert len(seen) == 39
            counts = collections.Counter(seen)
            full = torch.cat([x.shard_indices(epoch) for x in loaders]).tolist()
            # the padding is the start of the epoch's order, repeated at the end
            assert full[37:] == full[:2]
            assert {i for i, c in counts.items() if c == 2} == set(full[:2])


def test_one_shard_is_not_padded(shapes37: Path) -> None:
    loader = Loader(shapes37, batch_size=4, seed=1, **CPU)
    assert sorted(loader.shard_indices(0).tolist()) == list(range(37))
    assert len(loader) == 10


def test_more_shards_than_samples() -> None:
    images = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    loaders = _shards(ArraySource.from_arrays(images, [0, 1]), 5, batch_size=2)
    assert [len(x) for x in loaders] == [1] * 5
    assert [len(list(x)) for x in loaders] == [1] * 5


def test_an_unreadable_file_keeps_the_shard_counts_equal(shapes36_truncated: Path) -> None:
    """36 images (one truncated) over 3 shards at batch 1: 12 batches of 1 on every shard;
    the truncated file is skipped (and warned about) on the shard that holds it."""
    loaders = _shards(shapes36_truncated, batch_size=1)
    bad = next(p for p in loaders[0].source.paths if "triangle" in p)
    bad_name = str(shapes36_truncated / bad)
    holder = [x for x in loaders if bad_name in {x.source.name(i) for i in x.shard_indices(0)}]
    assert len(holder) == 1
    for loader in loaders:
        if loader is holder[0]:
            with pytest.warns(RuntimeWarning, match="skipped 1 unreadable"):
                batches = list(loader)
            assert loader.skipped == [bad_name]
        else:
            batches = list(loader)
            assert loader.skipped == []
        assert len(batches) == len(loader) == 12
        assert all(len(b.indices) == 1 for b in batches)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_the_substitute_is_the_next_readable_sample(
    shapes36_truncated: Path, batch_size: int
) -> None:
    """The unreadable sample's place in its batch holds the next readable sample of the
    shard's order (wrapping around), on every epoch and for repeated runs."""
    loader = Loader(shapes36_truncated, batch_size=batch_size, seed=2, **CPU)
    bad = next(i for i, p in enumerate(loader.source.paths) if "triangle" in p)
    for epoch in (0, 1):
        order = loader.shard_indices(epoch).tolist()
        got = torch.cat([b.indices for b in _quiet(loader, epoch)]).tolist()
        pos = order.index(bad)
        want = order.copy()
        want[pos] = order[(pos + 1) % len(order)]
        assert got == want
        again = torch.cat(
            [
                b.indices
                for b in _quiet(
                    Loader(shapes36_truncated, batch_size=batch_size, seed=2, **CPU), epoch
                )
            ]
        ).tolist()
        assert again == got


def test_the_last_sample_wraps_around(tmp_path: Path, shapes37: Path) -> None:
    """Eval order: the unreadable file is the last one; its substitute is the first sample."""
    root = tmp_path / "data"
    shutil.copytree(shapes37, root)
    (root / "triangle" / "zzz_last.jpg").write_bytes(b"not an image\n")
    loader = Loader(root, batch_size=8, train=False, **CPU)
    got = torch.cat([b.indices for b in _quiet(loader)]).tolist()
    assert got == list(range(37)) + [0]


def test_a_shard_without_a_readable_file_raises(tmp_path: Path, shapes37: Path) -> None:
    root = tmp_path / "data"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    shutil.copy(next(iter(sorted(shapes37.glob("circle/*.jpg")))), root / "b" / "good.jpg")
    bad, good = (Loader(root, shard_id=s, num_shards=2, train=False, **CPU) for s in (0, 1))
    assert len(list(good)) == 1
    with pytest.raises(ValueError, match="shard 0 of 2 has no readable image"):
        list(bad)
