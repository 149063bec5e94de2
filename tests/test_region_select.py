"""Tests of kernels/region_select.py (KeepAugment's saliency-quantile region selection): the
invariants of the torch reference on synthetic saliency, the uniformity of the choice
(chi-square), determinism, the input checks, an nvcc compile of the CUDA source, and, with a GPU
and CuPy, kernel == reference box for box."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dali_aug.kernels.region_select import (
    CU_SOURCE_PATH,
    _cupy_usable,
    region_scores,
    score_threshold,
    select_regions,
    select_regions_cuda,
    select_regions_reference,
)
from scipy.stats import chisquare

MODES = ("cut", "paste")
KERNELS = ("rs_row_prefix", "rs_col_prefix", "rs_box_keys", "rs_select")

needs_cupy = pytest.mark.skipif(
    not _cupy_usable(), reason="CuPy with a CUDA device is not available"
)


# -- synthetic saliency ---------------------------------------------------------------------------


def _grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float32),
        torch.arange(width, dtype=torch.float32),
        indexing="ij",
    )
    return yy, xx


def _uniform(n: int, height: int, width: int, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, height, width, generator=g)


def _blobs(n: int, height: int, width: int, g: torch.Generator) -> torch.Tensor:
    yy, xx = _grid(height, width)
    out = torch.zeros(n, height, width)
    sigma = 0.12 * max(height, width)
    for _ in range(3):
        cy = torch.rand(n, 1, 1, generator=g) * height
        cx = torch.rand(n, 1, 1, generator=g) * width
        amp = 0.5 + torch.rand(n, 1, 1, generator=g)
        out += amp * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return out


def _hot_pixel(n: int, height: int, width: int, g: torch.Generator) -> torch.Tensor:
    out = torch.zeros(n, height, width)
    iy = torch.randint(height, (n,), generator=g)
    ix = torch.randint(width, (n,), generator=g)
    out[torch.arange(n), iy, ix] = 1.0
    return out


def _gradient(n: int, height: int, width: int, g: torch.Generator) -> torch.Tensor:
    yy, xx = _grid(height, width)
    return ((yy + 2 * xx) / (height + 2 * width)).expand(n, height, width).contiguous()


def _ties(n: int, height: int, width: int, g: torch.Generator) -> torch.Tensor:
    """Three levels: many exactly tied box sums."""
    return (torch.rand(n, height, width, generator=g) * 3).floor() / 2


def _constant(n: int, height: int, width: int, g: torch.Generator) -> torch.Tensor:
    return torch.full((n, height, width), 0.25)


MAPS: dict[str, Callable[[int, int, int, torch.Generator], torch.Tensor]] = {
    "uniform": _uniform,
    "blobs": _blobs,
    "hot_pixel": _hot_pixel,
    "gradient": _gradient,
    "ties": _ties,
    "constant": _constant,
}
#: (H, W, h, w): square, wide, 1x1 boxes, a box as large as the image, thin boxes.
SHAPES = [(32, 32, 16, 16), (24, 40, 7, 11), (9, 13, 1, 1), (10, 12, 10, 12), (20, 16, 1, 16)]


def _make(kind: str, n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return MAPS[kind](n, height, width, torch.Generator().manual_seed(seed)).float().contiguous()


def _box_scores(scores: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """scores[n, y0, x0] of each image's box."""
    return scores[torch.arange(len(boxes)), boxes[:, 0], boxes[:, 1]]


# -- reference: scores, threshold, invariants -----------------------------------------------------


@pytest.mark.parametrize("kind", sorted(MAPS))
@pytest.mark.parametrize(("height", "width", "h", "w"), SHAPES)
def test_scores_are_box_sums_in_documented_order(
    kind: str, height: int, width: int, h: int, w: int
) -> None:
    sal = _make(kind, 4, height, width)
    scores = region_scores(sal, (h, w))
    assert scores.dtype == torch.float64
    assert scores.shape == (4, height - h + 1, width - w + 1)
    # Independent: box sums by pooling.
    pooled = F.avg_pool2d(sal.double()[:, None], (h, w), stride=1, divisor_override=1)[:, 0]
    torch.testing.assert_close(scores, pooled, rtol=1e-12, atol=1e-9)
    # Bit-exact against the documented order (sequential float64 cumsum along W then H, and
    # ((a - b) - c) + d), which the CUDA kernel reproduces.
    integ = np.pad(np.cumsum(np.cumsum(sal.double().numpy(), 2), 1), ((0, 0), (1, 0), (1, 0)))
    a, b = integ[:, h:, w:], integ[:, : height + 1 - h, w:]
    c, d = integ[:, h:, : width + 1 - w], integ[:, : height + 1 - h, : width + 1 - w]
    assert np.array_equal(scores.numpy(), ((a - b) - c) + d)


