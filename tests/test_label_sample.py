"""Tests of kernels/label_sample.py (LB-Aug's label-conditioned sampling of op, probability level
and magnitude level): the reference against a scalar implementation of the docstring semantics,
log_prob and its gradient against torch.distributions.Categorical, frequencies (chi-square),
determinism and edge uniforms, the input checks, an nvcc compile of the CUDA source, and, with a
GPU and CuPy, kernel == reference id for id."""

from __future__ import annotations

import itertools
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from dali_aug.kernels.label_sample import (
    CU_SOURCE_PATH,
    LabelSample,
    _cupy_usable,
    _pick_reference,
    log_prob_of,
    sample,
    sample_cuda,
    sample_reference,
)
from scipy.stats import chisquare
from torch.distributions import Categorical

needs_cupy = pytest.mark.skipif(
    not _cupy_usable(), reason="CuPy with a CUDA device is not available"
)

NEG_INF = float("-inf")
#: The largest float32 below 1: the top of torch.rand's range.
U_MAX = float(np.nextafter(np.float32(1.0), np.float32(0.0)))


# -- synthetic logits ------------------------------------------------------------------------------


def _logits(
    n: int,
    k: int,
    p: int,
    m: int,
    *,
    scale: float = 1.0,
    mask: bool = False,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random normal logits times ``scale``; with ``mask``, about 30% of the entries are -inf,
    keeping one finite entry per row."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for shape in ((n, k), (n, k, p), (n, k, m)):
        x = torch.randn(shape, generator=g) * scale
        if mask:
            drop = torch.rand(shape, generator=g) < 0.3
            keep = torch.randint(shape[-1], shape[:-1], generator=g)
            drop.scatter_(-1, keep[..., None], False)
            x = x.masked_fill(drop, NEG_INF)
        out.append(x)
    return out[0], out[1], out[2]


def _categorical_log_prob(
    op: torch.Tensor, prob: torch.Tensor, mag: torch.Tensor, s: LabelSample
) -> torch.Tensor:
    """log_prob of the draws through torch.distributions (prob/mag at the chosen op's row)."""
    rows = torch.arange(op.shape[0], device=op.device)
    return (
        Categorical(logits=op).log_prob(s.op_ids)
        + Categorical(logits=prob[rows, s.op_ids]).log_prob(s.prob_levels)
        + Categorical(logits=mag[rows, s.op_ids]).log_prob(s.mag_levels)
    )


# -- the semantics, written out one scalar at a time ---------------------------------------------


def _pick_scalar(row: list[float], u: float) -> tuple[int, float]:
    """Steps 1-4 of the module docstring with Python floats (float64) and np.float32 roundings."""
    m = np.float32(max(row))
    d = [np.float32(np.float32(x) - m) for x in row]
    w = [float(np.float32(math.exp(float(di)))) for di in d]  # exp(-inf) == 0.0
    cdf = list(itertools.accumulate(w))  # sequential float64 sums
    total = cdf[-1]
    t = float(np.float32(u)) * total
    hits = [i for i, c in enumerate(cdf) if t < c]
    last_positive = max(i for i, wi in enumerate(w) if wi > 0)
    pick = min(hits[0], last_positive) if hits else last_positive
    return pick, float(d[pick]) - math.log(total)


def test_cpu_float64_cumsum_is_sequential() -> None:
    # The reference relies on torch.cumsum accumulating float64 strictly left to right on the CPU
    # (the kernel does the same); a pairwise or blocked scan would change the last bits.
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 4000, generator=g, dtype=torch.float64)
    x = x * torch.logspace(-12, 3, 4000, dtype=torch.float64)[torch.randperm(4000, generator=g)]
    expected = torch.tensor([list(itertools.accumulate(r)) for r in x.tolist()], dtype=x.dtype)
    assert torch.equal(x.cumsum(-1), expected)


