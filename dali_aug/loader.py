"""``dali_aug.Loader``: the DataLoader replacement.

The host side (this module) owns everything that must be reproducible and recorded: the
epoch order (a ``torch.Generator`` seeded with ``(seed, epoch)``), the shard, the flips, the
crop draws and the policy's per-sample ops (the op record), and the skipped files. The DALI
pipeline (``_pipeline``) decodes, crops, runs the policy and normalises, on the CPU or the GPU;
it draws no random numbers, so one pipeline serves every epoch (built on the first iteration,
rebuilt only when the policy's layer count changes, an epoch was left unfinished or a file
broke the decoder).

Epochs: each iteration over the loader is one epoch. The first iteration is epoch 0 and each
later one advances the epoch by one by itself; :meth:`Loader.set_epoch` pins the epoch of the
next iteration instead (as ``DistributedSampler.set_epoch``), so calling it every epoch, as
torch code does, works too. ``loader.epoch`` is the epoch of the last (or current) iteration,
or the pinned one before it starts.

Shards: every shard yields the same number of batches (``len(loader)``), as torchrun needs.
Like torch's ``DistributedSampler``, each of the ``num_shards`` shards gets
``ceil(N / num_shards)`` samples of the epoch's permutation, cut in contiguous slices; the
permutation is padded by wrapping around to its start, so with ``num_shards > 1`` up to
``num_shards - 1`` samples appear twice per epoch (with one shard nothing is padded).
``exact_shards=True`` (evaluation) gives every sample to exactly one shard instead, the
shards then differing by up to one sample (:mod:`dali_aug._order`). Without ``shard_id`` and
``num_shards`` the shard is the process group's rank and world size, read when each epoch
starts (a Loader built before ``init_process_group`` shards by the group its epochs meet).

DataLoader code: the Loader takes a ``DataLoader(...)`` call's arguments (``num_workers``,
``pin_memory``, ``sampler=DistributedSampler(...)``, ...; :mod:`dali_aug._protocol`) and a
torchvision ``ImageFolder`` or ``FakeData`` as its data, and has ``sampler`` (with
``set_epoch``), ``dataset``, ``batch_size`` and ``drop_last``. A ``sampler`` given decides
this process's samples and their order, and its ``epoch`` is the Loader's.

Unreadable files: a file that fails the cheap completeness check
(:func:`~dali_aug.sources.looks_valid`: a complete JPEG, PNG, WebP, BMP or TIFF), or that
DALI's decoder rejects, is replaced in its batch by a substitute, the next readable sample in
this shard's order (wrapping around), so batch sizes and counts never change; the file is
listed in ``loader.skipped``, warned about at the end of every epoch that meets it, and skipped
at once in later epochs. The substitute depends only on the files and the order, never on timing.
A file that only the decoder rejects stops the pipeline: the loader then finds it by decoding
the files of the batches in flight one by one, and refeeds those batches (same draws, the
substitute in its place) to a new pipeline, so the epoch is what it would have been had the
file been known to be bad from the start. With ``strict=True`` the first unreadable file raises
a ``ValueError`` naming it.

Video clips (``clip_length=T``, a clip source of :mod:`dali_aug.video`; ``docs/video.md``):
one sample is one clip, so the order, the shards, the epochs, the resume and the skipped
files work on clips as they do on images. The host draws the flip, the crop, the policy's ops
and the window start once per clip and repeats them on the clip's ``T`` frames; the DALI graph
is the image graph run on ``B * T`` frames. A clip with an unreadable frame, or frames of
different shapes, is skipped like an unreadable image, under its ``name``.

Example:
    >>> loader = Loader("data/shapes", policy=RandAugment(n=2, m=9), batch_size=64, size=64)
    >>> for epoch in range(3):
    ...     loader.set_epoch(epoch)
    ...     for images, labels in loader:
    ...         logits = model(images)
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dali_aug._crop import CROPS, Crop
from dali_aug._dist import DEVICES, Device, local_cuda_index, rank_world, resolve_device
from dali_aug._image_format import _header_size
from dali_aug._order import (
    LastBatch,
    fill_to_batches,
    normalize_last_batch,
    num_batches,
    run_shuffle,
    shard_positions,
    shard_size,
)
from dali_aug._pipeline import (
    DecodeProbe,
    PipelineSpec,
    ShardReader,
    build_pipeline,
    crop_uniforms,
    to_numpy_batch,
    to_torch,
)
from dali_aug._protocol import (
    LoaderSampler,
    SourceView,
    check_sampler,
    dataloader_arguments,
    is_torch_dataset,
)
from dali_aug.batch import Batch, apply_flip
from dali_aug.ops import OpParams, index
from dali_aug.ops._dali import host_inputs
from dali_aug.policies import AugmentPolicy, NoAugment, check_policy
from dali_aug.shards import ShardSource
from dali_aug.sources import RAW_SOURCES, Source, looks_valid, open_source
from dali_aug.video import (
    ClipSource,
    UnsupportedCodecError,
    clip_frame_indices,
    is_clip_source,
    open_clip_source,
)

if TYPE_CHECKING:
    from dali_aug.train import ErasingConfig

__all__ = ["Batch", "Loader", "LoaderConfig"]

_FLIP_LR, _IDENTITY = index("FlipLR"), index("Identity")
#: packed shards: a shard's samples come in at most this many runs of consecutive packed
#: samples, in a random order every epoch (each run is one sequential read)
RUNS_PER_SHARD = 256


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
            Every shard gets ``ceil(N / num_shards)`` samples (the epoch's order padded by
            wrapping around), so every shard yields the same number of batches.
        shuffle: shuffle the order every epoch (train default).
        drop_last: drop the last partial batch.
        strict: raise on the first unreadable file instead of replacing it by a substitute.
        op_record: attach ``batch.params``, the per-sample ops applied (cheap: host tensors).
        clean: attach ``batch.clean``, the pre-policy uint8 crops (a second pipeline output:
            costs a copy per batch).
        provenance: shorthand for ``op_record=True, clean=True`` (what a replay of the
            policy, e.g. the torch backend or LB-Aug, needs).
        num_threads: DALI worker threads.
        dtype: output dtype (float32, float16 or bfloat16); float16 comes out of the pipeline
            itself (``crop_mirror_normalize``), bfloat16 (not a DALI type) is converted from
            float32 after it.
        channels_last: images in the channels-last memory format (NCHW shape, NHWC strides),
            written so by the pipeline (an HWC output viewed as NCHW), not converted after.
        crop: the training crop: ``rrc`` (random-resized crop: ``scale``, ``ratio``; ImageNet's)
            or ``pad`` (pad-and-random-crop: the image resized to ``size`` on its shorter side,
            its centred ``size`` window shifted by up to ``pad`` pixels each way, zeros
            outside; CIFAR's and Fashion-MNIST's, as torchvision's ``RandomCrop(size, pad)``).
        scale: ``rrc``: area range of the random-resized crop.
        ratio: ``rrc``: aspect-ratio range of the random-resized crop (torchvision's).
        pad: ``pad``: the largest shift in pixels (0: the centred window, no crop at all).
        crop_pct: evaluation: the image is resized to ``size / crop_pct`` on its shorter side
            and centre-cropped to ``size``; default (None) 0.875 under ``rrc`` (timm's) and 1
            under ``pad`` (the whole image, the training crop's scale).
        flip: random horizontal flip in the train transform; turn it off when labels are not
            flip-invariant (e.g. left/right attributes). The policy's draws do not depend on it.
        copies: every sample appears ``copies`` times in its batch (consecutively), each copy
            with its own flip, crop and ops: a batch holds ``batch_size * copies`` images from
            ``batch_size`` files (AWS's "Enlarge Batch"; ``len(loader)`` does not change).
        shuffle_buffer: packed shards (:mod:`dali_aug.shards`): the samples in DALI's shuffle
            buffer (``initial_fill``); ignored for other sources.
        exact_shards: every sample of the epoch in exactly one shard, none padded: shard ``r``
            of ``S`` gets samples ``[r N // S, (r + 1) N // S)`` of the epoch's order, so the
            shards' sample (and batch) counts may differ by one. For evaluation, where the
            metrics are gathered after the loop (``Trainer.evaluate`` does); a training loop
            whose steps are collectives needs the default equal shards. Needs
            ``last_batch='partial'``.
        last_batch: the epoch's last, incomplete batch (DALI's ``LastBatchPolicy`` names, or
            its members): ``partial`` yields it smaller, ``drop`` drops it (as
            ``drop_last=True``), ``fill`` fills it to ``batch_size`` with the shard's first
            samples. Default: ``drop`` if ``drop_last`` else ``partial``.
        prefetch: batches DALI prepares ahead of the one being consumed
            (``prefetch_queue_depth``; a DataLoader's ``prefetch_factor`` maps here).
        erasing: Random Erasing (:class:`~dali_aug.train.ErasingConfig`, timm's ``--reprob``,
            ``--remode``, ``--recount``) on each training batch after the pipeline, on its
            device, in the normalised space (as timm's prefetcher); the boxes are drawn from
            the seed, the epoch and the batch's number, so a resumed epoch erases as the
            uninterrupted one. Not in the op record. Default: none.
        pipelines: folder and array sources: DALI pipelines run side by side, batch ``j`` on
            pipeline ``j % pipelines``, each with ``num_threads // pipelines`` threads (at
            least 1). One pipeline with T threads waits at every operator for its slowest
            sample; T one-thread pipelines work on whole batches (as a DataLoader's workers
            do). Default 1 (on 2 cores, two 1-thread pipelines kept 1.77 cores busy against
            1.72 but were not faster, 356 vs 370 img/s). The batches do not depend on it.
        clip_length: video: frames per clip ``T`` (the data is a clip source,
            :mod:`dali_aug.video`); one sample is one clip, and a batch's images are
            ``[B, T, C, S, S]``, every frame of a clip with the clip's crop, flip and ops
            (``docs/video.md``). None (default): images. A clip source needs it.
        clip_stride: video: the step between a clip's frames (1: consecutive frames).
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
    crop: Crop = "rrc"
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    pad: int = 4
    crop_pct: float | None = None
    flip: bool = True
    op_record: bool = False
    clean: bool = False
    channels_last: bool = False
    copies: int = 1
    shuffle_buffer: int = 1024
    pipelines: int = 1
    exact_shards: bool = False
    last_batch: LastBatch | None = None
    prefetch: int = 2
    erasing: ErasingConfig | None = None
    clip_length: int | None = None
    clip_stride: int = 1

    def __post_init__(self) -> None:
        if self.clip_length is not None and self.clip_length < 1:
            raise ValueError(
                f"clip_length={self.clip_length} must be >= 1 frame per clip (None: images)"
            )
        if self.clip_stride < 1:
            raise ValueError(f"clip_stride={self.clip_stride} must be >= 1 (1: consecutive frames)")
        if self.clip_length is not None and self.erasing is not None:
            raise ValueError(
                "erasing is not supported with clip_length (it would erase each frame of a "
                "clip differently); erase the clips in the training step, or drop erasing"
            )
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        if self.size < 8:
            raise ValueError(f"size={self.size} must be >= 8 pixels")
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}; use 'auto', 'cpu' or 'cuda'")
        if self.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"dtype={self.dtype}; use torch.float32, float16 or bfloat16")
        if self.copies < 1:
            raise ValueError(f"copies={self.copies} must be >= 1 (1: each sample once)")
        if self.copies > 1 and not self.train:
            raise ValueError(f"copies={self.copies} needs train=True (evaluation copies match)")
        if self.pipelines < 1:
            raise ValueError(f"pipelines={self.pipelines} must be >= 1 (1: one pipeline)")
        if self.shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer={self.shuffle_buffer} must be >= 1 sample")
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale={self.scale} must satisfy 0 < lo <= hi <= 1")
        lo, hi = self.ratio
        if not (math.isfinite(hi) and 0 < lo <= hi):
            raise ValueError(f"ratio={self.ratio} must satisfy 0 < lo <= hi (e.g. (3/4, 4/3))")
        if self.crop not in CROPS:
            raise ValueError(f"crop={self.crop!r}; use one of {', '.join(CROPS)}")
        if not 0 <= self.pad < self.size:
            raise ValueError(f"pad={self.pad} must be in [0, size={self.size})")
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct={self.crop_pct} must be in (0, 1] (timm: 0.875)")
        if self.prefetch < 1:
            raise ValueError(f"prefetch={self.prefetch} must be >= 1 batch")
        if self.last_batch is not None:
            last = normalize_last_batch(self.last_batch)
            object.__setattr__(self, "last_batch", last)
            if self.drop_last and last != "drop":
                raise ValueError(
                    f"drop_last=True but last_batch={last!r}; give one of them (drop_last=True "
                    "is last_batch='drop')"
                )
        if self.exact_shards and self.last_batch_policy != "partial":
            raise ValueError(
                f"exact_shards=True evaluates every sample once, but the last batch is "
                f"{self.last_batch_policy!r}ed; use last_batch='partial' (drop_last=False)"
            )

    @property
    def last_batch_policy(self) -> str:
        """The last batch's policy: ``last_batch``, else ``drop`` (``drop_last``) or
        ``partial``."""
        if self.last_batch is not None:
            return self.last_batch
        return "drop" if self.drop_last else "partial"

    @property
    def eval_crop_pct(self) -> float:
        """The evaluation crop's share: ``crop_pct``, else 0.875 (rrc) or 1 (pad)."""
        if self.crop_pct is not None:
            return self.crop_pct
        return 1.0 if self.crop == "pad" else 0.875

    @property
    def frames_per_sample(self) -> int:
        """The frames one sample holds: ``clip_length`` (clips), or 1 (images)."""
        return 1 if self.clip_length is None else self.clip_length

    @property
    def wants_op_record(self) -> bool:
        """Whether batches carry ``params`` (``op_record`` or ``provenance``)."""
        return self.op_record or self.provenance

    @property
    def wants_clean(self) -> bool:
        """Whether batches carry ``clean`` (``clean`` or ``provenance``)."""
        return self.clean or self.provenance


