"""``dali-aug pack``: an ImageFolder (or a folder with ``labels.csv``) into packed shards.

Every image is checked at pack time, three times: with the check the Loader makes
(:func:`looks_valid`: a complete JPEG/PNG/WebP/BMP/TIFF), with a full PIL decode, and with
DALI's own CPU decoder (the one the Loader runs) on what PIL decodes. What fails a check is
left out of the shards, counted, listed in the manifest's ``left_out`` with the reason and
reported, so a packed folder never holds a file that would stop the pipeline. The PIL decode
comes first because DALI 2.4's CPU decoder can crash the process (a segmentation fault, in
about one run in four) on some damaged JPEGs that PIL rejects cleanly; a file PIL rejects is
left out even if DALI might decode it (our choice: safe shards over one more sample).

The packed order is a seeded permutation of the source's (our choice: an ImageFolder lists
its images class by class, and DALI's WebDataset reader only shuffles within a buffer, so
unshuffled shards would give batches of one class); ``shuffle=False`` keeps the source order.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import re
import tarfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dali_aug._image_format import image_format, looks_valid
from dali_aug.shards._format import (
    INDEX_VERSION,
    LABELS,
    MANIFEST,
    index_name,
    is_shard_folder,
    write_manifest,
)
from dali_aug.sources import ArraySource, open_source

__all__ = ["PackReport", "pack", "parse_shard_size"]

_BLOCK = 512  # tar block size
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


@dataclasses.dataclass(frozen=True)
class PackReport:
    """What :func:`pack` wrote.

    Attributes:
        out: the packed folder.
        samples: the samples written.
        shards: the tar files written.
        left_out: (source path, reason) of each image left out.
        seconds: wall time.
    """

    out: Path
    samples: int
    shards: int
    left_out: tuple[tuple[str, str], ...]
    seconds: float

    def summary(self) -> str:
        """One paragraph for a terminal."""
        lines = [
            f"packed {self.samples} images into {self.shards} shard(s) in {self.out} "
            f"({self.seconds:.1f} s)"
        ]
        if self.left_out:
            lines.append(f"left out {len(self.left_out)} image(s) (listed in {MANIFEST}):")
            lines += [f"  {p}: {r}" for p, r in self.left_out[:10]]
            if len(self.left_out) > 10:
                lines.append(f"  ... and {len(self.left_out) - 10} more")
        return "\n".join(lines)


def parse_shard_size(text: str | int) -> tuple[int | None, int | None]:
    """``"1000"`` (samples per shard) or ``"256MB"`` / ``"1GiB"`` (bytes per shard, at least
    one sample each) -> (samples, bytes), one of them None.

    Raises:
        ValueError: not a positive count or size.
    """
    if isinstance(text, int):
        if text < 1:
            raise ValueError(f"shard size {text} must be >= 1 sample")
        return text, None
    m = re.fullmatch(r"(\d+)\s*([kmg]i?)?(b)?", text.strip().lower())
    if m is None or int(m.group(1)) < 1:
        raise ValueError(
            f"shard size {text!r}: give a sample count (e.g. 1000) or a size (e.g. 256MB, 1GiB)"
        )
    if m.group(2) is None and m.group(3) is None:
        return int(m.group(1)), None
    return None, int(m.group(1)) * _UNITS[m.group(2) or ""]


def _pil_error(data: bytes) -> str | None:
    """None if PIL decodes the whole image, else why not."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        return f"PIL cannot decode it (damaged data: {err})"
    return None