@pytest.mark.parametrize("tau", [0.0, 0.1, 0.6, 0.75, 0.999, 1.0])
@pytest.mark.parametrize("m", [1, 2, 7, 100, 1001])
def test_threshold_is_torch_quantile_lower(tau: float, m: int) -> None:
    g = torch.Generator().manual_seed(m)
    scores = torch.randn(5, m, generator=g, dtype=torch.float64)
    scores[1] = scores[1].round()  # ties
    expected = torch.quantile(scores, tau, dim=1, interpolation="lower")
    assert torch.equal(score_threshold(scores, tau), expected)
    rank = math.floor(tau * (m - 1))
    assert torch.equal(score_threshold(scores, tau), scores.sort(1).values[:, rank])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tau", [0.0, 0.3, 0.6, 1.0])
@pytest.mark.parametrize("kind", sorted(MAPS))
@pytest.mark.parametrize(("height", "width", "h", "w"), SHAPES)
def test_reference_invariants(
    kind: str, height: int, width: int, h: int, w: int, tau: float, mode: str
) -> None:
    n = 16
    sal = _make(kind, n, height, width, seed=3)
    u = torch.rand(n, generator=torch.Generator().manual_seed(4))
    u[0], u[1] = 0.0, float(np.nextafter(np.float32(1), np.float32(0)))  # both ends
    boxes = select_regions_reference(sal, (h, w), tau=tau, mode=mode, uniforms=u)  # type: ignore[arg-type]
    assert boxes.dtype == torch.int64 and boxes.shape == (n, 4)
    y0, x0, y1, x1 = boxes.unbind(1)
    assert bool(((y0 >= 0) & (x0 >= 0) & (y1 <= height) & (x1 <= width)).all())
    assert bool(((y1 - y0 == h) & (x1 - x0 == w)).all())

    scores = region_scores(sal, (h, w))
    flat = scores.reshape(n, -1)
    q = torch.quantile(flat, tau, dim=1, interpolation="lower")  # independent definition
    assert torch.equal(score_threshold(scores, tau), q)
    chosen = _box_scores(scores, boxes)
    if mode == "paste":
        assert bool((chosen >= q).all())
    else:
        has_lower = (flat < q[:, None]).any(1)
        assert bool((chosen[has_lower] < q[has_lower]).all())
        # Fallback: no score below q, so q is the minimum and the box is tied with it.
        assert bool((chosen[~has_lower] == q[~has_lower]).all())


def test_constant_saliency_cut_falls_back_to_all_boxes() -> None:
    sal = _make("constant", 3, 8, 8)
    u = torch.tensor([0.0, 0.5, 0.999])
    boxes = select_regions_reference(sal, (4, 4), mode="cut", uniforms=u)
    # All 25 positions qualify (score <= q); k = floor(u * 25) = 0, 12, 24 in row-major order.
    assert boxes.tolist() == [[0, 0, 4, 4], [2, 2, 6, 6], [4, 4, 8, 8]]


def test_hot_pixel_never_cut_always_pasted() -> None:
    n, size = 64, 8
    sal = _make("hot_pixel", n, 32, 32, seed=7)
    hot = sal.reshape(n, -1).argmax(1)
    hy, hx = hot // 32, hot % 32
    u = torch.rand(n, generator=torch.Generator().manual_seed(8))

    def covers(boxes: torch.Tensor) -> torch.Tensor:
        y0, x0, y1, x1 = boxes.unbind(1)
        return (y0 <= hy) & (hy < y1) & (x0 <= hx) & (hx < x1)

    cut = select_regions_reference(sal, (size, size), tau=0.6, mode="cut", uniforms=u)
    assert not bool(covers(cut).any())
    # tau = 1: q is the maximum score, 1, held only by the boxes covering the pixel.
    paste = select_regions_reference(sal, (size, size), tau=1.0, mode="paste", uniforms=u)
    assert bool(covers(paste).all())


# -- uniformity, determinism ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["blobs", "ties"])
def test_choice_is_uniform_over_qualifying_set(kind: str, mode: str) -> None:
    draws, h, w = 20000, 3, 3
    sal = _make(kind, 1, 12, 12, seed=11)
    scores = region_scores(sal, (h, w)).reshape(-1)
    q = score_threshold(scores[None], 0.6)[0]
    qualifying = scores >= q if mode == "paste" else scores < q
    assert 0 < int(qualifying.sum()) < scores.numel()

    batch = sal.expand(draws, -1, -1).contiguous()
    g = torch.Generator().manual_seed(12)
    boxes = select_regions(batch, (h, w), tau=0.6, mode=mode, generator=g)  # type: ignore[arg-type]
    pos = boxes[:, 0] * (12 - w + 1) + boxes[:, 1]
    counts = torch.bincount(pos, minlength=scores.numel())
    assert int(counts[~qualifying].sum()) == 0  # never outside the set
    observed = counts[qualifying].double().numpy()
    assert chisquare(observed).pvalue > 0.001


