"""``dali_aug.Loader``: the DataLoader replacement.

The host side (this module) owns everything that must be reproducible and recorded: the
epoch order (a ``torch.Generator`` seeded with ``(seed, epoch)``), the shard, the flips, the
crop draws and the policy's per-sample ops (the provenance), and the skipped files. The DALI
pipeline (``_pipeline``) decodes, crops, runs the policy and normalises, on the CPU or the GPU;
it draws no random numbers, so one pipeline serves every epoch (built on the first iteration,
rebuilt only when the policy's layer count changes or an epoch was left unfinished).

Example:
    >>> loader = Loader("data/shapes", policy=RandAugment(n=2, m=9), batch_size=64, size=64)
    >>> for epoch in range(3):
    ...     loader.set_epoch(epoch)
    ...     for batch in loader:
    ...         logits = model(batch.images)
"""

from __future__ import annotations

import collections
import dataclasses
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from dali_aug._pipeline import PipelineSpec, build_pipeline, crop_uniforms, to_numpy_batch
from dali_aug.ops import OpParams, index
from dali_aug.ops._dali import host_inputs
from dali_aug.policies import AugmentPolicy, NoAugment, check_policy
from dali_aug.sources import ArraySource, Source, looks_valid, open_source

__all__ = ["Batch", "Loader", "LoaderConfig"]

Device = Literal["auto", "cpu", "cuda"]
_FLIP_LR, _IDENTITY = index("FlipLR"), index("Identity")


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    """Loader settings (copy with ``dataclasses.replace``).

    Attributes:
        batch_size: samples per batch (the last batch may be smaller unless ``drop_last``).
        size: output side in pixels (square).
        train: train transform (random-resized crop + flip + policy) or eval (resize +
            centre crop).
        device: where the pipeline runs and the tensors land; ``auto`` = CUDA if available.
        seed: epoch order, flips, policy ops and crops all derive from it.
        shard_id, num_shards: this process's shard; default: torch.distributed rank/world.
        shuffle: shuffle the order every epoch (train default).
        drop_last: drop the last partial batch.
        strict: raise on the first unreadable file instead of skipping it.
        provenance: attach the per-sample ops (and the pre-policy images) to each batch.
        num_threads: DALI worker threads.
        dtype: output dtype (float32, float16 or bfloat16).
        scale: area range of the random-resized crop.
        flip: random horizontal flip in the train transform; turn it off when labels are not
            flip-invariant (e.g. left/right attributes). The policy's draws do not depend on it.
    """

    batch_size: int = 64
    size: int = 224
    train: bool = True
    device: Device = "auto"
    seed: int = 0
    shard_id: int | None = None
    num_shards: int | None = None
    shuffle: bool | None = None
    drop_last: bool = False
    strict: bool = False
    provenance: bool = False
    num_threads: int = 2
    dtype: torch.dtype = torch.float32
    scale: tuple[float, float] = (0.08, 1.0)
    flip: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if self.size < 8:
            raise ValueError(f"size={self.size} must be >= 8 pixels")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device={self.device!r}; use 'auto', 'cpu' or 'cuda'")
        if self.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"dtype={self.dtype}; use torch.float32, float16 or bfloat16")
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale={self.scale} must satisfy 0 < lo <= hi <= 1")


