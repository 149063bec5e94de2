"""The packed-shard format and its source: WebDataset tar shards with DALI index files.

A folder written by ``dali-aug pack`` (:func:`dali_aug.shards.pack`) holds:

* ``shard-00000.tar``, ``shard-00001.tar``, ...: POSIX (ustar) tar files in the WebDataset
  layout. Sample ``i`` (0-based, in the packed order) is the members ``{i:08d}.<image>``
  (the file's bytes as they were, ``<image>`` one of :data:`IMAGE_EXTS` by the file's format),
  ``{i:08d}.idx`` (``i`` as 8 little-endian bytes, int64), ``{i:08d}.src`` (the source path,
  UTF-8) and, for single-label data, ``{i:08d}.cls`` (the class index as text, the WebDataset
  convention);
* ``shard-00000.idx``, ...: the index file of each tar in the format DALI's
  ``fn.readers.webdataset`` reads (``v1.2 <samples>``, then per sample ``<ext> <data offset>
  <size> <member name>`` per member; the one DALI's ``tools/wds2idx.py`` writes: that script
  is not in the wheel, so the packer writes the same lines from the offsets it wrote);
* ``labels.npy``: the targets in the packed order (int64 [N] or float32 [N, C]), loaded with
  ``allow_pickle=False``;
* ``dataset.json``: the manifest (format, version, classes, multi-label, the shards and their
  sample counts, the files left out at pack time and why).

Reading (:class:`ShardSource`, used by the Loader): DALI reads the tar members in its own
threads. A shard of ``num_shards`` ranks gets ``ceil(N / num_shards)`` samples, a contiguous
block of the packed order (the last block wraps around to the start, as the Loader's folder
shards do, so up to ``num_shards - 1`` samples appear twice per epoch and every rank yields
the same number of batches). The blocks rotate by one rank every epoch (rank ``r`` reads block
``(r + epoch) % num_shards``), so over ``num_shards`` epochs every rank sees every sample. The
reader gets a per-epoch index of just its block (written to a temporary folder), so it reads
only those samples; the order within the epoch is the block's order through DALI's shuffle
buffer (``random_shuffle``, ``initial_fill``), not a global permutation.

Damaged shards: the packer checks every image, and :meth:`ShardSource.load` checks that each
tar still has the size the manifest records (a truncated or rewritten shard is refused with
the fix). A shard changed in place after packing is not caught, and DALI 2.4 does not survive
one: when its decoder fails behind the WebDataset reader, the process usually dies with a
segmentation fault (in each of 6 runs with an overwritten JPEG signature) instead of the
Loader's ``ValueError``. Re-pack rather than edit shards.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dali_aug._image_format import IMAGE_FORMATS

__all__ = [
    "FORMAT",
    "IMAGE_EXTS",
    "MANIFEST",
    "ShardSource",
    "Segment",
    "is_shard_folder",
]

#: The manifest's file name and ``format`` value.
MANIFEST = "dataset.json"
FORMAT = "dali-aug-shards"
VERSION = 1
#: Member extensions of the image component: the format names of
#: :func:`dali_aug.sources.image_format` (defined in :mod:`dali_aug._image_format`).
IMAGE_EXTS = IMAGE_FORMATS
LABELS = "labels.npy"
INDEX_VERSION = "v1.2"


def is_shard_folder(root: str | Path) -> bool:
    """Whether ``root`` is a folder written by ``dali-aug pack`` (it holds the manifest)."""
    return (Path(root) / MANIFEST).is_file()


@dataclasses.dataclass(frozen=True)
class Segment:
    """One archive of a rank's epoch: a tar and the index file listing the samples read."""

    tar: str
    index: str


