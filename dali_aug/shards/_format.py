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
* ``dataset.json``: the manifest (format, version, classes, multi-label, the shards with their
  sample counts, byte counts and index files' sha256, the files left out at pack time and
  why), written last.

Reading (:class:`ShardSource`, used by the Loader): DALI reads the tar members in its own
threads. The Loader decides which samples a rank reads in an epoch, in which order
(:mod:`dali_aug._order`: runs of consecutive packed samples in a random order every epoch,
each rank a slice of it); the reader gets a per-epoch index of just those samples (written
to a temporary folder, :meth:`ShardSource.segments`), so it reads only them, and its shuffle
buffer (``random_shuffle``, ``initial_fill``) mixes them.

Damaged shards: the packer checks every image, and :meth:`ShardSource.load` checks, before
DALI sees anything, that each tar still has the size the manifest records (a truncated or
rewritten shard is refused with the fix) and that each index file is the one written at pack
time (its sha256 in the manifest; a manifest without it gets :func:`check_index_lines`):
DALI's reader trusts the offsets and sizes there, and one edited size crashed the process.
A folder with shard files but no manifest is a pack that did not finish, and is refused as
such. A tar changed in place after packing is not caught (except an ``idx`` member naming a
sample outside the epoch's block, which the Loader refuses), and DALI 2.4 does not survive
one: when its decoder fails behind the WebDataset reader, the process usually dies with a
segmentation fault (in each of 6 runs with an overwritten JPEG signature) instead of the
Loader's ``ValueError``. Re-pack rather than edit shards.
"""

from __future__ import annotations

import dataclasses
import hashlib
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
_BLOCK = 512  # tar block size


def is_shard_folder(root: str | Path) -> bool:
    """Whether ``root`` is a folder written by ``dali-aug pack``: it holds the manifest, or
    the files of a pack that did not finish (shard tars or index files, or the manifest's
    temporary file, but no manifest; :meth:`ShardSource.load` then says so)."""
    root = Path(root)
    return (root / MANIFEST).is_file() or _unfinished_pack(root)


def _unfinished_pack(root: Path) -> bool:
    """Whether ``root`` holds what ``dali-aug pack`` writes before its manifest but no
    manifest: a pack killed half-way."""
    if not root.is_dir() or (root / MANIFEST).is_file():
        return False
    if (root / (MANIFEST + ".tmp")).exists():
        return True
    return any(root.glob("shard-*.tar")) or any(root.glob("shard-*.idx"))


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
        index_sha256: the sha256 of each tar's index file recorded at pack time (None: a
            manifest written before dali-aug recorded it; its lines are checked one by one).
    """

    root: Path
    tars: tuple[str, ...]
    counts: tuple[int, ...]
    targets: torch.Tensor
    classes: tuple[str, ...]
    multi_label: bool = False
    left_out: tuple[dict[str, str], ...] = ()
    index_sha256: tuple[str | None, ...] = ()

    @classmethod
    def load(cls, root: str | Path) -> ShardSource:
        """Opens a packed folder.

        Raises:
            ValueError: the manifest is missing (the pack did not finish) or not this format
                or version, a shard or index file is missing, a tar's size or an index file
                differs from what was packed, or the labels do not match the shards' sample
                count.
        """
        root = Path(root)
        path = root / MANIFEST
        fix = f"re-pack it with `dali-aug pack SRC {root}`"
        if _unfinished_pack(root):
            raise ValueError(
                f"{root} holds packed shard files but no {MANIFEST}: the pack did not finish; "
                f"remove the folder and re-run `dali-aug pack SRC {root}`"
            )
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except RecursionError as err:
            raise ValueError(f"{path} is nested too deeply to be a shard manifest; {fix}") from err
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(
                f"{path} is not a readable shard manifest ({err}): the pack did not finish or "
                f"the file was changed; {fix}"
            ) from err
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
            digests = [
                None if s.get("index_sha256") is None else str(s["index_sha256"])
                for s in meta["shards"]
            ]
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
        if any(n < 0 for _, n in shards):
            raise ValueError(f"{path} lists a negative sample count; {fix}")
        targets = _load_labels(root / LABELS, multi, len(classes), fix)
        n = sum(c for _, c in shards)
        if len(targets) != n:
            raise ValueError(
                f"{root / LABELS} has {len(targets)} labels but the shards hold {n} samples; {fix}"
            )
        source = cls(
            root,
            tuple(t for t, _ in shards),
            tuple(c for _, c in shards),
            targets,
            classes,
            multi,
            left_out,
            tuple(digests),
        )
        for t in range(len(shards)):  # before DALI sees an index: it trusts every line
            source._index_lines(t)
        return source

    def __len__(self) -> int:
        return sum(self.counts)

    def name(self, i: int) -> str:
        """Sample ``i`` as ``<tar>#<key>``."""
        t = int(np.searchsorted(np.cumsum(self.counts), i, side="right"))
        return f"{self.tars[t]}#{i:08d}"

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
        """The checked lines of tar ``t``'s index file, one per sample. DALI's reader trusts
        the offsets and sizes it reads there (a wrong one can crash the process), so the file
        must be the one the packer wrote (its sha256 in the manifest) or, for a manifest
        without it, every line must describe members inside the tar, in order, named by the
        sample's key (:func:`check_index_lines`).

        Raises:
            ValueError: the index does not match; the message names the file and the fix.
        """
        tar = self.tars[t]
        path = self.root / index_name(tar)
        fix = f"re-pack the folder with `dali-aug pack SRC {self.root}`"
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise ValueError(f"{path} is not readable ({err}); {fix}") from err
        digest = self.index_sha256[t] if t < len(self.index_sha256) else None
        if digest is not None and hashlib.sha256(raw).hexdigest() != digest:
            raise ValueError(
                f"{path} is not the index written at pack time (its sha256 differs from the "
                f"manifest's): it was changed after packing; {fix}"
            )
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{path} is not a text index file (byte {err.start} is not ASCII); {fix}"
            ) from err
        head, *lines = text.splitlines(keepends=True) or [""]
        first = sum(self.counts[:t])
        if head.split() != [INDEX_VERSION, str(self.counts[t])] or len(lines) != self.counts[t]:
            raise ValueError(
                f"{path} does not list the {self.counts[t]} samples of {tar} in the "
                f"{INDEX_VERSION} format; {fix}"
            )
        if digest is None:
            why = check_index_lines(lines, first, (self.root / tar).stat().st_size)
            if why is not None:
                raise ValueError(f"{path}: {why}: it was changed after packing; {fix}")
        return lines