@pytest.mark.parametrize("length", [1, 2, 10, 11, 16, 33, 100])
def test_reference_matches_scalar_semantics(length: int) -> None:
    g = torch.Generator().manual_seed(length)
    rows = 200
    scale = torch.tensor([0.1, 1.0, 10.0, 50.0])[torch.randint(4, (rows, 1), generator=g)]
    x = torch.randn(rows, length, generator=g) * scale
    drop = torch.rand(rows, length, generator=g) < 0.3
    drop[torch.arange(rows), torch.randint(length, (rows,), generator=g)] = False
    x = x.masked_fill(drop & (torch.arange(rows)[:, None] % 2 == 0), NEG_INF)
    u = torch.rand(rows, generator=g)
    u[:4], u[4:8] = 0.0, U_MAX
    pick, logp = _pick_reference(x, u)
    for r in range(rows):
        want_pick, want_logp = _pick_scalar(x[r].tolist(), u[r].item())
        assert pick[r].item() == want_pick
        assert logp[r].item() == pytest.approx(want_logp, rel=1e-14, abs=1e-14)


def test_threshold_rule_is_strict() -> None:
    # Four equal logits: cdf = [1, 2, 3, 4]; u = k/4 gives t = k exactly, and "first i with
    # t < cdf[i]" is then k; just below k/4 it is k - 1.
    x = torch.zeros(8, 4)
    u = torch.tensor(
        [
            0.0,
            0.25,
            0.5,
            0.75,
            U_MAX,
            *np.nextafter(np.array([0.25, 0.5, 0.75], np.float32), np.float32(0)),
        ]
    )
    pick, _ = _pick_reference(x, u)
    assert pick.tolist() == [0, 1, 2, 3, 3, 0, 1, 2]


# -- log_prob and its gradient -------------------------------------------------------------------


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_log_prob_matches_categorical(scale: float, mask: bool) -> None:
    op, prob, mag = _logits(512, 16, 11, 10, scale=scale, mask=mask, seed=3)
    s = sample(op, prob, mag, generator=torch.Generator().manual_seed(4))
    assert s.op_ids.dtype == s.prob_levels.dtype == s.mag_levels.dtype == torch.int64
    assert s.log_prob.dtype == torch.float32 and s.log_prob.shape == (512,)
    expected = _categorical_log_prob(op, prob, mag, s)
    torch.testing.assert_close(s.log_prob, expected, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(
        log_prob_of(op, prob, mag, s.op_ids, s.prob_levels, s.mag_levels),
        expected,
        atol=1e-5,
        rtol=1e-6,
    )
    if mask:  # masked entries are never drawn
        rows = torch.arange(512)
        assert torch.isfinite(op[rows, s.op_ids]).all()
        assert torch.isfinite(prob[rows, s.op_ids, s.prob_levels]).all()
        assert torch.isfinite(mag[rows, s.op_ids, s.mag_levels]).all()


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_gradient_matches_autograd_through_categorical(scale: float, mask: bool) -> None:
    leaves = [t.requires_grad_() for t in _logits(64, 7, 5, 6, scale=scale, mask=mask, seed=5)]
    weights = torch.randn(64, generator=torch.Generator().manual_seed(6))
    s = sample(*leaves, generator=torch.Generator().manual_seed(7))
    assert s.log_prob.requires_grad and not s.op_ids.requires_grad
    got = torch.autograd.grad((weights * s.log_prob).sum(), leaves)
    # Ground truth: autograd through Categorical in float64. Categorical in float32 is itself
    # off by a few 1e-6 at logits of +-50 (its float32 logsumexp), hence its looser tolerance.
    wide = [t.detach().double().requires_grad_() for t in leaves]
    truth = torch.autograd.grad(
        (weights.double() * _categorical_log_prob(wide[0], wide[1], wide[2], s)).sum(), wide
    )
    f32 = torch.autograd.grad(
        (weights * _categorical_log_prob(leaves[0], leaves[1], leaves[2], s)).sum(), leaves
    )
    again = torch.autograd.grad(
        (weights * log_prob_of(*leaves, s.op_ids, s.prob_levels, s.mag_levels)).sum(), leaves
    )
    for a, want, b, c in zip(got, truth, f32, again, strict=True):
        assert a.dtype == torch.float32 and torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), want, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(c.double(), want, atol=1e-5, rtol=1e-5)
    # prob/mag gradients live only in the chosen op's row.
    rows = torch.arange(64)
    for grad in got[1:]:
        chosen = torch.zeros(grad.shape[:2], dtype=torch.bool)
        chosen[rows, s.op_ids] = True
        assert not grad[~chosen].any()


