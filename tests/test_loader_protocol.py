"""Tests for the DataLoader face of dali_aug.Loader: ``loader.sampler`` (a view of its own
order, or a torch Sampler given as ``sampler=``), ``loader.dataset``, a ``DataLoader(...)``
call's arguments, torchvision-like datasets as data, ``SyntheticSource``, the last batch's
policy, exact shards, sharding by the process group the epochs meet, ``prefetch`` and Random
Erasing in the loader (CPU pipeline)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, DistributedSampler, SequentialSampler, TensorDataset

import dali_aug.loader as loader_module
from dali_aug._protocol import LoaderSampler, SourceView
from dali_aug.batch import Batch
from dali_aug.loader import Loader
from dali_aug.sources import ArraySource, FolderSource, SyntheticSource
from dali_aug.train import ErasingConfig

SIZE = 8
CPU = {"device": "cpu", "size": SIZE}
N = 100
REPO = Path(__file__).resolve().parents[1]


# -- helpers and fixtures ----------------------------------------------------------------------
def _images(n: int = N, side: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def array100() -> ArraySource:
    """100 tiny random images in 4 classes."""
    return ArraySource.from_arrays(_images(), np.arange(N) % 4)


@pytest.fixture(scope="module")
def array64() -> ArraySource:
    return ArraySource.from_arrays(_images(64), np.arange(64) % 4)


def _indices(batches: list[Batch]) -> list[int]:
    return torch.cat([b.indices for b in batches]).tolist() if batches else []


def _images_of(batches: list[Batch]) -> torch.Tensor:
    return torch.cat([b.images for b in batches])


class FolderDataset(Dataset[Any]):
    """An ImageFolder stand-in (torchvision's attributes: ``root``, ``samples`` of
    (absolute path, class), ``classes``, ``class_to_idx``, ``targets``), its samples in
    reverse order, so that the Loader must take its indices from ``samples``, not rescan."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.class_to_idx = {c: k for k, c in enumerate(self.classes)}
        found = [
            (str(p), self.class_to_idx[c])
            for c in self.classes
            for p in sorted((root / c).iterdir())
        ]
        self.samples = found[::-1]
        self.targets = [t for _, t in self.samples]
        self.transform = None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.samples[i]


class FakeDataset(Dataset[Any]):
    """A torchvision FakeData stand-in: ``size``, ``image_size`` (C, H, W), ``num_classes``,
    ``random_offset``."""

    def __init__(self, size: int, image_size: tuple[int, int, int], num_classes: int) -> None:
        self.size, self.image_size, self.num_classes = size, image_size, num_classes
        self.random_offset = 7

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> Any:
        raise AssertionError("the Loader must not call __getitem__")


# -- loader.sampler: the view of the Loader's own order ------------------------------------------
def test_sampler_set_epoch_pins_the_next_epoch(array100: ArraySource) -> None:
    """``loader.sampler.set_epoch(e)`` (Lightning's and timm's path) runs epoch ``e`` next: the
    same batches (order and augmented pixels) as ``loader.set_epoch(e)``."""
    a = Loader(array100, batch_size=16, seed=3, **CPU)
    b = Loader(array100, batch_size=16, seed=3, **CPU)
    assert isinstance(a.sampler, LoaderSampler)
    list(a)  # epoch 0 done: without a pin the next one would be 1
    a.sampler.set_epoch(5)
    assert a.sampler.epoch == 5 and a.epoch == 5
    b.set_epoch(5)
    got, want = list(a), list(b)
    assert _indices(got) == _indices(want) == b.shard_indices(5).tolist()
    assert torch.equal(_images_of(got), _images_of(want))
    assert a.epoch == 5
    assert _indices(got) != Loader(array100, batch_size=16, seed=3, **CPU).shard_indices(1).tolist()
    assert a.sampler.epoch == 6  # unpinned again: the next epoch