def check_index_lines(lines: list[str], first: int, tar_bytes: int) -> str | None:
    """Why the sample lines of an index file do not describe a tar of ``tar_bytes`` bytes
    written by the packer (None if they do): each line is ``<ext> <offset> <size> <name>``
    per member, ``<name>`` the sample's key (``first`` + line number, 8 digits) and the
    extension; every member's data starts on a 512-byte block after its header, after the
    previous member's data, and ends before the tar's two closing blocks; a sample has one
    image member and an 8-byte ``idx`` member."""
    end = 0  # where the previous member's data ends (rounded up to a block)
    limit = tar_bytes - 2 * _BLOCK
    for k, line in enumerate(lines):
        parts = line.split()
        key = f"{first + k:08d}"
        where = f"line {k + 2} (sample {key})"
        if not parts or len(parts) % 4:
            return f"{where} is not '<ext> <offset> <size> <name>' per member"
        exts = set()
        for j in range(0, len(parts), 4):
            ext, off, size, name = parts[j : j + 4]
            if not (off.isdigit() and size.isdigit() and len(off) < 20 and len(size) < 20):
                return f"{where}: offset {off!r} or size {size!r} is not a number"
            o, n = int(off), int(size)
            if name != f"{key}.{ext}":
                return f"{where}: member {name!r} is not {key}.{ext}"
            if o % _BLOCK or o < end + _BLOCK or o + n > limit:
                return (
                    f"{where}: member {name} at bytes [{o}, {o + n}) is not a member's data "
                    f"inside the {tar_bytes}-byte tar after the previous one"
                )
            if ext == "idx" and n != 8:
                return f"{where}: member {name} has {n} bytes, not 8"
            end = o + -(-n // _BLOCK) * _BLOCK
            exts.add(ext)
        if "idx" not in exts or not exts & set(IMAGE_EXTS):
            return f"{where} lacks the image or the idx member"
    return None


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
            {
                "tar": t,
                "index": index_name(t),
                "samples": n,
                "bytes": (root / t).stat().st_size,
                "index_sha256": hashlib.sha256((root / index_name(t)).read_bytes()).hexdigest(),
            }
            for t, n in shards
        ],
        "left_out": left_out,
        **extra,
    }
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, root / MANIFEST)