def test_gradient_only_for_inputs_that_need_it_and_in_their_dtype() -> None:
    op, prob, mag = _logits(16, 4, 3, 2, seed=8)
    op = op.double().requires_grad_()
    mag = mag.half().requires_grad_()
    s = sample(op, prob, mag, generator=torch.Generator().manual_seed(9))
    s.log_prob.sum().backward()
    assert op.grad is not None and op.grad.dtype == torch.float64
    assert mag.grad is not None and mag.grad.dtype == torch.float16
    assert prob.grad is None


def test_reinforce_moves_probability_towards_rewarded_op() -> None:
    # End-to-end sign check: reward 1 for op 2 only; a few REINFORCE steps raise its probability.
    op = torch.zeros(1, 5, requires_grad=True)
    prob, mag = torch.zeros(1, 5, 3), torch.zeros(1, 5, 4)
    opt = torch.optim.SGD([op], lr=0.5)
    g = torch.Generator().manual_seed(10)
    for _ in range(40):
        s = sample(op.expand(256, 5), prob.expand(256, 5, 3), mag.expand(256, 5, 4), generator=g)
        reward = (s.op_ids == 2).float()
        opt.zero_grad()
        (-(reward - reward.mean()) * s.log_prob).mean().backward()
        opt.step()
    assert torch.softmax(op.detach(), -1)[0, 2] > 0.9


# -- frequencies (chi-square) --------------------------------------------------------------------

_DRAWS = 20000


def _expand(
    logits: tuple[torch.Tensor, torch.Tensor, torch.Tensor], n: int
) -> tuple[torch.Tensor, ...]:
    return tuple(t.expand(n, *t.shape[1:]).contiguous() for t in logits)


def _check_counts(ids: torch.Tensor, logits: torch.Tensor) -> None:
    """Masked entries never drawn; the others at softmax(logits) (chi-square p > 0.001)."""
    allowed = torch.isfinite(logits)
    counts = torch.bincount(ids, minlength=logits.numel()).double()
    assert int(counts[~allowed].sum()) == 0
    p = torch.softmax(logits[allowed].double(), -1)
    observed = counts[allowed]
    assert chisquare(observed.numpy(), (p * observed.sum()).numpy()).pvalue > 0.001


@pytest.mark.parametrize("mask", [False, True])
def test_frequencies_match_softmax(mask: bool) -> None:
    op, prob, mag = _logits(1, 16, 11, 10, mask=mask, seed=11)
    op[0, 3] = op[0, 5] = 2.5  # two frequent ops, for the conditional tests
    s = sample(*_expand((op, prob, mag), _DRAWS), generator=torch.Generator().manual_seed(12))
    _check_counts(s.op_ids, op[0])
    for j in (3, 5):  # the levels of op j follow op j's own rows
        chosen = s.op_ids == j
        assert int(chosen.sum()) > 3000
        _check_counts(s.prob_levels[chosen], prob[0, j])
        _check_counts(s.mag_levels[chosen], mag[0, j])