@dataclasses.dataclass
class Batch:
    """One batch: normalised images [B, 3, S, S], labels ([B] int64 or [B, C] float32),
    the dataset indices, and with ``provenance=True`` the ops applied (layer 0 is the
    flip: FlipLR or Identity; then the policy's layers) and the pre-crop-free clean images
    (uint8 [B, 3, S, S] after crop, before flip and policy)."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    params: OpParams | None = None
    clean: torch.Tensor | None = None


def _resolve_device(device: Device) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available; use device='cpu' or 'auto'")
    return device


def _default_shard(shard_id: int | None, num_shards: int | None) -> tuple[int, int]:
    if num_shards is None:
        if shard_id is not None:
            raise ValueError(f"shard_id={shard_id} needs num_shards; pass both (or neither)")
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    sid = 0 if shard_id is None else shard_id
    if not 0 <= sid < num_shards:
        raise ValueError(f"shard_id={sid} must be in [0, num_shards={num_shards})")
    return sid, num_shards


class Loader:
    """Iterates batches of a source through a DALI pipeline with a (replaceable) policy.

    Args:
        data: a folder (ImageFolder; a folder with ``labels.csv`` for multi-label; the
            ImageNet layout with ``split``), or a source from :mod:`dali_aug.sources`.
        policy: the dataset-level policy run in the pipeline (default: none). Replace it
            between epochs with :meth:`set_policy`.
        config: a :class:`LoaderConfig`; keyword overrides are applied on top.
        split: ``"train"``/``"val"`` subfolder for the ImageNet layout.
    """

    def __init__(
        self,
        data: str | Path | Source,
        *,
        policy: AugmentPolicy | None = None,
        config: LoaderConfig | None = None,
        split: str | None = None,
        **overrides: Any,
    ) -> None:
        self.config = dataclasses.replace(config or LoaderConfig(), **overrides)
        self.source = open_source(data, split=split)
        self.policy = check_policy(policy if policy is not None else NoAugment())
        self.device = _resolve_device(self.config.device)
        self.shard_id, self.num_shards = _default_shard(
            self.config.shard_id, self.config.num_shards
        )
        self.epoch = 0
        #: paths (or array indices) of the samples skipped as unreadable, in order.
        self.skipped: list[str] = []
        self._bad: set[int] = set()
        self._epoch_skips: list[str] = []
        #: an idle pipeline (its spec and its source) left by the last finished epoch
        self._idle: tuple[PipelineSpec, Any, _Feed] | None = None

    # -- public state -------------------------------------------------------------------
    @property
    def classes(self) -> tuple[str, ...]:
        return self.source.classes

    @property
    def multi_label(self) -> bool:
        return self.source.multi_label

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch whose order, flips and ops the next iteration produces."""
        self.epoch = int(epoch)

    def set_policy(self, policy: AugmentPolicy) -> None:
        """Replaces the policy; takes effect at the next iteration (no rebuild needed)."""
        self.policy = check_policy(policy)

    def shard_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The dataset indices this shard visits in ``epoch``, in order."""
        n = len(self.source)
        shuffle = self.config.train if self.config.shuffle is None else self.config.shuffle
        if shuffle:
            g = torch.Generator().manual_seed(self._seed(self.epoch if epoch is None else epoch))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        lo = self.shard_id * n // self.num_shards
        hi = (self.shard_id + 1) * n // self.num_shards
        return order[lo:hi]

    def __len__(self) -> int:
        n = len(self.shard_indices())
        b = self.config.batch_size
        return n // b if self.config.drop_last else math.ceil(n / b)

    def _seed(self, epoch: int, stream: int = 0) -> int:
        return (self.config.seed * 1_000_003 + epoch * 7919 + stream * 104_729) % (2**31 - 1)

    # -- iteration ----------------------------------------------------------------------
    def _read(self, i: int) -> np.ndarray | None:
        """One sample's bytes (or array); None (and recorded) if it is unreadable."""
        src = self.source
        if isinstance(src, ArraySource):
            return src.read(i)
        if i in self._bad:
            self._epoch_skips.append(src.name(i))
            return None
        try:
            data = src.read(i)
            ok = looks_valid(data)
        except OSError:
            ok, data = False, b""
        if not ok:
            if self.config.strict:
                raise ValueError(
                    f"unreadable image {src.name(i)!r} (not a complete JPEG/PNG); fix or remove "
                    "it, or use strict=False to skip such files"
                )
            self._bad.add(i)
            self.skipped.append(src.name(i))
            self._epoch_skips.append(src.name(i))
            return None
        return np.frombuffer(data, dtype=np.uint8)

    def __iter__(self) -> Iterator[Batch]:
        cfg = self.config
        indices = self.shard_indices()
        b = cfg.batch_size
        n_batches = len(self)
        policy = self.policy
        layers = policy.num_layers if cfg.train else 0
        g = torch.Generator().manual_seed(self._seed(self.epoch, stream=1))
        g_crop = torch.Generator().manual_seed(self._seed(self.epoch, stream=2))
        pending: collections.deque[tuple[torch.Tensor, OpParams]] = collections.deque()
        self._epoch_skips = []

        def batches() -> Iterator[Any]:
            for k in range(n_batches):
                chunk = indices[k * b : (k + 1) * b].tolist()
                data = [(i, self._read(i)) for i in chunk]
                kept = [(i, d) for i, d in data if d is not None]
                m = len(kept)
                if m == 0:
                    continue
                flips = (
                    (torch.rand(m, generator=g) < 0.5) & cfg.flip
                    if cfg.train
                    else torch.zeros(m, dtype=torch.bool)
                )
                params = policy.sample(m, generator=g) if cfg.train else NoAugment().sample(m)
                pending.append((torch.tensor([i for i, _ in kept]), _with_flip(params, flips)))
                images = [d for _, d in kept]
                if not cfg.train:
                    yield images
                    continue
                yield (
                    images,
                    [np.array(int(f), dtype=np.int32) for f in flips],
                    crop_uniforms(m, cfg.scale, g_crop),
                    *host_inputs(params, cfg.size, cfg.size),
                )

        spec = PipelineSpec(
            batch_size=b,
            size=cfg.size,
            train=cfg.train,
            encoded=not isinstance(self.source, ArraySource),
            layers=layers,
            num_threads=cfg.num_threads,
            device_id=0 if self.device == "cuda" else None,
            scale=cfg.scale,
            clean=cfg.provenance,
        )
        # take the idle pipeline (a concurrent iteration builds its own); it goes back only
        # once this epoch has run to its end, so no batch of an abandoned epoch is left queued
        idle, self._idle = self._idle, None
        if idle is not None and idle[0] == spec:
            _, pipe, feed = idle
        else:
            feed = _Feed()
            pipe = build_pipeline(spec, feed)
        feed.it = batches()
        targets = self.source.targets
        while True:
            try:
                # on CUDA, DALI orders its outputs on torch's current stream
                outs = pipe.run(self._stream())
            except StopIteration:
                break
            idx, params = pending.popleft()
            images = self._to_torch(outs[0]).to(cfg.dtype)
            batch = Batch(images=images, labels=targets[idx].to(self.device), indices=idx)
            if cfg.provenance:
                batch.params = params
                clean = self._to_torch(outs[1])
                batch.clean = _undo_flip(clean, params)
            yield batch
        pipe.reset()
        feed.it = iter(())
        self._idle = (spec, pipe, feed)
        new = self._epoch_skips
        if new:
            warnings.warn(
                f"epoch {self.epoch}: skipped {len(new)} unreadable file(s) (see loader.skipped):"
                f" {', '.join(new[:5])}{' ...' if len(new) > 5 else ''}",
                RuntimeWarning,
                stacklevel=2,
            )

    def _stream(self) -> int | None:
        return torch.cuda.current_stream().cuda_stream if self.device == "cuda" else None

    def _to_torch(self, tl: Any) -> torch.Tensor:
        if self.device == "cuda":
            # DALI recycles its output buffers: copy into torch-owned memory (on the stream
            # the outputs were ordered on) before the next run can overwrite them
            return torch.from_dlpack(tl.as_tensor()).clone()
        return torch.from_numpy(to_numpy_batch(tl))


