"""The DALI graph of the Loader: decode -> crop/flip -> policy -> normalize.

Two training crops: ``rrc`` (random-resized crop, ImageNet's) and ``pad`` (small images'
pad-and-random-crop: the image resized to the output side, shifted by up to ``pad`` pixels
each way with zero fill, as torchvision's ``RandomCrop(size, padding)``).

All per-sample randomness comes from the host through ``external_source``: the flip and the
policy ops (which the provenance records) and the uniforms of the random-resized crop. The
graph draws no random numbers, so for a folder or array source the Loader builds it once and
reuses it every epoch (a DALI seed would fix the crops of the pipeline's whole lifetime, not
of one epoch); for packed shards it builds one per epoch, whose WebDataset reader's shuffle
buffer, seeded per epoch, is the graph's only random operator. The crop window
itself is computed in the graph from the image shape (``peek_image_shape``, which follows the
EXIF orientation as the decoder does) with torchvision's ``RandomResizedCrop`` rule, then
decoded with ``decoders.image_slice`` (ROI decoding: only the window is decoded).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from dali_aug.ops._optional import missing_dali

try:
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali import math as dmath
    from nvidia.dali.data_node import DataNode
except ImportError as _err:
    raise missing_dali(
        _err,
        what="dali_aug.Loader",
        alternative=" (the ops, policies, trainer and methods work without it, on tensors)",
    ) from _err

from dali_aug._crop import Crop
from dali_aug.ops._dali import NUM_LAYER_INPUTS, LayerNodes, apply_layers
from dali_aug.ops._normalize import IMAGENET_MEAN, IMAGENET_STD
from dali_aug.shards._format import IMAGE_EXTS

__all__ = [
    "CROP_ATTEMPTS",
    "DecodeProbe",
    "PipelineSpec",
    "ShardReader",
    "build_pipeline",
    "crop_uniforms",
    "to_numpy_batch",
    "to_torch",
]


#: Tries at an (area, aspect ratio) pair that fits the image before the centre-crop fallback.
CROP_ATTEMPTS = 10


@dataclasses.dataclass(frozen=True)
class ShardReader:
    """DALI's ``fn.readers.webdataset`` over the segments of one rank's epoch (packed shards:
    :mod:`dali_aug.shards`): the files are read in DALI's own threads, not fed by the host."""

    tars: tuple[str, ...]
    indices: tuple[str, ...]
    shuffle: bool
    buffer: int  # initial_fill: the shuffle buffer
    seed: int


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
    """What the graph needs to be built."""

    batch_size: int
    size: int
    train: bool
    encoded: bool  # file bytes (decode) or raw HWC arrays
    layers: int
    num_threads: int
    device_id: int | None
    scale: tuple[float, float]
    half: bool = False  # float16 normalised output (else float32)
    channels_last: bool = False  # HWC output (viewed as NCHW channels-last by the Loader)
    clean: bool = False  # also return the pre-policy uint8 images (provenance replay)
    prefetch: int = 2  # DALI's prefetch_queue_depth: batches fed ahead of the one output
    reader: ShardReader | None = None  # read packed shards (else the host feeds the bytes)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # rrc: aspect-ratio range
    crop: Crop = "rrc"  # the training crop
    pad: int = 4  # pad: the most pixels an image shifts each way
    crop_pct: float = 0.875  # evaluation: the centre crop's share of the resized shorter side


