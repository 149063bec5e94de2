"""Clip sources: in-memory clips (:class:`ClipArraySource`) and folders of frame files
(:class:`FrameFolderSource`). Both implement :class:`~dali_aug.video.ClipSource`.

The frame folder layout follows the ImageFolder one a level down: ``root/<class>/<clip>/``
holds one clip's frames, sorted by file name (``000001.jpg``, ``000002.jpg``, ...); classes
are the sorted class folders. For multi-label data ``root/labels.csv`` (header
``path,labels``) names the clip folders (relative to ``root``) and their labels, separated by
spaces or ``;``; the classes are then the sorted label names. Frames are the files a
:class:`~dali_aug.sources.FolderSource` loads (JPEG, PNG, WebP, BMP, TIFF); hidden files are
skipped and listed in ``ignored``, as are files of other types.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dali_aug.sources import (
    Ignored,
    IgnoreReason,
    _file_reason,
    _known_classes,
    check_pixels,
    check_targets,
    list_top_folders,
    read_image_file,
    read_label_csv,
    targets_from_labels,
)
from dali_aug.video._protocol import ClipSource, is_clip_source

__all__ = ["ClipArraySource", "FrameFolderSource", "open_clip_source"]

_LAYOUT = "clip layout root/<class>/<clip>/000001.jpg"


@dataclasses.dataclass(frozen=True)
class ClipArraySource:
    """In-memory clips, uint8 [N, T0, H, W, 3] (``T0`` frames each), and labels ([N] int64
    or [N, C] float32 multi-hot); checked as :class:`~dali_aug.sources.ArraySource` checks
    images. A non-contiguous ``clips`` is copied to a contiguous array at construction."""

    clips: np.ndarray
    targets: torch.Tensor
    classes: tuple[str, ...]
    multi_label: bool = False
    encoded: bool = dataclasses.field(default=False, init=False)

    def __post_init__(self) -> None:
        x = check_pixels(self.clips, "clips", "[N, T, H, W, 3]", "clip")
        if x.shape[1] == 0:
            raise ValueError(f"clips have no frames (shape {x.shape}); give T >= 1 frames")
        check_targets(
            self.targets, len(x), self.multi_label, self.classes, what="clips",
            cls="ClipArraySource",
        )  # fmt: skip
        object.__setattr__(self, "clips", x)

    @classmethod
    def from_arrays(
        cls,
        clips: np.ndarray,
        labels: np.ndarray | torch.Tensor,
        *,
        classes: int | tuple[str, ...] | list[str] | None = None,
    ) -> ClipArraySource:
        """A source from uint8 clips [N, T, H, W, 3] and labels, as
        :meth:`ArraySource.from_arrays <dali_aug.sources.ArraySource.from_arrays>` (integer
        class indices [N] or multi-hot [N, C]; ``classes``: names or their number).

        Raises:
            TypeError, ValueError: as ``ArraySource.from_arrays``, for clips.
        """
        t, names = targets_from_labels(labels, classes)
        return cls(clips, t, names, multi_label=t.dim() == 2)

    def __len__(self) -> int:
        return len(self.clips)

    def name(self, i: int) -> str:
        return f"<clip array index {i}>"

    def num_frames(self, i: int) -> int:
        return int(self.clips.shape[1])

    def read_frames(self, i: int, frames: np.ndarray) -> list[np.ndarray]:
        return list(self.clips[i, frames])  # one copy [T, H, W, 3]; its rows are contiguous


@dataclasses.dataclass(frozen=True)
class FrameFolderSource:
    """Clips stored as folders of frame files (see the module docstring).

    Attributes:
        root: the data folder.
        clips: the clip folders, relative to ``root``.
        frames: each clip's frame files (names in its folder), sorted.
        targets: labels, int64 [N] (float32 [N, C] multi-hot with ``labels.csv``).
        classes: class names, in label order.
        multi_label: whether ``targets`` is multi-hot.
        ignored: the files and folders under ``root`` that were not loaded, with the reason.
    """

    root: Path
    clips: tuple[str, ...]
    frames: tuple[tuple[str, ...], ...]
    targets: torch.Tensor
    classes: tuple[str, ...]
    multi_label: bool = False
    ignored: tuple[Ignored, ...] = ()
    encoded: bool = dataclasses.field(default=True, init=False)

    @classmethod
    def scan(cls, root: str | Path, *, classes: tuple[str, ...] | None = None) -> FrameFolderSource:
        """Lists ``root``: ``root/labels.csv`` if it exists, else the class folders.

        Args:
            classes: the class (label) names to index by (a validation folder gets the
                training source's ``classes``); a folder or label not among them is refused.

        Raises:
            ValueError: naming the path and the fix: a missing or empty data folder, a class
                folder without clip folders or with loose files, a clip folder without
                frames, a CSV row naming a missing folder (and the label CSV's errors).
        """
        root = Path(root)
        ignored: list[Ignored] = []
        frames: list[tuple[str, ...]] = []
        if (root / "labels.csv").is_file():

            def check(path: str, line: int) -> None:
                if not (root / path).is_dir():
                    raise ValueError(
                        f"{root / 'labels.csv'}: row {line} names clip folder {path!r}, which "
                        f"is not a folder under {str(root)!r}; fix the row or add the folder "
                        "of its frames"
                    )
                frames.append(_frame_files(root, path, ignored))

            paths, targets, names = scan_label_csv(root, classes, check)
            return cls(
                root, paths, tuple(frames), targets, names, multi_label=True,
                ignored=tuple(ignored),
            )  # fmt: skip

        def clip_folders(name: str) -> list[str]:
            found = _clip_folders(root, name, ignored)
            frames.extend(_frame_files(root, clip, ignored) for clip in found)
            return found

        clips, targets, names = scan_class_layout(root, classes, _LAYOUT, clip_folders, ignored)
        return cls(root, clips, tuple(frames), targets, names, ignored=tuple(ignored))

    def __len__(self) -> int:
        return len(self.clips)

    def name(self, i: int) -> str:
        return str(self.root / self.clips[i])

    def num_frames(self, i: int) -> int:
        return len(self.frames[i])

    def read_frames(self, i: int, frames: np.ndarray) -> list[np.ndarray]:
        """The bytes of the frame files ``frames`` of clip ``i`` (1-D uint8 arrays).

        Raises:
            OSError: a file cannot be read, or is a decompression bomb (see
                :meth:`FolderSource.read <dali_aug.sources.FolderSource.read>`).
        """
        folder, names = self.root / self.clips[i], self.frames[i]
        return [np.frombuffer(read_image_file(folder / names[j]), np.uint8) for j in frames]


def _listing(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as err:
        raise ValueError(
            f"folder {str(folder)!r} cannot be read ({err.strerror or err}); fix its permissions"
        ) from None


def _clip_folders(root: Path, name: str, ignored: list[Ignored]) -> list[str]:
    """The clip folders of class folder ``name`` (relative to ``root``), sorted."""
    clips: list[str] = []
    for entry in _listing(root / name):
        rel = os.path.join(name, entry.name)
        if entry.name.startswith("."):
            ignored.append(Ignored(rel, IgnoreReason.HIDDEN))
        elif entry.is_dir():
            clips.append(rel)
        else:
            raise ValueError(
                f"class folder {str(root / name)!r} holds the file {entry.name!r}: frames go "
                f"in one folder per clip ({_LAYOUT}); move it into a clip folder (for "
                "images, not clips, drop clip_length)"
            )
    if not clips:
        raise ValueError(
            f"class folder {str(root / name)!r} has no clip folders; expected the {_LAYOUT} "
            "(remove the empty folder, or add its clips)"
        )
    return clips


def _frame_files(root: Path, clip: str, ignored: list[Ignored]) -> tuple[str, ...]:
    """The frame files of a clip folder, sorted by name; the other entries go to
    ``ignored``."""
    return folder_files(
        root, clip, ignored, _file_reason,
        nested=f"clip folder {str(root / clip)!r} holds the folder {{}}; a clip's frames are "
        "files directly in its folder (root/<class>/<clip>/000001.jpg)",
        empty=f"clip folder {str(root / clip)!r} has no frames (.jpg/.jpeg/.png files); put "
        "the clip's frames there (000001.jpg, 000002.jpg, ...) or remove the folder",
    )  # fmt: skip


def folder_files(
    root: Path,
    rel: str,
    ignored: list[Ignored],
    reason: Callable[[str], IgnoreReason | None],
    *,
    nested: str,
    empty: str,
) -> tuple[str, ...]:
    """The loaded files of folder ``root/rel`` (names, sorted): those ``reason`` gives None;
    hidden files and the other files go to ``ignored``.

    Raises:
        ValueError: ``nested`` (formatted with the subfolder's name) for a subfolder,
            ``empty`` if no file is loaded.
    """
    files: list[str] = []
    for entry in _listing(root / rel):
        why = IgnoreReason.HIDDEN if entry.name.startswith(".") else None
        if why is None and entry.is_dir():
            raise ValueError(nested.format(repr(entry.name)))
        why = why or reason(entry.name)
        if why is None:
            files.append(entry.name)
        else:
            ignored.append(Ignored(os.path.join(rel, entry.name), why))
    if not files:
        raise ValueError(empty)
    return tuple(files)


def scan_class_layout(
    root: Path,
    classes: tuple[str, ...] | None,
    layout: str,
    list_clips: Callable[[str], list[str]],
    ignored: list[Ignored],
) -> tuple[tuple[str, ...], torch.Tensor, tuple[str, ...]]:
    """The clips of a class layout ``root/<class>/<clip>``: the clips (paths relative to
    ``root``, from ``list_clips(class_name)``), int64 targets and the class names; the
    ignored entries of ``root`` are appended to ``ignored``.

    Raises:
        ValueError: as :func:`~dali_aug.sources.list_top_folders`, and a class folder not
            among ``classes``.
    """
    folders, top = list_top_folders(root, layout)
    ignored.extend(top)
    names = tuple(folders) if classes is None else _known_classes(root, folders, classes)
    index = {c: k for k, c in enumerate(names)}
    clips: list[str] = []
    labels: list[int] = []
    for name in folders:
        found = list_clips(name)
        clips += found
        labels += [index[name]] * len(found)
    return tuple(clips), torch.tensor(labels, dtype=torch.int64), names


def scan_label_csv(
    root: Path, classes: tuple[str, ...] | None, check: Callable[[str, int], None]
) -> tuple[tuple[str, ...], torch.Tensor, tuple[str, ...]]:
    """The clips of ``root/labels.csv`` (``path,labels``, labels separated by spaces or
    ``;``): the paths, float32 multi-hot targets and the class names (sorted label names
    unless ``classes`` is given). ``check(path, line)`` is called on every row.

    Raises:
        ValueError: the label CSV's errors, and those ``check`` raises.
    """
    rows = read_label_csv(root, root / "labels.csv", semicolons=True)
    for path, line in zip(rows.paths, rows.lines, strict=True):
        check(path, line)
    known = classes is not None
    if classes is None:
        classes = tuple(sorted({lab for labs in rows.labels for lab in labs}))
    targets, classes = rows.multi_hot(classes, "(classes=)", known=known)
    return rows.paths, targets, classes


def open_clip_source(data: Any, *, classes: tuple[str, ...] | None = None) -> ClipSource:
    """A clip source from a :class:`ClipSource` (returned as is) or a folder path: a folder
    of video files (:meth:`VideoFileSource.scan <dali_aug.video.VideoFileSource.scan>`, see
    :func:`~dali_aug.video.holds_videos`), else of frame folders
    (:meth:`FrameFolderSource.scan`).

    Raises:
        TypeError: anything else, naming the clip sources.
    """
    from dali_aug.video._files import VideoFileSource, holds_videos  # it imports this module

    if is_clip_source(data):
        return data  # type: ignore[no-any-return]
    if isinstance(data, (str, Path)):
        if holds_videos(data):
            return VideoFileSource.scan(data, classes=classes)
        return FrameFolderSource.scan(data, classes=classes)
    raise TypeError(
        f"clip_length needs a clip source, got a {type(data).__name__}: give a folder of "
        "frame folders or video files, a dali_aug.video.ClipArraySource, FrameFolderSource "
        "or VideoFileSource, or an object with the ClipSource members (for images drop "
        "clip_length)"
    )
