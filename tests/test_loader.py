"""Tests for dali_aug.Loader: sharding, determinism, corrupt files, provenance replay,
multi-label and in-memory sources, policy replacement and argument errors (CPU pipeline)."""

from __future__ import annotations

import csv
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import opencv_equalize

from dali_aug._pipeline import IMAGENET_MEAN, IMAGENET_STD
from dali_aug.datasets import MULTI_LABELS, SHAPE_CLASSES
from dali_aug.loader import Batch, Loader, LoaderConfig
from dali_aug.ops import CATALOG, OpParams, apply_params, get, index, names
from dali_aug.policies import (
    AugmentPolicy,
    NoAugment,
    OpSpec,
    Policy,
    RandAugment,
    TimmRandAugment,
    TrivialAugmentWide,
    auto_augment,
)
from dali_aug.sources import ArraySource

SIZE = 32
CPU = {"device": "cpu", "size": SIZE}
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
EQUALIZE = index("Equalize")
_QUIET = {"Identity", "FlipLR"}
#: every catalog op but Equalize (which DALI computes with OpenCV's formula, not PIL's)
NO_EQUALIZE = tuple(n for n in names() if n != "Equalize")


def _epoch(loader: Loader, epoch: int) -> list[Batch]:
    loader.set_epoch(epoch)
    return list(loader)


def _indices(batches: list[Batch]) -> list[int]:
    return torch.cat([b.indices for b in batches]).tolist() if batches else []


# -- sharding --------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [4, 8])
def test_shards_cover_every_index_per_epoch(shapes_dir: Path, batch_size: int) -> None:
    """3 shards x 2 epochs: 64 images padded to 66 (the first two of the epoch's order again,
    as DistributedSampler), every index at least once, epochs reorder the data, and
    ``len(loader)`` is the number of batches each shard really yields."""
    n = len(Loader(shapes_dir, **CPU).source)
    loaders = [
        Loader(
            shapes_dir,
            batch_size=batch_size,
            shard_id=s,
            num_shards=3,
            shuffle=True,
            drop_last=False,
            seed=7,
            **CPU,
        )
        for s in range(3)
    ]
    orders = []
    for epoch in range(2):
        seen: list[int] = []
        for loader in loaders:
            batches = _epoch(loader, epoch)
            assert len(batches) == len(loader), f"shard {loader.shard_id} epoch {epoch}"
            assert all(len(b.indices) == batch_size for b in batches[:-1])
            assert 1 <= len(batches[-1].indices) <= batch_size
            assert _indices(batches) == loader.shard_indices(epoch).tolist()
            for b in batches:
                assert b.images.shape == (len(b.indices), 3, SIZE, SIZE)
                assert len(b.labels) == len(b.indices)
            seen += _indices(batches)
        assert sorted(set(seen)) == list(range(n)), f"epoch {epoch}: an index is missing"
        assert len(seen) == 66 and seen[64:] == seen[:2], "the padding wraps around"
        orders.append(seen)
    assert orders[0] != orders[1], "epochs 0 and 1 visit the data in the same order"


def test_shard_lengths_are_equal_when_the_dataset_does_not_split_evenly(
    shapes_dir: Path,
) -> None:
    """64 images over 3 shards: 22 samples each (padded); with batch 7: 4 batches each."""
    loaders = [Loader(shapes_dir, batch_size=7, shard_id=s, num_shards=3, **CPU) for s in range(3)]
    assert [len(x.shard_indices()) for x in loaders] == [22, 22, 22]
    assert [len(x) for x in loaders] == [4, 4, 4]
    assert [len(list(x)) for x in loaders] == [4, 4, 4]


def test_drop_last_yields_only_full_batches(shapes_dir: Path) -> None:
    for shard in range(3):
        loader = Loader(
            shapes_dir, batch_size=8, shard_id=shard, num_shards=3, drop_last=True, **CPU
        )
        batches = list(loader)
        assert len(batches) == len(loader) == len(loader.shard_indices()) // 8
        assert all(len(b.indices) == 8 and b.images.shape[0] == 8 for b in batches)