class _Feed:
    """The pipeline's ``external_source``: the batches of the epoch being iterated (the
    pipeline outlives one epoch; each iteration installs its own iterator)."""

    def __init__(self) -> None:
        self.it: Iterator[Any] = iter(())

    def __call__(self) -> Any:
        return next(self.it)  # StopIteration ends DALI's epoch


def _with_flip(params: OpParams, flips: torch.Tensor) -> OpParams:
    """Prepends the flip as layer 0 (FlipLR or Identity) to the policy's params."""
    n = len(flips)
    ops = torch.where(flips, _FLIP_LR, _IDENTITY).long().unsqueeze(1)
    zeros = torch.zeros((n, 1))
    return OpParams(
        torch.cat([ops, params.op_ids], 1),
        torch.cat([zeros, params.levels], 1),
        torch.cat([torch.zeros((n, 1, 2)), params.centers], 1),
        torch.cat([torch.zeros((n, 1), dtype=torch.int64), params.partners], 1),
    )


def _undo_flip(clean: torch.Tensor, params: OpParams) -> torch.Tensor:
    """The pipeline's clean tap is after the flip; the provenance starts with the flip, so
    return the image before it (a flip is its own inverse)."""
    flipped = (params.op_ids[:, 0] == _FLIP_LR).to(clean.device)
    return torch.where(flipped[:, None, None, None], clean.flip(-1), clean)
