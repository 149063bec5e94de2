"""Mid-epoch resume of the Loader (state_dict / load_state_dict): a loader resumed after k
batches yields exactly the uninterrupted loader's batches from batch k on, without reading
the skipped files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dali_aug.loader import Loader
from dali_aug.policies import RandAugment

SIZE = 32


def _loader(root: Path, **kw: object) -> Loader:
    return Loader(
        root, policy=RandAugment(n=2, m=9), batch_size=8, size=SIZE, device="cpu", seed=5,
        scale=(0.5, 1.0), op_record=True, **kw,
    )  # fmt: skip


def _same(a: object, b: object) -> None:
    for field in ("images", "labels", "indices"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    pa, pb = a.params, b.params  # type: ignore[attr-defined]
    assert pa is not None and pb is not None
    assert torch.equal(pa.op_ids, pb.op_ids) and torch.equal(pa.levels, pb.levels)


@pytest.mark.parametrize("k", [0, 3, 7])
def test_resumed_loader_yields_the_uninterrupted_batches(shapes_dir: Path, k: int) -> None:
    straight = _loader(shapes_dir)
    straight.set_epoch(2)
    expected = list(straight)
    assert len(expected) == 8

    first = _loader(shapes_dir)
    first.set_epoch(2)
    it = iter(first)
    for _ in range(k):
        next(it)
    state = first.state_dict()
    assert state["epoch"] == 2 and state["batches_done"] == k and not state["finished"]
    del it

    resumed = _loader(shapes_dir)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == 8 - k
    for a, b in zip(rest, expected[k:], strict=True):
        _same(a, b)
    # the next iteration is the next epoch, from its start
    straight_next = _loader(shapes_dir)
    straight_next.set_epoch(3)
    for a, b in zip(resumed, straight_next, strict=True):
        _same(a, b)


def test_resume_reads_no_skipped_file(shapes_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _loader(shapes_dir)
    it = iter(first)
    for _ in range(5):
        next(it)
    state = first.state_dict()
    del it
    resumed = _loader(shapes_dir)
    resumed.load_state_dict(state)
    reads: list[int] = []
    cls = type(resumed.source)
    original = cls.read

    def counting(self: object, i: int) -> bytes:
        reads.append(i)
        return original(self, i)  # type: ignore[arg-type]

    monkeypatch.setattr(cls, "read", counting)
    rest = list(resumed)
    assert len(rest) == 3 and len(reads) == 3 * 8  # only the remaining batches' files
    assert set(reads) == set(torch.cat([b.indices for b in rest]).tolist())


def test_a_finished_epoch_resumes_at_the_next(shapes_dir: Path) -> None:
    first = _loader(shapes_dir)
    list(first)
    state = first.state_dict()
    assert state["finished"] and state["batches_done"] == 8
    resumed = _loader(shapes_dir)
    resumed.load_state_dict(state)
    straight = _loader(shapes_dir)
    straight.set_epoch(1)
    for a, b in zip(resumed, straight, strict=True):
        _same(a, b)


def test_a_state_from_another_dataset_is_refused(shapes_dir: Path) -> None:
    loader = _loader(shapes_dir)
    with pytest.raises(ValueError, match="another dataset, batch size or shard count"):
        loader.load_state_dict({"epoch": 0, "batches_done": 99, "finished": False})