def test_each_sample_uses_its_own_rows() -> None:
    # Sample n may only draw op n % K, and in that op's rows only level (n + op) % P or % M.
    n, k, p, m = 60, 7, 5, 4
    rows = torch.arange(n)
    op = torch.full((n, k), NEG_INF)
    op[rows, rows % k] = 0.0
    prob, mag = torch.randn(n, k, p), torch.randn(n, k, m)
    level_p = (rows + rows % k) % p
    level_m = (rows + rows % k) % m
    prob[rows, rows % k] = NEG_INF
    prob[rows, rows % k, level_p] = 1.0
    mag[rows, rows % k] = NEG_INF
    mag[rows, rows % k, level_m] = 1.0
    s = sample(op, prob, mag, generator=torch.Generator().manual_seed(13))
    assert torch.equal(s.op_ids, rows % k)
    assert torch.equal(s.prob_levels, level_p) and torch.equal(s.mag_levels, level_m)
    assert torch.equal(s.log_prob, torch.zeros(n))


# -- determinism and edge uniforms ---------------------------------------------------------------


def test_same_seed_same_ids() -> None:
    logits = _logits(300, 16, 11, 10, seed=14)

    def run(seed: int) -> LabelSample:
        return sample(*logits, generator=torch.Generator().manual_seed(seed))

    a, b, c = run(5), run(5), run(6)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not torch.equal(a.op_ids, c.op_ids)
    # sample draws torch.rand(N, 3, generator=g) and applies the reference.
    u = torch.rand(300, 3, generator=torch.Generator().manual_seed(5))
    for x, y in zip(a, sample_reference(*logits, u), strict=True):
        assert torch.equal(x, y)


def test_global_rng_fallback_follows_torch_manual_seed() -> None:
    logits = _logits(50, 16, 11, 10, seed=15)
    torch.manual_seed(16)
    a = sample(*logits)
    torch.manual_seed(16)
    b = sample(*logits)
    assert torch.equal(a.op_ids, b.op_ids) and torch.equal(a.mag_levels, b.mag_levels)


def test_edge_uniforms_pick_first_and_last_admissible() -> None:
    # Row [-inf, a, b, c, -inf]: u = 0 gives index 1, u = nextafter(1, 0) index 3. The columns
    # differ per sample, so each of op, probability level and magnitude level must read its own.
    n, k = 3, 5
    op = torch.tensor([[NEG_INF, 0.3, -1.0, 0.8, NEG_INF]]).expand(n, k).contiguous()
    prob = torch.tensor([NEG_INF, NEG_INF, 0.5, 0.1]).expand(n, k, 4).contiguous()
    mag = torch.tensor([2.0, 1.0, 0.0]).expand(n, k, 3).contiguous()
    u = torch.tensor([[0.0, 0.0, 0.0], [U_MAX, U_MAX, U_MAX], [0.0, U_MAX, 0.0]])
    s = sample_reference(op, prob, mag, u)
    assert s.op_ids.tolist() == [1, 3, 1]
    assert s.prob_levels.tolist() == [2, 3, 3]
    assert s.mag_levels.tolist() == [0, 2, 0]
    s = sample_reference(op, prob, mag, u[:, [1, 2, 0]])  # columns (prob, mag, op) of u
    assert s.op_ids.tolist() == [1, 3, 3]
    assert s.prob_levels.tolist() == [2, 3, 2]
    assert s.mag_levels.tolist() == [0, 2, 0]


def test_single_finite_entry_is_always_drawn() -> None:
    op = torch.tensor([[NEG_INF, NEG_INF, 4.0]]).expand(100, 3)
    prob = torch.randn(100, 3, 1)  # P = 1
    mag = torch.full((100, 3, 2), NEG_INF)
    mag[..., 0] = -30.0
    s = sample(op, prob, mag, generator=torch.Generator().manual_seed(17))
    assert (s.op_ids == 2).all() and (s.prob_levels == 0).all() and (s.mag_levels == 0).all()
    assert (s.log_prob == 0).all()


# -- layout, dtypes, empty batch -----------------------------------------------------------------