def test_eval_loader_is_in_dataset_order(shapes_dir: Path) -> None:
    loader = Loader(shapes_dir, batch_size=16, train=False, **CPU)
    assert _indices(list(loader)) == list(range(len(loader.source)))
    assert _indices(_epoch(loader, 3)) == list(range(len(loader.source)))


# -- determinism -----------------------------------------------------------------------------
def _assert_same_batches(a: list[Batch], b: list[Batch]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.indices, y.indices)
        assert torch.equal(x.labels, y.labels)
        assert torch.equal(x.images, y.images), "images differ bitwise"
        if x.params is not None:
            assert y.params is not None
            assert torch.equal(x.params.op_ids, y.params.op_ids)
            assert torch.equal(x.params.levels, y.params.levels)
            assert x.clean is not None and y.clean is not None
            assert torch.equal(x.clean, y.clean)


def test_same_seed_gives_identical_batches(shapes_dir: Path) -> None:
    def make(seed: int) -> Loader:
        return Loader(
            shapes_dir,
            policy=RandAugment(n=2, m=9),
            batch_size=16,
            seed=seed,
            provenance=True,
            **CPU,
        )

    first, second = make(3), make(3)
    for epoch in (0, 1):
        _assert_same_batches(_epoch(first, epoch), _epoch(second, epoch))
    # the same Loader re-iterating an epoch repeats it too
    _assert_same_batches(_epoch(first, 1), _epoch(make(3), 1))
    # the DALI worker-thread count changes nothing
    threads = Loader(
        shapes_dir,
        policy=RandAugment(n=2, m=9),
        batch_size=16,
        seed=3,
        provenance=True,
        num_threads=1,
        **CPU,
    )
    _assert_same_batches(_epoch(threads, 1), _epoch(make(3), 1))
    other = make(4)
    assert _indices(_epoch(other, 0)) != _indices(_epoch(make(3), 0))
    assert not torch.equal(other.shard_indices(1), first.shard_indices(1))


def test_one_pipeline_serves_every_epoch_and_an_abandoned_epoch_leaks_nothing(
    shapes_dir: Path,
) -> None:
    def make() -> Loader:
        return Loader(shapes_dir, policy=RandAugment(n=2, m=9), batch_size=16, seed=5, **CPU)

    loader = make()
    first = _epoch(loader, 0)
    assert loader._idle is not None
    pipe = loader._idle[1]
    second = _epoch(loader, 1)
    assert loader._idle is not None and loader._idle[1] is pipe  # built once, reused
    _assert_same_batches(second, _epoch(make(), 1))  # same batches as a fresh Loader's
    # abandon an epoch after one batch: the next full epoch is still exactly epoch 0
    loader.set_epoch(0)
    next(iter(loader))
    _assert_same_batches(_epoch(loader, 0), first)


def test_flip_off_keeps_every_other_draw(shapes_dir: Path) -> None:
    def make(flip: bool) -> Loader:
        cfg = LoaderConfig(batch_size=16, seed=2, flip=flip, device="cpu", size=SIZE)
        return Loader(shapes_dir, policy=RandAugment(n=2, m=9), config=cfg, provenance=True)

    on, off = list(make(True)), list(make(False))
    flip_ids = torch.cat([b.params.op_ids[:, 0] for b in on if b.params is not None])
    assert (flip_ids == index("FlipLR")).any()  # the default flips some images
    for a, b in zip(on, off, strict=True):
        assert a.params is not None and b.params is not None
        assert (b.params.op_ids[:, 0] == index("Identity")).all()  # no flip at all
        assert torch.equal(a.indices, b.indices)
        assert torch.equal(a.params.op_ids[:, 1:], b.params.op_ids[:, 1:])  # same policy ops
        assert torch.equal(a.clean, b.clean)  # same crops (clean is before the flip)


