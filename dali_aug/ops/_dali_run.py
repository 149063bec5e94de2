"""Runs the DALI backend on in-memory batches (``dali_aug.ops.apply(..., backend="dali")``).

One pipeline per (batch size, image size, layers, device) is built and cached; each call feeds
the images and the per-sample parameters through ``external_source``.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np
from nvidia.dali import fn, pipeline_def

from dali_aug._pipeline import to_numpy_batch
from dali_aug.ops._dali import NUM_LAYER_INPUTS, LayerNodes, apply_layers, host_inputs
from dali_aug.ops._params import OpParams

__all__ = ["run_dali"]


class _Feed:
    """The batch the next pipeline run reads (one pipeline run per call, under a lock)."""

    def __init__(self) -> None:
        self.batches: tuple[list[np.ndarray] | np.ndarray, ...] = ()
        self.lock = threading.Lock()

    def __call__(self) -> tuple[list[np.ndarray] | np.ndarray, ...]:
        return self.batches


@functools.lru_cache(maxsize=16)
def _pipeline(n: int, h: int, w: int, layers: int, device_id: int | None) -> tuple[Any, _Feed]:
    feed = _Feed()

    @pipeline_def(
        batch_size=n,
        num_threads=2,
        device_id=device_id,
        enable_conditionals=True,
        prefetch_queue_depth=1,
    )
    def pipe() -> Any:
        nodes = fn.external_source(
            source=feed, num_outputs=1 + NUM_LAYER_INPUTS * layers, batch=True
        )
        images = fn.reshape(nodes[0], layout="HWC")
        if device_id is not None:
            images = images.gpu()
        per_layer = [
            LayerNodes(*nodes[1 + NUM_LAYER_INPUTS * i : 1 + NUM_LAYER_INPUTS * (i + 1)])
            for i in range(layers)
        ]
        return apply_layers(images, per_layer, size=(h, w))

    p = pipe()
    p.build()
    return p, feed


def run_dali(images: np.ndarray, params: OpParams, *, device_id: int | None = None) -> np.ndarray:
    """Applies ``params`` to uint8 NHWC ``images`` with a DALI pipeline (CPU by default)."""
    n, h, w, _ = images.shape
    if n == 0:
        return images.copy()
    pipe, feed = _pipeline(n, h, w, params.num_layers, device_id)
    with feed.lock:
        feed.batches = ([np.ascontiguousarray(s) for s in images],) + tuple(
            host_inputs(params.to("cpu"), h, w)
        )
        (out,) = pipe.run()
        return to_numpy_batch(out).copy()  # owned by the caller, as the np.stack it replaces
