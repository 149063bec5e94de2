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
(path and :class:`IgnoreReason`); ``len(source.ignored)`` is the count. A folder that cannot
be listed (permission denied) is listed as ``UNREADABLE`` and the scan warns; an unreadable
data root is a ``ValueError``. At read time (:meth:`FolderSource.read`), a file whose header
declares more pixels than Pillow's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb) raises
``OSError``, so the Loader skips it and lists it in ``loader.skipped``.

A validation folder is indexed by the training class names: ``classes=`` of
:meth:`FolderSource.scan`, :meth:`CsvSource.load` and :func:`open_source`.

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

import codecs
import csv
import dataclasses
import enum
import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

# the format checks live in their own module (the shard format reads them too); re-exported
from dali_aug._image_format import IMAGE_FORMATS, image_format, looks_valid, too_many_pixels

if TYPE_CHECKING:
    from dali_aug.shards._format import ShardSource

__all__ = [
    "LOADED_SUFFIXES",
    "VIDEO_SUFFIXES",
    "ArraySource",
    "CsvSource",
    "FolderSource",
    "IgnoreReason",
    "Ignored",
    "IMAGE_FORMATS",
    "RAW_SOURCES",
    "Source",
    "SyntheticSource",
    "image_format",
    "looks_valid",
    "open_source",
]

#: Suffixes (lower case) of the files a folder scan loads.
LOADED_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
#: Suffixes (lower case) of the video files a clip folder scan loads (dali_aug.video).
VIDEO_SUFFIXES = (".webm", ".mkv", ".avi", ".mp4", ".mov")
#: Suffixes of image files that DALI's decoder cannot decode (reported with a warning).
_NOT_DECODED_SUFFIXES = (".gif",)


class IgnoreReason(enum.Enum):
    """Why a folder scan did not load a file or folder."""

    HIDDEN = "hidden (name starts with '.'): hidden files and folders are skipped"
    NOT_IN_CLASS = "not inside a class folder (root/<class>/...)"
    NOT_DECODED = "a GIF, which DALI's decoder cannot decode: convert it to PNG to load it"
    SUFFIX = "suffix is not one of " + "/".join(LOADED_SUFFIXES)
    NOT_VIDEO = "suffix is not one of " + "/".join(VIDEO_SUFFIXES) + " (a folder of videos)"
    WALKED = "a folder already walked (a symlink to it): not walked twice"
    UNREADABLE = "a folder that cannot be listed (permission denied?): fix its permissions"


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

    def unreadable(err: OSError) -> None:
        where = os.path.relpath(err.filename, root) if err.filename is not None else name
        left.append(Ignored(where, IgnoreReason.UNREADABLE))

    for dirpath, dirnames, filenames in os.walk(root / name, onerror=unreadable, followlinks=True):
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
    def scan(cls, root: str | Path, *, classes: tuple[str, ...] | None = None) -> FolderSource:
        """Walks ``root`` (see the module docstring).

        Args:
            classes: the class names to index by (a validation folder gets the training
                source's ``classes``): each class folder is labelled by its name's position
                in ``classes``, a class without a folder is allowed, and a folder whose
                name is not in ``classes`` is refused. Default: the sorted class folders.

        Raises:
            ValueError: if ``root`` is missing, has no class folder or no loadable image,
                or has class folders not in ``classes``.
        """
        root = Path(root)
        folders, ignored = list_top_folders(root, "ImageFolder layout root/<class>/<image>.jpg")
        names = tuple(folders) if classes is None else _known_classes(root, folders, classes)
        index = {c: k for k, c in enumerate(names)}
        paths: list[str] = []
        labels: list[int] = []
        seen: set[str] = set()
        for name in folders:
            files = _walk_class(root, name, seen, ignored)
            paths += files
            labels += [index[name]] * len(files)
        if not paths:
            shown = ", ".join(f"{i.path!r} ({i.reason.value})" for i in ignored[:3])
            raise ValueError(
                f"data folder {str(root)!r} has class folders but no .jpg/.jpeg/.png files "
                f"(nor .webp/.bmp/.tif/.tiff); {len(ignored)} file(s) or folder(s) ignored"
                + (f", e.g. {shown}" if shown else "")
                + "; put the images in root/<class>/"
            )
        _warn_ignored(root, ignored)
        targets = torch.tensor(labels, dtype=torch.int64)
        return cls(root, tuple(paths), targets, names, ignored=tuple(ignored))

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> bytes:
        """The bytes of sample ``i``.

        Raises:
            OSError: the file cannot be read, or its header declares more pixels than
                Pillow's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb): the Loader skips
                and lists it in ``loader.skipped`` like an unreadable file.
        """
        return read_image_file(self.root / self.paths[i])

    def name(self, i: int) -> str:
        return str(self.root / self.paths[i])


