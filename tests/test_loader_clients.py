"""dali_aug.Loader driven as its clients drive a DataLoader: Lightning (its order of calls,
and a real Trainer that resumes from an end-of-epoch checkpoint), pytorch/examples'
imagenet/main.py (a DistributedSampler given as ``sampler=``, ``len(val_loader.sampler)``,
``Subset(val_loader.dataset, ...)``) and timm's train.py (``_set_loader_epoch``) (CPU
pipeline; the Lightning tests need ``lightning``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from test_eval_exact import run_script
from test_loader_protocol import FolderDataset
from torch.utils.data import DataLoader, DistributedSampler, Subset

from dali_aug.batch import Batch
from dali_aug.loader import Loader

SIZE = 32
CPU = {"device": "cpu", "size": SIZE}
REPO = Path(__file__).resolve().parents[1]


def _indices(batches: list[Batch]) -> list[int]:
    return torch.cat([b.indices for b in batches]).tolist() if batches else []


# -- Lightning's calls, without Lightning ------------------------------------------------------
def _lightning_set_sampler_epoch(dataloader: object, epoch: int) -> None:
    """lightning.fabric.utilities.data._set_sampler_epoch (2.6.6)."""
    objects: dict[int, Any] = {}
    if (sampler := getattr(dataloader, "sampler", None)) is not None:
        objects[id(sampler)] = sampler
    if (batch_sampler := getattr(dataloader, "batch_sampler", None)) is not None and (
        sampler := getattr(batch_sampler, "sampler", None)
    ) is not None:
        objects[id(sampler)] = sampler
    for obj in objects.values():
        set_epoch = getattr(obj, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)


def test_lightning_resume_order_of_calls(shapes_dir: Path) -> None:
    """A resumed Lightning fit: ``iter(loader)`` discarded, ``iter(loader)`` again, THEN
    ``set_epoch(2)`` through ``loader.sampler``, then ``next()``: the batches are epoch 2's."""
    loader = Loader(shapes_dir, batch_size=16, seed=5, **CPU)
    assert loader.batch_sampler is None  # Lightning's _is_dataloader_shuffled reads it
    assert len(loader) == 4
    iter(loader)  # _check_dataloader_iterable
    it = iter(loader)  # FitLoop.setup_data
    _lightning_set_sampler_epoch(loader, 2)  # on_advance_start
    batches = [next(it), *it]
    assert len(batches) == len(loader)
    want = Loader(shapes_dir, batch_size=16, seed=5, **CPU)
    assert _indices(batches) == want.shard_indices(2).tolist()
    assert _indices(batches) != want.shard_indices(0).tolist()
    assert loader.epoch == 2
    # the next epochs: set_epoch first, then iter()
    _lightning_set_sampler_epoch(loader, 3)
    assert _indices(list(loader)) == want.shard_indices(3).tolist()


# -- a Lightning Trainer ---------------------------------------------------------------------
def _lightning_classes() -> tuple[Any, Any]:
    lightning = pytest.importorskip("lightning")

    class DataModule(lightning.LightningDataModule):
        def __init__(self, data: Path, seed: int) -> None:
            super().__init__()
            self.train = Loader(data, batch_size=16, seed=seed, **CPU)
            self.val = Loader(data, batch_size=32, train=False, **CPU)

        def train_dataloader(self) -> Loader:
            return self.train

        def val_dataloader(self) -> Loader:
            return self.val

    class Model(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 4)
            )
            self.seen: dict[int, list[int]] = {}
            self.val_seen = 0

        def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
            self.seen.setdefault(self.current_epoch, []).extend(batch.indices.tolist())
            images, labels = batch
            return torch.nn.functional.cross_entropy(self.net(images), labels)

        def validation_step(self, batch: Batch, batch_idx: int) -> None:
            self.val_seen += len(batch.indices)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return DataModule, Model


@pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning")
@pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`:UserWarning")
def test_lightning_resume_from_an_end_of_epoch_checkpoint(shapes_dir: Path, tmp_path: Path) -> None:
    """fit(3 epochs) with a checkpoint per epoch; a fresh DataModule/Loader resumed from the
    checkpoint of epoch 1 runs epoch 2 in the order of the uninterrupted run's epoch 2."""
    lightning = pytest.importorskip("lightning")
    from lightning.pytorch.callbacks import ModelCheckpoint

    DataModule, Model = _lightning_classes()

    def trainer(epochs: int, ckpt: ModelCheckpoint | None = None) -> Any:
        return lightning.Trainer(
            accelerator="cpu",
            max_epochs=epochs,
            enable_checkpointing=ckpt is not None,
            callbacks=[ckpt] if ckpt is not None else None,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=tmp_path,
        )

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{epoch}", save_top_k=-1)
    model = Model()
    trainer(3, ckpt).fit(model, DataModule(shapes_dir, seed=7))
    fresh = Loader(shapes_dir, batch_size=16, seed=7, **CPU)
    assert sorted(model.seen) == [0, 1, 2]
    for epoch in range(3):
        assert model.seen[epoch] == fresh.shard_indices(epoch).tolist()
    assert model.val_seen == 3 * 64

    resumed = Model()
    trainer(3).fit(
        resumed, DataModule(shapes_dir, seed=7), ckpt_path=tmp_path / "ckpt" / "epoch=1.ckpt"
    )
    assert sorted(resumed.seen) == [2]
    assert resumed.seen[2] == model.seen[2]
    assert resumed.seen[2] != fresh.shard_indices(0).tolist()


_LIGHTNING_DDP = """
import sys, torch, lightning
from dali_aug.loader import Loader

class DataModule(lightning.LightningDataModule):
    def __init__(self):
        super().__init__()
        self.loader = Loader(__DATA__, batch_size=8, seed=3, device="cpu", size=32)

    def train_dataloader(self):
        return self.loader

class Model(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(3, 4)
        self.seen = []

    def training_step(self, batch, batch_idx):
        self.seen += batch.indices.tolist()
        return torch.nn.functional.cross_entropy(self.net(batch.images.mean((2, 3))), batch.labels)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

if __name__ == "__main__":
    model, dm = Model(), DataModule()
    trainer = lightning.Trainer(accelerator="cpu", strategy="ddp", devices=2, max_epochs=1,
                                logger=False, enable_progress_bar=False,
                                enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(model, dm)
    torch.save({"seen": model.seen, "len": len(dm.loader)},
               f"{sys.argv[1]}/rank{trainer.global_rank}.pt")
"""


@pytest.mark.slow
def test_lightning_ddp_shards_a_loader_built_in_the_datamodule(
    shapes_dir: Path, tmp_path: Path
) -> None:
    """Trainer(strategy="ddp", devices=2): the Loader built in the DataModule's __init__,
    before the process group, gives each rank its half of the data."""
    pytest.importorskip("lightning")
    run_script(_LIGHTNING_DDP.replace("__DATA__", repr(str(shapes_dir))), tmp_path, nproc=None)
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    assert a["len"] == b["len"] == 4
    assert len(a["seen"]) == len(b["seen"]) == 32
    assert sorted(a["seen"] + b["seen"]) == list(range(64))


# -- pytorch/examples imagenet/main.py -----------------------------------------------------------
def test_imagenet_example_calls(imagenet_layout_dir: Path) -> None:
    """The expressions imagenet/main.py evaluates on its loaders, with
    ``DataLoader`` replaced by ``Loader`` and a 2-process world simulated by the
    DistributedSamplers' ``num_replicas``/``rank``."""
    world_size, batch_size = 2, 8
    train_dataset = FolderDataset(imagenet_layout_dir / "train")  # 48 images
    val_dataset = FolderDataset(imagenet_layout_dir / "val")  # 16 images: keep 15
    val_dataset.samples = val_dataset.samples[:15]
    val_dataset.targets = val_dataset.targets[:15]
    seen: dict[int, list[int]] = {0: [], 1: []}
    val_seen: list[int] = []
    for rank in range(world_size):
        train_sampler = DistributedSampler(train_dataset, num_replicas=world_size, rank=rank)
        val_sampler = DistributedSampler(
            val_dataset, num_replicas=world_size, rank=rank, shuffle=False, drop_last=True
        )
        train_loader = Loader(
            train_dataset,
            batch_size=batch_size,
            shuffle=(train_sampler is None),
            num_workers=2,
            pin_memory=True,
            sampler=train_sampler,
            size=SIZE,
            device="cpu",
        )
        val_loader = Loader(
            val_dataset,
            train=False,
            batch_size=batch_size,
            shuffle=False,
            num_workers=2,
            pin_memory=True,
            sampler=val_sampler,
            size=SIZE,
            device="cpu",
        )
        assert len(train_loader) == 3
        orders = []
        for epoch in range(2):
            train_sampler.set_epoch(epoch)
            n = 0
            for i, (images, target) in enumerate(train_loader):
                images = images.to("cpu", non_blocking=True)
                target = target.to("cpu", non_blocking=True)
                assert images.shape == (batch_size, 3, SIZE, SIZE)
                assert images.dtype == torch.float32 and target.dtype == torch.int64
                n = i + 1
            assert n == len(train_loader)
            assert train_loader.epoch == epoch
            assert train_loader.shard_indices().tolist() == list(train_sampler)
            orders.append(list(train_sampler))
            seen[epoch] += list(train_sampler)
        assert orders[0] != orders[1]
        # validate(): the aux loader over the samples the drop_last sampler left out
        assert len(val_loader) == 1
        assert len(val_loader.sampler) == 7
        assert val_loader.dataset is val_dataset
        for batch in val_loader:
            images, target = batch
            assert torch.equal(
                target, torch.tensor([val_dataset.targets[i] for i in batch.indices])
            )
            val_seen += batch.indices.tolist()
        assert len(val_loader.sampler) * world_size < len(val_loader.dataset)
        aux_val_dataset = Subset(
            val_loader.dataset, range(len(val_loader.sampler) * world_size, len(val_loader.dataset))
        )
        aux = list(DataLoader(aux_val_dataset, batch_size=batch_size, shuffle=False))
        assert list(aux[0][0]) == [val_dataset.samples[14][0]]
    for epoch in range(2):
        assert sorted(seen[epoch]) == list(range(48))  # the ranks are disjoint
    assert sorted(val_seen) == list(range(14))


# -- timm train.py -----------------------------------------------------------------------------
def _set_loader_epoch(loader: Any, epoch: int) -> None:
    """timm train.py's ``_set_loader_epoch``."""
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
    if hasattr(loader.batch_sampler, "set_epoch"):
        loader.batch_sampler.set_epoch(epoch)
    elif hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)


def test_timm_set_loader_epoch_drives_the_loader(shapes_dir: Path) -> None:
    """timm resumes at ``start_epoch`` by ``_set_loader_epoch``, with ``drop_last`` for
    training, and finds the last batch by ``len(loader)``."""
    want = Loader(shapes_dir, batch_size=24, seed=2, **CPU)
    loader = Loader(shapes_dir, batch_size=24, seed=2, drop_last=True, **CPU)
    for epoch in (3, 4, 6):
        _set_loader_epoch(loader, epoch)
        last_batch_idx = len(loader) - 1
        got = []
        for batch_idx, (input, _target) in enumerate(loader):
            assert input.shape[0] == 24
            got.append(batch_idx)
        assert got[-1] == last_batch_idx == 1
        assert loader.epoch == epoch
    assert list(loader.sampler) == want.shard_indices(7).tolist()  # next: epoch 7
    loader.set_epoch(4)
    assert _indices(list(loader)) == want.shard_indices(4).tolist()[:48]