# -- unreadable files ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corrupt_dir(tmp_path_factory: pytest.TempPathFactory, shapes_dir: Path) -> Path:
    """The shapes folder plus a truncated JPEG and a text file named ``.jpg``."""
    root = tmp_path_factory.mktemp("corrupt") / "data"
    shutil.copytree(shapes_dir, root)
    data = next(iter(sorted(root.glob("circle/*.jpg")))).read_bytes()
    (root / "circle" / "zz_truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "square" / "zz_not_an_image.jpg").write_bytes(b"this is not a JPEG\n" * 20)
    return root


def _bad_paths(root: Path) -> set[str]:
    return {
        str(root / "circle" / "zz_truncated.jpg"),
        str(root / "square" / "zz_not_an_image.jpg"),
    }


def test_unreadable_files_are_skipped_with_a_warning(corrupt_dir: Path) -> None:
    loader = Loader(corrupt_dir, batch_size=8, **CPU)
    names_ = [loader.source.name(i) for i in range(len(loader.source))]
    bad = {i for i, p in enumerate(names_) if p in _bad_paths(corrupt_dir)}
    assert len(bad) == 2
    with pytest.warns(RuntimeWarning, match="skipped") as record:
        batches = list(loader)
    seen = _indices(batches)
    # each bad file's place holds a substitute: the batches keep their sizes
    assert len(seen) == len(loader.source) and not bad & set(seen)
    assert set(seen) == set(range(len(loader.source))) - bad
    assert set(loader.skipped) == _bad_paths(corrupt_dir)
    messages = " ".join(str(w.message) for w in record)
    assert "2 unreadable" in messages
    assert all(p in messages for p in _bad_paths(corrupt_dir))
    for b in batches:  # labels still line up with the surviving indices
        assert torch.equal(b.labels, loader.source.targets[b.indices])


def test_skipped_files_are_reported_every_epoch(corrupt_dir: Path) -> None:
    loader = Loader(corrupt_dir, batch_size=8, **CPU)
    for epoch in range(2):
        loader.set_epoch(epoch)
        with pytest.warns(RuntimeWarning, match=f"epoch {epoch}: skipped 2 unreadable"):
            list(loader)
    assert sorted(loader.skipped) == sorted(_bad_paths(corrupt_dir))  # listed once each


def test_shard_id_without_num_shards_raises(shapes_dir: Path) -> None:
    with pytest.raises(ValueError, match="needs num_shards"):
        Loader(shapes_dir, shard_id=1, **CPU)


def test_strict_raises_on_the_first_bad_file(corrupt_dir: Path) -> None:
    loader = Loader(corrupt_dir, batch_size=8, strict=True, **CPU)
    order = [loader.source.name(i) for i in loader.shard_indices(0).tolist()]
    first_bad = next(p for p in order if p in _bad_paths(corrupt_dir))
    with pytest.raises(ValueError, match="unreadable image") as info:
        list(loader)
    assert first_bad in str(info.value)
    assert Path(first_bad).name in str(info.value)


# -- provenance replay -----------------------------------------------------------------------
def _normalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - MEAN) / STD


def _denormalise(images: torch.Tensor) -> torch.Tensor:
    return (images.float() * STD + MEAN).mul(255).round().clamp(0, 255).to(torch.uint8)


def _loose(op_ids: list[int]) -> bool:
    """Whether the catalog allows the DALI backend to differ on every pixel for some op."""
    return any(CATALOG[o].tolerance["dali"][1] >= 1.0 for o in op_ids)