def read_image_file(path: Path) -> bytes:
    """The bytes of one image file.

    Raises:
        OSError: the file cannot be read, or its header declares more pixels than Pillow's
            ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb).
    """
    data = path.read_bytes()
    why = too_many_pixels(data)
    if why is not None:
        raise OSError(f"{str(path)!r}: {why}")
    return data


def list_top_folders(root: Path, layout: str) -> tuple[list[str], list[Ignored]]:
    """The top-level folders of a data root (sorted by name), and the hidden entries and
    loose files it ignores.

    Args:
        root: the data folder.
        layout: the layout the error messages name (``ImageFolder layout
            root/<class>/<image>.jpg``).

    Raises:
        ValueError: ``root`` is missing, cannot be listed or has no (non-hidden) subfolder.
    """
    if not root.is_dir():
        raise ValueError(f"data folder {str(root)!r} does not exist; pass an existing folder")
    ignored: list[Ignored] = []
    folders: list[str] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as err:
        raise ValueError(
            f"data folder {str(root)!r} cannot be read ({err.strerror or err}); fix its "
            "permissions or pass another folder"
        ) from None
    for entry in entries:
        if entry.name.startswith("."):
            ignored.append(Ignored(entry.name, IgnoreReason.HIDDEN))
        elif entry.is_dir():
            folders.append(entry.name)
        else:
            ignored.append(Ignored(entry.name, IgnoreReason.NOT_IN_CLASS))
    if not folders:
        hidden = [i.path for i in ignored if i.reason is IgnoreReason.HIDDEN]
        raise ValueError(
            f"data folder {str(root)!r} has no class subfolders; expected the {layout} "
            "(or give a CSV of labels)"
            + (f"; hidden folders such as {hidden[0]!r} are skipped" if hidden else "")
        )
    return folders, ignored


def _known_classes(
    root: Path | str, found: Any, known: tuple[str, ...], what: str = ""
) -> tuple[str, ...]:
    """``known`` as a tuple, after checking that every name in ``found`` is in it."""
    names = tuple(known)
    unknown = sorted(set(found) - set(names))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise ValueError(
            f"{str(root)!r}: {len(unknown)} {what or 'class folder(s)'} not among the "
            f"{len(names)} training classes: {shown}; validation data is mapped onto the "
            "training classes by name, so rename or remove them (or add them to the training data)"
        )
    return names


#: the ignored entries a folder scan warns about: reason -> what happened and the fix
_WARNED: dict[IgnoreReason, str] = {
    IgnoreReason.NOT_DECODED: (
        "GIF file(s) ignored (DALI's decoder cannot decode GIF; convert them to PNG)"
    ),
    IgnoreReason.UNREADABLE: (
        "folder(s) could not be read and were not loaded (fix their permissions)"
    ),
}


def _warn_ignored(root: Path, ignored: list[Ignored]) -> None:
    """One warning per kind of ignored entry the user should act on (see ``_WARNED``)."""
    for reason, what in _WARNED.items():
        paths = [i.path for i in ignored if i.reason is reason]
        if paths:
            warnings.warn(
                f"data folder {str(root)!r}: {len(paths)} {what}: {', '.join(paths[:5])}"
                f"{' ...' if len(paths) > 5 else ''} (see source.ignored)",
                RuntimeWarning,
                stacklevel=3,
            )


