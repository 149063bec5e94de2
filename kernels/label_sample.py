"""Label-conditioned sampling of (op, apply-probability level, magnitude level) for LB-Aug.

LB-Aug (Wang et al., "Fine-Grained AutoAugmentation for Multi-Label Classification", Sec.
3.2.1) maps a multi-hot label vector through an actor MLP to three factorised categoricals
(Eq. 4):
one over the ``K`` ops, and for every op one over ``P`` apply-probability levels and one over
``M`` magnitude levels (``K, P, M = 16, 11, 10`` in the paper; everything here is generic in
them). A sample draws the op ``j ~ Cat(op_logits)``, then the levels from op ``j``'s rows,
``k ~ Cat(prob_logits[j])`` and ``l ~ Cat(mag_logits[j])``, and its log-probability is the sum
of the three (Eq. 6), the quantity REINFORCE needs (Eq. 5). The official code is not public.

This module holds a pure-torch reference (:func:`sample_reference`), a fused CUDA kernel
(:func:`sample_cuda`, source ``label_sample.cu``, one warp per sample) that returns the same ids
for the same uniforms, and the public entry :func:`sample`, which draws the uniforms, dispatches,
and returns a ``log_prob`` that is differentiable w.r.t. the three logit tensors.

Semantics (shared by both implementations)
------------------------------------------
Inputs: ``op_logits`` [N, K], ``prob_logits`` [N, K, P], ``mag_logits`` [N, K, M] (any floating
dtype, converted to float32 first; non-contiguous input is copied) and ``uniforms`` [N, 3] in
[0, 1) (converted to float32; column 0 drives the op, 1 the probability level, 2 the magnitude
level). ``K, P, M >= 1``. Logits may be ``-inf``, which masks an entry (probability 0, never
drawn), e.g. to restrict the op set; NaN and ``+inf`` are errors, and every row of every tensor
needs at least one finite entry.

Each of the three draws picks an index from one row ``x[0..L-1]`` (float32) with one uniform
``u`` (float32):

1. **Weights.** ``m = max_i x[i]`` (float32); ``d[i] = x[i] - m`` (float32 subtraction);
   ``w[i] = float32(exp(float64(d[i])))``: the exponential is evaluated in float64 and rounded
   to float32, then used as a float64. ``w = 0`` exactly for a ``-inf`` entry and ``w = 1`` at the
   maximum.
2. **CDF.** ``cdf[i] = w[0] + w[1] + ... + w[i]``, accumulated in float64 **sequentially in index
   order** from 0.0 (what ``torch.cumsum`` does for float64 on the CPU, and what the kernel does
   through warp shuffles); ``total = cdf[L - 1] >= 1``.
3. **Pick.** ``t = float64(u) * total`` (one float64 product); the index is the **first** ``i``
   with ``t < cdf[i]``, clamped to the last index with ``w[i] > 0`` (the clamp cannot trigger
   for ``u < 1``; it is the documented rule should it ever be reached). An index with
   ``w[i] = 0`` is never picked; ``u = 0`` picks the first index with ``w > 0`` and
   ``u = nextafter(1, 0)`` the last one whose probability exceeds about ``2**-24``.
4. **Log-probability.** ``logp = float64(d[pick]) - log(total)`` (float64), i.e.
   ``log_softmax(x)[pick]``.

The op is drawn from ``op_logits[n]`` with ``uniforms[n, 0]``; with ``j`` the op, the
probability level from ``prob_logits[n, j]`` with ``uniforms[n, 1]`` and the magnitude level from
``mag_logits[n, j]`` with ``uniforms[n, 2]``. ``log_prob[n] = float32((logp_op + logp_prob) +
logp_mag)``, summed in float64 in that order and rounded once.

Outputs: ``op_ids``, ``prob_levels``, ``mag_levels`` int64 [N] and ``log_prob`` float32 [N], on
the logits' device.

Agreement. All comparisons use identical float64 values on both sides except for the float64
``exp`` and ``log`` of the device's math library (at most 1 ulp apart); since the weights are
rounded to float32 before use, the CPU reference and the kernel give the same ids unless such an
``exp`` difference crosses a float32 rounding boundary and the threshold then falls exactly
between the two sums (about ``2**-29`` per weight, times the chance of that tie), and
``log_prob`` agrees to float32 rounding. The reference run on a CUDA tensor uses torch's parallel
``cumsum``, whose last bits may differ; results are not reproducible across devices.

Example:
    >>> op = torch.tensor([[0.0, 0.0, float("-inf")]])  # op 2 forbidden
    >>> prob = torch.zeros(1, 3, 11)
    >>> mag = torch.zeros(1, 3, 10)
    >>> u = torch.tensor([[0.75, 0.0, 0.5]])
    >>> ids = sample_reference(op, prob, mag, u)
    >>> ids.op_ids.tolist(), ids.prob_levels.tolist(), ids.mag_levels.tolist()
    ([1], [0], [5])
    >>> round(ids.log_prob.item(), 4)  # log(1/2) + log(1/11) + log(1/10)
    -5.3936
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# The CuPy helpers are shared with the region-select kernel (one cache of CuPy's availability).
from ._cupy import check_uniforms_tensor, raw_module
from ._cupy import cupy_stream as _cupy_stream
from ._cupy import cupy_usable as _cupy_usable

__all__ = [
    "CU_SOURCE_PATH",
    "LabelSample",
    "log_prob_of",
    "sample",
    "sample_cuda",
    "sample_reference",
]

#: The CUDA source of :func:`sample_cuda` (compiled at run time by CuPy's RawModule).
CU_SOURCE_PATH: Path = Path(__file__).with_name("label_sample.cu")

#: Threads per block of ``ls_sample`` (one warp of 32 per sample, so 4 samples per block).
_BLOCK = 128
_WARP = 32
_INT32_MAX = 2**31 - 1

_LAYOUTS: tuple[tuple[str, int, str], ...] = (
    ("op_logits", 2, "[N, K]"),
    ("prob_logits", 3, "[N, K, P]"),
    ("mag_logits", 3, "[N, K, M]"),
)


class LabelSample(NamedTuple):
    """One draw per sample (a tuple: unpack it as ``op_ids, prob_levels, mag_levels, log_prob``).

    Attributes:
        op_ids: int64 [N], the op index in ``[0, K)``.
        prob_levels: int64 [N], the apply-probability level in ``[0, P)`` of the chosen op.
        mag_levels: int64 [N], the magnitude level in ``[0, M)`` of the chosen op.
        log_prob: float32 [N], ``log pi(op) + log pi_op(prob level) + log pi_op(mag level)``.
    """

    op_ids: torch.Tensor
    prob_levels: torch.Tensor
    mag_levels: torch.Tensor
    log_prob: torch.Tensor


# -- checks --------------------------------------------------------------------------------------


def _check_logits(
    op: str, op_logits: object, prob_logits: object, mag_logits: object
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Type, rank, device and shape checks; returns the three tensors unchanged."""
    tensors: list[torch.Tensor] = []
    for (name, ndim, layout), t in zip(_LAYOUTS, (op_logits, prob_logits, mag_logits), strict=True):
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"{op}: {name} must be a torch.Tensor {layout} of floats, got {type(t).__name__}"
            )
        if not t.is_floating_point():
            raise TypeError(
                f"{op}: {name} must be a floating-point tensor (computed in float32), got "
                f"{t.dtype}; convert it with .float()"
            )
        if t.dim() != ndim:
            raise ValueError(
                f"{op}: {name} must be {ndim}-D {layout}, got shape {tuple(t.shape)}; add or "
                "remove the batch dimension"
            )
        tensors.append(t)
    opl, prl, mgl = tensors
    if not opl.device == prl.device == mgl.device:
        raise ValueError(
            f"{op}: op_logits, prob_logits and mag_logits must be on one device, got "
            f"{opl.device}, {prl.device} and {mgl.device}; move them with .to(device)"
        )
    n, k = opl.shape
    for name, t in (("prob_logits", prl), ("mag_logits", mgl)):
        if tuple(t.shape[:2]) != (n, k):
            raise ValueError(
                f"{op}: {name} must be [N, K, ...] with N, K = {n}, {k} from op_logits [N, K], "
                f"got shape {tuple(t.shape)}; each op needs one row of levels per sample"
            )
    for letter, size in (("K", k), ("P", prl.shape[2]), ("M", mgl.shape[2])):
        if size < 1:
            raise ValueError(
                f"{op}: {letter} must be >= 1 (a categorical needs at least one choice), got "
                f"op_logits {tuple(opl.shape)}, prob_logits {tuple(prl.shape)}, mag_logits "
                f"{tuple(mgl.shape)}"
            )
    return opl, prl, mgl