def _replay_stats(batch: Batch) -> tuple[float, float, int]:
    """(fraction of pixels beyond 2 gray levels over the samples whose ops all have tight
    DALI tolerances, the same over all samples, number of Equalize-ending samples checked
    against OpenCV's formula)."""
    assert batch.params is not None and batch.clean is not None
    replay = _normalise(apply_params(batch.clean, batch.params))
    # 2 gray levels in normalised units, per channel; max over channels
    off = ((replay - batch.images.float()).abs() > (2 / 255) / STD).any(1)
    rows = batch.params.op_ids.tolist()
    tight = torch.tensor([not _loose(r) for r in rows])
    frac_tight = float(off[tight].float().mean()) if tight.any() else 0.0
    checked = 0
    for i, ops in enumerate(rows):
        # Equalize as the only non-trivial op, last: the output is OpenCV's equalizeHist of
        # the (flipped) clean image, exactly
        if ops[-1] == EQUALIZE and all(CATALOG[o].name in _QUIET for o in ops[:-1]):
            x = batch.clean[i].flip(-1) if ops[0] == index("FlipLR") else batch.clean[i]
            got = _denormalise(batch.images[i : i + 1].float())[0]
            for c in range(3):
                want = opencv_equalize(x[c].numpy())
                assert np.array_equal(got[c].numpy(), want), f"sample {i} channel {c}"
            checked += 1
    return frac_tight, float(off.float().mean()), checked


POLICIES = {
    "ra-m9-n2": RandAugment(n=2, m=9),
    "rand-m9-n2-mstd0.5": TimmRandAugment(n=2, m=9, mstd=0.5),
    "aa-imagenet": auto_augment("imagenet"),
    "ta-wide": TrivialAugmentWide(),
}

#: worst fractions measured (printed with -s; reported by the test author)
REPLAY_WORST: dict[str, tuple[float, float]] = {}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_provenance_replays_the_batch(shapes_dir: Path, name: str) -> None:
    """``apply_params(batch.clean, batch.params)`` normalised equals ``batch.images``: fewer than
    2% of the pixels beyond 2 gray levels per batch on the samples without Equalize (DALI's
    Equalize follows OpenCV, catalog tolerance 'every pixel'); samples whose only op is a final
    Equalize are compared with OpenCV's formula exactly."""
    policy = POLICIES[name]
    loader = Loader(shapes_dir, policy=policy, batch_size=16, provenance=True, seed=11, **CPU)
    worst_tight = worst_all = 0.0
    equalized = 0
    for epoch in (0, 1):
        for batch in _epoch(loader, epoch):
            assert isinstance(batch.params, OpParams)
            assert batch.params.num_layers == policy.num_layers + 1
            assert batch.params.batch_size == len(batch.indices)
            flips = batch.params.op_ids[:, 0]
            assert set(flips.tolist()) <= {index("FlipLR"), index("Identity")}
            assert (batch.params.levels[:, 0] == 0).all()
            assert batch.clean is not None and batch.clean.dtype == torch.uint8
            assert batch.clean.shape == batch.images.shape
            frac_tight, frac_all, checked = _replay_stats(batch)
            equalized += checked
            worst_tight, worst_all = max(worst_tight, frac_tight), max(worst_all, frac_all)
            assert frac_tight < 0.02, f"epoch {epoch}: {frac_tight:.2%} of the pixels differ"
    REPLAY_WORST[name] = (worst_tight, worst_all)
    print(f"\n{name}: worst replay fraction {worst_tight:.4%} (all samples: {worst_all:.2%})")
    if name == "aa-imagenet":  # 25 sub-policies, 14 with Equalize: some end with it alone
        assert equalized > 0


def test_provenance_replay_without_equalize_is_near_exact(shapes_dir: Path) -> None:
    """Every catalog op but Equalize (incl. Cutout, SamplePairing, FlipUD), 3 layers with a
    jittered level: fewer than 0.5% of the pixels beyond 2 gray levels in every batch."""
    policy = RandAugment(n=3, m=9, mstd=1.0, ops=NO_EQUALIZE)
    loader = Loader(shapes_dir, policy=policy, batch_size=16, provenance=True, seed=5, **CPU)
    worst = 0.0
    for epoch in (0, 1):
        for batch in _epoch(loader, epoch):
            assert batch.params is not None
            assert batch.params.num_layers == 4
            assert EQUALIZE not in batch.params.op_ids.tolist()
            frac, frac_all, _ = _replay_stats(batch)
            assert frac == frac_all
            worst = max(worst, frac)
            assert frac < 0.005, f"epoch {epoch}: {frac:.3%} of the pixels differ"
    REPLAY_WORST["no-equalize"] = (worst, worst)
    print(f"\nno-equalize: worst replay fraction {worst:.4%}")


