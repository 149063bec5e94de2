"""End-to-end peers: a JPEG ImageFolder -> decode -> RandomResizedCrop + flip ->
RandAugment(n=2, m=9) -> normalised float32 NCHW batches on the device.

a. dali-aug Loader, policy in the DALI pipeline (CPU pipeline, or mixed decode on CUDA);
a2. as a, with ``threads`` one-thread pipelines side by side (``LoaderConfig.pipelines``);
b. dali-aug Loader (decode, crop, flip in DALI) + the torch backend for the policy;
c. torch DataLoader + torchvision v2 (decode_jpeg, RandomResizedCrop, flip, RandAugment);
d. torch DataLoader + timm's ``rand-m9-n2`` training transform (PIL);
e. DALI's own ``nvidia.dali.auto_aug.rand_augment`` pipeline;
f. torch DataLoader (plain PIL decode, crop, flip) + Kornia ``augmentation.auto.RandAugment``
   on the batch.

Every peer reads the same files, uses ``threads`` CPU threads or workers, and one ``step`` is
one epoch over the folder ending with the tensors on the device (synchronised).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dali_aug._pipeline import to_torch
from dali_aug.bench._core import BenchConfig, PeerSpec, Unavailable
from dali_aug.bench._data import FileDataset, pil_rrc_flip
from dali_aug.ops import IMAGENET_MEAN, IMAGENET_STD, normalize

__all__ = [
    "DaliAutoAugPeer",
    "DataLoaderPeer",
    "LoaderPeer",
    "dali_to_torch",
    "end_to_end_specs",
    "normalize",
]

POLICY = "rand-m9-n2"


#: A DALI output batch as a torch tensor, converted as the Loader converts it.
dali_to_torch = to_torch


def _files(root: Path) -> tuple[list[str], list[int]]:
    from dali_aug.sources import FolderSource

    src = FolderSource.scan(root)
    return [str(root / p) for p in src.paths], src.targets.tolist()


class LoaderPeer:
    """a/a2/b: the dali-aug Loader. With ``torch_backend`` the Loader runs without a policy and
    returns its uint8 crops (``provenance=True``: the flip is recorded, not baked in); the
    flip and the policy are then applied with ``dali_aug.ops.apply_params`` on the batch and
    the result normalised in torch."""

    def __init__(
        self, root: Path, cfg: BenchConfig, *, torch_backend: bool, pipelines: int = 1
    ) -> None:
        self.root, self.cfg, self.torch_backend = root, cfg, torch_backend
        self.pipelines = pipelines
        self.epoch = 0
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def setup(self) -> None:
        from dali_aug.loader import Loader
        from dali_aug.policies import NoAugment, RandAugment

        self.policy = RandAugment(n=2, m=9)
        c = self.cfg
        self.loader = Loader(
            self.root,
            policy=NoAugment() if self.torch_backend else self.policy,
            batch_size=c.batch_size,
            size=c.size,
            num_threads=c.threads,
            device=c.device,
            seed=c.seed,
            provenance=self.torch_backend,
            pipelines=self.pipelines,
        )

    def _augment(self, batch: Any) -> torch.Tensor:
        from dali_aug.ops import apply_params

        x = batch.flipped_clean()
        x = apply_params(x, self.policy.sample(x.shape[0], generator=self.generator))
        return normalize(x)

    def step(self) -> int:
        self.epoch += 1
        self.loader.set_epoch(self.epoch)
        n = 0
        for batch in self.loader:
            x = self._augment(batch) if self.torch_backend else batch.images
            n += int(x.shape[0])
        return n

    def close(self) -> None:
        self.loader = None  # type: ignore[assignment]


class DataLoaderPeer:
    """c/d/f: ``torch.utils.data.DataLoader(num_workers=threads, persistent_workers=True)``
    over the files; ``post`` runs on each collated batch on the device (Kornia)."""

    def __init__(
        self,
        root: Path,
        cfg: BenchConfig,
        make_load: Callable[[], Callable[[str, int], Any]],
        post: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.root, self.cfg, self.make_load, self.post = root, cfg, make_load, post

    def setup(self) -> None:
        files, targets = _files(self.root)
        c = self.cfg
        self.dl = torch.utils.data.DataLoader(
            FileDataset(files, targets, self.make_load()),
            batch_size=c.batch_size,
            shuffle=True,
            num_workers=c.threads,
            persistent_workers=True,
            pin_memory=c.device == "cuda",
            generator=torch.Generator().manual_seed(c.seed),
        )

    def step(self) -> int:
        n = 0
        for x, _ in self.dl:
            x = x.to(self.cfg.device, non_blocking=True)
            if self.post is not None:
                x = self.post(x)
            n += int(x.shape[0])
        return n

    def close(self) -> None:
        it = getattr(self.dl, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self.dl = None  # type: ignore[assignment]


class _TorchvisionLoad:
    """torchvision.io decode_jpeg (uint8 tensor) + a v2 transform."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, path: str, index: int) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg, read_file

        img = decode_jpeg(read_file(path), mode=ImageReadMode.RGB)
        return self.transform(img)  # type: ignore[no-any-return]