def crop_uniforms(
    n: int,
    scale: tuple[float, float],
    generator: torch.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """The host's draws for ``n`` random-resized crops as one float32 array [n, 22] (a dense
    batch for ``external_source``; row ``i`` is sample ``i``): ``CROP_ATTEMPTS`` area
    fractions (uniform in ``scale``), as many log aspect ratios (uniform in
    [log ratio[0], log ratio[1]]) and the (y, x) position of the window, uniform in [0, 1).
    The pad crop reads the position alone (the same draws: its batches share the layout)."""
    u = torch.rand((n, 2 * CROP_ATTEMPTS + 2), generator=generator, dtype=torch.float64)
    lo, hi = scale
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    k = CROP_ATTEMPTS
    u[:, :k] = lo + (hi - lo) * u[:, :k]
    u[:, k : 2 * k] = log_lo + (log_hi - log_lo) * u[:, k : 2 * k]
    return u.float().numpy()


def _crop_window(
    hwc: DataNode, uniforms: DataNode, ratio_range: tuple[float, float]
) -> tuple[DataNode, DataNode]:
    """torchvision ``RandomResizedCrop.get_params`` as DALI arithmetic on one sample's shape.

    The first of the ``CROP_ATTEMPTS`` (area, ratio) pairs whose window fits the image wins;
    if none fits, the centre crop of the whole image with its aspect ratio clamped to
    ``ratio_range``. Returns the window's int32 (y, x) start and (h, w) shape.
    """
    k = CROP_ATTEMPTS
    h_img, w_img = hwc[0], hwc[1]
    area = uniforms[0:k] * (h_img * w_img)
    ratio = dmath.exp(uniforms[k : 2 * k])
    w = dmath.floor(dmath.sqrt(area * ratio) + 0.5)
    h = dmath.floor(dmath.sqrt(area / ratio) + 0.5)
    fits = (w <= w_img) & (h <= h_img) & (w >= 1.0) & (h >= 1.0)
    attempt = types.Constant(np.arange(k, dtype=np.float32))
    first = fn.reductions.min(attempt + (fits ^ True) * float(k))
    pick = attempt == first  # one-hot on the first attempt that fits; all False if none
    found = first < float(k)
    lost = found ^ True
    # fallback (torchvision): the whole image, cut to the nearest admissible aspect ratio
    in_ratio = w_img / h_img
    wide, tall = in_ratio > ratio_range[1], in_ratio < ratio_range[0]
    w_fb = wide * dmath.floor(h_img * ratio_range[1] + 0.5) + (wide ^ True) * w_img
    h_fb = tall * dmath.floor(w_img / ratio_range[0] + 0.5) + (tall ^ True) * h_img
    w_win = found * fn.reductions.sum(w * pick) + lost * w_fb
    h_win = found * fn.reductions.sum(h * pick) + lost * h_fb
    y_pos, x_pos = uniforms[2 * k], uniforms[2 * k + 1]
    y0 = found * dmath.floor(y_pos * (h_img - h_win + 1.0)) + lost * dmath.floor(
        (h_img - h_win) * 0.5
    )
    x0 = found * dmath.floor(x_pos * (w_img - w_win + 1.0)) + lost * dmath.floor(
        (w_img - w_win) * 0.5
    )
    start = fn.cast(fn.stack(y0, x0), dtype=types.INT32)
    shape = fn.cast(fn.stack(h_win, w_win), dtype=types.INT32)
    return start, shape


def _pad_crop(images: DataNode, uniforms: DataNode, side: int, pad: int) -> DataNode:
    """The pad crop of images already resized to ``side`` on their shorter side: the centred
    ``side`` x ``side`` window shifted by ``floor(u * (2 pad + 1)) - pad`` pixels on each axis
    (``u``: the position uniforms of :func:`crop_uniforms`), zeros outside the image."""
    hwc = images.shape(dtype=types.FLOAT)
    k, span = CROP_ATTEMPTS, float(2 * pad + 1)
    y0 = dmath.floor((hwc[0] - side) * 0.5) + dmath.floor(uniforms[2 * k] * span) - pad
    x0 = dmath.floor((hwc[1] - side) * 0.5) + dmath.floor(uniforms[2 * k + 1] * span) - pad
    return fn.slice(
        images,
        start=fn.cast(fn.stack(y0, x0), dtype=types.INT32),
        shape=[side, side],
        axis_names="HW",
        out_of_bounds_policy="pad",
        fill_values=0,
    )


def build_pipeline(spec: PipelineSpec, source: Callable[[], Any]) -> Any:
    """Builds the pipeline; ``source()`` returns (images, flips, crop uniforms, *layer
    inputs) per batch in training (see :func:`crop_uniforms`), the images alone in
    evaluation. The graph draws no random numbers: it can serve every epoch.

    With ``spec.reader`` the images come from DALI's WebDataset reader instead (``source()``
    then returns the training inputs without the images, and is not called in evaluation),
    and the last output is the samples' packed indices (int64 [B, 1]); its shuffle buffer is
    the only random operator, seeded by ``spec.reader.seed``.
    """
    gpu = spec.device_id is not None
    reader = spec.reader
    host = 2 + NUM_LAYER_INPUTS * spec.layers  # flips, crop uniforms, layer inputs

    @pipeline_def(
        batch_size=spec.batch_size,
        num_threads=spec.num_threads,
        device_id=spec.device_id,
        seed=0,  # unused: no operator of the graph is random
        enable_conditionals=spec.train,
        prefetch_queue_depth=spec.prefetch,
    )
    def pipe() -> Any:
        key = None
        nodes: list[Any] = []
        if reader is not None:
            data, key = fn.readers.webdataset(  # type: ignore[misc]
                paths=list(reader.tars),
                index_paths=list(reader.indices),
                ext=[";".join(IMAGE_EXTS), "idx"],
                dtypes=[types.UINT8, types.INT64],
                missing_component_behavior="error",
                random_shuffle=reader.shuffle,
                initial_fill=reader.buffer,
                seed=reader.seed,
                pad_last_batch=True,
                name="shards",
            )
            if spec.train:
                nodes = [None, *fn.external_source(source=source, num_outputs=host, batch=True)]  # type: ignore[misc]
                flip, uniforms = nodes[1], nodes[2]
        elif spec.train:
            nodes = list(fn.external_source(source=source, num_outputs=1 + host, batch=True))
            data, flip, uniforms = nodes[0], nodes[1], nodes[2]
        else:
            data = fn.external_source(source=source, batch=True)
        s = spec.size

        def whole() -> DataNode:  # the whole image, decoded (files) or as given (arrays)
            if spec.encoded:
                return fn.decoders.image(
                    data, device="mixed" if gpu else "cpu", output_type=types.RGB
                )
            raw = fn.reshape(data, layout="HWC")
            return raw.gpu() if gpu else raw

        if spec.train and spec.crop == "pad":
            images = fn.resize(whole(), resize_shorter=s, antialias=True)
            images = _pad_crop(images, uniforms, s, spec.pad)
        elif spec.train:
            if spec.encoded:
                hwc = fn.peek_image_shape(data, dtype=types.FLOAT)
                start, shape = _crop_window(hwc, uniforms, spec.ratio)
                images = fn.decoders.image_slice(
                    data,
                    device="mixed" if gpu else "cpu",
                    output_type=types.RGB,
                    start=start,
                    shape=shape,
                    axis_names="HW",
                )
            else:
                raw = fn.reshape(data, layout="HWC")
                start, shape = _crop_window(raw.shape(dtype=types.FLOAT), uniforms, spec.ratio)
                images = fn.slice(
                    raw.gpu() if gpu else raw, start=start, shape=shape, axis_names="HW"
                )
            images = fn.resize(images, size=[s, s], antialias=True)
        if spec.train:
            images = fn.flip(images, horizontal=flip)
            clean = images
            per_layer = [
                LayerNodes(*nodes[3 + NUM_LAYER_INPUTS * i : 3 + NUM_LAYER_INPUTS * (i + 1)])
                for i in range(spec.layers)
            ]
            images = apply_layers(images, per_layer, size=(s, s))
        else:
            images = fn.resize(whole(), resize_shorter=round(s / spec.crop_pct), antialias=True)
            images = fn.crop(images, crop=[s, s], out_of_bounds_policy="pad", fill_values=0)
            clean = images
        out = fn.crop_mirror_normalize(
            images,
            dtype=types.FLOAT16 if spec.half else types.FLOAT,
            output_layout="HWC" if spec.channels_last else "CHW",
            mean=[m * 255 for m in IMAGENET_MEAN],
            std=[v * 255 for v in IMAGENET_STD],
        )
        outs = (out, fn.transpose(clean, perm=[2, 0, 1])) if spec.clean else (out,)
        return outs if key is None else (*outs, key)

    p = pipe()
    p.build()
    return p


class DecodeProbe:
    """Runs single samples through the decode stage of a spec's graph (batch 1, no policy, the
    same decoder and device): tells which samples of a batch that made the pipeline fail the
    pipeline's own decoder rejects (PIL accepts files DALI rejects, and the other way round).

    Args:
        spec: the spec of the pipeline that failed; it must decode (``spec.encoded``).
    """

    def __init__(self, spec: PipelineSpec) -> None:
        if not spec.encoded:
            raise ValueError("DecodeProbe needs a spec that decodes files (encoded=True)")
        # prefetch 1: the run that fails is the run of the sample just fed
        self.spec = dataclasses.replace(
            spec, batch_size=1, layers=0, clean=False, num_threads=1, prefetch=1
        )
        self._sample: Any = ()
        self._pipe: Any = None

    def _feed(self) -> Any:
        return self._sample

    def decodes(self, data: np.ndarray, uniforms: np.ndarray | None = None) -> bool:
        """Whether one file's bytes go through the graph; ``uniforms`` is the sample's row of
        :func:`crop_uniforms` (training specs: the crop window decides what is decoded)."""
        if self.spec.train:
            if uniforms is None:
                raise ValueError("a training spec needs the sample's crop uniforms")
            self._sample = ([data], np.zeros(1, dtype=np.int32), uniforms[None])
        else:
            self._sample = [data]
        if self._pipe is None:
            self._pipe = build_pipeline(self.spec, self._feed)
        try:
            self._pipe.run()
        except RuntimeError:
            self._pipe = None  # DALI: "Current pipeline object is no longer valid"
            return False
        return True


def to_numpy_batch(tl: Any) -> np.ndarray:
    """A DALI TensorList (CPU or GPU) of equally shaped samples as one dense numpy array."""
    if hasattr(tl, "as_cpu"):
        tl = tl.as_cpu()
    return np.asarray(tl.as_tensor())


def to_torch(tl: Any, device: str) -> torch.Tensor:
    """A DALI output TensorList as a torch tensor [B, ...] on ``device`` ("cpu" or "cuda").

    On CUDA the batch is copied into torch-owned memory (on the stream the outputs were
    ordered on): DALI recycles its GPU output buffers, and the next run would overwrite them.
    On the CPU the tensor shares the memory of the DALI output, which DALI does not reuse
    while the tensor holds it.
    """
    if device == "cuda":
        return torch.from_dlpack(tl.as_tensor()).clone()
    return torch.from_numpy(to_numpy_batch(tl))
