"""Where dali-aug's end-to-end time goes (``dali-aug bench --profile``).

The Loader's work is split by timing pipelines that stop at successive points, all on the
same files, threads and batch size, interleaved like the benchmark itself:

* ``decode only (ROI window)``: the floor: ROI decode of the random-resized-crop window, no
  resize (only the shapes leave the pipeline);
* ``decode+crop``: ROI decode + resize to the output size (uint8 HWC out);
* ``+flip+normalise``: the Loader's graph without a policy, built once;
* ``+policy (graph built once)``: the Loader's graph with RandAugment(n=2, m=9), built once
  and reset every epoch (what the Loader would cost if it kept its pipeline);
* ``Loader NoAugment`` / ``Loader RandAugment``: the Loader itself (graph built once per Loader);

plus host-side costs measured alone: the graph build, the policy sampling and parameter
resolution per batch, and each RandAugment op of the DALI backend on a resident batch
(one op on every sample), and the DALI backend with its conditional tree restricted to the
policy's kernel families.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dali_aug.bench._core import BenchConfig, PeerSpec, measure
from dali_aug.bench._e2e import LoaderPeer, _EpochFeed, _files, dali_to_torch

__all__ = ["format_profile", "profile_end_to_end"]


class _LoaderFeed(_EpochFeed):
    """The Loader's external-source batches (bytes, flips, the policy's layer inputs)."""

    def __init__(self, files: list[str], cfg: BenchConfig, policy: Any) -> None:
        super().__init__(files, cfg.batch_size, cfg.seed)
        self.policy, self.size = policy, cfg.size
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def __call__(self) -> Any:  # type: ignore[override]
        from dali_aug._pipeline import crop_uniforms
        from dali_aug.ops._dali import host_inputs

        data = super().__call__()
        flips = torch.rand(len(data), generator=self.generator) < 0.5
        params = self.policy.sample(len(data), generator=self.generator)
        return (
            data,
            [np.array(int(f), dtype=np.int32) for f in flips],
            crop_uniforms(len(data), (0.08, 1.0), self.generator),
            *host_inputs(params, self.size, self.size),
        )


class _PipePeer:
    """A pipeline built once, run to the end of the epoch, reset."""

    def __init__(self, build: Callable[[], Any], device: str) -> None:
        self.build, self.device = build, device

    def setup(self) -> None:
        self.pipe = self.build()

    def step(self) -> int:
        n = 0
        while True:
            try:
                outs = self.pipe.run()
            except StopIteration:
                break
            n += int(dali_to_torch(outs[0], self.device).shape[0])
        self.pipe.reset()
        return n

    def close(self) -> None:
        self.pipe = None


def _decode_crop(files: list[str], cfg: BenchConfig, *, resize: bool = True) -> Any:
    from nvidia.dali import fn, pipeline_def, types

    feed = _EpochFeed(files, cfg.batch_size, cfg.seed)

    @pipeline_def(
        batch_size=cfg.batch_size,
        num_threads=cfg.threads,
        device_id=0 if cfg.device == "cuda" else None,
        seed=cfg.seed + 1,
        prefetch_queue_depth=2,
    )
    def pipe() -> Any:
        data = fn.external_source(source=feed, batch=True)
        images = fn.decoders.image_random_crop(
            data,
            device="mixed" if cfg.device == "cuda" else "cpu",
            output_type=types.RGB,
            random_area=[0.08, 1.0],
            random_aspect_ratio=[3 / 4, 4 / 3],
            num_attempts=10,
        )
        if not resize:  # the decode floor: the window decoded, its shape out
            return images.shape()
        return fn.resize(images, size=[cfg.size, cfg.size], antialias=True)

    p = pipe()
    p.build()
    return p


def _loader_graph(files: list[str], cfg: BenchConfig, policy: Any) -> Any:
    from dali_aug._pipeline import PipelineSpec, build_pipeline

    spec = PipelineSpec(
        batch_size=cfg.batch_size,
        size=cfg.size,
        train=True,
        encoded=True,
        layers=policy.num_layers,
        num_threads=cfg.threads,
        device_id=0 if cfg.device == "cuda" else None,
        scale=(0.08, 1.0),
    )
    return build_pipeline(spec, _LoaderFeed(files, cfg, policy))


def _per_image_ms(fn: Callable[[], Any], n: int, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times) / n


def _host_costs(cfg: BenchConfig, policy: Any, files: list[str]) -> dict[str, float]:
    from dali_aug.ops._dali import host_inputs

    g = torch.Generator().manual_seed(cfg.seed)
    b, s = cfg.batch_size, cfg.size
    sample_ms = _per_image_ms(lambda: host_inputs(policy.sample(b, generator=g), s, s), b)
    build = []
    for _ in range(3):
        t0 = time.perf_counter()
        _loader_graph(files, cfg, policy)
        build.append(time.perf_counter() - t0)
    return {"sample+resolve ms/img": sample_ms, "graph build s/epoch": statistics.median(build)}


def _op_costs(root: Path, cfg: BenchConfig) -> dict[str, float]:
    """ms/img of each RandAugment op in the DALI backend (one op on every sample, all
    families in the tree), and of RandAugment with the tree restricted to its families."""
    from dali_aug.bench._stage import OursDali, resident_batch
    from dali_aug.ops import Family, OpParams, get
    from dali_aug.ops._dali import NUM_LAYER_INPUTS, LayerNodes, apply_layers, host_inputs
    from dali_aug.policies import RAND_OPS, RandAugment

    images = resident_batch(root, cfg.batch_size, cfg.size, cfg.device)
    n, s = cfg.batch_size, cfg.size
    out: dict[str, float] = {}
    one = OursDali(images, dataclasses.replace(cfg, stage_iters=1), "rand-m9-n2")

    def graph(families: Any, layers: int) -> Callable[[Any, Any], Any]:
        def g(imgs: Any, params: Any) -> Any:
            per = [
                LayerNodes(*params[NUM_LAYER_INPUTS * i : NUM_LAYER_INPUTS * (i + 1)])
                for i in range(layers)
            ]
            return apply_layers(imgs, per, size=(s, s), families=families)

        return g

    pipe = one._pipeline(graph(tuple(Family), 1), NUM_LAYER_INPUTS)
    for name in RAND_OPS:
        one.param_feed.value = host_inputs(OpParams.single(name, 9.0, n), s, s)
        one._run(pipe)
        out[f"op {name}"] = _per_image_ms(lambda: one._run(pipe), n)
    policy = RandAugment(n=2, m=9)
    fams = tuple(sorted({get(o).family for o in RAND_OPS}, key=int))
    g = torch.Generator().manual_seed(cfg.seed)
    for label, families in (("all families", tuple(Family)), ("policy families", fams)):
        with warnings.catch_warnings(record=True):  # unused inputs of a restricted tree
            p = one._pipeline(graph(families, 2), 2 * NUM_LAYER_INPUTS)

        def call(p: Any = p) -> None:
            one.param_feed.value = host_inputs(policy.sample(n, generator=g), s, s)
            one._run(p)

        call()
        out[f"RandAugment tree: {label}"] = _per_image_ms(call, n)
    return out


def profile_end_to_end(root: Path, cfg: BenchConfig) -> dict[str, Any]:
    """Times the pieces of dali-aug's end-to-end pipeline (see the module docstring).

    Returns:
        ``{"stages": {name: {"img_per_s": [...], "ms_per_img": median}}, "host": {...},
        "dali_ops": {...}}``.
    """
    from dali_aug.policies import NoAugment, RandAugment

    files, _ = _files(root)
    policy = RandAugment(n=2, m=9)
    dev = cfg.device
    spec = PeerSpec  # shorthand
    specs = [
        spec(
            "end-to-end",
            "profile",
            "decode only (ROI window)",
            lambda: _PipePeer(lambda: _decode_crop(files, cfg, resize=False), dev),
        ),
        spec(
            "end-to-end",
            "profile",
            "decode+crop",
            lambda: _PipePeer(lambda: _decode_crop(files, cfg), dev),
        ),
        spec(
            "end-to-end",
            "profile",
            "+flip+normalise (graph built once)",
            lambda: _PipePeer(lambda: _loader_graph(files, cfg, NoAugment()), dev),
        ),
        spec(
            "end-to-end",
            "profile",
            "+policy (graph built once)",
            lambda: _PipePeer(lambda: _loader_graph(files, cfg, policy), dev),
        ),
        spec("end-to-end", "profile", "Loader NoAugment", lambda: _NoAugLoader(root, cfg)),
        spec(
            "end-to-end",
            "profile",
            "Loader RandAugment",
            lambda: LoaderPeer(root, cfg, torch_backend=False),
        ),
    ]
    print("profile: where dali-aug's end-to-end time goes")
    rows = measure(specs, cfg)
    stages = {
        r.name: {
            "img_per_s": r.runs,
            "ms_per_img": (1000.0 / r.median) if r.median else None,
            "cpu_ms_per_img": r.median_cpu_ms,
            "cores": r.median_cores,
            "error": r.error,
        }
        for r in rows
    }
    return {
        "stages": stages,
        "host": _host_costs(cfg, policy, files),
        "dali_ops": _op_costs(root, cfg),
    }


class _NoAugLoader(LoaderPeer):
    """The Loader without a policy (decode, crop, flip, normalise; graph built once per Loader)."""

    def __init__(self, root: Path, cfg: BenchConfig) -> None:
        super().__init__(root, cfg, torch_backend=False)

    def setup(self) -> None:
        from dali_aug.loader import Loader
        from dali_aug.policies import NoAugment

        c = self.cfg
        self.loader = Loader(
            self.root,
            policy=NoAugment(),
            batch_size=c.batch_size,
            size=c.size,
            num_threads=c.threads,
            device=c.device,
            seed=c.seed,
        )


def format_profile(prof: dict[str, Any]) -> str:
    """The profile as text: ms/img per pipeline prefix (and the increment), host costs, ops."""
    lines = [
        "profile (wall ms per image, its increment, and CPU ms per image with the cores busy;"
        " medians over the rounds)"
    ]
    prev: float | None = None
    for name, item in prof["stages"].items():
        ms = item["ms_per_img"]
        if ms is None:
            lines.append(f"  {name:38s} n/a  {item['error']}")
            continue
        inc = "" if prev is None or name.startswith("Loader") else f"(+{ms - prev:.2f})"
        cpu, cores = item.get("cpu_ms_per_img"), item.get("cores")
        usage = "" if cpu is None else f"  cpu {cpu:5.2f} ms/img on {cores:.2f} cores"
        lines.append(f"  {name:38s} {ms:7.2f} {inc:>9s}{usage}")
        if not name.startswith("Loader"):
            prev = ms
    for name, value in prof["host"].items():
        lines.append(f"  host: {name:32s} {value:7.3f}")
    for name, value in prof["dali_ops"].items():
        lines.append(f"  DALI backend {name:30s} {value:7.2f} ms/img")
    return "\n".join(lines)