def _read_utf8(csv_file: Path) -> str:
    """The text of a label CSV, read as UTF-8 (an optional byte-order mark is dropped).

    Raises:
        ValueError: the file is not UTF-8 (naming the line and byte offset), or cannot be read.
    """
    try:
        data = csv_file.read_bytes()
    except OSError as err:
        raise ValueError(
            f"label CSV {str(csv_file)!r} cannot be read ({err.strerror or err}); fix its "
            "permissions"
        ) from None
    bom = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if bom or (len(data) >= 2 and (data[0] == 0) != (data[1] == 0)):  # UTF-16 with no BOM
        raise ValueError(
            f"label CSV {str(csv_file)!r} is UTF-16 ({'byte-order mark' if bom else 'NUL'} "
            "at byte 0 or 1), not UTF-8; save it as UTF-8"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)
        line = data[:start].count(b"\n") + 1
        raise ValueError(
            f"label CSV {str(csv_file)!r} is not UTF-8: row {line} (byte {start}: "
            f"{data[start : start + 1]!r}); save it as UTF-8 (e.g. from Latin-1 or UTF-16)"
        ) from None


def _outside(path: str) -> bool:
    """True if the CSV path is absolute or leads out of the data folder (lexically)."""
    norm = os.path.normpath(path)
    return os.path.isabs(path) or norm == os.pardir or norm.startswith(os.pardir + os.sep)


@dataclasses.dataclass(frozen=True)
class LabelRows:
    """The rows of a label CSV (``path,labels``): paths, label names and line numbers."""

    csv_file: Path
    paths: tuple[str, ...]
    labels: tuple[tuple[str, ...], ...]
    lines: tuple[int, ...]

    def multi_hot(
        self, classes: tuple[str, ...], where: str, *, known: bool = False
    ) -> tuple[torch.Tensor, tuple[str, ...]]:
        """Multi-hot float32 targets [N, C] over ``classes`` and the classes.

        Args:
            classes: the label names, in column order.
            where: where the names come from, for the error message (``(classes.txt)``).
            known: ``classes`` was given by the caller (a validation source): a label
                outside it is refused naming the training classes.

        Raises:
            ValueError: a label not in ``classes``, naming its row.
        """
        if known:
            found = dict.fromkeys(lab for labs in self.labels for lab in labs)
            classes = _known_classes(self.csv_file, found, classes, "label(s)")
        col = {c: k for k, c in enumerate(classes)}
        hot_rows: list[int] = []
        hot_cols: list[int] = []
        for i, labs in enumerate(self.labels):
            for lab in labs:
                if lab not in col:
                    raise ValueError(
                        f"{self.csv_file}: row {self.lines[i]} has label {lab!r} not in "
                        f"classes {where}; add it there or fix the row"
                    )
                hot_rows.append(i)
                hot_cols.append(col[lab])
        targets = torch.zeros((len(self.paths), len(classes)))
        targets[hot_rows, hot_cols] = 1.0
        return targets, classes


def read_label_csv(root: Path, csv_file: Path, *, semicolons: bool = False) -> LabelRows:
    """Reads a label CSV with the header ``path,labels`` (see the module docstring).

    Args:
        root: the data folder the paths are relative to.
        csv_file: the CSV.
        semicolons: labels may also be separated by ``;`` (else by whitespace only).

    Raises:
        ValueError: for a missing or empty CSV, a wrong header, a row with a missing, extra
            or empty field or a path outside ``root`` (naming the row by its line number).
    """
    if not csv_file.is_file():
        raise ValueError(f"label CSV {str(csv_file)!r} does not exist")
    paths: list[str] = []
    labels: list[tuple[str, ...]] = []
    lines: list[int] = []
    with io.StringIO(_read_utf8(csv_file), newline="") as fh:
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
            if "\0" in path:
                raise ValueError(
                    f"{where} has a NUL byte in path {path!r}; fix the path (a file name "
                    "cannot contain NUL)"
                )
            if _outside(path):
                raise ValueError(
                    f"{where} has path {path!r} outside the data folder {str(root)!r}; "
                    "paths must be relative to the data folder and stay inside it"
                )
            paths.append(path)
            labels.append(tuple((labs.replace(";", " ") if semicolons else labs).split()))
            lines.append(line)
    if not paths:
        raise ValueError(f"label CSV {str(csv_file)!r} has no rows")
    return LabelRows(csv_file, tuple(paths), tuple(labels), tuple(lines))