@pytest.mark.parametrize(
    ("num_shards", "exact", "last_batch", "want"),
    [
        (1, False, "partial", [100]),
        (3, False, "partial", [34, 34, 34]),
        (3, True, "partial", [33, 33, 34]),
        (3, False, "fill", [48, 48, 48]),  # 34 filled to 3 batches of 16
        (3, False, "drop", [34, 34, 34]),
    ],
)
def test_sampler_len_and_iteration_are_this_shards_samples(
    array100: ArraySource, num_shards: int, exact: bool, last_batch: str, want: list[int]
) -> None:
    for shard, count in enumerate(want):
        loader = Loader(
            array100,
            batch_size=16,
            seed=1,
            shard_id=shard,
            num_shards=num_shards,
            exact_shards=exact,
            last_batch=last_batch,
            **CPU,
        )
        s = loader.sampler
        assert len(s) == count
        assert list(s) == loader.shard_indices().tolist()
        assert (s.num_replicas, s.rank, s.shuffle, s.seed) == (num_shards, shard, True, 1)
        assert s.drop_last is (last_batch == "drop") and loader.drop_last is s.drop_last
        assert s.epoch == 0
        s.set_epoch(2)
        assert s.epoch == 2 and list(s) == loader.shard_indices(2).tolist()


def test_dataloader_attributes(array100: ArraySource) -> None:
    loader = Loader(array100, batch_size=12, drop_last=True, shuffle=False, **CPU)
    assert loader.batch_sampler is None
    assert loader.mixup_enabled is False
    assert loader.batch_size == 12 and loader.drop_last is True
    assert loader.sampler.shuffle is False
    assert list(loader.sampler) == list(range(N))
    assert Loader(array100, **CPU).drop_last is False


# -- loader.dataset --------------------------------------------------------------------------
def test_dataset_of_a_folder_is_a_source_view(shapes_dir: Path) -> None:
    loader = Loader(shapes_dir, **CPU)
    ds = loader.dataset
    src = loader.source
    assert isinstance(ds, SourceView)
    assert len(ds) == len(src) == 64
    assert ds.classes == list(src.classes)
    assert ds.class_to_idx == {c: k for k, c in enumerate(src.classes)}
    assert torch.equal(ds.targets, src.targets)
    assert ds[0] == (src.name(0), int(src.targets[0]))
    assert ds[-1] == ds[63] == (src.name(63), int(src.targets[63]))
    assert ds.samples == [(src.name(i), int(src.targets[i])) for i in range(64)]
    for bad in (64, -65, 1000):
        with pytest.raises(IndexError):
            ds[bad]


def test_dataset_of_a_torch_dataset_is_that_object(shapes_dir: Path, array100: ArraySource) -> None:
    ds = FolderDataset(shapes_dir)
    assert Loader(ds, **CPU).dataset is ds
    view = Loader(array100, **CPU).dataset
    assert len(view) == N and view.classes == ["0", "1", "2", "3"]
    assert view[5] == (array100.name(5), 1)


# -- a DataLoader(...) call's arguments -------------------------------------------------------
def test_dataloader_arguments_map_to_the_config(array100: ArraySource) -> None:
    loader = Loader(
        array100,
        batch_size=8,
        shuffle=True,
        num_workers=4,
        pin_memory=True,
        persistent_workers=True,
        prefetch_factor=3,
        generator=torch.Generator().manual_seed(5),
        **CPU,
    )
    cfg = loader.config
    assert (cfg.batch_size, cfg.shuffle, cfg.num_threads, cfg.prefetch, cfg.seed) == (
        8,
        True,
        4,
        3,
        5,
    )
    assert Loader(array100, num_workers=0, **CPU).config.num_threads == 1
    batches = list(loader)
    assert len(batches) == len(loader) == 13
    # the generator's seed is the seed: the same order as seed=5
    assert _indices(batches) == Loader(array100, seed=5, **CPU).shard_indices(0).tolist()