def test_non_contiguous_and_other_dtypes_are_converted() -> None:
    op, prob, mag = _logits(40, 6, 5, 4, seed=18)
    u = torch.rand(40, 3, generator=torch.Generator().manual_seed(19))
    expected = sample_reference(op, prob, mag, u)
    views = (
        op.t().contiguous().t(),
        prob.transpose(1, 2).contiguous().transpose(1, 2),
        torch.stack([mag, mag], -1).flatten(-2)[..., ::2],  # every other entry of a copy
    )
    assert not any(v.is_contiguous() for v in views)
    for a, b in zip(sample_reference(*views, u.t().contiguous().t()), expected, strict=True):
        assert torch.equal(a, b)
    # float64 / bfloat16 logits are computed in float32: same as converting first.
    for dtype in (torch.float64, torch.bfloat16, torch.float16):
        low = tuple(t.to(dtype) for t in (op, prob, mag))
        got = sample_reference(*low, u.double())
        want = sample_reference(*(t.float() for t in low), u)
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)


def test_empty_batch() -> None:
    op, prob, mag = _logits(0, 16, 11, 10)
    op.requires_grad_()
    outs = [sample(op, prob, mag), sample_reference(op, prob, mag, torch.rand(0, 3))]
    for s in outs:
        assert all(t.shape == (0,) for t in s)
        assert s.op_ids.dtype == torch.int64 and s.log_prob.dtype == torch.float32
    outs[0].log_prob.sum().backward()
    assert op.grad is not None and op.grad.shape == (0, 16)
    assert log_prob_of(op, prob, mag, *outs[0][:3]).shape == (0,)


def test_inputs_not_modified() -> None:
    logits = _logits(20, 5, 4, 3, mask=True, seed=20)
    before = [t.clone() for t in logits]
    u = torch.rand(20, 3)
    u_before = u.clone()
    sample_reference(*logits, u)
    sample(*logits)
    assert all(torch.equal(a, b) for a, b in zip(logits, before, strict=True))
    assert torch.equal(u, u_before)


# -- errors ---------------------------------------------------------------------------------------

_OP, _PROB, _MAG = _logits(4, 5, 3, 2, seed=21)
_U = torch.rand(4, 3)


def _with(t: torch.Tensor, index: tuple[int, ...], value: float) -> torch.Tensor:
    out = t.clone()
    out[index] = value
    return out


