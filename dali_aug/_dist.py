"""The process group and the run device as the library's pieces see them (one place for
the CLIs' start under torchrun, the ``device`` setting of the CLIs, the loader and the AWS
search, the loader's default shard, the trainer's DDP switch and the methods'
collectives)."""

from __future__ import annotations

import datetime
import os
from typing import Literal, get_args

import torch

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DEVICES",
    "Device",
    "collective_device",
    "gather_rows",
    "init_from_env",
    "local_cuda_index",
    "rank_world",
    "resolve_device",
]

#: a ``device`` setting (of the CLIs, the Loader and the AWS search)
Device = Literal["auto", "cpu", "cuda"]
#: the names it takes
DEVICES: tuple[str, ...] = get_args(Device)


def resolve_device(device: str) -> torch.device:
    """The run device of a ``device`` setting: ``auto`` is CUDA where torch sees a GPU, else
    the CPU; ``cpu`` and ``cuda`` are themselves.

    Raises:
        ValueError: another name, or ``cuda`` where CUDA is not available.
    """
    if device not in DEVICES:
        raise ValueError(f"device {device!r}; use 'auto', 'cpu' or 'cuda'")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda', but CUDA is not available here; use 'cpu', or 'auto' (CUDA where "
            "there is a GPU)"
        )
    return torch.device(device)


def local_cuda_index() -> int:
    """This process's CUDA device: ``LOCAL_RANK`` under torchrun (one GPU per local rank),
    else torch's current device.

    Raises:
        ValueError: ``LOCAL_RANK`` is not a device of this machine.
    """
    if "LOCAL_RANK" not in os.environ:
        return torch.cuda.current_device()
    rank, count = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
    if not 0 <= rank < count:
        raise ValueError(
            f"LOCAL_RANK={rank} but this machine has {count} CUDA device(s); start at most "
            f"{count} processes per node (torchrun --nproc_per_node={count})"
        )
    return rank


#: seconds a collective waits for the other ranks before failing (torch's default: 30 min)
DEFAULT_TIMEOUT_S = 600.0


def init_from_env(*, cuda: bool, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[int, int]:
    """Joins the process group that torchrun's environment describes (``RANK`` and
    ``WORLD_SIZE`` > 1) unless one is initialised already, and returns (rank, world size);
    (0, 1) outside torchrun.

    Args:
        cuda: the run computes on CUDA: NCCL, with this process's current device set to
            :func:`local_cuda_index` first (else every rank would use GPU 0); else gloo.
        timeout_s: the process group's timeout: a rank that waits this long for the
            others (one stalled or dead) fails instead of blocking for torch's 30 minutes.

    Raises:
        ValueError: ``LOCAL_RANK`` is not a device of this machine.
    """
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return rank_world()
    if not torch.distributed.is_initialized():
        if cuda:
            torch.cuda.set_device(local_cuda_index())
        torch.distributed.init_process_group(
            "nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s)
        )
    return rank_world()


def rank_world() -> tuple[int, int]:
    """(rank, world size) of the initialised default process group; (0, 1) without one."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def collective_device(device: torch.device) -> torch.device:
    """Where a collective's tensors must be: the current CUDA device under NCCL, else
    ``device`` (call inside an initialised process group)."""
    if torch.distributed.get_backend() == "nccl" and device.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return device


def gather_rows(rows: torch.Tensor | None) -> torch.Tensor | None:
    """Every rank's ``rows`` (CPU tensors) concatenated along dim 0 in rank order: ranks may
    hold different numbers of rows, or None (no rows: a rank whose shard was empty); None if
    every rank gave None. ``rows`` itself outside a process group. A collective: every rank
    of the group must call it (the tensors travel pickled, as ``all_gather_object``)."""
    _, world = rank_world()
    if world == 1:
        return rows
    parts: list[torch.Tensor | None] = [None] * world
    torch.distributed.all_gather_object(parts, rows)
    present = [p for p in parts if p is not None]
    return torch.cat(present) if present else None
