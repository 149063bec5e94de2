"""Saliency-quantile region selection for KeepAugment (Gong et al., arXiv:2011.11778).

KeepAugment's Selective-Cut (Alg. 1a) draws Cutout regions whose importance is below the
per-image tau-quantile of all region importances; Selective-Paste (Alg. 1b) draws the region to
paste back from those at or above it. This module picks one box per image with both rules, as a
pure-torch reference (:func:`select_regions_reference`) and a CUDA kernel
(:func:`select_regions_cuda`, source ``region_select.cu``) that give the same box for the same
inputs. The official code is not public; the unofficial ``cjf8899/KeepAugment_Pytorch``
thresholds min-max-normalised saliency at a fixed 0.6, which is *not* the paper's per-image
quantile and is not matched here.

Semantics (shared by both implementations)
------------------------------------------
Inputs: saliency ``s`` [N, H, W] float32 (finite), a box size ``(h, w)`` with ``1 <= h <= H``
and ``1 <= w <= W``, ``tau`` in [0, 1], a mode ``"cut"`` or ``"paste"`` and one uniform
``u_n`` in [0, 1) per image.

1. **Candidates.** Every box fully inside the image: top-left ``(y, x)`` with
   ``0 <= y <= H - h`` and ``0 <= x <= W - w``, numbered in row-major order
   ``p = y * (W - w + 1) + x``; ``M = (H - h + 1) * (W - w + 1)`` of them. (Deviation: Cutout
   samples centres and clips the box at the border; here every box has the full ``h x w`` size,
   our choice: the paper does not say how its candidate regions meet the border.)
2. **Scores.** ``score(y, x)`` = sum of ``s`` over rows ``y..y+h-1`` and columns ``x..x+w-1``,
   read from a float64 integral image ``I`` [H+1, W+1] (zero first row and column):
   ``score = ((I[y+h, x+w] - I[y, x+w]) - I[y+h, x]) + I[y, x]``, each step one float64
   operation in that order. ``I`` is ``s.double()`` cumulatively summed along W, then along H,
   each sum accumulated sequentially from 0.0 (what ``torch.cumsum`` does on the CPU and what
   the kernel does), so the CPU reference and the kernel produce bit-identical scores. (The
   reference run on a CUDA tensor uses torch's parallel scan, whose last bits may differ;
   results are not reproducible across devices.)
3. **Threshold.** ``q`` = the order statistic ``sorted(scores)[r]`` with
   ``r = floor(tau * (M - 1))`` (float64 product; numpy/torch ``interpolation="lower"``), per
   image. ``q`` is always one of the scores.
4. **Qualifying set**, in row-major order: ``cut``: ``score < q``; if that set is empty (``q``
   is the minimum, e.g. constant saliency or ``tau`` near 0), ``score <= q`` instead, i.e. the
   boxes tied at the minimum. ``paste``: ``score >= q`` (never empty).
5. **Choice.** With ``count`` qualifying positions, ``k = floor(u_n * count)`` (float64
   product), clamped to ``count - 1``; the box is the k-th (0-based) qualifying position: an
   exactly uniform draw from the qualifying set, with no rejection loop. This has the
   distribution of the paper's "sample until I(S) < q" loop and runs in bounded time.
6. **Output.** ``(y0, x0, y1, x1) = (y, x, y + h, x + w)`` int64, half-open, inside the image.

Example:
    >>> sal = torch.zeros(1, 8, 8)
    >>> sal[0, 3, 5] = 1.0  # one hot pixel; 4 of the 49 boxes of 2 x 2 cover it
    >>> u = torch.tensor([0.0])
    >>> select_regions_reference(sal, (2, 2), tau=1.0, mode="paste", uniforms=u).tolist()
    [[2, 4, 4, 6]]
    >>> select_regions_reference(sal, (2, 2), tau=0.6, mode="cut", uniforms=u).tolist()
    [[0, 0, 2, 2]]

    With tau = 0.6, q = 0 here (45 of the 49 scores are 0), so ``cut`` falls back to the boxes
    scoring <= 0, which are exactly those that miss the hot pixel.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ._cupy import check_uniforms_tensor, raw_module
from ._cupy import cupy_stream as _cupy_stream
from ._cupy import cupy_usable as _cupy_usable

__all__ = [
    "CU_SOURCE_PATH",
    "Mode",
    "region_scores",
    "score_threshold",
    "select_regions",
    "select_regions_cuda",
    "select_regions_reference",
]

#: The CUDA source of :func:`select_regions_cuda` (compiled at run time by CuPy's RawModule).
CU_SOURCE_PATH: Path = Path(__file__).with_name("region_select.cu")

Mode = Literal["cut", "paste"]
_MODES: tuple[str, ...] = ("cut", "paste")

#: Threads per block of the element-wise kernels and of the per-image selection kernel.
_BLOCK = 256
_SELECT_BLOCK = 512
_INT32_MAX = 2**31 - 1


# -- checks --------------------------------------------------------------------------------------


def _check_saliency(op: str, saliency: object) -> torch.Tensor:
    if not isinstance(saliency, torch.Tensor):
        raise TypeError(
            f"{op}: saliency must be a torch.Tensor [N, H, W] float32, got "
            f"{type(saliency).__name__}; wrap it with torch.as_tensor(..., dtype=torch.float32)"
        )
    if saliency.dtype != torch.float32:
        raise TypeError(
            f"{op}: saliency must be float32, got {saliency.dtype}; convert it with .float()"
        )
    if saliency.dim() != 3:
        raise ValueError(
            f"{op}: saliency must be 3-D [N, H, W], got shape {tuple(saliency.shape)}; for "
            "[N, C, H, W] reduce the channels first (e.g. .amax(1), as KeepAugment does)"
        )
    return saliency


def _check_size(op: str, size: object, height: int, width: int) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(hasattr(v, "__index__") and not isinstance(v, bool) for v in size)
    ):
        raise TypeError(f"{op}: size must be a pair of ints (h, w), got {size!r}")
    h, w = operator.index(size[0]), operator.index(size[1])
    if not (1 <= h <= height and 1 <= w <= width):
        raise ValueError(
            f"{op}: box size (h, w) = ({h}, {w}) must satisfy 1 <= h <= H and 1 <= w <= W for "
            f"images of H x W = {height} x {width}; use a smaller box or larger saliency maps"
        )
    return h, w


def _check_tau(op: str, tau: object) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise TypeError(f"{op}: tau must be a float in [0, 1], got {type(tau).__name__}")
    if not 0.0 <= float(tau) <= 1.0:  # also rejects NaN
        raise ValueError(
            f"{op}: tau must be in [0, 1] (a quantile, not a percentile), got {tau}; "
            "KeepAugment uses tau = 0.6"
        )
    return float(tau)


def _check_mode(op: str, mode: object) -> None:
    if mode not in _MODES:
        raise ValueError(
            f"{op}: unknown mode {mode!r}; use mode='cut' (Selective-Cut) or mode='paste' "
            "(Selective-Paste)"
        )


def _check_uniforms(op: str, uniforms: object, n: int, device: torch.device) -> torch.Tensor:
    u = check_uniforms_tensor(op, uniforms, (n,), layout="[N]", meaning="one per image")
    return u.to(device=device, dtype=torch.float64)


def _check_values(op: str, saliency: torch.Tensor, uniforms: torch.Tensor) -> None:
    """Checks that the saliency is finite and the uniforms are in [0, 1): one host sync."""
    bad_saliency, bad_uniforms = torch.stack(
        [~torch.isfinite(saliency).all(), ~((uniforms >= 0) & (uniforms < 1)).all()]
    ).tolist()
    if bad_saliency:
        raise ValueError(
            f"{op}: saliency contains NaN or inf; clean it with torch.nan_to_num(saliency, "
            "nan=0.0, posinf=0.0, neginf=0.0) or fix the saliency pass"
        )
    if bad_uniforms:
        raise ValueError(
            f"{op}: uniforms must lie in [0, 1) (NaN not allowed); draw them with "
            "torch.rand(N, generator=...)"
        )


def _check_all(
    op: str,
    saliency: object,
    size: object,
    tau: object,
    mode: object,
    uniforms: object,
) -> tuple[torch.Tensor, int, int, float, torch.Tensor]:
    sal = _check_saliency(op, saliency)
    n, height, width = sal.shape
    h, w = _check_size(op, size, height, width)
    tau_f = _check_tau(op, tau)
    _check_mode(op, mode)
    u = _check_uniforms(op, uniforms, n, sal.device)
    if n > 0:
        _check_values(op, sal, u)
    return sal, h, w, tau_f, u


def _quantile_rank(m: int, tau: float) -> int:
    """``floor(tau * (m - 1))``: the 0-based rank of the "lower" tau-quantile of m values."""
    return min(max(math.floor(tau * (m - 1)), 0), m - 1)


# -- reference ------------------------------------------------------------------------------------


def region_scores(saliency: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sums of saliency over every ``h x w`` box inside the image (step 2 of the semantics).

    Args:
        saliency: Finite float32 saliency maps.
        size: Box size ``(h, w)``, ``1 <= h <= H``, ``1 <= w <= W``.

    Returns:
        float64 scores; ``scores[n, y, x]`` is the box with top-left ``(y, x)``.

    Shape:
        - saliency: [N, H, W]
        - output: [N, H - h + 1, W - w + 1]
    """
    sal = _check_saliency("region_scores", saliency)
    h, w = _check_size("region_scores", size, sal.shape[1], sal.shape[2])
    integ = F.pad(sal.contiguous().double().cumsum(2).cumsum(1), (1, 0, 1, 0))
    a = integ[:, h:, w:]  # I[y+h, x+w]
    b = integ[:, : integ.shape[1] - h, w:]  # I[y, x+w]
    c = integ[:, h:, : integ.shape[2] - w]  # I[y+h, x]
    d = integ[:, : integ.shape[1] - h, : integ.shape[2] - w]  # I[y, x]
    return ((a - b) - c) + d