_ERRORS: list[tuple[dict[str, object], type[Exception], str]] = [
    ({"op_logits": np.zeros((4, 5), np.float32)}, TypeError, r"op_logits must be a torch.Tensor"),
    ({"op_logits": torch.zeros(4, 5, dtype=torch.int64)}, TypeError, r"op_logits.*floating"),
    ({"mag_logits": torch.zeros(4, 5, 2, dtype=torch.bool)}, TypeError, r"mag_logits.*floating"),
    ({"op_logits": _OP[0]}, ValueError, r"op_logits must be 2-D \[N, K\]"),
    ({"prob_logits": _PROB[..., 0]}, ValueError, r"prob_logits must be 3-D \[N, K, P\]"),
    ({"mag_logits": _MAG[None]}, ValueError, r"mag_logits must be 3-D \[N, K, M\]"),
    ({"prob_logits": _PROB[:3]}, ValueError, r"prob_logits must be \[N, K, \.\.\.\] with N, K = 4"),
    ({"mag_logits": _MAG[:, :4]}, ValueError, r"mag_logits must be \[N, K, \.\.\.\] with N, K"),
    ({"op_logits": _OP[:, :0]}, ValueError, r"prob_logits must be \[N, K"),
    (
        {"op_logits": _OP[:, :0], "prob_logits": _PROB[:, :0], "mag_logits": _MAG[:, :0]},
        ValueError,
        r"K must be >= 1",
    ),
    ({"prob_logits": _PROB[..., :0]}, ValueError, r"P must be >= 1"),
    ({"mag_logits": _MAG[..., :0]}, ValueError, r"M must be >= 1"),
    ({"op_logits": _with(_OP, (1, 2), math.nan)}, ValueError, r"op_logits contains NaN or \+inf"),
    ({"prob_logits": _with(_PROB, (3, 4, 0), math.inf)}, ValueError, r"prob_logits contains NaN"),
    ({"mag_logits": _with(_MAG, (0, 0, 1), math.nan)}, ValueError, r"mag_logits.*nan_to_num"),
    ({"op_logits": _OP.double() * 1e39}, ValueError, r"op_logits.*after conversion to float32"),
    ({"op_logits": _with(_OP, (2,), NEG_INF)}, ValueError, r"a row of op_logits is all -inf"),
    ({"prob_logits": _with(_PROB, (1, 4), NEG_INF)}, ValueError, r"row of prob_logits is all"),
    ({"mag_logits": _with(_MAG, (0, 1), NEG_INF)}, ValueError, r"row of mag_logits is all -inf"),
    ({"uniforms": _U[:3]}, ValueError, r"uniforms must have shape \[N, 3\] = \(4, 3\)"),
    ({"uniforms": _U[:, :2]}, ValueError, r"uniforms must have shape \[N, 3\]"),
    ({"uniforms": _U.flatten()}, ValueError, r"uniforms must have shape \[N, 3\]"),
    ({"uniforms": torch.zeros(4, 3, dtype=torch.int64)}, TypeError, r"uniforms.*floating"),
    ({"uniforms": [[0.1] * 3] * 4}, TypeError, r"uniforms must be a torch.Tensor"),
    ({"uniforms": _with(_U, (2, 1), 1.0)}, ValueError, r"uniforms must lie in \[0, 1\)"),
    ({"uniforms": _with(_U, (0, 0), -0.1)}, ValueError, r"uniforms must lie in \[0, 1\)"),
    ({"uniforms": _with(_U, (3, 2), math.nan)}, ValueError, r"uniforms must lie in \[0, 1\)"),
    # 1 - 1e-12 is below 1 in float64 but rounds to 1.0 in float32.
    ({"uniforms": _with(_U.double(), (1, 0), 1 - 1e-12)}, ValueError, r"after conversion"),
    ({"op_logits": _OP.to("meta")}, ValueError, r"must be on one device, got meta, cpu and cpu"),
    ({"uniforms": _U.to("meta")}, ValueError, r"uniforms must be on the logits' device cpu"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), _ERRORS)
