"""Shared test helpers: the device parametrisation and a synthetic photo-like batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

#: Marks tests that need a CUDA device; they are skipped when torch sees none.
needs_cuda = pytest.mark.needs_cuda


def devices() -> list[object]:
    """``"cpu"`` always, plus ``"cuda"`` marked :data:`needs_cuda` (skipped without a GPU)."""
    return ["cpu", pytest.param("cuda", marks=needs_cuda)]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_cuda: needs a CUDA device (skipped without one)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="CUDA is not available")
    for item in items:
        if "needs_cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=devices())
def device(request: pytest.FixtureRequest) -> str:
    """Parametrises a test over ``cpu`` and ``cuda``."""
    return str(request.param)


def make_photo_batch(seed: int = 0, n: int = 6, h: int = 48, w: int = 64) -> np.ndarray:
    """Photo-like uint8 images [n, h, w, 3]: smooth colour gradients, a disc and a rectangle of
    solid colour, Gaussian noise (std 3); image 4 has a flat green channel, image 5 is noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    u, v = xx / (w - 1), yy / (h - 1)
    out = np.empty((n, h, w, 3), dtype=np.float64)
    for i in range(n):
        freq, phase = rng.uniform(0.2, 1.0, 3), rng.uniform(0.0, 2 * np.pi, 3)
        lo, hi = rng.uniform(0, 70), rng.uniform(180, 255)
        for c in range(3):
            wave = 0.5 + 0.5 * np.sin(phase[c] + freq[c] * (3 * u + 2 * v * (c + 1)))
            out[i, :, :, c] = lo + (hi - lo) * wave
        cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, rng.uniform(6, 14)
        out[i][(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, 3)
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        out[i, y0 : y0 + rng.integers(5, h // 2), x0 : x0 + rng.integers(5, w // 2)] = rng.uniform(
            0, 255, 3
        )
        out[i] += rng.normal(0.0, 3.0, (h, w, 3))
    images = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    images[4, :, :, 1] = 90
    images[5] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return images


_PHOTO = make_photo_batch()


@pytest.fixture
def photo_batch() -> np.ndarray:
    """A fresh copy of the photo-like batch [6, 48, 64, 3] uint8 (see :func:`make_photo_batch`)."""
    return _PHOTO.copy()


# -- Loader / trainer / CLI fixtures (shared by test_loader, test_train, test_cli) -----------
# Tiny generated datasets, built once per session (make_shapes is deterministic).

SHAPES_N = 64  #: images in :func:`shapes_dir` (single-label, 4 balanced classes)
SHAPES_SIZE = 32  #: side of the generated images


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A single-label ImageFolder of ``SHAPES_N`` 32x32 JPEGs (classes circle/cross/...)."""
    from dali_aug.datasets import make_shapes

    root = tmp_path_factory.mktemp("shapes-single") / "data"
    return make_shapes(root, SHAPES_N, seed=0, size=SHAPES_SIZE)


@pytest.fixture(scope="session")
def shapes_multi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A multi-label shapes folder (``images/`` + ``labels.csv`` + ``classes.txt``), 48 images."""
    from dali_aug.datasets import make_shapes

    root = tmp_path_factory.mktemp("shapes-multi") / "data"
    return make_shapes(root, 48, seed=1, multi_label=True, size=SHAPES_SIZE)


@pytest.fixture(scope="session")
def imagenet_layout_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ImageNet layout: ``DIR/train/<class>`` (48 images) and ``DIR/val/<class>`` (16)."""
    from dali_aug.datasets import make_shapes

    root = tmp_path_factory.mktemp("shapes-imagenet")
    make_shapes(root / "train", 48, seed=2, size=SHAPES_SIZE)
    make_shapes(root / "val", 16, seed=3, size=SHAPES_SIZE)
    return root


def opencv_equalize(channel: np.ndarray) -> np.ndarray:
    """OpenCV ``equalizeHist`` (the formula ``fn.equalize`` follows): the first occupied bin
    maps to 0 and bin ``v`` to ``round(255 * (cdf(v) - h_first) / (N - h_first))``."""
    hist = np.bincount(channel.ravel(), minlength=256).astype(np.int64)
    first = int(np.flatnonzero(hist)[0])
    total = int(hist.sum())
    if hist[first] == total:
        return channel.copy()
    cdf = np.cumsum(hist) - hist[first]
    lut = np.clip(np.rint(cdf * (255.0 / (total - hist[first]))), 0, 255)
    lut[: first + 1] = 0
    return lut.astype(np.uint8)[channel]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Small CPU kernels run much faster on one thread on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