def _as_float32(t: torch.Tensor) -> torch.Tensor:
    """A detached, C-contiguous float32 version of ``t`` (no copy when it already is one)."""
    return t.detach().to(torch.float32).contiguous()


def _check_uniforms(op: str, uniforms: object, n: int, device: torch.device) -> torch.Tensor:
    """Type, shape and device checks; returns the uniforms as C-contiguous float32."""
    uniforms = check_uniforms_tensor(
        op, uniforms, (n, 3), layout="[N, 3]", meaning="op, probability level, magnitude level"
    )
    if uniforms.device != device:
        raise ValueError(
            f"{op}: uniforms must be on the logits' device {device}, got {uniforms.device}; "
            "move them with .to(device)"
        )
    return _as_float32(uniforms)


def _check_values(op: str, logits: Sequence[torch.Tensor], uniforms: torch.Tensor | None) -> None:
    """Checks the float32 logits and uniforms for bad values, with one host sync."""
    flags = []
    for t in logits:
        flags.append(torch.isnan(t).any() | torch.isposinf(t).any())
        flags.append((t == float("-inf")).all(-1).any())
    if uniforms is not None:
        flags.append(~((uniforms >= 0) & (uniforms < 1)).all())
    bad = torch.stack(flags).tolist()
    for (name, _, _), (bad_value, bad_row) in zip(
        _LAYOUTS, zip(bad[0:6:2], bad[1:6:2], strict=True), strict=True
    ):
        if bad_value:
            raise ValueError(
                f"{op}: {name} contains NaN or +inf (after conversion to float32); logits must "
                "be finite, with -inf only to mask forbidden entries. Check the actor for a "
                f"diverged loss, or clean the input, e.g. torch.nan_to_num({name}, nan=0.0, "
                "posinf=1e4, neginf=float('-inf'))"
            )
        if bad_row:
            raise ValueError(
                f"{op}: a row of {name} is all -inf, so it has nothing to draw; keep at least "
                "one finite logit per row (mask fewer entries)"
            )
    if uniforms is not None and bad[6]:
        raise ValueError(
            f"{op}: uniforms must lie in [0, 1) after conversion to float32 (NaN not allowed); "
            "draw them with torch.rand(N, 3, generator=...)"
        )