def test_reference_errors(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    args: dict[str, object] = {
        "op_logits": _OP,
        "prob_logits": _PROB,
        "mag_logits": _MAG,
        "uniforms": _U,
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        sample_reference(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [e for e in _ERRORS if "uniforms" not in e[0]],
)
def test_sample_errors_name_the_op(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    args: dict[str, object] = {"op_logits": _OP, "prob_logits": _PROB, "mag_logits": _MAG}
    args.update(kwargs)
    with pytest.raises(error, match=f"^sample: .*{match}"):
        sample(**args)  # type: ignore[arg-type]


def test_nan_error_allows_minus_inf_and_names_the_fix() -> None:
    with pytest.raises(ValueError, match=r"-inf only to mask forbidden entries.*nan_to_num"):
        sample(_with(_OP, (0, 0), math.nan), _PROB, _MAG)


def test_log_prob_of_checks_ids() -> None:
    ids = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(TypeError, match=r"log_prob_of: op_ids must be an int64 tensor"):
        log_prob_of(_OP, _PROB, _MAG, ids.int(), ids, ids)
    with pytest.raises(ValueError, match=r"log_prob_of: prob_levels must have shape \[N\]"):
        log_prob_of(_OP, _PROB, _MAG, ids, ids[:3], ids)
    with pytest.raises(ValueError, match=r"log_prob_of: mag_levels must lie in \[0, 2\)"):
        log_prob_of(_OP, _PROB, _MAG, ids, ids, ids + 2)
    with pytest.raises(ValueError, match=r"log_prob_of: op_ids must lie in \[0, 5\)"):
        log_prob_of(_OP, _PROB, _MAG, ids - 1, ids, ids)


def test_cuda_path_rejects_cpu_tensors() -> None:
    with pytest.raises(ValueError, match=r"sample_cuda: the logits must be on a CUDA device"):
        sample_cuda(_OP, _PROB, _MAG, _U)
    with pytest.raises(TypeError, match=r"sample_cuda: op_logits must be a floating"):
        sample_cuda(_OP.long(), _PROB, _MAG, _U)


# -- CUDA source ----------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_cu_source_compiles_with_nvcc(tmp_path: Path) -> None:
    ptx = tmp_path / "label_sample.ptx"
    cmd = ["nvcc", "--ptx", "-arch=sm_90", str(CU_SOURCE_PATH), "-o", str(ptx)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ".entry ls_sample(" in ptx.read_text()  # extern "C": unmangled entry point


# -- CUDA kernel == reference ---------------------------------------------------------------------


def _kernel_vs_reference(n: int, k: int, p: int, m: int, scale: float, mask: bool) -> None:
    logits = _logits(n, k, p, m, scale=scale, mask=mask, seed=n + k)
    u = torch.rand(n, 3, generator=torch.Generator().manual_seed(p))
    if n >= 2:
        u[0], u[1] = 0.0, U_MAX
    expected = sample_reference(*logits, u)
    got = sample_cuda(*(t.cuda() for t in logits), u.cuda())
    assert all(t.is_cuda for t in got)
    for name in ("op_ids", "prob_levels", "mag_levels"):
        a, b = getattr(got, name), getattr(expected, name)
        assert a.dtype == torch.int64 and torch.equal(a.cpu(), b), name
    torch.testing.assert_close(got.log_prob.cpu(), expected.log_prob, atol=1e-5, rtol=1e-6)


@pytest.mark.needs_cuda
@needs_cupy
@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize("scale", [1.0, 50.0])
@pytest.mark.parametrize(
    ("n", "k", "p", "m"),
    [(0, 16, 11, 10), (1, 1, 1, 1), (37, 16, 11, 10), (4096, 16, 11, 10), (300, 70, 33, 32)],
)
def test_cuda_matches_reference(n: int, k: int, p: int, m: int, scale: float, mask: bool) -> None:
    _kernel_vs_reference(n, k, p, m, scale, mask)


@pytest.mark.needs_cuda
@needs_cupy
def test_cuda_dispatch_seed_and_gradient() -> None:
    cpu = _logits(500, 16, 11, 10, mask=True, seed=22)
    leaves = [t.cuda().requires_grad_() for t in cpu]
    s = sample(*leaves, generator=torch.Generator(device="cuda").manual_seed(3))
    u = torch.rand(500, 3, generator=torch.Generator(device="cuda").manual_seed(3), device="cuda")
    expected = sample_reference(*cpu, u.cpu())
    for a, b in zip(s[:3], expected[:3], strict=True):
        assert a.is_cuda and torch.equal(a.cpu(), b)
    weights = torch.randn(500, device="cuda")
    got = torch.autograd.grad((weights * s.log_prob).sum(), leaves)
    want = torch.autograd.grad(
        (weights * _categorical_log_prob(leaves[0], leaves[1], leaves[2], s)).sum(), leaves
    )
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.needs_cuda
@needs_cupy
def test_cuda_runs_on_current_non_default_stream() -> None:
    n = 2048
    host = _logits(n, 16, 11, 10, seed=23)
    u = torch.rand(n, 3, generator=torch.Generator().manual_seed(24))
    expected = sample_reference(*host, u)
    dev = [t.cuda() for t in host]
    u_dev = u.cuda()
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    # Keep the default stream busy: a kernel wrongly queued there would run after the snapshot.
    torch.cuda._sleep(100_000_000)
    with torch.cuda.stream(stream):
        got = sample_cuda(*dev, u_dev)
        snapshot = got.op_ids.clone()  # ordered after the kernel only if it ran on `stream`
    torch.cuda.synchronize()
    assert torch.equal(snapshot.cpu(), expected.op_ids)
