"""An epoch's order, its split into shards and its batches: the arithmetic the Loader's
folder, array and packed-shard sources share (one place, so that every source keeps the same
promises).

* **Split** (:func:`shard_positions`): by default every shard gets ``ceil(N / num_shards)``
  positions of the epoch's order, cut in contiguous slices, the order padded by wrapping
  around to its start (as torch's ``DistributedSampler``: up to ``num_shards - 1`` samples
  appear twice per epoch, and every shard yields the same number of batches, as a collective
  per step needs). ``exact``: shard ``r`` gets positions ``[r N // S, (r + 1) N // S)``, so
  every sample appears exactly once across the shards, which may then differ by one sample
  (evaluation, whose collectives come after the loop).
* **Last batch** (DALI's ``LastBatchPolicy`` names): ``partial`` yields the smaller last
  batch, ``drop`` drops it, ``fill`` fills it to the batch size with the shard's first
  samples (wrapping around).
* **Packed shards' order** (:func:`run_shuffle`): a permutation that keeps runs of
  consecutive packed samples together (the reader reads each run sequentially) and puts the
  runs in a random order every epoch.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

__all__ = [
    "LAST_BATCH",
    "LastBatch",
    "fill_to_batches",
    "normalize_last_batch",
    "num_batches",
    "run_shuffle",
    "shard_positions",
    "shard_size",
]

#: what happens to an epoch's last, incomplete batch (DALI's ``LastBatchPolicy`` names)
LastBatch = Literal["partial", "drop", "fill"]
LAST_BATCH: tuple[str, ...] = get_args(LastBatch)


def normalize_last_batch(value: object) -> str:
    """``value`` as one of :data:`LAST_BATCH`: the names in any case, or DALI's
    ``LastBatchPolicy`` members (``LastBatchPolicy.FILL``).

    Raises:
        ValueError: another value.
    """
    name = str(getattr(value, "name", value)).lower()
    if name not in LAST_BATCH:
        raise ValueError(
            f"last_batch={value!r}; use one of {', '.join(LAST_BATCH)} (DALI's "
            "LastBatchPolicy: PARTIAL, DROP, FILL)"
        )
    return name


def shard_size(n: int, shard_id: int, num_shards: int, *, exact: bool) -> int:
    """How many positions shard ``shard_id`` of ``num_shards`` gets of an order of ``n``."""
    if exact:
        return (shard_id + 1) * n // num_shards - shard_id * n // num_shards
    return -(-n // num_shards)


def shard_positions(n: int, shard_id: int, num_shards: int, *, exact: bool) -> torch.Tensor:
    """The positions (int64) of an order of ``n`` that shard ``shard_id`` takes (see the
    module docstring): a contiguous slice, wrapped around past ``n`` unless ``exact``."""
    if exact:
        return torch.arange(shard_id * n // num_shards, (shard_id + 1) * n // num_shards)
    per = -(-n // num_shards)
    return torch.arange(shard_id * per, (shard_id + 1) * per) % n


def num_batches(count: int, batch_size: int, last_batch: str) -> int:
    """Batches of an epoch of ``count`` samples under the ``last_batch`` policy."""
    if last_batch == "drop":
        return count // batch_size
    return -(-count // batch_size)


def fill_to_batches(order: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``order`` wrapped around to a whole number of batches (``fill``); an empty order stays
    empty."""
    n = len(order)
    if n == 0 or n % batch_size == 0:
        return order
    total = -(-n // batch_size) * batch_size
    return order[torch.arange(total) % n]


def run_shuffle(n: int, run: int, generator: torch.Generator) -> torch.Tensor:
    """A permutation of ``range(n)`` made of runs of ``run`` consecutive indices (the last
    run shorter), the runs in a random order."""
    starts = torch.arange(0, n, run)
    starts = starts[torch.randperm(len(starts), generator=generator)]
    order = (starts[:, None] + torch.arange(run)).reshape(-1)
    return order[order < n]