class _DecodeCheck:
    """Decodes batches of file bytes with the Loader's own evaluation graph (DALI's CPU
    decoder, then a tiny resize); after a failure, file by file with its :class:`DecodeProbe`
    (the pipeline that failed is dead and rebuilt)."""

    def __init__(self, batch_size: int, threads: int) -> None:
        from dali_aug._pipeline import PipelineSpec

        self.spec = PipelineSpec(
            batch_size=batch_size,
            size=8,
            train=False,
            encoded=True,
            layers=0,
            num_threads=threads,
            device_id=None,
            scale=(1.0, 1.0),
            prefetch=1,
        )
        self._data: list[np.ndarray] = []
        self._pipe: Any = None
        self._probe: Any = None

    def _feed(self) -> list[np.ndarray]:
        return self._data

    def __call__(self, data: Sequence[bytes]) -> list[bool]:
        """Whether each file decodes."""
        from dali_aug._pipeline import DecodeProbe, build_pipeline

        arrays = [np.frombuffer(d, dtype=np.uint8) for d in data]
        if not arrays:
            return []
        self._data = arrays
        try:
            if self._pipe is None:
                self._pipe = build_pipeline(self.spec, self._feed)
            self._pipe.run()
            return [True] * len(arrays)
        except RuntimeError:
            self._pipe = None  # "Current pipeline object is no longer valid"
        if self._probe is None:
            self._probe = DecodeProbe(self.spec)
        return [self._probe.decodes(a) for a in arrays]


