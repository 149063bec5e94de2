"""The start of a torchrun process (``dali_aug._dist``): the backend, and one CUDA device per
local rank. The CUDA calls are recorded, not made, so this runs on the CPU."""

from __future__ import annotations

import pytest
import torch

from dali_aug import _dist


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """torchrun's environment for rank 1 of 2 on local rank 1 of a 2-GPU machine, with the
    process-group and device calls recorded in order."""
    record: list[tuple[str, object]] = []
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: record.append(("set_device", i)))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(
        torch.distributed, "init_process_group", lambda b: record.append(("init", b))
    )
    monkeypatch.setattr(_dist, "rank_world", lambda: (1, 2))
    return record


def test_cuda_run_sets_the_local_rank_device_before_nccl(calls: list) -> None:
    assert _dist.init_from_env(cuda=True) == (1, 2)
    assert calls == [("set_device", 1), ("init", "nccl")]


def test_cpu_run_uses_gloo_and_leaves_the_device(calls: list) -> None:
    assert _dist.init_from_env(cuda=False) == (1, 2)
    assert calls == [("init", "gloo")]


def test_local_rank_beyond_the_devices_names_nproc_per_node(
    calls: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ValueError, match=r"LOCAL_RANK=2 .* 2 CUDA device.*--nproc_per_node=2"):
        _dist.init_from_env(cuda=True)
    assert calls == []  # nothing was joined


@pytest.mark.parametrize("world", ["1", None])
def test_outside_torchrun_nothing_is_joined(
    calls: list, monkeypatch: pytest.MonkeyPatch, world: str | None
) -> None:
    if world is None:
        monkeypatch.delenv("RANK")
    else:
        monkeypatch.setenv("WORLD_SIZE", world)
    _dist.init_from_env(cuda=True)
    assert calls == []