@dataclasses.dataclass(frozen=True)
class CsvSource(FolderSource):
    """A folder plus a CSV with a header ``path,labels``: relative paths and space-separated
    label names (multi-hot float32 targets [N, C], label order of first appearance unless
    ``classes.txt`` sits beside the CSV). An empty labels field is a sample with no label."""

    @classmethod
    def load(
        cls,
        root: str | Path,
        csv_path: str | Path | None = None,
        *,
        classes: tuple[str, ...] | None = None,
    ) -> CsvSource:
        """Reads the CSV (``root/labels.csv`` by default).

        Args:
            classes: the label names to index by, in column order (a validation CSV gets
                the training source's ``classes``); they replace ``classes.txt`` and the
                order of first appearance, and a label not among them is refused.

        Raises:
            ValueError: for a missing or empty CSV, a wrong header, a row with a missing,
                extra or empty field, a path outside ``root`` or an unknown label (naming
                the row by its line number).
        """
        root = Path(root)
        csv_file = Path(csv_path) if csv_path is not None else root / "labels.csv"
        rows = read_label_csv(root, csv_file)
        names_file = csv_file.parent / "classes.txt"
        known = classes is not None
        if classes is None and names_file.is_file():
            text = names_file.read_text(encoding="utf-8-sig")
            classes = tuple(n.strip() for n in text.splitlines() if n.strip())
        elif classes is None:
            classes = tuple(dict.fromkeys(lab for labs in rows.labels for lab in labs))
        targets, classes = rows.multi_hot(classes, f"({names_file.name})", known=known)
        return cls(root, rows.paths, targets, classes, multi_label=True)


def _labels_array(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu()
        return (labels.float() if labels.dtype == torch.bfloat16 else labels).numpy()
    return np.asarray(labels)


def check_pixels(x: Any, what: str, layout: str, item: str) -> np.ndarray:
    """Checks an in-memory source's pixels: a non-empty uint8 numpy array of shape ``layout``
    (``[N, H, W, 3]``, ``[N, T, H, W, 3]``) holding ``what`` (images, clips), one ``item``
    each; returns it C-contiguous (a strided, transposed or flipped view, which DALI
    refuses, is copied; a contiguous array is returned as is).

    Raises:
        TypeError: not a uint8 numpy array.
        ValueError: another number of dimensions, not 3 channels, or empty.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
        raise TypeError(f"{what} must be a uint8 numpy array {layout}")
    if x.ndim != layout.count(",") + 1 or x.shape[-1] != 3:
        raise ValueError(f"{what} must be {layout}, got shape {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{what} is empty; give at least one {item}")
    return np.ascontiguousarray(x)


def check_targets(
    t: Any, n: int, multi_label: bool, classes: tuple[str, ...], *, what: str, cls: str
) -> None:
    """Checks the targets of an in-memory source of ``n`` ``what`` (images, clips).

    Raises:
        TypeError: ``t`` is not a tensor (naming ``cls.from_arrays``, which converts labels).
        ValueError: a wrong dtype or shape, a length other than ``n``, a negative class
            index, a non-finite multi-hot value or more classes than names.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"targets must be a torch.Tensor, got {type(t).__name__}; use "
            f"{cls}.from_arrays to convert labels"
        )
    if multi_label and (t.dim() != 2 or t.dtype != torch.float32):
        raise ValueError(
            f"multi-label targets must be float32 [N, C], got {t.dtype} {tuple(t.shape)}"
        )
    if not multi_label and (t.dim() != 1 or t.dtype != torch.int64):
        raise ValueError(
            f"single-label targets must be int64 [N], got {t.dtype} {tuple(t.shape)}; "
            "pass multi_label=True for [N, C] multi-hot targets"
        )
    if len(t) != n:
        raise ValueError(f"{n} {what} but {len(t)} labels")
    if not multi_label and len(t) and int(t.min()) < 0:
        row = int(torch.argmax((t < 0).to(torch.uint8)))
        raise ValueError(
            f"targets has negative class index {int(t[row])} at row {row}; class indices start at 0"
        )
    if multi_label and not bool(torch.isfinite(t).all()):
        row = int(torch.argmax((~torch.isfinite(t).all(dim=1)).to(torch.uint8)))
        raise ValueError(
            f"multi-hot targets row {row} has a NaN or infinite value; give finite values"
        )
    n_cls = int(t.shape[1]) if multi_label else int(t.max()) + 1
    if n_cls > len(classes):
        raise ValueError(
            f"targets need {n_cls} classes but {len(classes)} names were given; "
            "give one name per class"
        )