def test_same_seed_same_boxes() -> None:
    sal = _make("blobs", 32, 24, 24)

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return select_regions(sal, (8, 8), mode="cut", generator=g)

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))
    # select_regions draws torch.rand(N, generator=g) and applies the reference.
    u = torch.rand(32, generator=torch.Generator().manual_seed(5))
    assert torch.equal(run(5), select_regions_reference(sal, (8, 8), mode="cut", uniforms=u))


def test_empty_batch() -> None:
    sal = torch.zeros(0, 16, 16)
    for boxes in (
        select_regions(sal, (4, 4)),
        select_regions_reference(sal, (4, 4), uniforms=torch.zeros(0)),
    ):
        assert boxes.shape == (0, 4) and boxes.dtype == torch.int64


def test_input_not_modified() -> None:
    sal = _make("uniform", 4, 16, 16)
    u = torch.rand(4)
    before, u_before = sal.clone(), u.clone()
    select_regions_reference(sal, (5, 5), uniforms=u)
    assert torch.equal(sal, before) and torch.equal(u, u_before)


def test_non_contiguous_reference_is_copied() -> None:
    sal = _make("blobs", 4, 20, 30)
    u = torch.rand(4)
    t = sal.transpose(1, 2)
    assert not t.is_contiguous()
    expected = select_regions_reference(t.contiguous(), (5, 6), uniforms=u)
    assert torch.equal(select_regions_reference(t, (5, 6), uniforms=u), expected)


# -- errors ---------------------------------------------------------------------------------------

