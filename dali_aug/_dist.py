"""The process group as the library's pieces see it (one place for the loader's default
shard, the trainer's DDP switch and the methods' collectives)."""

from __future__ import annotations

import torch

__all__ = ["collective_device", "rank_world"]


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