def targets_from_labels(
    labels: np.ndarray | torch.Tensor, classes: int | tuple[str, ...] | list[str] | None
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Targets (int64 [N] or float32 [N, C]) and class names from labels and ``classes``, as
    :meth:`ArraySource.from_arrays` documents them (its errors too)."""
    lab = _labels_array(labels)
    names: tuple[str, ...] | None = None
    if classes is not None:
        if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
            if classes < 1:
                raise ValueError(f"classes={classes} must be >= 1 (the number of classes)")
            names = tuple(str(k) for k in range(int(classes)))
        elif isinstance(classes, (tuple, list)) and all(isinstance(c, str) for c in classes):
            names = tuple(classes)
        else:
            raise TypeError(
                f"classes must be the number of classes or a list of names, got {classes!r}"
            )
    if lab.ndim == 1:
        if lab.dtype.kind not in "iu":
            raise TypeError(
                f"labels [N] must be integer class indices, got dtype {lab.dtype}; cast "
                "them (labels.astype(np.int64)) or pass [N, C] multi-hot labels"
            )
        if len(lab) and lab.min() < 0:
            row = int(np.argmax(lab < 0))
            raise ValueError(
                f"labels has negative class index {lab[row]} at row {row}; class indices start at 0"
            )
        top = int(lab.max()) if len(lab) else -1
        if names is not None and top >= len(names):
            row = int(np.argmax(lab >= len(names)))
            raise ValueError(
                f"labels has class index {lab[row]} at row {row} but classes gives "
                f"{len(names)} classes; class indices must be 0 <= y < {len(names)}"
            )
        if names is None and top >= max(len(lab), 1):
            row = int(np.argmax(lab == top))
            raise ValueError(
                f"labels has class index {top} at row {row}, more classes than the "
                f"{len(lab)} samples; fix the label or pass classes= (the class names or "
                "their number) to allow it"
            )
        t = torch.from_numpy(lab.astype(np.int64))
    elif lab.ndim == 2:
        if lab.dtype.kind not in "biuf":
            raise TypeError(
                f"multi-hot labels must be numbers, got dtype {lab.dtype}; "
                "pass 0/1 (or soft) values [N, C]"
            )
        if lab.dtype.kind == "f" and not np.isfinite(lab).all():
            row = int(np.argmax(~np.isfinite(lab).all(axis=1)))
            raise ValueError(
                f"multi-hot labels row {row} has a NaN or infinite value "
                f"({lab[row][~np.isfinite(lab[row])][0]}); give finite 0/1 (or soft) values"
            )
        if names is not None and lab.shape[1] != len(names):
            raise ValueError(
                f"multi-hot labels have {lab.shape[1]} columns but classes gives "
                f"{len(names)} classes; give one column per class"
            )
        t = torch.from_numpy(lab.astype(np.float32))
    else:
        raise ValueError(
            f"labels must be [N] class indices or [N, C] multi-hot, got shape {lab.shape}"
        )
    multi = t.dim() == 2
    if names is None:
        n_cls = int(t.shape[1]) if multi else int(t.max()) + 1 if len(t) else 0
        names = tuple(str(k) for k in range(n_cls))
    return t, names


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
        x = check_pixels(self.images, "images", "[N, H, W, 3]", "image")
        check_targets(
            self.targets, len(x), self.multi_label, self.classes, what="images", cls="ArraySource"
        )
        object.__setattr__(self, "images", x)

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray,
        labels: np.ndarray | torch.Tensor,
        *,
        classes: int | tuple[str, ...] | list[str] | None = None,
    ) -> ArraySource:
        """A source from uint8 images [N, H, W, 3] and labels: integer class indices [N]
        (0 <= y < number of classes) or multi-hot [N, C] (any numeric dtype, finite).

        Args:
            classes: the class names (or their number ``K``, named ``"0"`` .. ``str(K - 1)``).
                Without it the classes are ``"0"`` .. ``str(max)`` for [N] labels (which
                may then not exceed the number of samples) and ``"0"`` .. ``str(C - 1)``
                for [N, C] labels.

        Raises:
            TypeError: for images that are not uint8 numpy, non-integer [N] labels or
                non-numeric [N, C] labels.
            ValueError: for wrong shapes, a class index that is negative or not below the
                number of classes, a NaN or infinite multi-hot value or a length mismatch
                (naming the row).
        """
        t, names = targets_from_labels(labels, classes)
        return cls(images, t, names, multi_label=t.dim() == 2)

    def __len__(self) -> int:
        return len(self.images)

    def read(self, i: int) -> np.ndarray:
        return self.images[i]

    def name(self, i: int) -> str:
        return f"<array index {i}>"


@dataclasses.dataclass(frozen=True)
class SyntheticSource:
    """Random images made on demand, for smoke runs and throughput checks without data (the
    Loader's ``torchvision.datasets.FakeData``; a FakeData given to the Loader becomes one):
    sample ``i`` is uniform uint8 noise [H, W, 3] from numpy's generator seeded with
    ``(seed, i)``, the same every time it is read; the labels are drawn once, uniformly over
    ``num_classes``, from ``seed``. Nothing is held in memory but the labels.

    Attributes:
        length: the number of samples.
        image_size: (height, width) in pixels.
        num_classes: the classes, named ``"0"``, ``"1"``, ...
        seed: the pixels' and labels' seed.
    """

    length: int = 1000
    image_size: tuple[int, int] = (224, 224)
    num_classes: int = 10
    seed: int = 0
    targets: torch.Tensor = dataclasses.field(init=False, repr=False)
    classes: tuple[str, ...] = dataclasses.field(init=False, repr=False)
    multi_label: bool = dataclasses.field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"length={self.length} must be >= 1 sample")
        if len(self.image_size) != 2 or min(self.image_size) < 1:
            raise ValueError(f"image_size={self.image_size} must be (height, width) >= 1")
        if self.num_classes < 1:
            raise ValueError(f"num_classes={self.num_classes} must be >= 1")
        g = torch.Generator().manual_seed(self.seed)
        targets = torch.randint(self.num_classes, (self.length,), generator=g)
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "classes", tuple(str(k) for k in range(self.num_classes)))

    def __len__(self) -> int:
        return self.length

    def read(self, i: int) -> np.ndarray:
        h, w = self.image_size
        rng = np.random.default_rng([self.seed, i])
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    def name(self, i: int) -> str:
        return f"<synthetic sample {i}>"


Source = FolderSource | ArraySource | SyntheticSource
#: the sources whose samples are pixels (HWC uint8 arrays), not encoded files
RAW_SOURCES = (ArraySource, SyntheticSource)


def open_source(
    data: str | Path | Source | ShardSource | torch.utils.data.Dataset[Any],
    *,
    split: str | None = None,
    classes: tuple[str, ...] | None = None,
) -> Any:
    """A source from a folder path (ImageFolder, ImageNet layout ``DIR/train`` + ``DIR/val``
    with ``split``, a folder holding ``labels.csv``, or packed shards: a folder written by
    ``dali-aug pack``, a :class:`~dali_aug.shards.ShardSource`), a torch dataset that names
    its files or makes noise (torchvision's ``ImageFolder``/``DatasetFolder``, ``FakeData``:
    :func:`dali_aug._protocol.source_of_dataset`) or an existing source.

    ``classes`` (the training source's ``classes``, for a validation folder) indexes an
    ImageFolder or ``labels.csv`` by those names (see :meth:`FolderSource.scan` and
    :meth:`CsvSource.load`); a source whose classes differ from them is refused."""
    from dali_aug.shards._format import ShardSource, is_shard_folder

    if isinstance(data, (FolderSource, ArraySource, SyntheticSource, ShardSource)):
        return _same_classes(data, classes)
    if isinstance(data, torch.utils.data.Dataset):
        from dali_aug._protocol import source_of_dataset

        return _same_classes(source_of_dataset(data), classes)
    root = Path(data)
    if split is not None and (root / split).is_dir():
        root = root / split
    if is_shard_folder(root):
        return _same_classes(ShardSource.load(root), classes)
    if (root / "labels.csv").is_file():
        return CsvSource.load(root, classes=classes)
    return FolderSource.scan(root, classes=classes)


def _same_classes(source: Any, classes: tuple[str, ...] | None) -> Any:
    """``source``, after checking that its classes are ``classes`` (when given)."""
    if classes is not None and tuple(source.classes) != tuple(classes):
        _known_classes(getattr(source, "root", "source"), source.classes, classes, "class(es)")
        raise ValueError(
            f"source classes {list(source.classes)[:10]} are not the training classes "
            f"{list(classes)[:10]} in the same order; build it with classes= (the training "
            "classes) so that labels are indexed by name"
        )
    return source
