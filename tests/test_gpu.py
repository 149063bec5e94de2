"""The GPU paths end to end: the Loader's DALI GPU pipeline (mixed decode, conditionals on the
GPU, DLPack to torch) and the torch backend on CUDA. Skipped without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dali_aug.datasets import make_shapes
from dali_aug.loader import Loader
from dali_aug.ops import apply_params
from dali_aug.policies import RAND_OPS, RandAugment, auto_augment
from dali_aug.viz import denormalize

pytestmark = pytest.mark.needs_cuda

#: DALI's Equalize follows OpenCV, not PIL (see the catalog tolerance): left out of the replay.
NO_EQUALIZE = tuple(o for o in RAND_OPS if o != "Equalize")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes(tmp_path_factory.mktemp("gpu") / "shapes", 40, seed=5, size=48)


def test_gpu_loader_outputs_cuda_tensors_and_replays(shapes: Path) -> None:
    loader = Loader(
        shapes,
        policy=RandAugment(n=2, m=9, ops=NO_EQUALIZE),
        batch_size=16,
        size=32,
        device="cuda",
        provenance=True,
        seed=1,
    )
    seen = 0
    for batch in loader:
        assert batch.images.is_cuda and batch.images.dtype == torch.float32
        assert batch.images.shape[1:] == (3, 32, 32)
        assert batch.clean is not None and batch.params is not None and batch.clean.is_cuda
        replay = apply_params(batch.clean, batch.params)
        got = torch.from_numpy(denormalize(batch.images)).permute(0, 3, 1, 2).to(replay.device)
        far = ((replay.int() - got.int()).abs() > 2).any(1).float().mean()
        assert float(far) < 0.005  # only the rounding of the float output and Rotate
        seen += len(batch.labels)
    assert seen == 40


def test_gpu_loader_same_seed_same_batches(shapes: Path) -> None:
    def run() -> list[torch.Tensor]:
        loader = Loader(
            shapes, policy=auto_augment("imagenet"), batch_size=8, size=32, device="cuda", seed=7
        )
        return [b.images.cpu() for b in loader]

    for a, b in zip(run(), run(), strict=True):
        assert torch.equal(a, b)


def test_gpu_eval_loader(shapes: Path) -> None:
    loader = Loader(shapes, batch_size=8, size=32, device="cuda", train=False)
    batches = list(loader)
    assert sum(len(b.labels) for b in batches) == 40
    assert all(b.images.is_cuda for b in batches)
