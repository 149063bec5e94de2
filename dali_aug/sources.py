"""Data sources of the Loader: an ImageFolder directory, a directory + CSV of multi-hot labels,
or in-memory uint8 arrays. A source lists samples and reads one sample's bytes; it never
decodes (DALI does), but it checks cheaply that a file looks like a complete image
(:func:`looks_valid`), so corrupt files are skipped before they reach the decoder.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import torch

__all__ = ["ArraySource", "CsvSource", "FolderSource", "Source", "looks_valid", "open_source"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def looks_valid(data: bytes) -> bool:
    """True if ``data`` starts like a JPEG or PNG and ends with its end marker.

    This catches non-image files with an image name and truncated files (the cases where
    decoders either fail or silently fill the missing part with gray).
    """
    if data[:3] == b"\xff\xd8\xff":
        return data.rstrip(b"\x00")[-2:] == b"\xff\xd9"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data[-8:-4] == b"IEND"
    return False


@dataclasses.dataclass(frozen=True)
class FolderSource:
    """An ImageFolder: ``root/<class>/<image>``, JPEG or PNG, classes sorted by name."""

    root: Path
    paths: tuple[str, ...]
    targets: torch.Tensor  # int64 [N]
    classes: tuple[str, ...]
    multi_label: bool = False

    @classmethod
    def scan(cls, root: str | Path) -> FolderSource:
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"data folder {str(root)!r} does not exist; pass an existing folder")
        classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
        if not classes:
            raise ValueError(
                f"data folder {str(root)!r} has no class subfolders; expected the ImageFolder "
                "layout root/<class>/<image>.jpg (or give a CSV of labels)"
            )
        paths: list[str] = []
        targets: list[int] = []
        for k, name in enumerate(classes):
            for f in sorted((root / name).iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    paths.append(str(f.relative_to(root)))
                    targets.append(k)
        if not paths:
            raise ValueError(
                f"data folder {str(root)!r} has class folders but no .jpg/.jpeg/.png files"
            )
        return cls(root, tuple(paths), torch.tensor(targets, dtype=torch.int64), classes)

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> bytes:
        return (self.root / self.paths[i]).read_bytes()

    def name(self, i: int) -> str:
        return str(self.root / self.paths[i])


@dataclasses.dataclass(frozen=True)
class CsvSource(FolderSource):
    """A folder plus a CSV with a header ``path,labels``: relative paths and space-separated
    label names (multi-hot float32 targets [N, C], label order of first appearance unless
    ``classes.txt`` sits beside the CSV)."""

    @classmethod
    def load(cls, root: str | Path, csv_path: str | Path | None = None) -> CsvSource:
        root = Path(root)
        csv_file = Path(csv_path) if csv_path is not None else root / "labels.csv"
        if not csv_file.is_file():
            raise ValueError(f"label CSV {str(csv_file)!r} does not exist")
        with csv_file.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise ValueError(f"label CSV {str(csv_file)!r} has no rows")
        if "path" not in rows[0] or "labels" not in rows[0]:
            raise ValueError(f"label CSV {str(csv_file)!r} needs the header 'path,labels'")
        names_file = csv_file.parent / "classes.txt"
        if names_file.is_file():
            classes = tuple(n for n in names_file.read_text().split("\n") if n)
        else:
            seen: dict[str, None] = {}
            for r in rows:
                seen.update(dict.fromkeys(r["labels"].split()))
            classes = tuple(seen)
        col = {c: k for k, c in enumerate(classes)}
        targets = torch.zeros((len(rows), len(classes)))
        for i, r in enumerate(rows):
            for lab in r["labels"].split():
                if lab not in col:
                    raise ValueError(f"{csv_file}: row {i + 2} has label {lab!r} not in classes")
                targets[i, col[lab]] = 1.0
        paths = tuple(r["path"] for r in rows)
        return cls(root, paths, targets, classes, multi_label=True)


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """In-memory uint8 images [N, H, W, 3] and labels ([N] int64 or [N, C] multi-hot)."""

    images: np.ndarray
    targets: torch.Tensor
    classes: tuple[str, ...]
    multi_label: bool = False

    def __post_init__(self) -> None:
        x = self.images
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
            raise TypeError("images must be a uint8 numpy array [N, H, W, 3]")
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"images must be [N, H, W, 3], got shape {x.shape}")
        if len(x) == 0:
            raise ValueError("images is empty; give at least one image")
        if len(self.targets) != len(x):
            raise ValueError(f"{len(x)} images but {len(self.targets)} labels")

    @classmethod
    def from_arrays(cls, images: np.ndarray, labels: np.ndarray | torch.Tensor) -> ArraySource:
        t = torch.as_tensor(np.asarray(labels))
        multi = t.dim() == 2
        t = t.float() if multi else t.long()
        n_cls = int(t.shape[1]) if multi else int(t.max()) + 1 if len(t) else 0
        return cls(images, t, tuple(str(k) for k in range(n_cls)), multi_label=multi)

    def __len__(self) -> int:
        return len(self.images)

    def read(self, i: int) -> np.ndarray:
        return self.images[i]

    def name(self, i: int) -> str:
        return f"<array index {i}>"


Source = FolderSource | ArraySource


def open_source(data: str | Path | Source, *, split: str | None = None) -> Source:
    """A source from a folder path (ImageFolder, ImageNet layout ``DIR/train`` + ``DIR/val``
    with ``split``, or a folder holding ``labels.csv``) or an existing source."""
    if isinstance(data, (FolderSource, ArraySource)):
        return data
    root = Path(data)
    if split is not None and (root / split).is_dir():
        root = root / split
    if (root / "labels.csv").is_file():
        return CsvSource.load(root)
    return FolderSource.scan(root)
