"""Augmentation-stage peers: the policy alone on a batch already resident on the device
(uint8 NCHW, uint8 NHWC for DALI, float [0, 1] NCHW for Kornia), for RandAugment(n=2, m=9),
AutoAugment-ImageNet and TrivialAugmentWide:

* dali-aug, DALI backend (``ops._dali.apply_layers`` in a pipeline fed by external source,
  the policy sampled and resolved on the host every call, as the Loader does);
* dali-aug, torch backend (``policy.sample`` + ``ops.apply_params``);
* DALI ``auto_aug`` (``rand_augment``, ``auto_augment_image_net``, ``trivial_augment_wide``);
* Kornia ``augmentation.auto`` (``RandAugment``, ``AutoAugment``, ``TrivialAugment``);
* torchvision v2 (``RandAugment``, ``AutoAugment``, ``TrivialAugmentWide``), one batched call
  (torchvision and Kornia draw one op choice per call for the whole batch; dali-aug and DALI
  draw per sample).

Plus dali-aug's KeepAugment region selection + cut (saliency excluded: it is a model forward
and backward) and LB-Aug's per-sample sampling + op.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from dali_aug.bench._core import BenchConfig, PeerSpec, Unavailable, sync
from dali_aug.bench._e2e import dali_to_torch

__all__ = ["STAGE_POLICIES", "resident_batch", "stage_specs"]

#: The policies of the augmentation stage (labels as in ``dali-aug train --policy``).
STAGE_POLICIES = ("rand-m9-n2", "aa-imagenet", "ta-wide")


def resident_batch(root: Path, n: int, size: int, device: str) -> torch.Tensor:
    """uint8 [n, 3, size, size] on ``device``: the folder's first JPEGs resized (repeated if
    the folder holds fewer than ``n``)."""
    files = sorted(str(p) for p in Path(root).glob("*/*.jpg"))
    if not files:
        raise ValueError(f"no JPEGs under {root}; pass an ImageFolder of JPEGs")
    arrays = []
    for i in range(min(n, len(files))):
        with Image.open(files[i]) as f:
            img = f.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        arrays.append(np.asarray(img))
    batch = np.stack([arrays[i % len(arrays)] for i in range(n)])
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(device)


def _ours_policy(label: str) -> Any:
    from dali_aug.policies import RandAugment, TrivialAugmentWide, auto_augment

    if label == "rand-m9-n2":
        return RandAugment(n=2, m=9)
    if label == "aa-imagenet":
        return auto_augment("imagenet")
    return TrivialAugmentWide()


class _Holder:
    """An external-source callable returning whatever was set last."""

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __call__(self) -> Any:
        return self.value


class _Stage:
    """Shared plumbing: the resident batch in the layouts the libraries want."""

    def __init__(self, images: torch.Tensor, cfg: BenchConfig, label: str) -> None:
        self.images, self.cfg, self.label = images, cfg, label
        self.n = int(images.shape[0])
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def _hwc_feed(self) -> Any:
        """The batch as DALI reads it: NHWC, numpy on the CPU, a torch tensor on CUDA."""
        hwc = self.images.permute(0, 2, 3, 1).contiguous()
        return hwc if self.cfg.device == "cuda" else hwc.numpy()

    def _pipeline(self, graph: Callable[[Any, Any], Any], extra_outputs: int) -> Any:
        from nvidia.dali import fn, pipeline_def

        c = self.cfg
        gpu = c.device == "cuda"
        self.image_feed = _Holder(self._hwc_feed())
        self.param_feed = _Holder()

        @pipeline_def(
            batch_size=self.n,
            num_threads=c.threads,
            device_id=0 if gpu else None,
            seed=c.seed + 3,
            enable_conditionals=True,
            prefetch_queue_depth=1,
        )
        def pipe() -> Any:
            images = fn.external_source(
                source=self.image_feed,
                batch=True,
                layout="HWC",
                device="gpu" if gpu else "cpu",
                no_copy=True,
            )
            params = (
                fn.external_source(source=self.param_feed, num_outputs=extra_outputs, batch=True)
                if extra_outputs
                else ()
            )
            return graph(images, params)

        p = pipe()
        p.build()
        return p

    def _run(self, pipe: Any) -> torch.Tensor:
        stream = torch.cuda.current_stream().cuda_stream if self.cfg.device == "cuda" else None
        (out,) = pipe.run(stream)
        return dali_to_torch(out, self.cfg.device)

    def _call(self) -> None:
        """One policy call on the whole batch (subclasses)."""
        raise NotImplementedError

    def step(self) -> int:
        """Policy calls until at least ``stage_iters`` calls and ``stage_min_s`` seconds (so
        per-batch libraries, whose cost depends on the op drawn for the batch, are averaged
        over many draws), each call synchronised; returns the images processed."""
        calls, t0 = 0, time.perf_counter()
        while True:
            self._call()
            sync(self.cfg.device)
            calls += 1
            if calls >= self.cfg.stage_iters and time.perf_counter() - t0 >= self.cfg.stage_min_s:
                return calls * self.n

    def close(self) -> None:
        self.__dict__.pop("pipe", None)


class OursDali(_Stage):
    """dali-aug, DALI backend: sample + resolve on the host, ``apply_layers`` in DALI."""

    def setup(self) -> None:
        from dali_aug.ops._dali import NUM_LAYER_INPUTS, LayerNodes, apply_layers

        self.policy = _ours_policy(self.label)
        layers, size = self.policy.num_layers, int(self.images.shape[-1])

        def graph(images: Any, params: Any) -> Any:
            per = [
                LayerNodes(*params[NUM_LAYER_INPUTS * i : NUM_LAYER_INPUTS * (i + 1)])
                for i in range(layers)
            ]
            return apply_layers(images, per, size=(size, size))

        self.pipe = self._pipeline(graph, NUM_LAYER_INPUTS * layers)

    def _call(self) -> None:
        from dali_aug.ops._dali import host_inputs

        s = int(self.images.shape[-1])
        params = self.policy.sample(self.n, generator=self.generator)
        self.param_feed.value = host_inputs(params, s, s)
        self._run(self.pipe)


class OursTorch(_Stage):
    """dali-aug, torch backend: ``apply_params(images, policy.sample(n))``."""

    def setup(self) -> None:
        from dali_aug.ops import apply_params

        self.policy = _ours_policy(self.label)
        self.apply = apply_params

    def _call(self) -> None:
        self.apply(self.images, self.policy.sample(self.n, generator=self.generator))


class DaliAutoAug(_Stage):
    """DALI's ``nvidia.dali.auto_aug`` on the external-source batch."""

    def setup(self) -> None:
        from nvidia.dali.auto_aug import auto_augment, rand_augment, trivial_augment

        label = self.label

        def graph(images: Any, params: Any) -> Any:
            if label == "rand-m9-n2":  # m=9 of bins 0..10 = 0.9 of each op's range
                return rand_augment.rand_augment(images, n=2, m=9, num_magnitude_bins=11)
            if label == "aa-imagenet":
                return auto_augment.auto_augment_image_net(images)
            return trivial_augment.trivial_augment_wide(images)

        # auto_aug 2.4 calls fn.experimental aliases, whose warnings DALI forces on: record them
        with warnings.catch_warnings(record=True):
            self.pipe = self._pipeline(graph, 0)

    def _call(self) -> None:
        self._run(self.pipe)


