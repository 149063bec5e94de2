"""Data sources of the Loader: an ImageFolder directory, a directory + CSV of multi-hot labels,
or in-memory uint8 arrays. A source lists samples and reads one sample's bytes; it never
decodes (DALI does), but it checks cheaply that a file looks like a complete image
(:func:`looks_valid`), so corrupt files are skipped before they reach the decoder.

Formats (decided by experiment with the Loader's CPU decoder, nvidia-dali 2.4
``fn.decoders.image`` / ``decoders.image_slice`` / ``peek_image_shape``; see
``tests/test_sources.py``):

* loaded: JPEG (``.jpg``, ``.jpeg``), PNG, WebP, BMP and TIFF (``.tif``, ``.tiff``); suffixes
  match case-insensitively. DALI decodes all of them on the CPU (WebP, BMP and TIFF exactly
  as PIL does), and :func:`looks_valid` has a cheap completeness check for each.
* reported, not loaded: GIF (DALI cannot decode it; convert it to PNG). A scan that meets
  GIFs lists them in ``ignored`` and warns (``RuntimeWarning``).
* reported, not loaded: every other file (``.txt``, ``.json``, ``Thumbs.db``, but also formats
  DALI could decode and that have no completeness check here, such as JPEG 2000 and PNM).
  They are listed in ``ignored``, without a warning.

Nothing under the data root is dropped silently: each file or folder a
:class:`FolderSource` does not load is listed in its ``ignored`` field as an :class:`Ignored`
(path and :class:`IgnoreReason`); ``len(source.ignored)`` is the count.

The folder walk follows torchvision's ``ImageFolder``: classes are the sorted top-level
folders; the images of a class are found recursively (``os.walk``, following symlinks),
in torchvision's ``make_dataset`` order (folders sorted by path, files by name), and are
labelled by the top-level folder. Deviations (our choice): hidden files and folders (name
starting with ``.``: ``.ipynb_checkpoints``, ``.git``, ``.DS_Store``) are skipped and listed,
not walked (torchvision's ``find_classes`` uses ``os.scandir`` and keeps hidden folders as
classes); a folder reached a second time through a symlink (a cycle) is not walked again.

The label CSV is read as UTF-8 with an optional byte-order mark (``utf-8-sig``). Its paths
must be relative and stay inside the data folder (checked lexically with
``os.path.normpath``; a symlink inside the data folder is followed). Errors name the CSV and
the row as its line number in the file.
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

# the format checks live in their own module (the shard format reads them too); re-exported
from dali_aug._image_format import IMAGE_FORMATS, image_format, looks_valid

if TYPE_CHECKING:
    from dali_aug.shards._format import ShardSource

__all__ = [
    "LOADED_SUFFIXES",
    "ArraySource",
    "CsvSource",
    "FolderSource",
    "IgnoreReason",
    "Ignored",
    "IMAGE_FORMATS",
    "Source",
    "image_format",
    "looks_valid",
    "open_source",
]

#: Suffixes (lower case) of the files a folder scan loads.
LOADED_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
#: Suffixes of image files that DALI's decoder cannot decode (reported with a warning).
_NOT_DECODED_SUFFIXES = (".gif",)


class IgnoreReason(enum.Enum):
    """Why a folder scan did not load a file or folder."""

    HIDDEN = "hidden (name starts with '.'): hidden files and folders are skipped"
    NOT_IN_CLASS = "not inside a class folder (root/<class>/...)"
    NOT_DECODED = "a GIF, which DALI's decoder cannot decode: convert it to PNG to load it"
    SUFFIX = "suffix is not one of " + "/".join(LOADED_SUFFIXES)
    WALKED = "a folder already walked (a symlink to it): not walked twice"


@dataclasses.dataclass(frozen=True)
class Ignored:
    """A file or folder under the data root that a scan did not load: its path relative to
    the root, and why."""

    path: str
    reason: IgnoreReason


def _file_reason(name: str) -> IgnoreReason | None:
    """Why a file in a class folder is not loaded (None: it is loaded)."""
    if name.startswith("."):
        return IgnoreReason.HIDDEN
    suffix = os.path.splitext(name)[1].lower()
    if suffix in LOADED_SUFFIXES:
        return None
    return IgnoreReason.NOT_DECODED if suffix in _NOT_DECODED_SUFFIXES else IgnoreReason.SUFFIX


def _walk_class(root: Path, name: str, seen: set[str], ignored: list[Ignored]) -> list[str]:
    """The loaded files below ``root/name`` (paths relative to ``root``) in torchvision's
    ``make_dataset`` order; what is left out is appended to ``ignored``, and the real paths
    of the folders walked to ``seen``."""
    listing: list[tuple[str, list[str], list[str]]] = []
    left: list[Ignored] = []
    for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
        rel = os.path.relpath(dirpath, root)
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            left.append(Ignored(rel, IgnoreReason.WALKED))
            continue
        seen.add(real)
        hidden = [d for d in dirnames if d.startswith(".")]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        listing.append((rel, hidden, filenames))
    files: list[str] = []
    for rel, hidden, filenames in sorted(listing, key=lambda entry: entry[0]):
        left += [Ignored(os.path.join(rel, d), IgnoreReason.HIDDEN) for d in sorted(hidden)]
        for f in sorted(filenames):
            reason = _file_reason(f)
            if reason is None:
                files.append(os.path.join(rel, f))
            else:
                left.append(Ignored(os.path.join(rel, f), reason))
    ignored += sorted(left, key=lambda i: i.path)
    return files


@dataclasses.dataclass(frozen=True)
class FolderSource:
    """An ImageFolder: ``root/<class>/.../<image>``, classes sorted by name (see the module
    docstring for the formats, the walk and what is ignored).

    Attributes:
        root: the data folder.
        paths: the images, relative to ``root``.
        targets: labels, int64 [N] (float32 [N, C] multi-hot for :class:`CsvSource`).
        classes: class names, in label order.
        multi_label: whether ``targets`` is multi-hot.
        ignored: the files and folders under ``root`` that were not loaded, with the reason.
    """

    root: Path
    paths: tuple[str, ...]
    targets: torch.Tensor  # int64 [N]
    classes: tuple[str, ...]
    multi_label: bool = False
    ignored: tuple[Ignored, ...] = ()

    @classmethod
    def scan(cls, root: str | Path) -> FolderSource:
        """Walks ``root`` (see the module docstring).

        Raises:
            ValueError: if ``root`` is missing, has no class folder or no loadable image.
        """
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"data folder {str(root)!r} does not exist; pass an existing folder")
        ignored: list[Ignored] = []
        classes: list[str] = []
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if entry.name.startswith("."):
                ignored.append(Ignored(entry.name, IgnoreReason.HIDDEN))
            elif entry.is_dir():
                classes.append(entry.name)
            else:
                ignored.append(Ignored(entry.name, IgnoreReason.NOT_IN_CLASS))
        if not classes:
            hidden = [i.path for i in ignored if i.reason is IgnoreReason.HIDDEN]
            raise ValueError(
                f"data folder {str(root)!r} has no class subfolders; expected the ImageFolder "
                "layout root/<class>/<image>.jpg (or give a CSV of labels)"
                + (f"; hidden folders such as {hidden[0]!r} are skipped" if hidden else "")
            )
        paths: list[str] = []
        counts: list[int] = []
        seen: set[str] = set()
        for name in classes:
            files = _walk_class(root, name, seen, ignored)
            paths += files
            counts.append(len(files))
        if not paths:
            shown = ", ".join(f"{i.path!r} ({i.reason.value})" for i in ignored[:3])
            raise ValueError(
                f"data folder {str(root)!r} has class folders but no .jpg/.jpeg/.png files "
                f"(nor .webp/.bmp/.tif/.tiff); {len(ignored)} file(s) or folder(s) ignored"
                + (f", e.g. {shown}" if shown else "")
                + "; put the images in root/<class>/"
            )
        _warn_not_decoded(root, ignored)
        targets = torch.repeat_interleave(torch.arange(len(classes)), torch.tensor(counts))
        return cls(root, tuple(paths), targets, tuple(classes), ignored=tuple(ignored))

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> bytes:
        return (self.root / self.paths[i]).read_bytes()

    def name(self, i: int) -> str:
        return str(self.root / self.paths[i])


def _warn_not_decoded(root: Path, ignored: list[Ignored]) -> None:
    gifs = [i.path for i in ignored if i.reason is IgnoreReason.NOT_DECODED]
    if gifs:
        warnings.warn(
            f"data folder {str(root)!r}: {len(gifs)} GIF file(s) ignored (DALI's decoder cannot "
            f"decode GIF; convert them to PNG): {', '.join(gifs[:5])}"
            f"{' ...' if len(gifs) > 5 else ''} (see source.ignored)",
            RuntimeWarning,
            stacklevel=3,
        )


def _outside(path: str) -> bool:
    """True if the CSV path is absolute or leads out of the data folder (lexically)."""
    norm = os.path.normpath(path)
    return os.path.isabs(path) or norm == os.pardir or norm.startswith(os.pardir + os.sep)


@dataclasses.dataclass(frozen=True)
class CsvSource(FolderSource):
    """A folder plus a CSV with a header ``path,labels``: relative paths and space-separated
    label names (multi-hot float32 targets [N, C], label order of first appearance unless
    ``classes.txt`` sits beside the CSV). An empty labels field is a sample with no label."""

    @classmethod
    def load(cls, root: str | Path, csv_path: str | Path | None = None) -> CsvSource:
        """Reads the CSV (``root/labels.csv`` by default).

        Raises:
            ValueError: for a missing or empty CSV, a wrong header, a row with a missing,
                extra or empty field, a path outside ``root`` or an unknown label (naming
                the row by its line number).
        """
        root = Path(root)
        csv_file = Path(csv_path) if csv_path is not None else root / "labels.csv"
        if not csv_file.is_file():
            raise ValueError(f"label CSV {str(csv_file)!r} does not exist")
        paths: list[str] = []
        labels: list[list[str]] = []
        lines: list[int] = []
        with csv_file.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames
            if fields is not None and not {"path", "labels"} <= set(fields):
                raise ValueError(f"label CSV {str(csv_file)!r} needs the header 'path,labels'")
            for row in reader:
                line = reader.line_num
                path, labs = row["path"], row["labels"]
                where = f"{csv_file}: row {line}"
                if None in row:
                    raise ValueError(
                        f"{where} has more fields than the header; quote a path that "
                        'contains a comma ("a,b.jpg") and separate labels with spaces'
                    )
                if path is None or labs is None:
                    raise ValueError(
                        f"{where} has no {'path' if path is None else 'labels'!r} field; give "
                        "every row all the header's fields (an empty label list is 'path,')"
                    )
                if not path.strip():
                    raise ValueError(f"{where} has an empty path; give the image path or drop it")
                if _outside(path):
                    raise ValueError(
                        f"{where} has path {path!r} outside the data folder {str(root)!r}; "
                        "paths must be relative to the data folder and stay inside it"
                    )
                paths.append(path)
                labels.append(labs.split())
                lines.append(line)
        if not paths:
            raise ValueError(f"label CSV {str(csv_file)!r} has no rows")
        names_file = csv_file.parent / "classes.txt"
        if names_file.is_file():
            text = names_file.read_text(encoding="utf-8-sig")
            classes = tuple(n.strip() for n in text.splitlines() if n.strip())
        else:
            classes = tuple(dict.fromkeys(lab for labs in labels for lab in labs))
        col = {c: k for k, c in enumerate(classes)}
        hot_rows: list[int] = []
        hot_cols: list[int] = []
        for i, labs in enumerate(labels):
            for lab in labs:
                if lab not in col:
                    raise ValueError(
                        f"{csv_file}: row {lines[i]} has label {lab!r} not in classes "
                        f"({names_file.name}); add it there or fix the row"
                    )
                hot_rows.append(i)
                hot_cols.append(col[lab])
        targets = torch.zeros((len(paths), len(classes)))
        targets[hot_rows, hot_cols] = 1.0
        return cls(root, tuple(paths), targets, classes, multi_label=True)


def _labels_array(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu()
        return (labels.float() if labels.dtype == torch.bfloat16 else labels).numpy()
    return np.asarray(labels)


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """In-memory uint8 images [N, H, W, 3] and labels ([N] int64 or [N, C] multi-hot).

    A non-contiguous ``images`` (a strided, transposed or flipped view, which DALI refuses)
    is copied to a contiguous array at construction; a contiguous one is kept as is.
    """

    images: np.ndarray
    targets: torch.Tensor
    classes: tuple[str, ...]
    multi_label: bool = False

    def __post_init__(self) -> None:
        x, t = self.images, self.targets
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
            raise TypeError("images must be a uint8 numpy array [N, H, W, 3]")
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"images must be [N, H, W, 3], got shape {x.shape}")
        if len(x) == 0:
            raise ValueError("images is empty; give at least one image")
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"targets must be a torch.Tensor, got {type(t).__name__}; use "
                "ArraySource.from_arrays to convert labels"
            )
        if self.multi_label and (t.dim() != 2 or t.dtype != torch.float32):
            raise ValueError(
                f"multi-label targets must be float32 [N, C], got {t.dtype} {tuple(t.shape)}"
            )
        if not self.multi_label and (t.dim() != 1 or t.dtype != torch.int64):
            raise ValueError(
                f"single-label targets must be int64 [N], got {t.dtype} {tuple(t.shape)}; "
                "pass multi_label=True for [N, C] multi-hot targets"
            )
        if len(t) != len(x):
            raise ValueError(f"{len(x)} images but {len(t)} labels")
        n_cls = int(t.shape[1]) if self.multi_label else int(t.max()) + 1
        if n_cls > len(self.classes):
            raise ValueError(
                f"targets need {n_cls} classes but {len(self.classes)} names were given; "
                "give one name per class"
            )
        if not x.flags.c_contiguous:
            object.__setattr__(self, "images", np.ascontiguousarray(x))

    @classmethod
    def from_arrays(cls, images: np.ndarray, labels: np.ndarray | torch.Tensor) -> ArraySource:
        """A source from uint8 images [N, H, W, 3] and labels: integer class indices [N]
        (classes ``"0"`` .. ``str(max)``) or multi-hot [N, C] (any numeric dtype).

        Raises:
            TypeError: for images that are not uint8 numpy, non-integer [N] labels or
                non-numeric [N, C] labels.
            ValueError: for wrong shapes, negative class indices or a length mismatch.
        """
        lab = _labels_array(labels)
        if lab.ndim == 1:
            if lab.dtype.kind not in "iu":
                raise TypeError(
                    f"labels [N] must be integer class indices, got dtype {lab.dtype}; cast "
                    "them (labels.astype(np.int64)) or pass [N, C] multi-hot labels"
                )
            if len(lab) and lab.min() < 0:
                raise ValueError(
                    f"labels has negative class index {lab.min()}; class indices start at 0"
                )
            t = torch.from_numpy(lab.astype(np.int64))
        elif lab.ndim == 2:
            if lab.dtype.kind not in "biuf":
                raise TypeError(
                    f"multi-hot labels must be numbers, got dtype {lab.dtype}; "
                    "pass 0/1 (or soft) values [N, C]"
                )
            t = torch.from_numpy(lab.astype(np.float32))
        else:
            raise ValueError(
                f"labels must be [N] class indices or [N, C] multi-hot, got shape {lab.shape}"
            )
        multi = t.dim() == 2
        n_cls = int(t.shape[1]) if multi else int(t.max()) + 1 if len(t) else 0
        return cls(images, t, tuple(str(k) for k in range(n_cls)), multi_label=multi)

    def __len__(self) -> int:
        return len(self.images)

    def read(self, i: int) -> np.ndarray:
        return self.images[i]

    def name(self, i: int) -> str:
        return f"<array index {i}>"


Source = FolderSource | ArraySource


def open_source(data: str | Path | Source | ShardSource, *, split: str | None = None) -> Any:
    """A source from a folder path (ImageFolder, ImageNet layout ``DIR/train`` + ``DIR/val``
    with ``split``, a folder holding ``labels.csv``, or packed shards: a folder written by
    ``dali-aug pack``, a :class:`~dali_aug.shards.ShardSource`) or an existing source."""
    from dali_aug.shards._format import ShardSource, is_shard_folder

    if isinstance(data, (FolderSource, ArraySource, ShardSource)):
        return data
    root = Path(data)
    if split is not None and (root / split).is_dir():
        root = root / split
    if is_shard_folder(root):
        return ShardSource.load(root)
    if (root / "labels.csv").is_file():
        return CsvSource.load(root)
    return FolderSource.scan(root)
