"""Fashion-MNIST (Xiao et al., arXiv:1708.07747) from its four IDX files, as in-memory sources.

The files are the ones Debian's package ``dataset-fashion-mnist`` installs
(``apt-get install dataset-fashion-mnist``; they land in ``/usr/share/datasets/fashion-mnist``),
or any folder holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` with or without ``.gz``.
Nothing is downloaded. The folder is, in order: the ``root`` argument, the environment variable
``DALI_AUG_FASHION_MNIST``, the Debian location.

The IDX format: a big-endian header (two zero bytes, a type code, the number of dimensions,
then one 4-byte size per dimension) and the raw array. Images are uint8 [N, 28, 28], labels
uint8 [N] in 0..9. Every header is checked against the file's length before the data is read,
so a damaged or truncated file is a ``ValueError`` naming it, never a wrong array.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from dali_aug.sources import ArraySource

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "fashion_mnist_dir",
    "fashion_mnist_source",
    "load_fashion_mnist",
    "read_idx",
    "write_idx",
]

#: The Debian package's folder (``dpkg -L dataset-fashion-mnist``).
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Class names in label order (the dataset's README).
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
Split = Literal["train", "test"]
_PREFIX = {"train": "train", "test": "t10k"}
_UINT8 = 0x08
_MAX_ITEMS = 10_000_000  # far above the 70,000 of the dataset; bounds a damaged header


def _open(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as err:  # gzip's BadGzipFile is an OSError
        raise ValueError(
            f"cannot read the IDX file {str(path)!r} ({err}); reinstall the data "
            "(apt-get install --reinstall dataset-fashion-mnist)"
        ) from None


def read_idx(path: str | Path) -> np.ndarray:
    """The uint8 array of an IDX file (``.gz`` or not).

    Raises:
        ValueError: a header that is not an IDX uint8 header, or a length that does not match
            the header (naming the file).
    """
    path = Path(path)
    data = _open(path)
    where = f"IDX file {str(path)!r}"
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{where} does not start with an IDX header (0x0000); is it IDX?")
    if data[2] != _UINT8:
        raise ValueError(f"{where} holds type 0x{data[2]:02x}, not uint8 (0x08)")
    ndim = data[3]
    if not 1 <= ndim <= 4 or len(data) < 4 + 4 * ndim:
        raise ValueError(f"{where} has a damaged header ({ndim} dimensions)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if shape[0] > _MAX_ITEMS:
        raise ValueError(f"{where} declares {shape[0]} items; the header is damaged")
    expected = 4 + 4 * ndim + int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(
            f"{where} has {len(data)} bytes but its header {shape} needs {expected}; the file "
            "is truncated or damaged: reinstall the data"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Writes a uint8 array as an IDX file (gzipped when ``path`` ends in ``.gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, _UINT8, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    payload = header + array.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
    return path


def fashion_mnist_dir(root: str | Path | None = None) -> Path:
    """The folder of the IDX files (module docstring); checked to hold all four."""
    folder = Path(root or os.environ.get("DALI_AUG_FASHION_MNIST") or FASHION_MNIST_DIR)
    missing = [
        f"{_PREFIX[s]}-{kind}-ubyte"
        for s in ("train", "test")
        for kind in ("images-idx3", "labels-idx1")
        if _find(folder, f"{_PREFIX[s]}-{kind}-ubyte") is None
    ]
    if missing:
        raise ValueError(
            f"Fashion-MNIST not found in {str(folder)!r} (missing {', '.join(missing)}[.gz]); "
            "install it with 'apt-get install dataset-fashion-mnist', or point "
            "DALI_AUG_FASHION_MNIST (or root=) at a folder holding the four IDX files"
        )
    return folder


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_fashion_mnist(
    split: Split = "train", root: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 28, 28] and labels int64 [N] of the ``train`` (60,000) or ``test``
    (10,000) split.

    Raises:
        ValueError: files missing or damaged, images and labels of different counts, or a
            label outside 0..9.
    """
    if split not in _PREFIX:
        raise ValueError(f"split={split!r}; use 'train' or 'test'")
    folder = fashion_mnist_dir(root)
    stem = _PREFIX[split]
    images_file = _find(folder, f"{stem}-images-idx3-ubyte")
    labels_file = _find(folder, f"{stem}-labels-idx1-ubyte")
    assert images_file is not None and labels_file is not None  # checked by fashion_mnist_dir
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(
            f"{images_file} must hold [N, H, W] images and {labels_file} [N] labels; got "
            f"{images.shape} and {labels.shape}"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{images_file} holds {len(images)} images but {labels_file} {len(labels)} labels; "
            "the files do not belong together: reinstall the data"
        )
    if len(labels) and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"{labels_file} has label {int(labels.max())}; Fashion-MNIST has 0..9")
    return images, labels.astype(np.int64)


def balanced_subset(labels: np.ndarray, per_class: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``per_class`` samples of every class, each class's chosen by a
    seeded permutation (the same seed, the same subset).

    Raises:
        ValueError: a class with fewer than ``per_class`` samples.
    """
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(
                f"class {int(c)} has {len(members)} samples, fewer than the {per_class} per "
                "class asked for; ask for fewer"
            )
        chosen.append(rng.permutation(members)[:per_class])
    return np.sort(np.concatenate(chosen))


def fashion_mnist_source(
    split: Split = "train",
    *,
    root: str | Path | None = None,
    train_size: int | None = None,
    seed: int = 0,
) -> ArraySource:
    """A Loader source of Fashion-MNIST: images as uint8 [N, 28, 28, 3] (the gray channel
    repeated, as the Loader's pipeline takes RGB), labels int64 [N], the class names.

    Args:
        split: ``train`` or ``test`` (the official test split, the usual validation set).
        root: the folder of the IDX files (module docstring).
        train_size: a class-balanced training subset of this many images (a multiple of
            10), chosen with ``seed``; None: the whole split.
        seed: the subset's seed.

    Example:
        >>> train = Loader(fashion_mnist_source("train", train_size=1000), size=32)
    """
    images, labels = load_fashion_mnist(split, root)
    if train_size is not None:
        classes = len(FASHION_MNIST_CLASSES)
        if train_size <= 0 or train_size % classes:
            raise ValueError(
                f"train_size={train_size}; use a positive multiple of {classes} (a "
                "class-balanced subset)"
            )
        keep = balanced_subset(labels, train_size // classes, seed=seed)
        images, labels = images[keep], labels[keep]
    rgb = np.repeat(images[..., None], 3, axis=-1)
    return ArraySource(rgb, torch.from_numpy(labels), FASHION_MNIST_CLASSES)
