"""``LoaderConfig.copies`` (AWS's Enlarge Batch: each sample M times per batch, each copy
with its own draws; ``dali-aug train --copies``) and ``LoaderConfig.pipelines`` (side-by-side
pipelines: the same batches whatever their number, also through a damaged file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_loader_damaged import damaged_image

from dali_aug.cli import main
from dali_aug.loader import Loader
from dali_aug.policies import RandAugment

SIZE = 32


def _epoch(root: Path, copies: int) -> list:
    loader = Loader(root, policy=RandAugment(n=2, m=9), batch_size=8, size=SIZE,
                    device="cpu", seed=5, copies=copies, op_record=True)  # fmt: skip
    return list(loader)


def test_copies_repeat_each_sample_with_its_own_draws(shapes_dir: Path) -> None:
    one, three = _epoch(shapes_dir, 1), _epoch(shapes_dir, 3)
    assert len(one) == len(three)
    for a, b in zip(one, three, strict=True):
        assert torch.equal(b.indices, a.indices.repeat_interleave(3))
        assert torch.equal(b.labels, a.labels.repeat_interleave(3))
        assert b.images.shape == (3 * len(a.indices), 3, SIZE, SIZE)
        assert b.params is not None
        ops = b.params.op_ids.view(len(a.indices), 3, -1)
        levels = b.params.levels.view(len(a.indices), 3, -1)
        # the copies of a sample are augmented independently: not one draw shared
        same = (ops[:, 0] == ops[:, 1]).all(1) & (levels[:, 0] == levels[:, 1]).all(1)
        assert same.float().mean() < 0.5
        img = b.images.view(len(a.indices), 3, 3, SIZE, SIZE)
        assert not torch.equal(img[:, 0], img[:, 1])


def test_copies_are_checked(shapes_dir: Path) -> None:
    with pytest.raises(ValueError, match="copies=0 must be >= 1"):
        Loader(shapes_dir, device="cpu", copies=0)
    with pytest.raises(ValueError, match="needs train=True"):
        Loader(shapes_dir, device="cpu", copies=2, train=False)


def test_train_with_copies(shapes_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", str(shapes_dir), "--epochs", "1", "--size", str(SIZE),
            "--device", "cpu", "--batch-size", "8", "--copies", "2", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[-1]["images"] == 2 * 64  # every sample twice


@pytest.mark.parametrize(
    ("pipelines", "batch_size"),
    [
        pytest.param(2, 4, marks=pytest.mark.slow),
        (2, 5),
        pytest.param(3, 4, marks=pytest.mark.slow),
        pytest.param(3, 3, marks=pytest.mark.slow),
    ],
)
def test_the_batches_do_not_depend_on_the_pipeline_count(
    shapes_dir: Path, tmp_path: Path, pipelines: int, batch_size: int
) -> None:
    """Bitwise the same epoch with 1 and with 2 or 3 pipelines, through a damaged JPEG met in
    the middle of the epoch (the lanes are torn down and the batches in flight refed; the batch
    sizes put the failing batch on different lanes)."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(shapes_dir, root)
    (root / "square" / "zz_damaged.jpg").write_bytes(damaged_image("jpeg", seed=2))

    def epoch(n: int) -> list:
        loader = Loader(root, policy=RandAugment(n=2, m=9), batch_size=batch_size, size=SIZE,
                        device="cpu", seed=7, num_threads=3, pipelines=n,
                        provenance=True)  # fmt: skip
        loader.set_epoch(1)
        with pytest.warns(RuntimeWarning, match="skipped 1 unreadable"):
            batches = list(loader)
        assert loader.skipped == [str(root / "square" / "zz_damaged.jpg")]
        return batches

    ref, got = epoch(1), epoch(pipelines)
    assert len(ref) == len(got) == -(-65 // batch_size)
    for a, b in zip(ref, got, strict=True):
        assert torch.equal(a.indices, b.indices)
        assert torch.equal(a.images, b.images)
        assert a.clean is not None and b.clean is not None and torch.equal(a.clean, b.clean)
    with pytest.raises(ValueError, match="pipelines=0 must be >= 1"):
        Loader(root, device="cpu", pipelines=0)