@dataclasses.dataclass
class _Planned:
    """One batch of an epoch as the host planned it: its positions in the shard's order and
    its draws, made once (a batch refed after a decoder failure reuses them)."""

    positions: range
    flips: torch.Tensor  # bool [m]
    params: OpParams  # the policy's ops [m]
    draws: tuple[Any, ...]  # the external-source inputs after the images (train)
    uniforms: np.ndarray | None  # crop uniforms [m, 22] (train)
    starts: np.ndarray | None = None  # clips, train: the window-start uniforms [positions]
    indices: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(0))
    data: list[np.ndarray] = dataclasses.field(default_factory=list)  # what was fed


def _default_shard(shard_id: int | None, num_shards: int | None) -> tuple[int, int]:
    if num_shards is None:
        if shard_id is not None:
            raise ValueError(f"shard_id={shard_id} needs num_shards; pass both (or neither)")
        return rank_world()
    sid = 0 if shard_id is None else shard_id
    if not 0 <= sid < num_shards:
        raise ValueError(f"shard_id={sid} must be in [0, num_shards={num_shards})")
    return sid, num_shards


class Loader:
    """Iterates batches of a source through a DALI pipeline with a (replaceable) policy.

    Each iteration is one epoch: epoch 0 first, then one more per iteration unless
    :meth:`set_epoch` pins the next one (see the module docstring for the epochs, the shard
    padding and the unreadable files). ``len(loader)`` is the number of batches every shard
    yields per epoch.

    Args:
        data: a folder (ImageFolder; a folder with ``labels.csv`` for multi-label; the
            ImageNet layout with ``split``; packed shards), a source from
            :mod:`dali_aug.sources`, or a torchvision ``ImageFolder``/``DatasetFolder`` or
            ``FakeData`` (read as a source of the same files or noise; its transform is not
            used); with ``clip_length``, a clip source (:mod:`dali_aug.video`) or a folder
            of frame folders.
        policy: the dataset-level policy run in the pipeline (default: none). Replace it
            between epochs with :meth:`set_policy`.
        config: a :class:`LoaderConfig`; keyword overrides are applied on top.
        split: ``"train"``/``"val"`` subfolder for the ImageNet layout.
        **overrides: LoaderConfig fields, and a ``DataLoader(...)`` call's arguments:
            ``sampler`` (its indices and its epoch drive the Loader), ``num_workers``
            (``num_threads``), ``prefetch_factor`` (``prefetch``), ``generator`` (``seed``);
            ``pin_memory``, ``persistent_workers``, ``timeout``, ``multiprocessing_context``
            are accepted and have no effect; ``collate_fn``, ``batch_sampler`` and
            ``worker_init_fn`` are refused (``TypeError``).
    """

    def __init__(
        self,
        data: str | Path | Source | ClipSource | torch.utils.data.Dataset[Any],
        *,
        policy: AugmentPolicy | None = None,
        config: LoaderConfig | None = None,
        split: str | None = None,
        **overrides: Any,
    ) -> None:
        overrides, sampler = dataloader_arguments(overrides)
        self.config = dataclasses.replace(config or LoaderConfig(), **overrides)
        #: the torch dataset the loader was built from (None: a path or a source)
        self._dataset = data if is_torch_dataset(data) else None
        self.source = _open(data, split, self.config.clip_length)
        self.policy = check_policy(policy if policy is not None else NoAugment())
        self.device = resolve_device(self.config.device).type
        self._cuda_index = _cuda_index(self.device)
        if isinstance(self.source, ShardSource) and self.config.copies > 1:
            raise ValueError(
                f"copies={self.config.copies} is not supported for packed shards yet; use the "
                "image folder the shards were packed from"
            )
        self._sampler = check_sampler(sampler, self.config, self.source)
        _default_shard(self.config.shard_id, self.config.num_shards)  # refuse a bad pair now
        self._world_at_init = rank_world()[1]
        self._shard_warned = False
        #: what DataLoader-aware code drives: the ``sampler`` given, else a view of the
        #: Loader's own order (``set_epoch``, ``len``: this shard's samples per epoch)
        self.sampler: Any = sampler if sampler is not None else LoaderSampler(self)
        #: a DataLoader's attribute, read by Lightning and timm: the Loader batches itself
        self.batch_sampler: None = None
        #: timm's flag of a loader that mixes in its collate (``--mixup-off-epoch``): the
        #: Loader never mixes (mix in the training step)
        self.mixup_enabled = False
        #: the epoch of the last (or current) iteration, or the one pinned for the next
        self.epoch = 0
        self._pinned = True  # the next iteration runs self.epoch (else self.epoch + 1)
        #: paths (or array indices) of the samples skipped as unreadable, in order.
        self.skipped: list[str] = []
        self._bad: set[int] = set()
        #: an idle pipeline (its spec and its source) left by the last finished epoch
        self._idle: tuple[PipelineSpec, list[_Lane]] | None = None
        self._start = 0  # the batch the next iteration starts at (a mid-epoch resume)
        self._done = 0  # batches yielded by the current (or last) iteration
        self._finished = False  # the last iteration ran to its end

    # -- public state -------------------------------------------------------------------
    @property
    def classes(self) -> tuple[str, ...]:
        return self.source.classes

    @property
    def multi_label(self) -> bool:
        return self.source.multi_label

    @property
    def dataset(self) -> Any:
        """The data as DataLoader-aware code reads it: the torch dataset the loader was built
        from, else a :class:`~dali_aug._protocol.SourceView` (``len``, ``classes``,
        ``targets``, ``samples``; indexing gives a sample's name and target, not pixels)."""
        return self._dataset if self._dataset is not None else SourceView(self.source)

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def drop_last(self) -> bool:
        return self.config.last_batch_policy == "drop"

    @property
    def shard_id(self) -> int:
        """This process's shard (see :attr:`num_shards`)."""
        return self._shard()[0]

    @property
    def num_shards(self) -> int:
        """The shard count: the ``sampler``'s replicas, else ``shard_id``/``num_shards`` as
        given, else the process group's world size at the time of asking (a Loader built
        before ``init_process_group`` shards by the group its iterations meet)."""
        return self._shard()[1]

    def _shard(self) -> tuple[int, int]:
        if self._sampler is not None:
            s = self._sampler
            return int(getattr(s, "rank", 0)), int(getattr(s, "num_replicas", 1))
        cfg = self.config
        if cfg.shard_id is not None or cfg.num_shards is not None:
            return _default_shard(cfg.shard_id, cfg.num_shards)
        rank, world = rank_world()
        if world != self._world_at_init and not self._shard_warned:
            self._shard_warned = True
            warnings.warn(
                f"this Loader was built with a world size of {self._world_at_init} and now "
                f"shards by the process group, rank {rank} of {world}; build it after "
                "init_process_group, or give shard_id and num_shards, to fix the shard",
                UserWarning,
                stacklevel=3,
            )
        return rank, world

    def set_epoch(self, epoch: int) -> None:
        """Pins the epoch of the next iteration (its order, flips, crops and ops); without a
        call the next iteration runs the epoch after the last one. With a ``sampler`` that
        has ``set_epoch``, the sampler's epoch is set too."""
        self.epoch = int(epoch)
        self._pinned = True
        if self._sampler is not None and callable(getattr(self._sampler, "set_epoch", None)):
            self._sampler.set_epoch(self.epoch)

    def _next_epoch(self) -> int:
        """The epoch the next iteration runs: a ``sampler``'s ``epoch`` (its ``set_epoch``
        drives the Loader), else the pinned one, else the one after the last."""
        sampler_epoch = getattr(self._sampler, "epoch", None)
        if sampler_epoch is not None:
            return int(sampler_epoch)
        return self.epoch if self._pinned else self.epoch + 1

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is: the epoch, the batches of it already yielded (mid-epoch) and
        the files found unreadable, with the settings that position depends on (``config``:
        the sample count, batch size, seed, shard count, size, shuffle and drop_last).
        :meth:`load_state_dict` on a loader with the same source and config resumes there:
        the next iteration yields exactly the batches an uninterrupted loader would have
        yielded from that point (order, crops, flips, ops; skipping the done batches costs
        their host draws only, no file is read)."""
        return {
            "epoch": self.epoch,
            "batches_done": self._done,
            "finished": self._finished,
            "bad": sorted(self._bad),
            "skipped": list(self.skipped),
            "config": self._resume_key(),
        }

    def _resume_key(self) -> dict[str, Any]:
        """The settings a saved position depends on (the rank is not one of them: every rank
        resumes from the state rank 0 saved)."""
        cfg = self.config
        return {
            "samples": len(self.source),
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "num_shards": self.num_shards,
            "size": cfg.size,
            "shuffle": self._shuffle,
            "drop_last": cfg.drop_last,
            "last_batch": cfg.last_batch_policy,
            "exact_shards": cfg.exact_shards,
            "clip_length": cfg.clip_length,
            "clip_stride": cfg.clip_stride,
        }

    @property
    def _shuffle(self) -> bool:
        return self.config.train if self.config.shuffle is None else self.config.shuffle

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resumes from :meth:`state_dict` (see there).

        A state saved by a loader with other settings (its ``config``: sample count, batch
        size, seed, shard count, size, shuffle, drop_last) is refused: its position would
        repeat or skip samples. A state without ``config`` (saved before dali-aug recorded
        it) is accepted as before, checked only against the epoch's length.

        Raises:
            ValueError: the state does not fit this loader (a setting differs, or a position
                past the epoch's end); the message names the setting and both values.
        """
        saved = state.get("config")
        if saved is not None:
            if not isinstance(saved, dict):
                raise ValueError(
                    f"loader state 'config' is {type(saved).__name__}, not a dict: it was not "
                    "written by Loader.state_dict; resume from a state it wrote"
                )
            for key, value in self._resume_key().items():
                if key in saved and saved[key] != value:
                    raise ValueError(
                        f"loader state was saved with {key}={saved[key]!r} but this loader has "
                        f"{key}={value!r}; resume with the loader's settings of that run (or "
                        "start the epoch afresh without load_state_dict)"
                    )
        done = int(state["batches_done"])
        if not 0 <= done <= len(self):
            raise ValueError(
                f"loader state at batch {done} of an epoch of {len(self)} batches: it was saved "
                "by a loader with another dataset, batch size or shard count"
            )
        self._bad = set(int(i) for i in state.get("bad", ()))
        self.skipped = list(state.get("skipped", ()))
        if state.get("finished", False) or done == len(self):
            self.set_epoch(int(state["epoch"]) + 1)
            self._start = 0
        else:
            self.set_epoch(int(state["epoch"]))
            self._start = done

    def set_policy(self, policy: AugmentPolicy) -> None:
        """Replaces the policy for the iterations (epochs) started after this call; one in
        progress keeps the policy it started with. A policy with another layer count makes
        the next iteration build a new pipeline; otherwise the pipeline is reused."""
        self.policy = check_policy(policy)

    def shard_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The dataset indices this shard visits in ``epoch`` (default: the epoch the next
        iteration runs), in order: its share of the epoch's order (see the module docstring;
        ``last_batch='fill'`` appends the fill). With a ``sampler``: the indices it yields
        now (its own epoch). For packed shards: the samples this rank's reader reads, in
        the order it reads them (its shuffle buffer then mixes them)."""
        return self._order(self._next_epoch() if epoch is None else epoch, *self._shard())

    def _order(self, epoch: int, shard_id: int, num_shards: int) -> torch.Tensor:
        cfg = self.config
        if self._sampler is not None:
            idx = torch.as_tensor([int(i) for i in self._sampler], dtype=torch.int64)
            n = len(self.source)
            outside = idx[(idx < 0) | (idx >= n)]
            if len(outside):
                raise ValueError(
                    f"the sampler yielded index {int(outside[0])}, outside the {n} samples of "
                    "the data; build the sampler on the same dataset as the Loader"
                )
        else:
            n = len(self.source)
            g = torch.Generator().manual_seed(self._seed(epoch))
            if not self._shuffle:
                order = torch.arange(n)
            elif isinstance(self.source, ShardSource):  # runs the reader reads in one go
                run = -(-shard_size(n, 0, num_shards, exact=False) // RUNS_PER_SHARD)
                order = run_shuffle(n, run, g)
            else:
                order = torch.randperm(n, generator=g)
            idx = order[shard_positions(n, shard_id, num_shards, exact=cfg.exact_shards)]
        if cfg.last_batch_policy == "fill":
            idx = fill_to_batches(idx, cfg.batch_size)
        return idx

    def __len__(self) -> int:
        """The batches this shard yields per epoch."""
        cfg = self.config
        return num_batches(self._samples_per_epoch(), cfg.batch_size, cfg.last_batch_policy)

    def _samples_per_epoch(self) -> int:
        """This shard's samples per epoch (``len(loader.sampler)``), the fill included."""
        cfg = self.config
        if self._sampler is not None:
            count = len(self._sampler)
        else:
            sid, shards = self._shard()
            count = shard_size(len(self.source), sid, shards, exact=cfg.exact_shards)
        if cfg.last_batch_policy == "fill":
            count = -(-count // cfg.batch_size) * cfg.batch_size
        return count

    def _seed(self, epoch: int, stream: int = 0) -> int:
        return (self.config.seed * 1_000_003 + epoch * 7919 + stream * 104_729) % (2**31 - 1)

    # -- reading ------------------------------------------------------------------------
    @property
    def _encoded(self) -> bool:
        """Whether the samples are encoded files (decoded by DALI), not HWC arrays."""
        if self.config.clip_length is not None:
            return bool(self.source.encoded)
        return not isinstance(self.source, RAW_SOURCES)

    def _read(self, i: int, skips: dict[str, None], u: float = 0.5) -> list[np.ndarray] | None:
        """One sample's frames: an image's bytes (or array) as a list of one, or a clip's
        window (``u``: its start uniform, :func:`~dali_aug.video.clip_frame_indices`); None
        (and recorded in ``skips``) if unreadable: a clip is unreadable if any of its frames
        is, or if its frames differ in shape."""
        src, cfg = self.source, self.config
        if isinstance(src, RAW_SOURCES):
            return [src.read(i)]
        if i in self._bad:
            skips[src.name(i)] = None
            return None
        errors = (OSError,) if cfg.clip_length is None else (OSError, ValueError)
        why = ""
        try:
            if cfg.clip_length is None:
                data = src.read(i)
                ok, frames = looks_valid(data), [np.frombuffer(data, dtype=np.uint8)]
            else:
                window = clip_frame_indices(src.num_frames(i), cfg.clip_length, cfg.clip_stride, u)
                frames = _read_window(src, i, window)
                ok = _frames_ok(frames, self._encoded)
        except UnsupportedCodecError:
            raise  # not damage: every file of that codec fails; the message names the fix
        except errors as err:
            ok, frames = False, []
            why = "" if cfg.clip_length is None else f" [{err}]"  # a clip source's reason
        if not ok:
            if cfg.strict:
                end = "fix or remove it, or use strict=False to skip such files"
                if cfg.clip_length is None:
                    raise ValueError(
                        f"unreadable image {src.name(i)!r} (not a complete JPEG/PNG/WebP/BMP/"
                        f"TIFF); {end}"
                    )
                raise ValueError(
                    f"unreadable clip {src.name(i)!r} (not a complete JPEG/PNG/WebP/BMP/TIFF; a "
                    f"frame missing, or of another shape; or a video the decoder rejects){why}; "
                    f"{end}"
                )
            self._mark_bad(i, skips)
            return None
        return frames

    def _mark_bad(self, i: int, skips: dict[str, None]) -> None:
        if i not in self._bad:
            self._bad.add(i)
            self.skipped.append(self.source.name(i))
        skips[self.source.name(i)] = None

    def _fill(self, planned: _Planned, order: list[int], skips: dict[str, None]) -> None:
        """Reads a planned batch's samples, each unreadable one replaced by the next readable
        sample of the shard's order (wrapping around); sets ``indices`` and ``data``."""
        idx: list[int] = []
        data: list[list[np.ndarray]] = []
        for k, pos in enumerate(planned.positions):
            u = 0.5 if planned.starts is None else float(planned.starts[k])  # eval: centred
            for q in itertools.chain(range(pos, len(order)), range(pos)):
                d = self._read(order[q], skips, u)
                if d is not None:
                    idx.append(order[q])
                    data.append(d)
                    break
            else:
                raise ValueError(
                    f"shard {self.shard_id} of {self.num_shards} has no readable image among its "
                    f"{len(set(order))} files (see loader.skipped); fix the files or the folder"
                )
        c = self.config.copies
        if c > 1:  # each sample's copies side by side; the bytes are shared, not copied
            idx = [i for i in idx for _ in range(c)]
            data = [d for d in data for _ in range(c)]
        planned.indices = torch.tensor(idx)
        planned.data = [f for d in data for f in d]  # the frames, sample after sample

    def _find_undecodable(
        self,
        spec: PipelineSpec,
        in_flight: list[_Planned],
        skips: dict[str, None],
        error: RuntimeError,
    ) -> None:
        """Decodes the in-flight samples one by one with the pipeline's own decoder and marks
        those it rejects bad; raises if there is none (the failure was not a file's)."""
        probe = DecodeProbe(spec)
        found: list[int] = []
        tried: set[Any] = set()
        t = self.config.frames_per_sample
        for planned in in_flight:
            for k, i in enumerate(planned.indices.tolist()):
                frames = planned.data[k * t : (k + 1) * t]  # a clip's windows may differ
                key = i if t == 1 else (i, *map(id, frames))
                if key in tried:
                    continue
                tried.add(key)
                uniforms = None if planned.uniforms is None else planned.uniforms[k]
                if not all(probe.decodes(data, uniforms) for data in frames):
                    found.append(i)
        if not found:
            raise RuntimeError(
                "the DALI pipeline failed, but each image of the batches in flight decodes on "
                "its own; see the DALI error above"
            ) from error
        name = self.source.name(found[0])
        if self.config.strict:
            raise ValueError(
                f"undecodable image {name!r}: it looks like a complete JPEG/PNG/WebP/BMP/TIFF "
                "but DALI's decoder rejects it (damaged data); fix or remove it, or use "
                "strict=False to skip such files"
            ) from error
        for i in found:
            self._mark_bad(i, skips)

    # -- iteration ----------------------------------------------------------------------
    def _plan(self, epoch: int, policy: AugmentPolicy, n: int, steps: int) -> Iterator[_Planned]:
        """The epoch's ``steps`` batches of its ``n`` positions with their draws, in order
        (drawn lazily, batch after batch); a batch of ``m`` positions has ``m * copies``
        slots."""
        cfg = self.config
        b = cfg.batch_size
        g = torch.Generator().manual_seed(self._seed(epoch, stream=1))
        g_crop = torch.Generator().manual_seed(self._seed(epoch, stream=2))
        # clips: one window-start uniform per position (its copies read the same frames)
        g_start = torch.Generator().manual_seed(self._seed(epoch, stream=5))
        t = cfg.frames_per_sample
        for k in range(steps):
            positions = range(k * b, min((k + 1) * b, n))
            m = len(positions) * cfg.copies
            if not cfg.train:
                no_flip = torch.zeros(m, dtype=torch.bool)
                yield _Planned(positions, no_flip, NoAugment().sample(m), (), None)
                continue
            flips = (torch.rand(m, generator=g) < 0.5) & cfg.flip
            params = policy.sample(m, generator=g)
            uniforms = crop_uniforms(m, cfg.scale, g_crop, cfg.ratio)
            starts = None
            if cfg.clip_length is not None:
                starts = torch.rand(len(positions), generator=g_start, dtype=torch.float64)
            # the pipeline sees frames: each sample's draws repeated on its t frames
            draws = (
                np.repeat(flips.numpy().astype(np.int32), t),
                np.repeat(uniforms, t, axis=0),
                *host_inputs(params.repeat_interleave(t), cfg.size, cfg.size),
            )
            yield _Planned(
                positions,
                flips,
                params,
                draws,
                uniforms,
                None if starts is None else starts.numpy(),
            )

    def _spec(self, policy: AugmentPolicy, reader: ShardReader | None = None) -> PipelineSpec:
        cfg = self.config
        return PipelineSpec(
            batch_size=cfg.batch_size * cfg.copies * cfg.frames_per_sample,
            size=cfg.size,
            train=cfg.train,
            encoded=self._encoded,
            layers=policy.num_layers if cfg.train else 0,
            num_threads=cfg.num_threads if reader is not None else self._lane_threads(),
            device_id=self._cuda_index,
            scale=cfg.scale,
            ratio=cfg.ratio,
            crop=cfg.crop,
            pad=cfg.pad,
            crop_pct=cfg.eval_crop_pct,
            prefetch=cfg.prefetch,
            half=cfg.dtype == torch.float16,
            channels_last=cfg.channels_last,
            clean=cfg.wants_clean,
            reader=reader,
        )

    def _batch(self, outs: Any, p: _Planned, idx: torch.Tensor, epoch: int) -> Batch:
        """The Batch of one pipeline output: its first ``len(idx)`` samples (the rest, in the
        last batch of packed shards, is the reader's padding)."""
        cfg = self.config
        m = len(idx)
        frames = m * cfg.frames_per_sample
        images = to_torch(outs[0], self.device)[:frames]
        if cfg.channels_last:  # HWC from the pipeline: NCHW with channels-last strides
            images = images.permute(0, 3, 1, 2)
        images = self._as_clips(images.to(cfg.dtype))
        if cfg.erasing is not None and cfg.train:
            images = self._erase(images, epoch, p.positions.start // cfg.batch_size)
        labels = self.source.targets[idx].to(images.device)
        batch = Batch(images=images, labels=labels, indices=idx)
        if cfg.wants_op_record or cfg.wants_clean:
            params = _take(_with_flip(p.params, p.flips), m)
            if cfg.wants_op_record:
                batch.params = params
            if cfg.wants_clean:
                # the clean tap is after the flip; the op record starts with it: undo it
                clean = self._as_clips(to_torch(outs[1], self.device)[:frames])
                batch.clean = apply_flip(clean, params)
        return batch

    def _as_clips(self, frames: torch.Tensor) -> torch.Tensor:
        """Clips: frames [B * T, C, H, W] as [B, T, C, H, W] (a view; channels-last frames
        keep C innermost); images: unchanged."""
        t = self.config.clip_length
        return frames if t is None else frames.unflatten(0, (-1, t))

    def __iter__(self) -> Iterator[Batch]:
        self.epoch = epoch = self._next_epoch()
        self._pinned = False
        start, self._start = self._start, 0
        self._done, self._finished = start, False
        # the shard is resolved here, once per epoch: the process group the epoch meets
        order = self._order(epoch, *self._shard())
        if isinstance(self.source, ShardSource):
            yield from self._iter_shards(epoch, start, order.numpy())
        else:
            yield from self._iter_files(epoch, start, order.tolist())

    def _iter_shards(self, epoch: int, start: int, block: np.ndarray) -> Iterator[Batch]:
        """One epoch of packed shards: DALI's WebDataset reader reads this rank's samples
        ``block`` (see :mod:`dali_aug.shards`); the host feeds the draws. A pipeline per
        epoch (the reader's index and its shuffle seed are the epoch's); a resumed epoch
        runs, and drops, the batches before ``start`` (the reader cannot skip without
        reading)."""
        cfg, src = self.config, self.source
        assert isinstance(src, ShardSource)
        policy = self.policy
        b = cfg.batch_size
        steps = num_batches(len(block), b, cfg.last_batch_policy)
        if steps == 0:  # an exact shard without samples
            self._finished = True
            return
        with tempfile.TemporaryDirectory(prefix="dali_aug_shards_") as tmp:
            segments = src.segments(block, Path(tmp))
            reader = ShardReader(
                tars=tuple(s.tar for s in segments),
                indices=tuple(s.index for s in segments),
                shuffle=self._shuffle,
                buffer=cfg.shuffle_buffer,
                seed=self._seed(epoch, stream=3),
            )
            source = _Feed()
            pipe = build_pipeline(self._spec(policy, reader), source)
        plans = self._plan(epoch, policy, steps * b, steps)
        pending: collections.deque[_Planned] = collections.deque()

        def feed() -> Iterator[Any]:
            for p in plans:
                pending.append(p)
                yield p.draws

        source.it = feed()
        for k in range(steps):
            try:
                outs = pipe.run(self._stream())
            except RuntimeError as err:
                raise ValueError(
                    f"packed shards {str(src.root)!r}: DALI failed on a sample of epoch {epoch} "
                    f"(rank {self.shard_id} of {self.num_shards}): {str(err).splitlines()[0]}. "
                    "`dali-aug pack` checks every image it writes, so these shards were changed "
                    "after packing or not written by it; re-pack them"
                ) from err
            p = pending.popleft() if cfg.train else next(plans)
            keys = torch.from_numpy(to_numpy_batch(outs[-1]).reshape(-1).astype(np.int64))
            known = np.isin(keys.numpy(), block)  # the tars' idx members name the samples
            if not known.all():
                bad = int(keys.numpy()[~known][0])
                raise ValueError(
                    f"packed shards {str(src.root)!r}: a tar member says sample {bad}, not one "
                    f"of the {len(block)} samples rank {self.shard_id} reads in epoch {epoch} "
                    f"(of the packed 0..{len(src) - 1}): the shards were changed after packing; "
                    "re-pack them with `dali-aug pack`"
                )
            if k < start:  # a resumed epoch: its done batches
                continue
            self._done += 1
            yield self._batch(outs, p, keys[: min(b, len(block) - k * b)], epoch)
        self._finished = True

    def _iter_files(self, epoch: int, start: int, order: list[int]) -> Iterator[Batch]:
        """One epoch of a folder or array source, this shard's ``order``: the host reads the
        bytes and feeds them to ``pipelines`` DALI pipelines (lanes); batch ``j`` runs on lane
        ``j % pipelines``."""
        cfg = self.config
        policy = self.policy
        skips: dict[str, None] = {}
        spec = self._spec(policy)
        width = cfg.pipelines
        # take the idle pipelines (a concurrent iteration builds its own); they go back only
        # once this epoch has run to its end, so no batch of an abandoned epoch is left queued
        idle, self._idle = self._idle, None
        reuse = idle is not None and idle[0] == spec and len(idle[1]) == width
        lanes = idle[1] if idle is not None and reuse else [_Lane(spec) for _ in range(width)]

        def feed(lane: _Lane, dispatch: _Dispatch, w: int) -> Iterator[Any]:
            while (p := dispatch.take(w)) is not None:
                self._fill(p, order, skips)
                lane.pending.append(p)
                yield (p.data, *p.draws) if cfg.train else p.data

        def install(planned: Iterator[_Planned], first: int) -> _Dispatch:
            dispatch = _Dispatch(planned, width, first)
            for w, lane in enumerate(lanes):
                lane.source.it = feed(lane, dispatch, w)
            return dispatch

        steps = num_batches(len(order), cfg.batch_size, cfg.last_batch_policy)
        plan = self._plan(epoch, policy, len(order), steps)
        for _ in range(start):  # a resumed epoch: the done batches' draws, without reading
            next(plan)
        dispatch = install(plan, 0)
        j = 0  # batches yielded by this iteration
        while True:
            lane = lanes[j % width]
            try:
                # on CUDA, DALI orders its outputs on torch's current stream
                outs = lane.pipe.run(self._stream())
            except StopIteration:
                break
            except RuntimeError as err:
                in_flight = sorted(
                    [p for ln in lanes for p in ln.pending] + dispatch.queued(),
                    key=lambda p: p.positions.start,
                )
                if not spec.encoded or not in_flight:
                    raise
                # a file the decoder rejects: the pipelines are dead; find the file, then refeed
                # the batches in flight (same draws, a substitute in its place) to new ones
                for ln in lanes:
                    ln.source.it = iter(())
                lanes = [_Lane(spec) for _ in range(width)]
                self._find_undecodable(spec, in_flight, skips, err)
                dispatch = install(itertools.chain(in_flight, dispatch.rest()), j % width)
                continue
            p = lane.pending.popleft()
            j += 1
            self._done += 1
            yield self._batch(outs, p, p.indices, epoch)
        self._finished = True
        for lane in lanes:
            lane.pipe.reset()
            lane.source.it = iter(())
        self._idle = (spec, lanes)
        if skips:
            new = list(skips)
            warnings.warn(
                f"epoch {epoch}: skipped {len(new)} unreadable file(s) (see loader.skipped):"
                f" {', '.join(new[:5])}{' ...' if len(new) > 5 else ''}",
                RuntimeWarning,
                stacklevel=3,
            )

    def _erase(self, images: torch.Tensor, epoch: int, k: int) -> torch.Tensor:
        """Batch ``k`` of ``epoch`` with Random Erasing (``erasing``), drawn from a seed of
        (seed, epoch, k) alone."""
        from dali_aug.train import RandomErasingMethod

        assert self.config.erasing is not None
        seed = int(np.random.SeedSequence([self.config.seed, epoch, k, 4]).generate_state(1)[0])
        out = RandomErasingMethod(self.config.erasing, seed=seed).erase(images)
        if self.config.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def _lane_threads(self) -> int:
        return max(1, self.config.num_threads // self.config.pipelines)

    def _stream(self) -> int | None:
        if self._cuda_index is None:
            return None
        return torch.cuda.current_stream(self._cuda_index).cuda_stream


class _Lane:
    """One pipeline of a folder/array epoch: its graph, its feed and the batches it was fed
    and has not output yet."""

    def __init__(self, spec: PipelineSpec) -> None:
        self.source = _Feed()
        self.pipe = build_pipeline(spec, self.source)
        self.pending: collections.deque[_Planned] = collections.deque()


class _Dispatch:
    """Deals an epoch's planned batches to the lanes in turn (batch ``j`` of the iteration to
    lane ``(first + j) % lanes``), whichever lane's feed asks first."""

    def __init__(self, planned: Iterator[_Planned], lanes: int, first: int) -> None:
        self._it = planned
        self._queues: list[collections.deque[_Planned]] = [
            collections.deque() for _ in range(lanes)
        ]
        self._next = first

    def take(self, lane: int) -> _Planned | None:
        """The lane's next batch, or None at the end of the epoch."""
        while not self._queues[lane]:
            p = next(self._it, None)
            if p is None:
                return None
            self._queues[self._next].append(p)
            self._next = (self._next + 1) % len(self._queues)
        return self._queues[lane].popleft()

    def queued(self) -> list[_Planned]:
        """The batches dealt to a lane whose feed has not asked for them yet."""
        return [p for q in self._queues for p in q]

    def rest(self) -> Iterator[_Planned]:
        """The batches not dealt yet."""
        return self._it


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
    flip = OpParams(
        ops, torch.zeros((n, 1)), torch.zeros((n, 1, 2)), torch.zeros((n, 1), dtype=torch.int64)
    )
    return flip.then(params)


def _read_window(src: Any, i: int, window: np.ndarray) -> list[np.ndarray]:
    """The frames ``window`` of clip ``i``, each read once (a wrapped-around window repeats
    frames; the repeats share the array)."""
    unique, inverse = np.unique(window, return_inverse=True)
    read = src.read_frames(i, unique)
    if len(read) != len(unique):
        raise TypeError(
            f"{type(src).__name__}.read_frames gave {len(read)} frames for {len(unique)} "
            "indices; a ClipSource gives one array per index"
        )
    return [read[j] for j in inverse.reshape(-1)]


def _frames_ok(frames: list[np.ndarray], encoded: bool) -> bool:
    """Whether a clip's frames look sound: complete files (encoded) or HWC uint8 arrays, all
    of one shape (a file's shape is read from its header when it has one the cheap parse
    knows, JPEG or PNG)."""
    if encoded:
        blobs = [f.tobytes() for f in frames]
        if not all(looks_valid(d) for d in blobs):
            return False
        sizes = {size for d in blobs if (size := _header_size(d)) is not None}
        return len(sizes) <= 1
    return all(
        f.dtype == np.uint8 and f.ndim == 3 and f.shape[-1] == 3 and f.shape == frames[0].shape
        for f in frames
    )


def _open(data: Any, split: str | None, clip_length: int | None) -> Any:
    """The Loader's source: :func:`~dali_aug.sources.open_source` for images, a clip source
    (:func:`~dali_aug.video.open_clip_source`) with ``clip_length``."""
    if clip_length is None:
        if is_clip_source(data):
            raise ValueError(
                f"a clip source ({type(data).__name__}) needs clip_length=T, the frames per "
                "clip (and clip_stride, default 1)"
            )
        return open_source(data, split=split)
    if isinstance(data, (str, Path)):
        if split is not None and (Path(data) / split).is_dir():
            data = Path(data) / split
    elif not is_clip_source(data):
        raise ValueError(
            f"clip_length={clip_length} needs a clip source (dali_aug.video: ClipArraySource, "
            "FrameFolderSource, VideoFileSource, a folder of frame folders or videos), got a "
            f"{type(data).__name__} of images; drop clip_length for images"
        )
    return open_clip_source(data)


def _take(params: OpParams, m: int) -> OpParams:
    """The first ``m`` samples of an op record."""
    if len(params.op_ids) == m:
        return params
    return OpParams(*(getattr(params, f.name)[:m] for f in dataclasses.fields(params)))


def _cuda_index(device: str) -> int | None:
    """The CUDA device of this process (:func:`dali_aug._dist.local_cuda_index`); None on
    the CPU."""
    return None if device != "cuda" else local_cuda_index()