def test_provenance_clean_is_before_the_flip(shapes_dir: Path) -> None:
    """With no policy the batch is the clean image, flipped where layer 0 says FlipLR."""
    loader = Loader(shapes_dir, batch_size=16, provenance=True, **CPU)
    flipped = 0
    for batch in loader:
        assert batch.params is not None and batch.clean is not None
        assert batch.params.num_layers == 1
        is_flip = batch.params.op_ids[:, 0] == index("FlipLR")
        flipped += int(is_flip.sum())
        expected = torch.where(is_flip[:, None, None, None], batch.clean.flip(-1), batch.clean)
        assert torch.equal(_denormalise(batch.images), expected)
    assert 0 < flipped < len(loader.source)


def test_no_provenance_by_default(shapes_dir: Path) -> None:
    batch = next(iter(Loader(shapes_dir, policy=RandAugment(), batch_size=8, **CPU)))
    assert batch.params is None and batch.clean is None


# -- multi-label and in-memory sources -------------------------------------------------------
def test_multi_label_targets_match_the_csv(shapes_multi_dir: Path) -> None:
    loader = Loader(shapes_multi_dir, policy=RandAugment(), batch_size=16, **CPU)
    assert loader.multi_label
    assert loader.classes == MULTI_LABELS
    assert loader.classes == tuple((shapes_multi_dir / "classes.txt").read_text().split())
    with (shapes_multi_dir / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(loader.source) == len(rows)
    seen = []
    for batch in loader:
        assert batch.labels.dtype == torch.float32
        assert batch.labels.shape == (len(batch.indices), len(MULTI_LABELS))
        assert set(batch.labels.unique().tolist()) <= {0.0, 1.0}
        for i, row in zip(batch.indices.tolist(), batch.labels, strict=True):
            want = {MULTI_LABELS.index(lab) for lab in rows[i]["labels"].split()}
            assert set(torch.nonzero(row).flatten().tolist()) == want, rows[i]
            assert loader.source.paths[i] == rows[i]["path"]
        seen += batch.indices.tolist()
    assert sorted(seen) == list(range(len(rows)))


def test_single_label_classes_and_targets(shapes_dir: Path) -> None:
    loader = Loader(shapes_dir, batch_size=16, **CPU)
    assert not loader.multi_label
    assert loader.classes == SHAPE_CLASSES
    for batch in loader:
        assert batch.labels.dtype == torch.int64 and batch.labels.shape == batch.indices.shape
        for i, y in zip(batch.indices.tolist(), batch.labels.tolist(), strict=True):
            assert Path(loader.source.paths[i]).parent.name == SHAPE_CLASSES[y]


def _arrays(n: int = 20, h: int = 40, w: int = 36) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), np.arange(n) % 3


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_array_source(train: bool, dtype: torch.dtype) -> None:
    images, labels = _arrays()
    src = ArraySource.from_arrays(images, labels)
    assert src.classes == ("0", "1", "2")
    policy = RandAugment(n=2, m=9) if train else None
    loader = Loader(src, policy=policy, batch_size=8, train=train, dtype=dtype, **CPU)
    batches = list(loader)
    assert len(batches) == len(loader) == 3
    assert [len(b.indices) for b in batches] == [8, 8, 4]
    for b in batches:
        assert b.images.shape == (len(b.indices), 3, SIZE, SIZE)
        assert b.images.dtype == dtype
        assert torch.isfinite(b.images.float()).all()
        assert torch.equal(b.labels, torch.as_tensor(labels[b.indices.numpy()]))
    got = sorted(_indices(batches))
    assert got == list(range(len(images)))
    if not train:
        assert _indices(batches) == list(range(len(images)))


