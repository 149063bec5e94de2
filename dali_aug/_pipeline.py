"""The DALI graph of the Loader: decode -> crop/flip -> policy -> normalize.

Per-sample randomness that the provenance must record (flip, policy ops) comes from the host
through ``external_source``; the random-resized-crop window is drawn by DALI's own seeded
``decoders.image_random_crop`` (ROI decoding: only the crop is decoded).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from nvidia.dali import fn, pipeline_def, types

from dali_aug.ops._dali import NUM_LAYER_INPUTS, LayerNodes, apply_layers

__all__ = ["PipelineSpec", "build_pipeline"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
    """What the graph needs to be built."""

    batch_size: int
    size: int
    train: bool
    encoded: bool  # file bytes (decode) or raw HWC arrays
    layers: int
    seed: int
    num_threads: int
    device_id: int | None
    scale: tuple[float, float]
    output_float: bool = True
    clean: bool = False  # also return the pre-policy uint8 images (provenance replay)


def build_pipeline(spec: PipelineSpec, source: Callable[[], Any]) -> Any:
    """Builds the pipeline; ``source()`` returns (images, flips, *layer inputs) per batch in
    training, the images alone in evaluation."""
    gpu = spec.device_id is not None

    @pipeline_def(
        batch_size=spec.batch_size,
        num_threads=spec.num_threads,
        device_id=spec.device_id,
        seed=spec.seed,
        enable_conditionals=spec.train,
        prefetch_queue_depth=2,
    )
    def pipe() -> Any:
        if spec.train:
            nodes = fn.external_source(
                source=source, num_outputs=2 + NUM_LAYER_INPUTS * spec.layers, batch=True
            )
            data, flip = nodes[0], nodes[1]
        else:
            data = fn.external_source(source=source, batch=True)
        s = spec.size
        if spec.train:
            if spec.encoded:
                images = fn.decoders.image_random_crop(
                    data,
                    device="mixed" if gpu else "cpu",
                    output_type=types.RGB,
                    random_area=list(spec.scale),
                    random_aspect_ratio=[3 / 4, 4 / 3],
                    num_attempts=10,
                )
                images = fn.resize(images, size=[s, s], antialias=True)
            else:
                raw = fn.reshape(data, layout="HWC")
                images = fn.random_resized_crop(
                    raw.gpu() if gpu else raw,
                    size=[s, s],
                    random_area=list(spec.scale),
                    random_aspect_ratio=[3 / 4, 4 / 3],
                )
            images = fn.flip(images, horizontal=flip)
            clean = images
            per_layer = [
                LayerNodes(*nodes[2 + NUM_LAYER_INPUTS * i : 2 + NUM_LAYER_INPUTS * (i + 1)])
                for i in range(spec.layers)
            ]
            images = apply_layers(images, per_layer, size=(s, s))
        else:
            if spec.encoded:
                images = fn.decoders.image(
                    data, device="mixed" if gpu else "cpu", output_type=types.RGB
                )
            else:
                images = fn.reshape(data, layout="HWC")
                images = images.gpu() if gpu else images
            images = fn.resize(images, resize_shorter=round(s / 0.875), antialias=True)
            images = fn.crop(images, crop=[s, s], out_of_bounds_policy="pad", fill_values=0)
            clean = images
        out = fn.crop_mirror_normalize(
            images,
            dtype=types.FLOAT,
            output_layout="CHW",
            mean=[m * 255 for m in IMAGENET_MEAN],
            std=[v * 255 for v in IMAGENET_STD],
        )
        if spec.clean:
            return out, fn.transpose(clean, perm=[2, 0, 1])
        return (out,)

    p = pipe()
    p.build()
    return p


def to_numpy_batch(tl: Any) -> np.ndarray:
    """A DALI TensorList (CPU or GPU) as one dense numpy array."""
    if hasattr(tl, "as_cpu"):
        tl = tl.as_cpu()
    return np.asarray(tl.as_tensor())