@pytest.mark.parametrize("name", ["collate_fn", "batch_sampler", "worker_init_fn"])
def test_refused_dataloader_arguments(array100: ArraySource, name: str) -> None:
    with pytest.raises(TypeError, match=name):
        Loader(array100, **{name: lambda *a: a}, **CPU)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sampler": SequentialSampler(range(N)), "shuffle": True}, "shuffle"),
        ({"num_workers": 2, "num_threads": 2}, "num_threads"),
        ({"prefetch_factor": 2, "prefetch": 2}, "prefetch"),
        ({"sampler": SequentialSampler(range(N)), "shard_id": 0, "num_shards": 2}, "shard"),
        ({"sampler": SequentialSampler(range(N)), "num_shards": 2}, "num_shards"),
        ({"sampler": SequentialSampler(range(N)), "exact_shards": True}, "exact_shards"),
    ],
)
def test_conflicting_dataloader_arguments(
    array100: ArraySource, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Loader(array100, **kwargs, **CPU)


def test_sampler_is_refused_with_packed_shards(shapes_dir: Path, tmp_path: Path) -> None:
    from dali_aug.shards import pack

    packed = tmp_path / "packed"
    pack(shapes_dir, packed, progress=False)
    with pytest.raises(ValueError, match="packed shards"):
        Loader(packed, sampler=SequentialSampler(range(64)), **CPU)


# -- sampler= a torch Sampler ----------------------------------------------------------------
class ListSampler(torch.utils.data.Sampler[int]):
    def __init__(self, indices: list[int]) -> None:
        self.indices = indices

    def __iter__(self) -> Any:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def test_loader_visits_the_samplers_indices_in_its_order(array100: ArraySource) -> None:
    sampler = ListSampler([97, 3, 3, 50, 0, 12, 99, 41, 8, 7, 66])
    loader = Loader(array100, batch_size=4, sampler=sampler, **CPU)
    assert loader.sampler is sampler
    assert len(loader) == 3 and len(loader.sampler) == 11
    batches = list(loader)
    assert _indices(batches) == list(sampler) == loader.shard_indices().tolist()
    assert [len(b.indices) for b in batches] == [4, 4, 3]
    assert torch.equal(torch.cat([b.labels for b in batches]), array100.targets[list(sampler)])


def test_distributed_sampler_set_epoch_drives_the_loader(array100: ArraySource) -> None:
    """``set_epoch`` on the DistributedSampler object itself (the ImageNet example's call)
    changes the Loader's order and its epoch; the two ranks split the data as the sampler
    does."""
    seen: list[int] = []
    for rank in (0, 1):
        sampler = DistributedSampler(range(N), num_replicas=2, rank=rank, shuffle=True, seed=4)
        loader = Loader(array100, batch_size=16, sampler=sampler, seed=2, **CPU)
        assert (loader.shard_id, loader.num_shards) == (rank, 2)
        assert len(loader) == 4
        sampler.set_epoch(0)
        e0 = _indices(list(loader))
        assert e0 == list(sampler) and loader.epoch == 0
        sampler.set_epoch(6)
        e6 = _indices(list(loader))
        assert e6 == list(sampler) and loader.epoch == 6
        assert e0 != e6
        sampler.set_epoch(6)
        seen += e6
    assert sorted(seen) == list(range(N))


def test_new_loader_resumes_the_epoch_of_the_distributed_sampler(array100: ArraySource) -> None:
    """The ImageNet example's resume: a new sampler and Loader, ``sampler.set_epoch(3)``, give
    the batches (indices and images) of epoch 3 of an uninterrupted run."""

    def run(epochs: list[int]) -> list[Batch]:
        sampler = DistributedSampler(range(N), num_replicas=2, rank=1, shuffle=True, seed=9)
        loader = Loader(array100, batch_size=16, sampler=sampler, seed=2, **CPU)
        batches: list[Batch] = []
        for epoch in epochs:
            sampler.set_epoch(epoch)
            batches = list(loader)
            assert loader.epoch == epoch
        return batches

    whole, resumed = run([0, 1, 2, 3]), run([3])
    assert _indices(resumed) == _indices(whole)
    assert torch.equal(_images_of(resumed), _images_of(whole))
    assert not torch.equal(_images_of(run([0])), _images_of(whole))


def test_sampler_index_outside_the_data_is_refused(array100: ArraySource) -> None:
    loader = Loader(array100, batch_size=4, sampler=ListSampler([1, 2, 100]), **CPU)
    with pytest.raises(ValueError, match="100"):
        list(loader)
    with pytest.raises(ValueError, match="-1"):
        Loader(array100, sampler=ListSampler([-1, 2]), **CPU).shard_indices()


# -- torchvision datasets as data ------------------------------------------------------------
def test_image_folder_becomes_a_folder_source_of_its_samples(shapes_dir: Path) -> None:
    ds = FolderDataset(shapes_dir)
    loader = Loader(ds, batch_size=16, seed=1, **CPU)
    src = loader.source
    assert isinstance(src, FolderSource)
    assert src.targets.tolist() == ds.targets
    assert [os.path.normpath(src.name(i)) for i in range(len(ds))] == [p for p, _ in ds.samples]
    assert src.classes == tuple(ds.classes)
    batches = list(loader)
    assert sorted(_indices(batches)) == list(range(64))
    for b in batches:
        assert b.labels.tolist() == [ds.targets[i] for i in b.indices.tolist()]


class TimmDataset(Dataset[Any]):
    """timm's ``ImageDataset`` of a folder: the files are its ``reader``'s (``root``,
    ``samples``, ``class_to_idx``; no ``classes``)."""

    def __init__(self, root: Path) -> None:
        folder = FolderDataset(root)
        self.reader = type("Reader", (), {})()
        self.reader.root = folder.root
        self.reader.samples = folder.samples
        # the index order differs from the sorted names: the classes follow the indices
        self.reader.class_to_idx = {c: len(folder.classes) - 1 - k for c, k in
                                    folder.class_to_idx.items()}  # fmt: skip
        self.reader.samples = [(p, len(folder.classes) - 1 - t) for p, t in folder.samples]

    def __len__(self) -> int:
        return len(self.reader.samples)


def test_timm_image_dataset_becomes_a_folder_source_of_its_readers_files(
    shapes_dir: Path,
) -> None:
    ds = TimmDataset(shapes_dir)
    loader = Loader(ds, batch_size=16, seed=1, **CPU)
    src = loader.source
    assert isinstance(src, FolderSource) and loader.dataset is ds
    assert src.targets.tolist() == [t for _, t in ds.reader.samples]
    by_index = sorted(ds.reader.class_to_idx, key=ds.reader.class_to_idx.__getitem__)
    assert src.classes == tuple(by_index) != tuple(sorted(by_index))
    for i in (0, 17, 63):
        path, target = ds.reader.samples[i]
        assert os.path.normpath(src.name(i)) == path
        assert src.classes[target] == Path(path).parent.name


def test_fake_data_becomes_a_synthetic_source() -> None:
    ds = FakeDataset(20, (3, 12, 16), 5)
    loader = Loader(ds, batch_size=8, **CPU)
    src = loader.source
    assert isinstance(src, SyntheticSource)
    assert (len(src), src.image_size, len(src.classes)) == (20, (12, 16), 5)
    assert src.seed == 7
    batches = list(loader)
    assert [b.images.shape for b in batches] == [(8, 3, SIZE, SIZE)] * 2 + [(4, 3, SIZE, SIZE)]
    assert loader.dataset is ds


def test_another_dataset_is_refused_naming_what_to_pass() -> None:
    ds = TensorDataset(torch.zeros(4, 3, 8, 8), torch.zeros(4))
    with pytest.raises(TypeError, match="ImageFolder") as info:
        Loader(ds, **CPU)
    assert "TensorDataset" in str(info.value) and "ArraySource" in str(info.value)


# -- SyntheticSource -------------------------------------------------------------------------
def test_synthetic_source_is_deterministic_noise() -> None:
    src = SyntheticSource(length=10, image_size=(12, 9), num_classes=3, seed=2)
    x = src.read(4)
    assert x.dtype == np.uint8 and x.shape == (12, 9, 3)
    assert np.array_equal(x, src.read(4))
    assert np.array_equal(x, SyntheticSource(10, (12, 9), 3, 2).read(4))
    assert not np.array_equal(x, src.read(5))
    assert not np.array_equal(x, SyntheticSource(10, (12, 9), 3, 3).read(4))
    assert len(src) == 10 and src.classes == ("0", "1", "2")
    assert (
        src.targets.dtype == torch.int64
        and 0 <= int(src.targets.min()) <= int(src.targets.max()) < 3
    )
    assert torch.equal(src.targets, SyntheticSource(10, (12, 9), 3, 2).targets)
    batches = list(Loader(src, batch_size=4, train=False, **CPU))
    assert [len(b.indices) for b in batches] == [4, 4, 2]
    assert batches[0].images.shape == (4, 3, SIZE, SIZE)
    assert torch.equal(torch.cat([b.labels for b in batches]), src.targets)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"length": 0},
        {"image_size": (0, 8)},
        {"image_size": (8,)},
        {"num_classes": 0},
    ],
)
def test_synthetic_source_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SyntheticSource(**kwargs)