class KorniaAuto(_Stage):
    """Kornia ``augmentation.auto`` on float [0, 1] NCHW."""

    def setup(self) -> None:
        from kornia.augmentation import auto

        if self.label == "rand-m9-n2":
            aug: Any = auto.RandAugment(n=2, m=27)  # m in (0, 30): 27/30 = 0.9
        elif self.label == "aa-imagenet":
            aug = auto.AutoAugment("imagenet")
        else:
            aug = auto.TrivialAugment()
        self.aug = aug.to(self.cfg.device)
        self.float_images = self.images.float() / 255.0

    def _call(self) -> None:
        self.aug(self.float_images)


class TorchvisionV2(_Stage):
    """torchvision.transforms.v2 called once on the uint8 NCHW batch."""

    def setup(self) -> None:
        import torchvision
        from torchvision.transforms import v2

        del torchvision
        if self.label == "rand-m9-n2":
            self.t: Any = v2.RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=11)
        elif self.label == "aa-imagenet":
            self.t = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)
        else:
            self.t = v2.TrivialAugmentWide()

    def _call(self) -> None:
        self.t(self.images)


class KeepSelectCut(_Stage):
    """dali-aug KeepAugment: ``keep_cutout`` (region selection on a given saliency map +
    the cut) on the normalised batch; box side 1/4 of the image, tau 0.6."""

    def setup(self) -> None:
        from dali_aug.methods.keep import keep_cutout

        self.keep_cutout = keep_cutout
        self.float_images = (self.images.float() - 128.0) / 64.0
        g = torch.Generator().manual_seed(self.cfg.seed)
        s = int(self.images.shape[-1])
        self.sal = torch.rand((self.n, s, s), generator=g).to(self.images.device)
        self.box = (max(1, s // 4), max(1, s // 4))

    def _call(self) -> None:
        self.keep_cutout(self.float_images, self.sal, self.box, generator=self.generator)


class LbAugSample(_Stage):
    """dali-aug LB-Aug in the training step: ``LBAugMethod.apply`` (the label-conditioned
    actor forward, the sampler, the op parameters and the torch-backend op) on the batch
    with random multi-hot labels (10 labels), with an untrained actor."""

    def setup(self) -> None:
        from dali_aug.methods.lbaug import Actor, ActorConfig, LBAugMethod

        actor = Actor(ActorConfig(num_labels=10))
        self.method = LBAugMethod(actor, seed=self.cfg.seed)
        labels = torch.rand((self.n, 10), generator=self.generator) < 0.3
        self.labels = labels.float().to(self.images.device)

    def _call(self) -> None:
        self.method.apply(self.images, self.labels)


def stage_specs(images: Callable[[], torch.Tensor], cfg: BenchConfig) -> list[PeerSpec]:
    """The augmentation-stage peers for every policy, plus KeepAugment and LB-Aug rows.

    Args:
        images: returns the resident uint8 NCHW batch (built once, on first use).
    """
    cached = functools.lru_cache(maxsize=1)(images)
    specs: list[PeerSpec] = []

    def make(cls: type[_Stage], label: str) -> Callable[[], Any]:
        def factory() -> Any:
            if cfg.device == "cuda" and not torch.cuda.is_available():
                raise Unavailable("device cuda requested but torch.cuda.is_available() is False")
            return cls(cached(), cfg, label)

        return factory

    for label in STAGE_POLICIES:
        spec = functools.partial(PeerSpec, "augment", label)
        specs += [
            spec("dali-aug (DALI backend)", make(OursDali, label), ours=True, note="per sample"),
            spec("dali-aug (torch backend)", make(OursTorch, label), ours=True, note="per sample"),
            spec("DALI auto_aug", make(DaliAutoAug, label), note="per sample"),
            spec("Kornia augmentation.auto", make(KorniaAuto, label), note="float; per batch"),
            spec("torchvision v2 (batched call)", make(TorchvisionV2, label), note="per batch"),
        ]
    specs.append(
        PeerSpec(
            "augment",
            "keepaugment",
            "dali-aug keep_cutout (select + cut)",
            make(KeepSelectCut, "keepaugment"),
            ours=True,
            note="saliency given (model cost excluded); no peer",
        )
    )
    specs.append(
        PeerSpec(
            "augment",
            "lb-aug",
            "dali-aug LB-Aug hook.augment",
            make(LbAugSample, "lb-aug"),
            ours=True,
            note="actor + sampler + 1 op (torch backend); no peer",
        )
    )
    return specs