def test_array_source_eval_is_a_centre_crop() -> None:
    """Eval on arrays: resize the shorter side to size/0.875, centre crop; check against a
    constant image (any resize keeps a constant) and the normalisation."""
    images = np.full((3, 40, 40, 3), (10, 128, 250), dtype=np.uint8)
    loader = Loader(ArraySource.from_arrays(images, [0, 1, 2]), batch_size=4, train=False, **CPU)
    (batch,) = list(loader)
    assert torch.equal(
        _denormalise(batch.images), torch.tensor(images).permute(0, 3, 1, 2)[:, :, :SIZE, :SIZE]
    )


def test_array_source_multi_label() -> None:
    images, _ = _arrays(12)
    hot = np.eye(4, dtype=np.float32)[np.arange(12) % 4]
    loader = Loader(ArraySource.from_arrays(images, hot), batch_size=8, **CPU)
    assert loader.multi_label and loader.classes == ("0", "1", "2", "3")
    for b in loader:
        assert b.labels.dtype == torch.float32 and b.labels.shape == (len(b.indices), 4)
        assert torch.equal(b.labels, torch.from_numpy(hot[b.indices.numpy()]))


# -- policy replacement ----------------------------------------------------------------------
def _ops_seen(batches: list[Batch]) -> set[str]:
    out: set[str] = set()
    for b in batches:
        assert b.params is not None
        out |= {CATALOG[o].name for o in b.params.op_ids[:, 1:].flatten().tolist()}
    return out


def test_set_policy_between_epochs(shapes_dir: Path) -> None:
    first = RandAugment(n=2, m=9, ops=("Rotate", "Solarize"))
    second = Policy("mine", ((OpSpec("Invert", 1.0), OpSpec("Posterize", 1.0, 5)),))
    loader = Loader(shapes_dir, policy=first, batch_size=16, provenance=True, **CPU)
    assert _ops_seen(_epoch(loader, 0)) == {"Rotate", "Solarize"}
    loader.set_policy(second)
    assert loader.policy is second
    batches = _epoch(loader, 1)
    assert _ops_seen(batches) == {"Invert", "Posterize"}
    assert all(b.params is not None and b.params.num_layers == 3 for b in batches)
    # and the images follow the new policy (Invert then Posterize 6 bits, exactly)
    for b in batches:
        assert b.params is not None and b.clean is not None
        replay = apply_params(b.clean, b.params)
        assert torch.equal(_denormalise(b.images), replay)
    loader.set_policy(NoAugment())
    assert all(b.params is not None and b.params.num_layers == 1 for b in _epoch(loader, 2))


@pytest.mark.parametrize("bad", ["rand-m9-n2", None, {"type": "none"}, 3, RandAugment])
def test_set_policy_rejects_non_policies(shapes_dir: Path, bad: object) -> None:
    """Strings, dicts, None and policy *classes* (a runtime_checkable Protocol accepts the
    class itself) are refused; the policy in place stays."""
    loader = Loader(shapes_dir, batch_size=8, **CPU)
    with pytest.raises(TypeError, match="policy"):
        loader.set_policy(bad)  # type: ignore[arg-type]
    assert isinstance(loader.policy, NoAugment)


@pytest.mark.parametrize("bad", ["rand-m9-n2", RandAugment])
def test_constructor_rejects_non_policies(shapes_dir: Path, bad: object) -> None:
    with pytest.raises(TypeError, match="policy"):
        Loader(shapes_dir, policy=bad, batch_size=8, **CPU)  # type: ignore[arg-type]


def test_policy_protocol_objects_are_accepted(shapes_dir: Path) -> None:
    policy: AugmentPolicy = RandAugment(n=1, m=3)
    loader = Loader(shapes_dir, policy=policy, batch_size=32, **CPU)
    assert len(list(loader)) == 2


# -- errors ----------------------------------------------------------------------------------
def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        Loader(tmp_path / "nope", **CPU)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no class subfolders"):
        Loader(tmp_path, **CPU)