@dataclasses.dataclass(frozen=True)
class ShardSource:
    """A packed-shard folder (see the module docstring); DALI reads it, the host never does.

    Attributes:
        root: the folder.
        tars: the tar files' names, in the packed order.
        counts: the samples of each tar.
        targets: labels in the packed order, int64 [N] or float32 [N, C].
        classes: class (or label) names.
        multi_label: multi-hot targets.
        left_out: the files the packer left out, ``{"path": ..., "reason": ...}`` each.
    """

    root: Path
    tars: tuple[str, ...]
    counts: tuple[int, ...]
    targets: torch.Tensor
    classes: tuple[str, ...]
    multi_label: bool = False
    left_out: tuple[dict[str, str], ...] = ()

    @classmethod
    def load(cls, root: str | Path) -> ShardSource:
        """Opens a packed folder.

        Raises:
            ValueError: the manifest is missing or not this format or version, a shard or
                index file is missing, or the labels do not match the shards' sample count.
        """
        root = Path(root)
        path = root / MANIFEST
        fix = f"re-pack it with `dali-aug pack SRC {root}`"
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path} is not a readable shard manifest ({err}); {fix}") from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT!r} manifest; {fix}")
        if meta.get("version") != VERSION:
            raise ValueError(
                f"{path} has version {meta.get('version')!r}; this dali-aug reads version "
                f"{VERSION}: {fix}"
            )
        try:
            shards = [(str(s["tar"]), int(s["samples"])) for s in meta["shards"]]
            sizes = [int(s["bytes"]) for s in meta["shards"]]
            classes = tuple(str(c) for c in meta["classes"])
            multi = bool(meta["multi_label"])
            left_out = tuple(
                {"path": str(d["path"]), "reason": str(d["reason"])} for d in meta["left_out"]
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} lacks a field or has a wrong one ({err!r}); {fix}") from err
        if not shards or sum(n for _, n in shards) == 0:
            raise ValueError(f"{path} lists no samples; {fix} from a folder with images")
        for (tar, _), size in zip(shards, sizes, strict=True):
            if Path(tar).name != tar:
                raise ValueError(f"{path}: shard name {tar!r} is not a plain file name; {fix}")
            for name in (tar, index_name(tar)):
                if not (root / name).is_file():
                    raise ValueError(f"{root / name} is missing; {fix}")
            if (root / tar).stat().st_size != size:
                raise ValueError(
                    f"{root / tar} has {(root / tar).stat().st_size} bytes but was packed with "
                    f"{size}: it was changed after packing; {fix}"
                )
        targets = _load_labels(root / LABELS, multi, len(classes), fix)
        n = sum(c for _, c in shards)
        if len(targets) != n:
            raise ValueError(
                f"{root / LABELS} has {len(targets)} labels but the shards hold {n} samples; {fix}"
            )
        return cls(
            root,
            tuple(t for t, _ in shards),
            tuple(c for _, c in shards),
            targets,
            classes,
            multi,
            left_out,
        )

    def __len__(self) -> int:
        return sum(self.counts)

    def name(self, i: int) -> str:
        """Sample ``i`` as ``<tar>#<key>``."""
        t = int(np.searchsorted(np.cumsum(self.counts), i, side="right"))
        return f"{self.tars[t]}#{i:08d}"

    def block(self, shard_id: int, num_shards: int, epoch: int) -> np.ndarray:
        """The packed indices rank ``shard_id`` reads in ``epoch``: ``ceil(N / num_shards)`` of
        them, block ``(shard_id + epoch) % num_shards`` of the packed order, wrapped around."""
        n = len(self)
        per = -(-n // num_shards)
        b = (shard_id + epoch) % num_shards
        return (np.arange(b * per, (b + 1) * per) % n).astype(np.int64)

    def segments(self, indices: np.ndarray, folder: Path) -> tuple[Segment, ...]:
        """Writes, into ``folder``, index files that list exactly ``indices`` (in that order,
        repeats allowed), one per run of consecutive indices in the same tar; returns the
        (tar, index) pairs for the reader."""
        starts = np.concatenate([[0], np.cumsum(self.counts)])
        tar_of = np.searchsorted(starts[1:], indices, side="right")
        cache: dict[int, list[str]] = {}
        out: list[Segment] = []
        for k, (t, run) in enumerate(_runs(tar_of, indices)):
            if t not in cache:
                cache[t] = self._index_lines(t)
            lines = [cache[t][int(i - starts[t])] for i in run]
            path = folder / f"segment-{k:05d}.idx"
            path.write_text(f"{INDEX_VERSION} {len(lines)}\n" + "".join(lines), encoding="ascii")
            out.append(Segment(str(self.root / self.tars[t]), str(path)))
        return tuple(out)

    def _index_lines(self, t: int) -> list[str]:
        path = self.root / index_name(self.tars[t])
        with open(path, encoding="ascii") as f:
            head = f.readline().split()
            lines = f.readlines()
        if head[:1] != [INDEX_VERSION] or len(lines) != self.counts[t]:
            raise ValueError(
                f"{path} does not list the {self.counts[t]} samples of {self.tars[t]} in the "
                f"{INDEX_VERSION} format; re-pack the folder with `dali-aug pack`"
            )
        return lines


def index_name(tar: str) -> str:
    """The index file's name of a tar (``shard-00000.tar`` -> ``shard-00000.idx``)."""
    return tar[: -len(".tar")] + ".idx" if tar.endswith(".tar") else tar + ".idx"


def _runs(keys: np.ndarray, values: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Maximal runs of equal consecutive ``keys``: (key, the values of the run)."""
    cut = np.flatnonzero(np.diff(keys)) + 1
    for lo, hi in zip(np.concatenate([[0], cut]), np.concatenate([cut, [len(keys)]]), strict=True):
        yield int(keys[lo]), values[lo:hi]


def _load_labels(path: Path, multi: bool, n_classes: int, fix: str) -> torch.Tensor:
    try:
        lab = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable label array ({err}); {fix}") from err
    if multi:
        ok = lab.dtype == np.float32 and lab.ndim == 2 and lab.shape[1] == n_classes
    else:
        ok = lab.dtype == np.int64 and lab.ndim == 1 and (len(lab) == 0 or 0 <= lab.min())
        ok = ok and (len(lab) == 0 or int(lab.max()) < n_classes)
    if not ok:
        raise ValueError(
            f"{path} holds {lab.dtype} {lab.shape}, not the "
            f"{'float32 [N, C]' if multi else 'int64 [N]'} labels of {n_classes} classes; {fix}"
        )
    return torch.from_numpy(np.ascontiguousarray(lab))


def write_manifest(
    root: Path,
    *,
    shards: list[tuple[str, int]],
    classes: tuple[str, ...],
    multi_label: bool,
    left_out: list[dict[str, str]],
    extra: dict[str, Any],
) -> None:
    """Writes ``dataset.json`` (atomically: a reader never sees half a manifest)."""
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "classes": list(classes),
        "multi_label": multi_label,
        "num_samples": sum(n for _, n in shards),
        "shards": [
            {"tar": t, "index": index_name(t), "samples": n, "bytes": (root / t).stat().st_size}
            for t, n in shards
        ],
        "left_out": left_out,
        **extra,
    }
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, root / MANIFEST)