class _TarWriter:
    """Writes samples into numbered tars with their DALI index files."""

    def __init__(self, out: Path, samples: int | None, size: int | None) -> None:
        self.out, self.max_samples, self.max_bytes = out, samples, size
        self.shards: list[tuple[str, int]] = []
        self._tar: tarfile.TarFile | None = None
        self._lines: list[str] = []
        self._bytes = 0

    def _open(self) -> tarfile.TarFile:
        name = f"shard-{len(self.shards):05d}.tar"
        self.shards.append((name, 0))
        self._lines, self._bytes = [], 0
        return tarfile.open(self.out / name, "w", format=tarfile.USTAR_FORMAT)

    def add(self, key: str, members: list[tuple[str, bytes]]) -> None:
        size = sum(_BLOCK + -(-len(d) // _BLOCK) * _BLOCK for _, d in members)
        n = self.shards[-1][1] if self._tar is not None else 0
        full = self._tar is not None and (
            (self.max_samples is not None and n >= self.max_samples)
            or (self.max_bytes is not None and n > 0 and self._bytes + size > self.max_bytes)
        )
        if self._tar is None or full:
            self.close()
            self._tar = self._open()
        tar = self._tar
        parts: list[str] = []
        for ext, data in members:
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
            offset = tar.offset - -(-len(data) // _BLOCK) * _BLOCK  # where the data starts
            parts.append(f"{ext} {offset} {len(data)} {info.name}")
        self._lines.append(" ".join(parts) + "\n")
        self._bytes += size
        name, count = self.shards[-1]
        self.shards[-1] = (name, count + 1)

    def close(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._tar = None
        name, count = self.shards[-1]
        (self.out / index_name(name)).write_text(
            f"{INDEX_VERSION} {count}\n" + "".join(self._lines), encoding="ascii"
        )


def pack(
    src: str | Path,
    out: str | Path,
    *,
    shard_size: int | str = 1000,
    seed: int = 0,
    shuffle: bool = True,
    threads: int = 2,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> list[PackReport]:
    """Packs ``src`` (ImageFolder or a folder with ``labels.csv``; the ImageNet layout
    ``src/train`` + ``src/val`` packs each into ``out/train``, ``out/val``) into WebDataset
    shards with DALI index files (the format: :mod:`dali_aug.shards._format`).

    Args:
        src: the source folder.
        out: the folder to write (new, or empty).
        shard_size: samples per shard (``1000``) or bytes per shard (``"256MB"``).
        seed: the seed of the packed order.
        shuffle: permute the order (else the source's order).
        threads: DALI decoder threads of the check.
        progress: a tqdm bar.
        echo: where the summary goes (default: nowhere).

    Returns:
        One report per packed split.

    Raises:
        ValueError: ``src`` is not a loadable folder, ``out`` is not empty, or every image
            fails its check.
    """
    src, out = Path(src), Path(out)
    if (src / "train").is_dir():
        splits = [(src / s, out / s) for s in ("train", "val") if (src / s).is_dir()]
    else:
        splits = [(src, out)]
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "already holds packed shards" if is_shard_folder(out) else "is not an empty folder"
        raise ValueError(f"--out {out} {what}; remove it or choose a new folder")
    samples, size = parse_shard_size(shard_size)
    reports = []
    for s_in, s_out in splits:
        report = _pack_one(s_in, s_out, samples, size, seed, shuffle, threads, progress)
        if echo is not None:
            echo(report.summary())
        reports.append(report)
    return reports


def _pack_one(
    src: Path,
    out: Path,
    samples: int | None,
    size: int | None,
    seed: int,
    shuffle: bool,
    threads: int,
    progress: bool,
) -> PackReport:
    from tqdm import tqdm

    t0 = time.perf_counter()
    source = open_source(src)
    if isinstance(source, ArraySource):  # pragma: no cover - open_source of a path
        raise TypeError("pack reads folders")
    n = len(source)
    order = (
        torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        if shuffle
        else list(range(n))
    )
    out.mkdir(parents=True, exist_ok=True)
    writer = _TarWriter(out, samples, size)
    check = _DecodeCheck(64, threads)
    kept: list[int] = []
    left_out: list[tuple[str, str]] = []
    bar = tqdm(total=n, desc=f"pack {src.name}", unit="img", disable=not progress)
    pool = concurrent.futures.ThreadPoolExecutor(max(1, threads))  # PIL decodes without the GIL
    for lo in range(0, n, 64):
        chunk = order[lo : lo + 64]
        datas: list[bytes] = []
        valid: list[int] = []
        for i in chunk:
            try:
                data = source.read(i)
            except OSError as err:
                left_out.append((source.paths[i], f"unreadable ({err.strerror or err})"))
                continue
            if not looks_valid(data):
                left_out.append((source.paths[i], "not a complete JPEG/PNG/WebP/BMP/TIFF"))
                continue
            datas.append(data)
            valid.append(i)
        pil = list(pool.map(_pil_error, datas))
        for i, why in zip(valid, pil, strict=True):
            if why is not None:
                left_out.append((source.paths[i], why))
        valid = [i for i, why in zip(valid, pil, strict=True) if why is None]
        datas = [d for d, why in zip(datas, pil, strict=True) if why is None]
        for i, data, ok in zip(valid, datas, check(datas), strict=True):
            if not ok:
                left_out.append((source.paths[i], "DALI's decoder rejects it (damaged data)"))
                continue
            key = f"{len(kept):08d}"
            ext = image_format(data)
            assert ext is not None  # it passed looks_valid: a known format
            members = [
                (ext, data),
                ("idx", np.int64(len(kept)).astype("<i8").tobytes()),
                ("src", source.paths[i].encode("utf-8")),
            ]
            if not source.multi_label:
                members.append(("cls", str(int(source.targets[i])).encode("ascii")))
            writer.add(key, members)
            kept.append(i)
        bar.update(len(chunk))
        bar.set_postfix(left_out=len(left_out), refresh=False)
    bar.close()
    pool.shutdown()
    writer.close()
    if not kept:
        raise ValueError(
            f"every image of {src} failed its check ({len(left_out)} left out, e.g. "
            f"{left_out[0][0]!r}: {left_out[0][1]}); nothing was packed"
        )
    labels = source.targets[torch.tensor(kept)].numpy()
    np.save(out / LABELS, labels, allow_pickle=False)
    write_manifest(
        out,
        shards=writer.shards,
        classes=source.classes,
        multi_label=source.multi_label,
        left_out=[{"path": p, "reason": r} for p, r in left_out],
        extra={"source": str(src.resolve()), "seed": seed, "shuffled": shuffle},
    )
    return PackReport(out, len(kept), len(writer.shards), tuple(left_out), time.perf_counter() - t0)