def score_threshold(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """The per-image threshold ``q`` (step 3 of the semantics).

    Args:
        scores: Region scores, e.g. from :func:`region_scores`; any trailing shape.
        tau: Quantile in [0, 1].

    Returns:
        ``q[n] = sorted(scores[n].flatten())[floor(tau * (M - 1))]``, same dtype as ``scores``.

    Shape:
        - scores: [N, ...] with M > 0 elements per image
        - output: [N]
    """
    tau_f = _check_tau("score_threshold", tau)
    flat = scores.reshape(scores.shape[0], -1)
    if flat.shape[1] == 0:
        raise ValueError("score_threshold: scores has no element per image; pass [N, M], M > 0")
    rank = _quantile_rank(flat.shape[1], tau_f)
    return flat.kthvalue(rank + 1, dim=1).values


def select_regions_reference(
    saliency: torch.Tensor,
    size: tuple[int, int],
    *,
    tau: float = 0.6,
    mode: Mode = "cut",
    uniforms: torch.Tensor,
) -> torch.Tensor:
    """Pure-torch reference: one box per image, as in the module docstring (batched, no loop).

    Args:
        saliency: Finite float32 saliency maps (any device; non-contiguous input is copied).
        size: Box size ``(h, w)``, ``1 <= h <= H``, ``1 <= w <= W``.
        tau: The quantile; KeepAugment uses 0.6.
        mode: ``"cut"`` (boxes scoring below ``q``) or ``"paste"`` (at or above ``q``).
        uniforms: One float in [0, 1) per image, e.g. ``torch.rand(N, generator=g)``; moved to
            the saliency's device and read as float64.

    Returns:
        Boxes ``(y0, x0, y1, x1)``, int64, half-open, on the saliency's device.

    Raises:
        TypeError: saliency not a float32 tensor, size not two ints, uniforms not floats.
        ValueError: wrong shapes, box outside ``[1, H] x [1, W]``, tau outside [0, 1], unknown
            mode, NaN/inf saliency, uniforms outside [0, 1).

    Shape:
        - saliency: [N, H, W]
        - uniforms: [N]
        - output: [N, 4]
    """
    op = "select_regions_reference"
    sal, h, w, tau_f, u = _check_all(op, saliency, size, tau, mode, uniforms)
    n = sal.shape[0]
    if n == 0:
        return torch.empty((0, 4), dtype=torch.int64, device=sal.device)
    wc = sal.shape[2] - w + 1
    flat = region_scores(sal, (h, w)).reshape(n, -1)
    q = score_threshold(flat, tau_f)[:, None]
    if mode == "cut":
        qualifies = flat < q
        empty = ~qualifies.any(1, keepdim=True)
        qualifies = torch.where(empty, flat <= q, qualifies)
    else:
        qualifies = flat >= q
    running = qualifies.cumsum(1)  # int64
    count = running[:, -1]
    k = torch.minimum((u * count.double()).floor().long(), count - 1).clamp_(min=0)
    # The k-th (0-based) qualifying position p is the first one with running[p] == k + 1, so
    # exactly p positions have running <= k.
    p = (running <= k[:, None]).sum(1)
    y0, x0 = p // wc, p % wc
    return torch.stack([y0, x0, y0 + h, x0 + w], dim=1)


# -- CUDA -----------------------------------------------------------------------------------------


def _module() -> Any:
    """The RawModule of ``region_select.cu`` (compiled on first use, cached)."""
    return raw_module(CU_SOURCE_PATH)


@dataclasses.dataclass(frozen=True)
class _Launch:
    """One kernel launch: buffer arguments by name (see :func:`select_regions_cuda`), scalars as
    numpy scalars of the kernel's C types."""

    kernel: str
    grid: tuple[int]
    block: tuple[int]
    args: tuple[str | np.generic, ...]


def _blocks(total: int) -> tuple[int]:
    return ((total + _BLOCK - 1) // _BLOCK,)


def _launch_plan(
    n: int, height: int, width: int, h: int, w: int, rank: int, mode: str
) -> list[_Launch]:
    """The launch sequence of ``region_select.cu`` for one batch (see the .cu header)."""
    wc = width - w + 1
    m = (height - h + 1) * wc
    n64, hh, ww = np.int64(n), np.int32(height), np.int32(width)
    i32 = np.int32
    return [
        _Launch(
            "rs_row_prefix", _blocks(n * (height + 1)), (_BLOCK,), ("sal", "integ", n64, hh, ww)
        ),
        _Launch("rs_col_prefix", _blocks(n * width), (_BLOCK,), ("integ", n64, hh, ww)),
        _Launch(
            "rs_box_keys", _blocks(n * m), (_BLOCK,), ("integ", "keys", n64, hh, ww, i32(h), i32(w))
        ),
        _Launch(
            "rs_select",
            (n,),
            (_SELECT_BLOCK,),
            (
                "keys",
                "uniforms",
                "boxes",
                i32(m),
                i32(rank),
                i32(wc),
                i32(h),
                i32(w),
                i32(mode == "paste"),
            ),
        ),
    ]


def select_regions_cuda(
    saliency: torch.Tensor,
    size: tuple[int, int],
    *,
    tau: float = 0.6,
    mode: Mode = "cut",
    uniforms: torch.Tensor,
) -> torch.Tensor:
    """CUDA kernel: the same box as :func:`select_regions_reference` (on the CPU) for the same
    inputs, following the module docstring.

    Four launches per batch on torch's current stream (integral image rows, columns, box keys,
    per-image radix select and choice); inputs and outputs pass zero-copy through DLPack. The
    value checks (finite saliency, uniforms in [0, 1)) cost one host sync; the launches none.
    Scratch memory: ``8 * N * ((H + 1) * (W + 1) + M)`` bytes from torch's caching allocator.

    Args:
        saliency: Finite, C-contiguous float32 saliency maps on a CUDA device.
        size: Box size ``(h, w)``, ``1 <= h <= H``, ``1 <= w <= W``.
        tau: The quantile; KeepAugment uses 0.6.
        mode: ``"cut"`` (boxes scoring below ``q``) or ``"paste"`` (at or above ``q``).
        uniforms: One float in [0, 1) per image; moved to the saliency's device, read as float64.

    Returns:
        Boxes ``(y0, x0, y1, x1)``, int64, half-open, on the saliency's device.

    Raises:
        TypeError: as :func:`select_regions_reference`.
        ValueError: as :func:`select_regions_reference`; also a CPU or non-contiguous saliency,
            or images with ``(H + 1) * (W + 1) > 2**31 - 1`` (int32 indexing).
        ImportError: CuPy is missing (``pip install cupy-cuda13x``).

    Shape:
        - saliency: [N, H, W]
        - uniforms: [N]
        - output: [N, 4]
    """
    op = "select_regions_cuda"
    sal = _check_saliency(op, saliency)
    if not sal.is_contiguous():
        raise ValueError(f"{op}: saliency must be C-contiguous; call .contiguous() first")
    if not sal.is_cuda:
        raise ValueError(
            f"{op}: saliency must be on a CUDA device, got {sal.device}; use "
            "select_regions_reference for CPU tensors, or select_regions to dispatch"
        )
    sal, h, w, tau_f, u = _check_all(op, sal, size, tau, mode, uniforms)
    n, height, width = sal.shape
    device = sal.device
    if n == 0:
        return torch.empty((0, 4), dtype=torch.int64, device=device)
    wc = width - w + 1
    m = (height - h + 1) * wc
    if (height + 1) * (width + 1) > _INT32_MAX:
        raise ValueError(
            f"{op}: images of {height} x {width} exceed the kernel's int32 indexing; "
            "downsample the saliency"
        )
    try:
        import cupy
    except ImportError as err:
        raise ImportError(
            f"{op}: needs CuPy; install it with `pip install cupy-cuda13x`, or use "
            "select_regions_reference"
        ) from err

    rank = _quantile_rank(m, tau_f)
    buffers = {
        "sal": sal,
        "uniforms": u.contiguous(),
        "integ": torch.empty((n, height + 1, width + 1), dtype=torch.float64, device=device),
        "keys": torch.empty((n, m), dtype=torch.int64, device=device),  # uint64 bit patterns
        "boxes": torch.empty((n, 4), dtype=torch.int64, device=device),
    }
    # torch.Tensor.__dlpack__ compares the consumer's stream with the current device's stream,
    # so make the saliency's device current for torch as well as for CuPy.
    with torch.cuda.device(device), cupy.cuda.Device(device.index):
        with _cupy_stream(cupy, torch.cuda.current_stream(device)):
            module = _module()
            views = {name: cupy.from_dlpack(t) for name, t in buffers.items()}
            for launch in _launch_plan(n, height, width, h, w, rank, mode):
                args = tuple(views[a] if isinstance(a, str) else a for a in launch.args)
                module.get_function(launch.kernel)(launch.grid, launch.block, args)
    return buffers["boxes"]


# -- dispatch -------------------------------------------------------------------------------------


def select_regions(
    saliency: torch.Tensor,
    size: tuple[int, int],
    *,
    tau: float = 0.6,
    mode: Mode = "cut",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draws one uniform per image and picks its box (module docstring): the CUDA kernel for a
    CUDA tensor when CuPy sees a device, the torch reference otherwise.

    The uniforms come from ``torch.rand(N, generator=generator)`` on the generator's device (the
    saliency's when ``generator`` is None, i.e. torch's default generator for that device) and
    are then moved to the saliency's device. The same generator state gives the same boxes on
    one device; results are not reproducible across devices.

    Args:
        saliency: Finite float32 saliency maps; non-contiguous CUDA input is copied.
        size: Box size ``(h, w)``, ``1 <= h <= H``, ``1 <= w <= W``.
        tau: The quantile; KeepAugment uses 0.6.
        mode: ``"cut"`` (Selective-Cut) or ``"paste"`` (Selective-Paste).
        generator: Source of the uniforms.

    Returns:
        Boxes ``(y0, x0, y1, x1)``, int64, half-open, on the saliency's device.

    Raises:
        TypeError, ValueError: as :func:`select_regions_reference`.

    Shape:
        - saliency: [N, H, W]
        - output: [N, 4]

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> boxes = select_regions(torch.rand(4, 32, 32), (16, 16), generator=g)
        >>> boxes.shape
        torch.Size([4, 4])
    """
    op = "select_regions"
    sal = _check_saliency(op, saliency)
    _check_size(op, size, sal.shape[1], sal.shape[2])
    _check_tau(op, tau)
    _check_mode(op, mode)
    draw_on = generator.device if generator is not None else sal.device
    uniforms = torch.rand(sal.shape[0], generator=generator, device=draw_on).to(sal.device)
    if sal.is_cuda and _cupy_usable():
        return select_regions_cuda(sal.contiguous(), size, tau=tau, mode=mode, uniforms=uniforms)
    return select_regions_reference(sal, size, tau=tau, mode=mode, uniforms=uniforms)