class _PilLoad:
    """PIL decode + a PIL-based transform (timm)."""

    def __init__(self, transform: Any) -> None:
        self.transform = transform

    def __call__(self, path: str, index: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(path) as f:
            img = f.convert("RGB")
        return self.transform(img)  # type: ignore[no-any-return]


def _torchvision_load(size: int) -> Callable[[str, int], Any]:
    import torchvision
    from torchvision.transforms import v2

    del torchvision  # imported first so that a broken install names torchvision itself
    return _TorchvisionLoad(
        v2.Compose(
            [
                v2.RandomResizedCrop(size, antialias=True),
                v2.RandomHorizontalFlip(),
                # magnitude 9 of bins 0..10 = 0.9 of each op's range, as m=9 elsewhere
                v2.RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=11),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )
    )


def _timm_load(size: int) -> Callable[[str, int], Any]:
    from timm.data import create_transform

    return _PilLoad(
        create_transform(
            size,
            is_training=True,
            auto_augment="rand-m9-n2",
            interpolation="bilinear",
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
        )
    )


def _kornia_post(device: str) -> Callable[[torch.Tensor], torch.Tensor]:
    from kornia.augmentation.auto import RandAugment

    aug = RandAugment(n=2, m=27).to(device)  # m in (0, 30): 27/30 = 0.9 of each range

    def post(x: torch.Tensor) -> torch.Tensor:
        return normalize(aug(x.float() / 255.0), scale=1.0)

    return post


class _EpochFeed:
    """External-source callable: batches of file bytes in a shuffled order; raises
    StopIteration at the end of an epoch and starts the next one on the following call."""

    def __init__(self, files: list[str], batch_size: int, seed: int) -> None:
        self.files, self.batch_size = files, batch_size
        self.rng = np.random.default_rng(seed)
        self._start()

    def _start(self) -> None:
        self.order = self.rng.permutation(len(self.files))
        self.pos = 0

    def __call__(self) -> list[np.ndarray]:
        if self.pos >= len(self.order):
            self._start()
            raise StopIteration
        chunk = self.order[self.pos : self.pos + self.batch_size]
        self.pos += len(chunk)
        return [np.fromfile(self.files[i], dtype=np.uint8) for i in chunk]


class DaliAutoAugPeer:
    """e: DALI's own pipeline: external source of file bytes -> ``decoders.image_random_crop``
    (ROI decode, mixed on CUDA) -> resize -> flip -> ``auto_aug.rand_augment`` ->
    ``crop_mirror_normalize``; built once, reset every epoch."""

    def __init__(self, root: Path, cfg: BenchConfig) -> None:
        self.root, self.cfg = root, cfg

    def setup(self) -> None:
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali.auto_aug import rand_augment

        c = self.cfg
        gpu = c.device == "cuda"
        files, _ = _files(self.root)
        feed = _EpochFeed(files, c.batch_size, c.seed)
        s = c.size

        @pipeline_def(
            batch_size=c.batch_size,
            num_threads=c.threads,
            device_id=0 if gpu else None,
            seed=c.seed + 1,
            enable_conditionals=True,
            prefetch_queue_depth=2,
        )
        def pipe() -> Any:
            data = fn.external_source(source=feed, batch=True)
            images = fn.decoders.image_random_crop(
                data,
                device="mixed" if gpu else "cpu",
                output_type=types.RGB,
                random_area=[0.08, 1.0],
                random_aspect_ratio=[3 / 4, 4 / 3],
                num_attempts=10,
            )
            images = fn.resize(images, size=[s, s], antialias=True)
            images = fn.flip(images, horizontal=fn.random.coin_flip())
            # m=9 of bins 0..10 = 0.9 of each op's range, as m=9 elsewhere
            images = rand_augment.rand_augment(images, n=2, m=9, num_magnitude_bins=11)
            return fn.crop_mirror_normalize(
                images,
                dtype=types.FLOAT,
                output_layout="CHW",
                mean=[m * 255 for m in IMAGENET_MEAN],
                std=[v * 255 for v in IMAGENET_STD],
            )

        # auto_aug 2.4 calls fn.experimental aliases, whose warnings DALI forces on: record them
        with warnings.catch_warnings(record=True):
            self.pipe = pipe()
            self.pipe.build()

    def step(self) -> int:
        stream = torch.cuda.current_stream().cuda_stream if self.cfg.device == "cuda" else None
        n = 0
        while True:
            try:
                (out,) = self.pipe.run(stream)
            except StopIteration:
                break
            n += int(dali_to_torch(out, self.cfg.device).shape[0])
        self.pipe.reset()
        return n

    def close(self) -> None:
        self.pipe = None


def _require_cuda(cfg: BenchConfig) -> None:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise Unavailable("device cuda requested but torch.cuda.is_available() is False")


def end_to_end_specs(root: Path, cfg: BenchConfig) -> list[PeerSpec]:
    """The seven end-to-end peers a, a2 and b-f, in order."""
    pipe = "mixed decode + GPU ops" if cfg.device == "cuda" else "CPU pipeline"

    def checked(make: Callable[[], Any]) -> Callable[[], Any]:
        def factory() -> Any:
            _require_cuda(cfg)
            return make()

        return factory

    dl = functools.partial(DataLoaderPeer, root, cfg)
    spec = functools.partial(PeerSpec, "end-to-end", POLICY)
    return [
        spec(
            "a. dali-aug Loader (DALI policy)",
            checked(lambda: LoaderPeer(root, cfg, torch_backend=False)),
            ours=True,
            note=f"DALI {pipe}; one pipeline, graph built once per Loader",
        ),
        spec(
            "a2. dali-aug Loader, 1-thread pipelines side by side",
            checked(lambda: LoaderPeer(root, cfg, torch_backend=False, pipelines=cfg.threads)),
            ours=True,
            note=f"as a, {cfg.threads} one-thread DALI pipelines on alternate batches",
        ),
        spec(
            "b. dali-aug Loader + torch-backend policy",
            checked(lambda: LoaderPeer(root, cfg, torch_backend=True)),
            ours=True,
            note="DALI decode/crop; flip + ops.apply_params + normalise in torch",
        ),
        spec(
            "c. DataLoader + torchvision v2",
            checked(lambda: dl(functools.partial(_torchvision_load, cfg.size))),
            note="decode_jpeg; v2 RRC, flip, RandAugment(2, 9 of 0..10)",
        ),
        spec(
            "d. DataLoader + timm rand-m9-n2",
            checked(lambda: dl(functools.partial(_timm_load, cfg.size))),
            note="PIL; timm applies each op with p=0.5",
        ),
        spec(
            "e. DALI auto_aug.rand_augment",
            checked(lambda: DaliAutoAugPeer(root, cfg)),
            note=f"DALI {pipe}; rand_augment(n=2, m=9 of 0..10)",
        ),
        spec(
            "f. DataLoader + Kornia RandAugment",
            checked(
                lambda: dl(
                    lambda: functools.partial(pil_rrc_flip, size=cfg.size),
                    post=_kornia_post(cfg.device),
                )
            ),
            note="PIL decode/RRC/flip; Kornia (n=2, m=27/30), one op pair per batch",
        ),
    ]
