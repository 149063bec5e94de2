"""The DataLoader's face of the Loader: the constructor arguments a ``DataLoader(...)`` call
passes, and the attributes that frameworks read from a loader (``sampler``, ``dataset``).

Code written for ``torch.utils.data.DataLoader`` touches a loader in a few places: the
ImageNet example and timm pass ``num_workers``, ``pin_memory`` and a ``DistributedSampler``
and call ``sampler.set_epoch(epoch)``; Lightning sets the epoch through ``loader.sampler``;
evaluation code reads ``len(loader.sampler)`` and ``len(loader.dataset)``. This module maps
those onto the Loader (the table in ``docs/loader.md`` lists every DataLoader argument).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from dali_aug.loader import Loader, LoaderConfig

__all__ = [
    "LoaderSampler",
    "SourceView",
    "check_sampler",
    "dataloader_arguments",
    "is_torch_dataset",
    "source_of_dataset",
]

#: DataLoader arguments accepted without effect, and why they have none
IGNORED: dict[str, str] = {
    "pin_memory": "DALI writes the batches on the Loader's device itself",
    "pin_memory_device": "DALI writes the batches on the Loader's device itself",
    "persistent_workers": "the DALI pipelines persist across epochs anyway",
    "timeout": "there are no worker processes to wait for",
    "multiprocessing_context": "DALI works in threads, not processes",
    "in_order": "batches always come in order",
}
#: DataLoader arguments refused, with what to do instead
REFUSED: dict[str, str] = {
    "collate_fn": "the DALI pipeline makes the batches; mix or erase in the training step "
    "(dali_aug.train's mixup and erasing) instead",
    "batch_sampler": "give a sampler= and batch_size=",
    "worker_init_fn": "there are no worker processes; seed the Loader with seed=",
}


def dataloader_arguments(overrides: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Splits a ``Loader(...)`` call's keyword arguments into LoaderConfig fields and the
    ``sampler``, mapping the DataLoader's names: ``num_workers`` -> ``num_threads`` (at
    least 1), ``prefetch_factor`` -> ``prefetch``, ``generator`` -> ``seed`` (its initial
    seed); the arguments of :data:`IGNORED` are dropped.

    Raises:
        TypeError: an argument of :data:`REFUSED`.
        ValueError: a DataLoader name and its LoaderConfig field both given, or
            ``sampler`` with ``shuffle=True`` (as the DataLoader refuses).
    """
    out = dict(overrides)
    for name, why in REFUSED.items():
        if out.get(name) is not None:
            raise TypeError(f"Loader does not take {name}= ({why})")
        out.pop(name, None)
    for name in IGNORED:
        out.pop(name, None)
    mapped: dict[str, tuple[str, Callable[[Any], int]]] = {
        "num_workers": ("num_threads", lambda v: max(1, int(v))),
        "prefetch_factor": ("prefetch", int),
        "generator": ("seed", lambda g: int(g.initial_seed()) % (2**31 - 1)),
    }
    for name, (field, convert) in mapped.items():
        value = out.pop(name, None)
        if value is None:
            continue
        if field in out:
            raise ValueError(f"both {name}= and {field}= given; give one ({name} is {field})")
        out[field] = convert(value)
    sampler = out.pop("sampler", None)
    if sampler is not None and out.get("shuffle"):
        raise ValueError("sampler option is mutually exclusive with shuffle=True")
    if sampler is not None:
        out["shuffle"] = False
    return out, sampler


def check_sampler(sampler: Any, config: LoaderConfig, source: Any) -> Any:
    """``sampler`` if the Loader can follow it (an iterable of dataset indices with a
    ``len``; a ``DistributedSampler`` shards by its ``rank``/``num_replicas`` and its
    ``set_epoch`` drives the Loader's epoch), else an error naming the fix."""
    if sampler is None:
        return None
    from dali_aug.shards import ShardSource

    if not (hasattr(sampler, "__iter__") and hasattr(sampler, "__len__")):
        raise TypeError(
            f"sampler is a {type(sampler).__name__}; give an iterable of dataset indices with "
            "a len() (a torch Sampler, e.g. DistributedSampler)"
        )
    if isinstance(source, ShardSource):
        raise ValueError(
            "sampler= needs a folder or array source: packed shards are read by DALI's reader "
            "in runs; shard them with shard_id/num_shards (default: the process group)"
        )
    if config.shard_id is not None or config.num_shards is not None or config.exact_shards:
        raise ValueError(
            "the sampler decides this process's samples; drop shard_id, num_shards and "
            "exact_shards (or drop the sampler)"
        )
    return sampler


def is_torch_dataset(data: object) -> bool:
    """Whether ``data`` is a ``torch.utils.data.Dataset`` (e.g. a torchvision ImageFolder)."""
    return isinstance(data, torch.utils.data.Dataset)


