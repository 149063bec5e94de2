"""The start of a torchrun process (``dali_aug._dist``): the backend, and one CUDA device per
local rank. The CUDA calls are recorded, not made, so this runs on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dali_aug import _dist
from dali_aug.datasets import make_shapes


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
        torch.distributed, "init_process_group", lambda b, **_: record.append(("init", b))
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


@pytest.mark.parametrize(("rank", "world"), [("0", "1"), (None, "2"), ("0", None)])
def test_outside_torchrun_nothing_is_joined(
    calls: list, monkeypatch: pytest.MonkeyPatch, rank: str | None, world: str | None
) -> None:
    monkeypatch.undo()  # the real rank_world and process-group state: none is initialised
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda b: calls.append(b))
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(i))
    monkeypatch.setenv("LOCAL_RANK", "1")
    for name, value in (("RANK", rank), ("WORLD_SIZE", world)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert _dist.init_from_env(cuda=True) == (0, 1)
    assert calls == []


def test_an_initialised_group_is_not_joined_again(
    calls: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    assert _dist.init_from_env(cuda=True) == (1, 2)
    assert calls == []


def test_without_local_rank_the_current_device_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert _dist.local_cuda_index() == 3


class _Joined(Exception):
    """Raised by the recorded init_from_env: the CLI got as far as joining the group."""


@pytest.mark.parametrize(("device", "cuda"), [("cpu", False), ("auto", True), ("cuda", True)])
@pytest.mark.parametrize("command", ["train", "search aws"])
def test_the_clis_join_with_the_run_device(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: str,
    device: str,
    cuda: bool,
) -> None:
    """On a (pretend) CUDA machine, ``--device cpu`` joins with gloo and ``auto``/``cuda``
    with NCCL, in ``dali-aug train`` and in ``dali-aug search aws``."""
    import dali_aug._dist as dist
    from dali_aug.cli import main

    seen: list[bool] = []

    def record(*, cuda: bool, **_: object) -> tuple[int, int]:
        seen.append(cuda)
        raise _Joined

    monkeypatch.setattr(dist, "init_from_env", record)
    monkeypatch.setattr("dali_aug.cli.init_from_env", record)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    data = tmp_path / "shapes"
    make_shapes(data, 8, seed=0, size=32)
    argv = [*command.split(), "--data", str(data), "--device", device, "--out", str(tmp_path)]
    with pytest.raises(_Joined):
        main(argv)
    assert seen == [cuda]


@pytest.mark.parametrize(
    ("name", "cuda", "expected"),
    [
        ("auto", False, "cpu"),
        ("auto", True, "cuda"),
        ("cpu", True, "cpu"),
        ("cpu", False, "cpu"),
        ("cuda", True, "cuda"),
    ],
)
def test_resolve_device(
    monkeypatch: pytest.MonkeyPatch, name: str, cuda: bool, expected: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert _dist.resolve_device(name) == torch.device(expected)


def test_resolve_device_refuses_cuda_without_it_and_unknown_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available here; use 'cpu'"):
        _dist.resolve_device("cuda")
    with pytest.raises(ValueError, match="device 'gpu'; use 'auto', 'cpu' or 'cuda'"):
        _dist.resolve_device("gpu")


@pytest.mark.parametrize("command", ["train", "search aws"])
def test_the_clis_refuse_cuda_without_it(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: str,
) -> None:
    """``--device cuda`` on a machine without CUDA: one error line naming the fix, before
    any process group or model, in both CLIs (one resolver: ``_dist.resolve_device``)."""
    from dali_aug.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    data = tmp_path / "shapes"
    make_shapes(data, 8, seed=0, size=32)
    argv = [*command.split(), "--data", str(data), "--device", "cuda", "--out", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    message = str(exit_info.value)
    assert message.startswith("error: ") and "CUDA is not available here; use 'cpu'" in message


def test_aws_config_checks_the_device_name() -> None:
    from dali_aug.methods.aws import AWSConfig

    with pytest.raises(ValueError, match="AWSConfig.device='gpu'"):
        AWSConfig(device="gpu")  # type: ignore[arg-type]