def test_class_folders_without_images(tmp_path: Path) -> None:
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    (tmp_path / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no .jpg/.jpeg/.png files"):
        Loader(tmp_path, **CPU)


def test_csv_label_not_in_classes(tmp_path: Path, shapes_multi_dir: Path) -> None:
    shutil.copytree(shapes_multi_dir / "images", tmp_path / "images")
    (tmp_path / "classes.txt").write_text("red\ngreen\n")
    (tmp_path / "labels.csv").write_text(
        "path,labels\nimages/00000.jpg,red\nimages/00001.jpg,green purple\n"
    )
    with pytest.raises(ValueError, match="row 3 has label 'purple' not in classes"):
        Loader(tmp_path, **CPU)


def test_csv_without_header(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,tags\na.jpg,red\n")
    with pytest.raises(ValueError, match="needs the header 'path,labels'"):
        Loader(tmp_path, **CPU)


def test_bad_device_string(shapes_dir: Path) -> None:
    with pytest.raises(ValueError, match="device='tpu'"):
        Loader(shapes_dir, device="tpu")
    with pytest.raises(ValueError, match="device="):
        LoaderConfig(device="gpu")  # type: ignore[arg-type]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(shapes_dir: Path) -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        Loader(shapes_dir, device="cuda")


@pytest.mark.parametrize("batch_size", [0, -1])
def test_bad_batch_size(shapes_dir: Path, batch_size: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Loader(shapes_dir, batch_size=batch_size, **CPU)


def test_bad_dtype(shapes_dir: Path) -> None:
    with pytest.raises(TypeError, match="dtype"):
        Loader(shapes_dir, dtype=torch.int32, **CPU)


def test_bad_size_and_scale(shapes_dir: Path) -> None:
    with pytest.raises(ValueError, match="size"):
        Loader(shapes_dir, device="cpu", size=4)
    with pytest.raises(ValueError, match="scale"):
        Loader(shapes_dir, scale=(0.5, 1.5), **CPU)


def test_array_source_errors() -> None:
    images, labels = _arrays(6)
    with pytest.raises(TypeError, match="uint8"):
        ArraySource.from_arrays(images.astype(np.float32), labels)
    with pytest.raises(TypeError, match="uint8"):
        ArraySource.from_arrays(torch.from_numpy(images), labels)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        ArraySource.from_arrays(images[..., :1], labels)
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        ArraySource.from_arrays(images[0], labels)
    with pytest.raises(ValueError, match="empty"):
        ArraySource.from_arrays(images[:0], labels[:0])
    with pytest.raises(ValueError, match="6 images but 5 labels"):
        ArraySource.from_arrays(images, labels[:5])


@pytest.mark.parametrize(("shard_id", "num_shards"), [(3, 3), (-1, 2), (0, 0)])
def test_shard_id_out_of_range(shapes_dir: Path, shard_id: int, num_shards: int) -> None:
    with pytest.raises(ValueError, match="shard_id"):
        Loader(shapes_dir, shard_id=shard_id, num_shards=num_shards, **CPU)


def test_loader_config_is_reusable(shapes_dir: Path) -> None:
    cfg = LoaderConfig(batch_size=16, size=SIZE, device="cpu", seed=2)
    a = Loader(shapes_dir, config=cfg)
    b = Loader(shapes_dir, config=cfg, batch_size=32)
    assert (a.config.batch_size, b.config.batch_size, b.config.seed) == (16, 32, 2)
    assert (len(a), len(b)) == (4, 2)


def _no_warnings(it: Iterator[Batch]) -> list[Batch]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return list(it)


def test_clean_folder_emits_no_warning(shapes_dir: Path) -> None:
    loader = Loader(shapes_dir, batch_size=16, **CPU)
    assert len(_no_warnings(iter(loader))) == 4
    assert loader.skipped == []


def test_equalize_tolerance_is_what_the_test_assumes() -> None:
    """The replay test leans on the catalog: only Equalize may differ on every pixel."""
    loose = {op.name for op in CATALOG if op.tolerance["dali"][1] >= 1.0}
    assert loose == {"Equalize"}
    assert get("Equalize").tolerance["dali"] == (255, 1.0)