# -- last_batch -----------------------------------------------------------------------------
def test_fill_completes_the_last_batch_with_the_first_samples(array64: ArraySource) -> None:
    loader = Loader(array64, batch_size=24, last_batch="fill", seed=1, **CPU)
    assert len(loader) == 3 and len(loader.sampler) == 72
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        batches = list(loader)
        assert [len(b.indices) for b in batches] == [24, 24, 24]
        got = _indices(batches)
        assert sorted(got[:64]) == list(range(64))
        assert got[64:] == got[:8]
        assert got == loader.shard_indices(epoch).tolist()


@pytest.mark.parametrize(
    ("kwargs", "sizes"),
    [
        ({}, [24, 24, 16]),
        ({"last_batch": "partial"}, [24, 24, 16]),
        ({"last_batch": "drop"}, [24, 24]),
        ({"drop_last": True}, [24, 24]),
        ({"last_batch": "FILL"}, [24, 24, 24]),
        ({"last_batch": "DALI.FILL"}, [24, 24, 24]),
        ({"last_batch": "DALI.DROP"}, [24, 24]),
        ({"last_batch": "DALI.PARTIAL"}, [24, 24, 16]),
        ({"last_batch": "fill", "shard_id": 1, "num_shards": 3}, [24]),
        ({"last_batch": "drop", "shard_id": 1, "num_shards": 3}, []),
        ({"shard_id": 2, "num_shards": 3, "exact_shards": True}, [22]),
    ],
)
def test_len_is_the_batches_yielded(
    array64: ArraySource, kwargs: dict[str, Any], sizes: list[int]
) -> None:
    if str(kwargs.get("last_batch", "")).startswith("DALI."):
        from nvidia.dali.plugin.base_iterator import LastBatchPolicy

        kwargs = {**kwargs, "last_batch": getattr(LastBatchPolicy, kwargs["last_batch"][5:])}
    loader = Loader(array64, batch_size=24, **kwargs, **CPU)
    batches = list(loader)
    assert [len(b.indices) for b in batches] == sizes
    assert len(loader) == len(sizes)
    if not loader.drop_last:
        assert len(loader.sampler) == len(_indices(batches))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"drop_last": True, "last_batch": "fill"}, "drop_last"),
        ({"drop_last": True, "last_batch": "partial"}, "drop_last"),
        ({"last_batch": "pad"}, "partial, drop, fill"),
        ({"exact_shards": True, "drop_last": True}, "exact_shards"),
        ({"exact_shards": True, "last_batch": "drop"}, "exact_shards"),
        ({"exact_shards": True, "last_batch": "fill"}, "exact_shards"),
        ({"prefetch": 0}, "prefetch"),
    ],
)
def test_bad_last_batch_and_prefetch(
    array64: ArraySource, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Loader(array64, **kwargs, **CPU)


# -- exact shards -----------------------------------------------------------------------------
def test_exact_shards_visit_every_sample_once(array100: ArraySource) -> None:
    def shards(exact: bool) -> list[list[int]]:
        out = []
        for shard in range(3):
            loader = Loader(
                array100,
                batch_size=8,
                seed=1,
                shard_id=shard,
                num_shards=3,
                exact_shards=exact,
                **CPU,
            )
            got = _indices(list(loader))
            assert len(loader) == -(-len(got) // 8)
            out.append(got)
        return out

    exact = shards(True)
    assert [len(s) for s in exact] == [33, 33, 34]
    flat = [i for s in exact for i in s]
    assert sorted(flat) == list(range(N))
    padded = shards(False)
    assert [len(s) for s in padded] == [34, 34, 34]
    flat = [i for s in padded for i in s]
    assert set(flat) == set(range(N)) and len(flat) == 102
    assert flat[100:] == flat[:2]  # the two repeats: the start of the epoch's order
    assert flat[:100] == [i for s in exact for i in s]  # the same order, cut differently


def test_more_exact_shards_than_samples(array100: ArraySource) -> None:
    src = ArraySource.from_arrays(_images(3), np.arange(3))
    counts = []
    for shard in range(5):
        loader = Loader(src, batch_size=2, shard_id=shard, num_shards=5, exact_shards=True, **CPU)
        batches = list(loader)
        assert len(batches) == len(loader)
        counts.append(len(_indices(batches)))
        if len(loader) == 0:
            assert list(loader.sampler) == [] and len(loader.sampler) == 0
    assert sorted(counts) == [0, 0, 1, 1, 1]


# -- the shard: the process group the epochs meet ------------------------------------------------
def test_shards_by_the_group_at_iteration_time(
    array100: ArraySource, monkeypatch: pytest.MonkeyPatch
) -> None:
    loader = Loader(array100, batch_size=8, seed=1, **CPU)
    assert len(loader) == 13 and (loader.shard_id, loader.num_shards) == (0, 1)
    explicit = Loader(array100, batch_size=8, seed=1, shard_id=0, num_shards=1, **CPU)
    monkeypatch.setattr(loader_module, "rank_world", lambda: (1, 2))
    want = Loader(array100, batch_size=8, seed=1, shard_id=1, num_shards=2, **CPU)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(loader) == 7
        assert (loader.shard_id, loader.num_shards) == (1, 2)
        assert loader.shard_indices().tolist() == want.shard_indices().tolist()
        assert len(loader.sampler) == 50
        got = _indices(list(loader))
        assert got == want.shard_indices(0).tolist()
        # the explicit shard is kept, without a warning
        assert len(explicit) == 13 and explicit.num_shards == 1
        assert len(_indices(list(explicit))) == N
    changed = [
        w for w in caught if issubclass(w.category, UserWarning) and "world size" in str(w.message)
    ]
    assert len(changed) == 1, [str(w.message) for w in caught]


_TWO_RANKS = """
import sys, torch, torch.distributed as dist
import numpy as np
from dali_aug.loader import Loader
from dali_aug.sources import ArraySource
images = np.random.default_rng(0).integers(0, 256, (100, 8, 8, 3), dtype=np.uint8)
src = ArraySource.from_arrays(images, np.arange(100) % 4)
loader = Loader(src, batch_size=8, seed=1, device="cpu", size=8)  # before the group
assert len(loader) == 13
dist.init_process_group("gloo")
rank = dist.get_rank()
got = torch.cat([b.indices for b in loader])
assert len(loader) == 7, len(loader)
torch.save(got, f"{sys.argv[1]}/rank{rank}.pt")
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_loader_built_before_the_process_group_shards_by_it(tmp_path: Path) -> None:
    from test_eval_exact import run_script

    run_script(_TWO_RANKS, tmp_path, nproc=2, timeout=180)
    a = torch.load(tmp_path / "rank0.pt").tolist()
    b = torch.load(tmp_path / "rank1.pt").tolist()
    assert len(a) == len(b) == 50
    assert sorted(a + b) == list(range(N))


# -- prefetch and Random Erasing ----------------------------------------------------------------
def test_prefetch_does_not_change_the_batches(array100: ArraySource) -> None:
    a = list(Loader(array100, batch_size=16, seed=1, prefetch=1, **CPU))
    b = list(Loader(array100, batch_size=16, seed=1, prefetch=4, **CPU))
    assert _indices(a) == _indices(b)
    assert torch.equal(_images_of(a), _images_of(b))


@pytest.fixture(scope="module")
def array16() -> ArraySource:
    return ArraySource.from_arrays(_images(48, 16), np.arange(48) % 4)


ERASE = {"device": "cpu", "size": 16, "batch_size": 16, "seed": 2}


@pytest.mark.parametrize("mode", ["const", "rand", "pixel"])
def test_erasing_erases_boxes_of_training_batches(array16: ArraySource, mode: str) -> None:
    cfg = ErasingConfig(prob=1.0, mode=mode)
    plain = _images_of(list(Loader(array16, **ERASE)))
    erased = _images_of(list(Loader(array16, erasing=cfg, **ERASE)))
    again = _images_of(list(Loader(array16, erasing=cfg, **ERASE)))
    assert torch.equal(erased, again)  # drawn from the seed
    diff = (plain != erased).any(dim=1)  # [N, H, W]: the erased pixels
    assert bool(diff.flatten(1).any(dim=1).all())  # prob=1: every sample has a box
    assert float(diff.float().mean()) < 0.5  # boxes, not whole images
    for k in range(len(erased)):
        box = erased[k][:, diff[k]]  # [3, pixels]
        if mode == "const":
            assert bool((box == 0).all())
        elif mode == "rand":  # one value per channel
            assert bool((box == box[:, :1]).all())
        else:
            assert len(torch.unique(box)) > 3


def test_erasing_resumes_mid_epoch_as_the_uninterrupted_epoch(array16: ArraySource) -> None:
    cfg = ErasingConfig(prob=1.0, mode="pixel")
    whole = Loader(array16, erasing=cfg, **ERASE)
    list(whole)
    want = list(whole)  # epoch 1
    first = Loader(array16, erasing=cfg, **ERASE)
    list(first)
    it = iter(first)
    next(it)
    state = first.state_dict()
    resumed = Loader(array16, erasing=cfg, **ERASE)
    resumed.load_state_dict(state)
    got = list(resumed)
    assert _indices(got) == _indices(want[1:])
    assert torch.equal(_images_of(got), _images_of(want[1:]))


def test_erasing_leaves_evaluation_batches_alone(array16: ArraySource) -> None:
    cfg = ErasingConfig(prob=1.0, mode="const")
    plain = _images_of(list(Loader(array16, train=False, **ERASE)))
    erased = _images_of(list(Loader(array16, train=False, erasing=cfg, **ERASE)))
    assert torch.equal(plain, erased)