_SAL = torch.rand(2, 8, 8)
_U = torch.rand(2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"saliency": np.zeros((2, 8, 8), np.float32)}, TypeError, "must be a torch.Tensor"),
        ({"saliency": _SAL.double()}, TypeError, r"float32.*\.float\(\)"),
        ({"saliency": _SAL.half()}, TypeError, r"float32.*\.float\(\)"),
        ({"saliency": _SAL[0]}, ValueError, r"3-D \[N, H, W\]"),
        ({"saliency": _SAL[:, None]}, ValueError, r"3-D \[N, H, W\]"),
        ({"size": (9, 2)}, ValueError, r"1 <= h <= H"),
        ({"size": (2, 9)}, ValueError, r"1 <= w <= W"),
        ({"size": (0, 2)}, ValueError, r"1 <= h <= H"),
        ({"size": (2.0, 2)}, TypeError, r"pair of ints"),
        ({"size": 4}, TypeError, r"pair of ints"),
        ({"tau": 1.5}, ValueError, r"tau must be in \[0, 1\]"),
        ({"tau": -0.1}, ValueError, r"tau must be in \[0, 1\]"),
        ({"tau": float("nan")}, ValueError, r"tau must be in \[0, 1\]"),
        ({"tau": "0.6"}, TypeError, r"tau must be a float"),
        ({"mode": "erase"}, ValueError, r"unknown mode 'erase'.*'cut'.*'paste'"),
        ({"uniforms": _U[:1]}, ValueError, r"uniforms must have shape \[N\] = \(2,\)"),
        ({"uniforms": _U[:, None]}, ValueError, r"uniforms must have shape \[N\]"),
        ({"uniforms": torch.zeros(2, dtype=torch.int64)}, TypeError, r"floating-point"),
        ({"uniforms": [0.1, 0.2]}, TypeError, r"uniforms must be a torch.Tensor"),
        ({"uniforms": torch.tensor([0.1, 1.0])}, ValueError, r"uniforms must lie in \[0, 1\)"),
        ({"uniforms": torch.tensor([float("nan"), 0.1])}, ValueError, r"lie in \[0, 1\)"),
    ],
)
def test_reference_errors(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    args: dict[str, object] = {"saliency": _SAL, "size": (3, 3), "tau": 0.6, "mode": "cut"}
    args["uniforms"] = _U
    args.update(kwargs)
    with pytest.raises(error, match=match):
        select_regions_reference(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_saliency_errors(bad: float) -> None:
    sal = _SAL.clone()
    sal[1, 2, 3] = bad
    with pytest.raises(ValueError, match=r"NaN or inf.*torch\.nan_to_num"):
        select_regions_reference(sal, (3, 3), uniforms=_U)
    with pytest.raises(ValueError, match=r"NaN or inf.*torch\.nan_to_num"):
        select_regions(sal, (3, 3))


def test_select_regions_errors_name_the_op() -> None:
    with pytest.raises(TypeError, match=r"select_regions: saliency must be float32"):
        select_regions(_SAL.double(), (3, 3))
    with pytest.raises(ValueError, match=r"select_regions: unknown mode"):
        select_regions(_SAL, (3, 3), mode="erase")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"select_regions: box size"):
        select_regions(_SAL, (9, 3))
    with pytest.raises(ValueError, match=r"select_regions: tau must be in \[0, 1\]"):
        select_regions(_SAL, (3, 3), tau=60)


def test_cuda_path_input_checks() -> None:
    with pytest.raises(ValueError, match=r"C-contiguous.*\.contiguous\(\)"):
        select_regions_cuda(_SAL.transpose(1, 2), (3, 3), uniforms=_U)
    with pytest.raises(ValueError, match=r"CUDA device.*select_regions_reference"):
        select_regions_cuda(_SAL, (3, 3), uniforms=_U)
    with pytest.raises(TypeError, match=r"float32.*\.float\(\)"):
        select_regions_cuda(_SAL.double(), (3, 3), uniforms=_U)


# -- CUDA source ----------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_cu_source_compiles_with_nvcc(tmp_path: Path) -> None:
    ptx = tmp_path / "region_select.ptx"
    cmd = ["nvcc", "--ptx", "-arch=sm_90", str(CU_SOURCE_PATH), "-o", str(ptx)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = ptx.read_text()
    for name in KERNELS:  # extern "C": unmangled entry points
        assert f".entry {name}(" in text


# -- CUDA kernel == reference ---------------------------------------------------------------------


def _kernel_vs_reference(
    kind: str, n: int, height: int, width: int, h: int, w: int, tau: float, mode: str
) -> None:
    sal = _make(kind, n, height, width, seed=n + height)
    u = torch.rand(n, generator=torch.Generator().manual_seed(w))
    u[0] = 0.0
    expected = select_regions_reference(sal, (h, w), tau=tau, mode=mode, uniforms=u)  # type: ignore[arg-type]
    got = select_regions_cuda(sal.cuda(), (h, w), tau=tau, mode=mode, uniforms=u.cuda())  # type: ignore[arg-type]
    assert got.is_cuda and got.dtype == torch.int64
    assert torch.equal(got.cpu(), expected)


@pytest.mark.needs_cuda
@needs_cupy
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tau", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("kind", sorted(MAPS))
@pytest.mark.parametrize(
    ("n", "height", "width", "h", "w"),
    [(64, 32, 32, 16, 16), (17, 24, 40, 7, 11), (33, 9, 13, 1, 1), (8, 10, 12, 10, 12)],
)
def test_cuda_matches_reference(
    kind: str, n: int, height: int, width: int, h: int, w: int, tau: float, mode: str
) -> None:
    _kernel_vs_reference(kind, n, height, width, h, w, tau, mode)


@pytest.mark.needs_cuda
@needs_cupy
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["uniform", "blobs", "ties"])
@pytest.mark.parametrize(
    ("n", "height", "width", "h", "w"),
    [(256, 224, 224, 16, 16), (32, 224, 224, 112, 56), (256, 56, 56, 1, 1)],
)
def test_cuda_matches_reference_large(
    kind: str, n: int, height: int, width: int, h: int, w: int, mode: str
) -> None:
    _kernel_vs_reference(kind, n, height, width, h, w, 0.6, mode)


@pytest.mark.needs_cuda
@needs_cupy
def test_cuda_dispatch_and_seed() -> None:
    sal = _make("blobs", 40, 48, 48).cuda()
    g = torch.Generator(device="cuda").manual_seed(3)
    boxes = select_regions(sal, (16, 16), mode="paste", generator=g)
    u = torch.rand(40, generator=torch.Generator(device="cuda").manual_seed(3), device="cuda")
    expected = select_regions_reference(sal.cpu(), (16, 16), mode="paste", uniforms=u.cpu())
    assert boxes.is_cuda and torch.equal(boxes.cpu(), expected)


@pytest.mark.needs_cuda
@needs_cupy
def test_cuda_runs_on_current_non_default_stream() -> None:
    n = 128
    host = _make("blobs", n, 64, 64, seed=21)
    u = torch.rand(n, generator=torch.Generator().manual_seed(22))
    expected = select_regions_reference(host, (16, 16), uniforms=u)
    sal, u_dev = host.cuda(), u.cuda()
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    # Keep the default stream busy: kernels wrongly queued there would run after the snapshot.
    torch.cuda._sleep(100_000_000)
    with torch.cuda.stream(stream):
        boxes = select_regions_cuda(sal, (16, 16), uniforms=u_dev)
        snapshot = boxes.clone()  # ordered after the kernels only if they ran on `stream`
    torch.cuda.synchronize()
    assert torch.equal(snapshot.cpu(), expected)