class LoaderSampler:
    """``loader.sampler`` of a Loader built without a sampler: the DistributedSampler face of
    its own order. ``set_epoch(e)`` pins the Loader's next epoch (as
    :meth:`Loader.set_epoch`); ``len`` is this shard's samples per epoch; iterating yields
    them (:meth:`Loader.shard_indices`)."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader

    def set_epoch(self, epoch: int) -> None:
        self._loader.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        """The epoch the Loader's next iteration runs."""
        return self._loader._next_epoch()

    @property
    def num_replicas(self) -> int:
        return self._loader.num_shards

    @property
    def rank(self) -> int:
        return self._loader.shard_id

    @property
    def shuffle(self) -> bool:
        return self._loader._shuffle

    @property
    def seed(self) -> int:
        return self._loader.config.seed

    @property
    def drop_last(self) -> bool:
        return self._loader.drop_last

    def __len__(self) -> int:
        return self._loader._samples_per_epoch()

    def __iter__(self) -> Any:
        return iter(self._loader.shard_indices().tolist())

    def __repr__(self) -> str:
        return f"LoaderSampler(rank={self.rank}, num_replicas={self.num_replicas})"


class SourceView:
    """``loader.dataset`` of a Loader built from a path or a source: what DataLoader-aware
    code reads from a dataset. ``len`` is the number of samples; ``classes``,
    ``class_to_idx``, ``targets`` (a tensor: [N] int64 or [N, C] multi-hot) and ``samples``
    ((name, target) pairs) as torchvision's ImageFolder has them; indexing gives a sample's
    ``(name, target)``, its metadata, not its pixels (the pipeline makes those)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    @property
    def classes(self) -> list[str]:
        return list(self.source.classes)

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {c: k for k, c in enumerate(self.source.classes)}

    @property
    def targets(self) -> torch.Tensor:
        return self.source.targets

    @property
    def samples(self) -> list[tuple[str, Any]]:
        return [self[i] for i in range(len(self))]

    def __getitem__(self, i: int) -> tuple[str, Any]:
        n = len(self.source)
        if not -n <= i < n:
            raise IndexError(f"sample {i} of a dataset of {n}")
        i %= n
        target = self.source.targets[i]
        return self.source.name(i), (int(target) if target.dim() == 0 else target)

    def __repr__(self) -> str:
        return f"SourceView({type(self.source).__name__}, {len(self)} samples)"


def source_of_dataset(data: Any) -> Any:
    """The source of a torch dataset the Loader can read without its ``__getitem__``: a
    torchvision ``DatasetFolder`` (``ImageFolder``; anything with ``root``, ``samples`` and
    ``classes`` or ``class_to_idx``) or a timm ``ImageDataset`` of a folder (its ``reader``
    has them) becomes a :class:`~dali_aug.sources.FolderSource` of the same files, indices
    and labels; a ``FakeData`` (``size``, ``image_size``, ``num_classes``) a
    :class:`~dali_aug.sources.SyntheticSource` of the same shape and length. The dataset's
    ``transform`` is not used: the Loader's pipeline (crop, flip, policy, normalisation)
    replaces it.

    Raises:
        TypeError: another dataset; the message names the sources the Loader takes.
    """
    from dali_aug.sources import FolderSource, SyntheticSource

    name = type(data).__name__
    # torchvision's DatasetFolder, or timm's ImageDataset (its reader lists the files)
    files = next(
        (
            d
            for d in (data, getattr(data, "reader", None))
            if hasattr(d, "root")
            and hasattr(d, "samples")
            and (hasattr(d, "classes") or hasattr(d, "class_to_idx"))
        ),
        None,
    )
    if files is not None:
        root = Path(files.root)
        paths = tuple(os.path.relpath(p, root) for p, _ in files.samples)
        targets = torch.tensor([int(t) for _, t in files.samples], dtype=torch.int64)
        if not paths:
            raise ValueError(f"the {name} at {str(root)!r} has no samples")
        if hasattr(files, "classes"):
            classes = tuple(files.classes)
        else:
            by_index = sorted(files.class_to_idx.items(), key=lambda kv: kv[1])
            classes = tuple(c for c, _ in by_index)
        return FolderSource(root, paths, targets, classes)
    if all(hasattr(data, a) for a in ("size", "image_size", "num_classes")):
        shape = tuple(data.image_size)
        return SyntheticSource(
            length=int(data.size),
            image_size=(int(shape[-2]), int(shape[-1])),
            num_classes=int(data.num_classes),
            seed=int(getattr(data, "random_offset", 0)),
        )
    raise TypeError(
        f"a {name} dataset: the Loader reads files through DALI, not a dataset's "
        "__getitem__; pass its folder, a torchvision ImageFolder/DatasetFolder or FakeData, "
        "or a source from dali_aug.sources (ArraySource for tensors in memory)"
    )