def _prepare(
    op: str,
    op_logits: object,
    prob_logits: object,
    mag_logits: object,
    uniforms: object | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """All checks; returns float32 C-contiguous logits (and uniforms, when given)."""
    tensors = _check_logits(op, op_logits, prob_logits, mag_logits)
    n = tensors[0].shape[0]
    opl, prl, mgl = (_as_float32(t) for t in tensors)
    u = None if uniforms is None else _check_uniforms(op, uniforms, n, opl.device)
    if n > 0:
        _check_values(op, (opl, prl, mgl), u)
    return opl, prl, mgl, u


def _empty(n_like: torch.Tensor) -> LabelSample:
    ids = torch.empty(0, dtype=torch.int64, device=n_like.device)
    return LabelSample(ids, ids.clone(), ids.clone(), torch.empty(0, device=n_like.device))


# -- reference ------------------------------------------------------------------------------------


def _pick_reference(logits: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-4 of the semantics for every row of ``logits`` [R, L] with ``u`` [R]; returns the
    int64 picks [R] and their float64 log-probabilities [R]."""
    d = logits - logits.amax(-1, keepdim=True)  # float32
    w = d.double().exp().float().double()
    cdf = w.cumsum(-1)  # sequential float64 accumulation on the CPU
    total = cdf[:, -1]
    t = u.double() * total
    first = (cdf <= t[:, None]).sum(-1)  # = first i with t < cdf[i] (cdf is non-decreasing)
    index = torch.arange(logits.shape[1], device=logits.device)
    last_positive = torch.where(w > 0, index, -1).amax(-1)
    pick = torch.minimum(first, last_positive)
    logp = d.gather(1, pick[:, None])[:, 0].double() - total.log()
    return pick, logp


def _sample_reference(
    opl: torch.Tensor, prl: torch.Tensor, mgl: torch.Tensor, u: torch.Tensor
) -> LabelSample:
    """The reference on checked float32 inputs."""
    n = opl.shape[0]
    if n == 0:
        return _empty(opl)
    op_ids, lp_op = _pick_reference(opl, u[:, 0])
    rows = torch.arange(n, device=opl.device)
    prob_levels, lp_prob = _pick_reference(prl[rows, op_ids], u[:, 1])
    mag_levels, lp_mag = _pick_reference(mgl[rows, op_ids], u[:, 2])
    return LabelSample(op_ids, prob_levels, mag_levels, ((lp_op + lp_prob) + lp_mag).float())


def sample_reference(
    op_logits: torch.Tensor,
    prob_logits: torch.Tensor,
    mag_logits: torch.Tensor,
    uniforms: torch.Tensor,
) -> LabelSample:
    """Pure-torch reference: one (op, probability level, magnitude level) per sample, as in the
    module docstring (batched, no Python loop over samples).

    The returned ``log_prob`` is a plain tensor (no autograd graph); use :func:`sample` for a
    differentiable one.

    Args:
        op_logits: Op logits, any floating dtype (computed in float32), any device.
        prob_logits: Apply-probability-level logits per op.
        mag_logits: Magnitude-level logits per op.
        uniforms: Floats in [0, 1) on the same device (read as float32); column 0 drives the
            op, 1 the probability level, 2 the magnitude level.

    Returns:
        ``LabelSample(op_ids, prob_levels, mag_levels, log_prob)``: int64 ×3 and float32.

    Raises:
        TypeError: an argument is not a tensor, or not floating-point.
        ValueError: wrong rank, N or K disagreeing, K, P or M of 0, tensors on different
            devices, NaN or +inf logits, an all ``-inf`` row, uniforms not [N, 3] or outside
            [0, 1).

    Shape:
        - op_logits: [N, K]
        - prob_logits: [N, K, P]
        - mag_logits: [N, K, M]
        - uniforms: [N, 3]
        - outputs: [N] each
    """
    opl, prl, mgl, u = _prepare("sample_reference", op_logits, prob_logits, mag_logits, uniforms)
    assert u is not None
    with torch.no_grad():
        return _sample_reference(opl, prl, mgl, u)


# -- CUDA -----------------------------------------------------------------------------------------


def _module() -> Any:
    """The RawModule of ``label_sample.cu`` (compiled on first use, cached)."""
    return raw_module(CU_SOURCE_PATH)


def _sample_cuda(
    opl: torch.Tensor, prl: torch.Tensor, mgl: torch.Tensor, u: torch.Tensor
) -> LabelSample:
    """The kernel on checked float32 C-contiguous CUDA inputs."""
    op = "sample_cuda"
    n, k = opl.shape
    p, m = prl.shape[2], mgl.shape[2]
    device = opl.device
    if n == 0:
        return _empty(opl)
    if max(k, p, m) > _INT32_MAX:
        raise ValueError(f"{op}: K, P and M must fit in int32, got {k}, {p}, {m}")
    try:
        import cupy
    except ImportError as err:
        raise ImportError(
            f"{op}: needs CuPy; install it with `pip install cupy-cuda13x`, or use sample_reference"
        ) from err
    buffers = {
        "op_logits": opl,
        "prob_logits": prl,
        "mag_logits": mgl,
        "uniforms": u,
        "op_ids": torch.empty(n, dtype=torch.int64, device=device),
        "prob_levels": torch.empty(n, dtype=torch.int64, device=device),
        "mag_levels": torch.empty(n, dtype=torch.int64, device=device),
        "log_prob": torch.empty(n, dtype=torch.float32, device=device),
    }
    grid = ((n * _WARP + _BLOCK - 1) // _BLOCK,)
    # torch.Tensor.__dlpack__ compares the consumer's stream with the current device's stream,
    # so make the logits' device current for torch as well as for CuPy.
    with torch.cuda.device(device), cupy.cuda.Device(device.index):
        with _cupy_stream(cupy, torch.cuda.current_stream(device)):
            views = [cupy.from_dlpack(t) for t in buffers.values()]
            args = (*views, np.int64(n), np.int32(k), np.int32(p), np.int32(m))
            _module().get_function("ls_sample")(grid, (_BLOCK,), args)
    return LabelSample(
        buffers["op_ids"], buffers["prob_levels"], buffers["mag_levels"], buffers["log_prob"]
    )


def sample_cuda(
    op_logits: torch.Tensor,
    prob_logits: torch.Tensor,
    mag_logits: torch.Tensor,
    uniforms: torch.Tensor,
) -> LabelSample:
    """CUDA kernel: the same ids as :func:`sample_reference` (on the CPU) for the same inputs,
    following the module docstring.

    One launch of ``ls_sample`` (one warp per sample) on torch's current stream; inputs and
    outputs pass zero-copy through DLPack. The value checks (no NaN/+inf, no all ``-inf`` row,
    uniforms in [0, 1)) cost one host sync; the launch none. Inputs that are not float32 or not
    C-contiguous are copied first. The returned ``log_prob`` has no autograd graph; use
    :func:`sample` for a differentiable one.

    Args:
        op_logits: Op logits on a CUDA device, any floating dtype (computed in float32).
        prob_logits: Apply-probability-level logits per op, same device.
        mag_logits: Magnitude-level logits per op, same device.
        uniforms: Floats in [0, 1) on the same device (read as float32).

    Returns:
        ``LabelSample(op_ids, prob_levels, mag_levels, log_prob)``: int64 ×3 and float32.

    Raises:
        TypeError: as :func:`sample_reference`.
        ValueError: as :func:`sample_reference`; also CPU tensors.
        ImportError: CuPy is missing (``pip install cupy-cuda13x``).

    Shape:
        - op_logits: [N, K]
        - prob_logits: [N, K, P]
        - mag_logits: [N, K, M]
        - uniforms: [N, 3]
        - outputs: [N] each
    """
    op = "sample_cuda"
    device = _check_logits(op, op_logits, prob_logits, mag_logits)[0].device
    if device.type != "cuda":
        raise ValueError(
            f"{op}: the logits must be on a CUDA device, got {device}; use sample_reference "
            "for CPU tensors, or sample to dispatch"
        )
    opl, prl, mgl, u = _prepare(op, op_logits, prob_logits, mag_logits, uniforms)
    assert u is not None
    return _sample_cuda(opl, prl, mgl, u)


# -- differentiable entry point ------------------------------------------------------------------


def _row_grad(logits: torch.Tensor, picks: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``g * (onehot(pick) - softmax(row))`` per row: the gradient of the picked log-softmax."""
    onehot = F.one_hot(picks, logits.shape[-1]).to(logits.dtype)
    return (onehot - torch.softmax(logits, -1)) * g[:, None]


class _Sample(torch.autograd.Function):
    """Draws with the reference or the kernel; backward is the analytic gradient of
    ``log_prob = log_softmax(op)[j] + log_softmax(prob[j])[k] + log_softmax(mag[j])[l]``."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        op_logits: torch.Tensor,
        prob_logits: torch.Tensor,
        mag_logits: torch.Tensor,
        checked: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
        use_cuda: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        opl, prl, mgl, u = checked
        out = (_sample_cuda if use_cuda else _sample_reference)(opl, prl, mgl, u)
        ctx.save_for_backward(opl, prl, mgl, out.op_ids, out.prob_levels, out.mag_levels)
        ctx.dtypes = (op_logits.dtype, prob_logits.dtype, mag_logits.dtype)
        ctx.mark_non_differentiable(out.op_ids, out.prob_levels, out.mag_levels)
        return out.op_ids, out.prob_levels, out.mag_levels, out.log_prob

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        opl, prl, mgl, op_ids, prob_levels, mag_levels = ctx.saved_tensors
        g = grads[3].to(torch.float32)
        need_op, need_prob, need_mag = ctx.needs_input_grad[:3]
        dtype_op, dtype_prob, dtype_mag = ctx.dtypes
        rows = torch.arange(op_ids.shape[0], device=op_ids.device)
        grad_op = grad_prob = grad_mag = None
        if need_op:
            grad_op = _row_grad(opl, op_ids, g).to(dtype_op)
        if need_prob:
            grad_prob = torch.zeros_like(prl)
            grad_prob[rows, op_ids] = _row_grad(prl[rows, op_ids], prob_levels, g)
            grad_prob = grad_prob.to(dtype_prob)
        if need_mag:
            grad_mag = torch.zeros_like(mgl)
            grad_mag[rows, op_ids] = _row_grad(mgl[rows, op_ids], mag_levels, g)
            grad_mag = grad_mag.to(dtype_mag)
        return grad_op, grad_prob, grad_mag, None, None


def sample(
    op_logits: torch.Tensor,
    prob_logits: torch.Tensor,
    mag_logits: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> LabelSample:
    """Draws one (op, probability level, magnitude level) per sample (module docstring), with a
    ``log_prob`` differentiable w.r.t. the three logit tensors.

    The uniforms come from ``torch.rand(N, 3, generator=generator)`` on the generator's device
    (the logits' device when ``generator`` is None, i.e. torch's default generator for that
    device, mirroring :func:`~dali_aug.kernels.region_select.select_regions`) and are then moved
    to the logits' device. The draw runs in the CUDA kernel for CUDA logits when CuPy sees a
    device, in the torch reference otherwise. The same generator state gives the same ids on one
    device; results are not reproducible across devices.

    The gradient of ``log_prob[n]`` is analytic: ``onehot(op) - softmax(op_logits[n])`` for the
    op logits and, only in the chosen op's row ``j``, ``onehot(level) - softmax(row)`` for
    ``prob_logits[n, j]`` and ``mag_logits[n, j]`` (zero elsewhere), returned in each input's
    dtype. So REINFORCE is ``(-(reward - baseline) * log_prob).mean().backward()``. The ids
    carry no gradient.

    Args:
        op_logits: Op logits, any floating dtype (computed in float32); ``-inf`` masks an op.
        prob_logits: Apply-probability-level logits per op.
        mag_logits: Magnitude-level logits per op.
        generator: Source of the uniforms; None uses torch's global RNG for the device.

    Returns:
        ``LabelSample(op_ids, prob_levels, mag_levels, log_prob)``: int64 ×3 and float32, on
        the logits' device.

    Raises:
        TypeError, ValueError: as :func:`sample_reference` (the uniforms are drawn here).

    Shape:
        - op_logits: [N, K]
        - prob_logits: [N, K, P]
        - mag_logits: [N, K, M]
        - outputs: [N] each

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> op = torch.zeros(4, 16, requires_grad=True)
        >>> out = sample(op, torch.zeros(4, 16, 11), torch.zeros(4, 16, 10), generator=g)
        >>> out.op_ids.shape, out.log_prob.requires_grad
        (torch.Size([4]), True)
        >>> (-out.log_prob.mean()).backward()
        >>> op.grad.shape
        torch.Size([4, 16])
    """
    op = "sample"
    opl, prl, mgl, _ = _prepare(op, op_logits, prob_logits, mag_logits, None)
    n, device = opl.shape[0], opl.device
    draw_on = generator.device if generator is not None else device
    u = torch.rand(n, 3, generator=generator, device=draw_on).to(device)
    use_cuda = device.type == "cuda" and n > 0 and _cupy_usable()
    op_ids, prob_levels, mag_levels, log_prob = _Sample.apply(
        op_logits, prob_logits, mag_logits, (opl, prl, mgl, u), use_cuda
    )
    return LabelSample(op_ids, prob_levels, mag_levels, log_prob)


def log_prob_of(
    op_logits: torch.Tensor,
    prob_logits: torch.Tensor,
    mag_logits: torch.Tensor,
    op_ids: torch.Tensor,
    prob_levels: torch.Tensor,
    mag_levels: torch.Tensor,
) -> torch.Tensor:
    """The differentiable log-probability of given draws under (possibly updated) logits: what
    :func:`sample` returns as ``log_prob``, for re-scoring stored actions (e.g. PPO ratios).

    Computed with torch's float32 ``log_softmax`` and autograd (agrees with :func:`sample`'s
    ``log_prob`` to float32 rounding); a draw of a ``-inf`` entry has log-probability ``-inf``.

    Args:
        op_logits: Op logits, any floating dtype (computed in float32).
        prob_logits: Apply-probability-level logits per op.
        mag_logits: Magnitude-level logits per op.
        op_ids: int64 op indices in ``[0, K)``.
        prob_levels: int64 probability levels in ``[0, P)``.
        mag_levels: int64 magnitude levels in ``[0, M)``.

    Returns:
        float32 ``log_prob`` [N], differentiable w.r.t. the logits.

    Raises:
        TypeError, ValueError: as :func:`sample_reference`; also ids that are not int64 [N] on
            the logits' device or are out of range.

    Shape:
        - op_logits: [N, K]; prob_logits: [N, K, P]; mag_logits: [N, K, M]
        - op_ids, prob_levels, mag_levels, output: [N]
    """
    op = "log_prob_of"
    opl, prl, mgl, _ = _prepare(op, op_logits, prob_logits, mag_logits, None)
    n = opl.shape[0]
    sizes = {"op_ids": opl.shape[1], "prob_levels": prl.shape[2], "mag_levels": mgl.shape[2]}
    ids = {"op_ids": op_ids, "prob_levels": prob_levels, "mag_levels": mag_levels}
    for name, t in ids.items():
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int64:
            raise TypeError(f"{op}: {name} must be an int64 tensor [N], e.g. from sample()")
        if tuple(t.shape) != (n,) or t.device != opl.device:
            raise ValueError(
                f"{op}: {name} must have shape [N] = ({n},) on {opl.device}, got "
                f"{tuple(t.shape)} on {t.device}"
            )
    if n > 0:
        bad = torch.stack([((t < 0) | (t >= sizes[k])).any() for k, t in ids.items()]).tolist()
        for (name, size), is_bad in zip(sizes.items(), bad, strict=True):
            if is_bad:
                raise ValueError(f"{op}: {name} must lie in [0, {size}); got an index outside")
    rows = torch.arange(n, device=opl.device)
    lp_op = torch.log_softmax(op_logits.float(), -1)[rows, op_ids]
    lp_prob = torch.log_softmax(prob_logits[rows, op_ids].float(), -1)[rows, prob_levels]
    lp_mag = torch.log_softmax(mag_logits[rows, op_ids].float(), -1)[rows, mag_levels]
    return (lp_op + lp_prob) + lp_mag
