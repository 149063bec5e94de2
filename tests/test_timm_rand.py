"""timm's RandAugment (``rand-...`` names, :class:`TimmRandAugment`): the semantics of timm
1.0's ``rand_augment_transform`` (``timm/data/auto_augment.py``), pinned twice:

* with constants copied from timm's source (run everywhere, CI has no timm): the op sets
  (``_RAND_TRANSFORMS``, ``_RAND_INCREASING_TRANSFORMS``), the defaults of the parser
  (``prob = 0.5``, ``magnitude = 10``, ``num_layers = 2``), the magnitude rule of
  ``AugmentOp.__call__`` (``gauss(m, mstd)``, ``uniform(0, m)`` for ``mstd > 100``, clipped
  to ``[0, magnitude_max or 10]``) and the level maps of ``LEVEL_TO_ARG``;
* against timm's own objects when timm imports (skipped otherwise).

Tolerances of the sampling statistics come from the sample size: a binomial or chi-square
p-value above ``P_MIN``, or ``Z`` standard errors of a mean.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from scipy import stats

from dali_aug import ops
from dali_aug.ops import CATALOG, get, index
from dali_aug.policies import (
    TIMM_RAND_INCREASING_TRANSFORMS,
    TIMM_RAND_TRANSFORMS,
    RandAugment,
    TimmRandAugment,
    parse_policy,
)

SAMPLES = 40_000
P_MIN = 1e-3
Z = 5.0  # standard errors allowed on a mean
IDENTITY = index("Identity")

# ---- constants copied from timm 1.0 (timm/data/auto_augment.py) ----------------------------

#: ``_RAND_TRANSFORMS``
TIMM_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
#: ``_RAND_INCREASING_TRANSFORMS``
TIMM_INC_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
#: the ops whose argument ``_randomly_negate`` mirrors
TIMM_NEGATED = {
    "Rotate",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
}


def _timm_arg(name: str, level: float) -> float | None:
    """|argument| of timm's ``LEVEL_TO_ARG[name](level)`` (before ``_randomly_negate``), copied
    from timm's source; None for ops without an argument."""
    if name in ("AutoContrast", "Equalize", "Invert"):
        return None
    if name == "Rotate":
        return (level / 10.0) * 30.0
    if name in ("ShearX", "ShearY"):
        return (level / 10.0) * 0.3
    if name in ("TranslateXRel", "TranslateYRel"):
        return (level / 10.0) * 0.45
    if name == "Posterize":
        return int((level / 10.0) * 4)
    if name == "PosterizeIncreasing":
        return 4 - int((level / 10.0) * 4)
    if name == "Solarize":
        return min(256, int((level / 10.0) * 256))
    if name == "SolarizeIncreasing":
        return 256 - min(256, int((level / 10.0) * 256))
    if name == "SolarizeAdd":
        return min(128, int((level / 10.0) * 110))
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return (level / 10.0) * 1.8 + 0.1
    if name.endswith("Increasing"):  # enhance: 1 +- (level / 10) * 0.9, >= 0.1
        return (level / 10.0) * 0.9
    raise KeyError(name)


LEVELS = [0.0, 0.3, 1.0, 2.5, 3.7, 5.0, 6.25, 7.0, 8.9, 9.0, 9.5, 10.0]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- the op sets and the parser's defaults ---------------------------------------------------


def test_op_sets_are_timms() -> None:
    assert tuple(t for t, _ in TIMM_RAND_TRANSFORMS) == TIMM_OPS
    assert tuple(t for t, _ in TIMM_RAND_INCREASING_TRANSFORMS) == TIMM_INC_OPS
    assert TimmRandAugment().ops == tuple(op for _, op in TIMM_RAND_TRANSFORMS)
    assert TimmRandAugment(increasing=True).ops == tuple(
        op for _, op in TIMM_RAND_INCREASING_TRANSFORMS
    )
    assert len(set(TimmRandAugment().ops)) == 15 and "SolarizeAdd" in TimmRandAugment().ops


@pytest.mark.parametrize("table", [TIMM_RAND_TRANSFORMS, TIMM_RAND_INCREASING_TRANSFORMS])
def test_catalog_ops_apply_timms_level_maps(table: tuple[tuple[str, str], ...]) -> None:
    """Each catalog op of the op sets maps a level to timm's argument (its |value|; timm's
    random sign is the catalog's ``signed``). SolarizeIncreasing's threshold ``256 - int(25.6
    l)`` and the catalog Solarize's ``256 - 25.6 l`` invert the same integer pixels."""
    for timm_name, name in table:
        op = get(name)
        assert op.signed == (timm_name in TIMM_NEGATED), timm_name
        for level in LEVELS:
            expected = _timm_arg(timm_name, level)
            if expected is None:
                assert not op.has_magnitude, timm_name
                continue
            got = float(op.param(level))
            if timm_name == "SolarizeIncreasing":
                assert math.ceil(got) == expected, (timm_name, level, got)
            elif timm_name.endswith("Increasing") and timm_name != "PosterizeIncreasing":
                assert got == pytest.approx(1.0 + expected, abs=1e-12), (timm_name, level)
                assert float(op.param(-level)) == pytest.approx(max(0.1, 1.0 - expected))
            else:
                assert got == pytest.approx(expected, abs=1e-12), (timm_name, level, got)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rand-m9-n2-mstd0.5", TimmRandAugment(n=2, m=9.0, mstd=0.5, prob=0.5)),
        ("rand", TimmRandAugment(n=2, m=10.0, mstd=0.0, mmax=10.0, prob=0.5)),
        ("rand-n3-m7-p0.8-mstd101-mmax8-inc1", TimmRandAugment(3, 7.0, 101.0, 8.0, 0.8, True)),
        ("rand-inc0-m5", TimmRandAugment(m=5.0)),
        ("rand-m15", TimmRandAugment(m=15.0)),  # timm clips the magnitude to 10
        ("rand-mstd1e3", TimmRandAugment(mstd=1000.0)),
        ("ra-m9-n2-mstd0.5", RandAugment(n=2, m=9.0, mstd=0.5, prob=1.0)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_parse_timm_spelling(name: str, expected: object) -> None:
    assert parse_policy(name) == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("rand-m9.5", r"m must be a whole number as in timm, got '9\.5'.*'ra-'"),
        ("rand-n2.5", "n must be a whole number"),
        ("rand-mmax9.5", "mmax must be a whole number"),
        ("rand-p0.5.1", "p must be a number"),
        ("rand-tweights", "transform-set key 'tweights'"),
        ("rand-t3a", "transform-set key 't3a'"),
        ("rand-w0", "weight key 'w'"),
        ("rand-x2", r"unknown key 'x' in 'x2' \(rand- keys: m, n, p, mstd, mmax, inc\)"),
        ("rand-mstdinf", "cannot read 'mstdinf'.*mstd101"),
        ("rand-m9-m5", "'m' given twice"),
        ("rand-inc2", "inc must be 0 or 1"),
        ("rand-mmax0", "mmax0 is not a clip"),
        ("rand-mmax11", r"mmax=11\.0 must be in \(0, 10\]"),
        ("rand-p1.5", r"prob=1\.5 must be in \[0, 1\]"),
        ("rand-n0", "n=0 must be an int >= 1"),
        ("rand-n17", "exceeds dali-aug's limit of 16"),
        ("rand-m9-", "cannot read ''"),
    ],
)
def test_parse_timm_errors_name_both_spellings(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_policy(name)
    text = str(info.value)
    assert repr(name) in text and "Valid forms" in text
    assert "'rand-m<int>-n<int>" in text and "'ra-m<0-10>-n<int>" in text


# ---- sampling statistics of rand-m9-n2-mstd0.5 ------------------------------------------------


def _binom_ok(k: int, n: int, p: float) -> bool:
    return bool(stats.binomtest(k, n, p).pvalue > P_MIN)


def test_rand_m9_n2_mstd05_apply_rate_op_set_and_magnitudes() -> None:
    policy = parse_policy("rand-m9-n2-mstd0.5")
    assert isinstance(policy, TimmRandAugment)
    params = policy.sample(SAMPLES, generator=_gen(0))
    ops_drawn, levels = params.op_ids, params.levels
    assert ops_drawn.shape == (SAMPLES, 2)
    ids = torch.tensor([index(o) for o in policy.ops])
    # per-op apply probability 0.5, per layer
    for layer in range(2):
        applied = ops_drawn[:, layer] != IDENTITY
        k = int(applied.sum())
        assert _binom_ok(k, SAMPLES, 0.5), f"layer {layer}: applied {k} of {SAMPLES}"
        # op set: exactly timm's 15, drawn uniformly (with replacement)
        counts = torch.bincount(ops_drawn[applied, layer], minlength=len(CATALOG))
        assert set(torch.nonzero(counts).flatten().tolist()) == set(ids.tolist())
        result = stats.chisquare(counts[ids].numpy())
        assert result.pvalue > P_MIN, counts[ids].tolist()
        # not applied: Identity at level 0
        assert (levels[~applied, layer] == 0).all()
    # with replacement: the two layers pick the same op 1/15 of the time (when both apply)
    both = (ops_drawn != IDENTITY).all(dim=1)
    same = int((ops_drawn[both, 0] == ops_drawn[both, 1]).sum())
    assert _binom_ok(same, int(both.sum()), 1 / 15), same
    # magnitudes: N(9, 0.5) clipped to [0, 10]
    mag = levels[ops_drawn != IDENTITY].abs().double()
    assert float(mag.min()) >= 0.0 and float(mag.max()) == 10.0
    n = mag.numel()
    above = int((mag == 10.0).sum())
    assert _binom_ok(above, n, float(stats.norm.sf(2.0))), above / n
    inner = mag[mag < 10.0].numpy()
    clipped = stats.truncnorm(-np.inf, 2.0, loc=9.0, scale=0.5)
    assert stats.kstest(inner, clipped.cdf).pvalue > P_MIN
    mean = float(stats.truncnorm.mean(-np.inf, 2.0, loc=9.0, scale=0.5)) * (
        1 - stats.norm.sf(2.0)
    ) + 10.0 * stats.norm.sf(2.0)
    assert abs(float(mag.mean()) - mean) < Z * 0.5 / math.sqrt(n), (float(mag.mean()), mean)


def test_mstd_above_100_is_uniform_in_0_m() -> None:
    params = parse_policy("rand-m7-n2-mstd101").sample(SAMPLES, generator=_gen(1))
    mag = params.levels[params.op_ids != IDENTITY].abs().double().numpy()
    assert mag.min() >= 0.0 and mag.max() <= 7.0
    assert stats.kstest(mag, stats.uniform(0.0, 7.0).cdf).pvalue > P_MIN
    # at mstd 100 it is still a Gaussian (clipped): about half the draws sit on a bound
    params = parse_policy("rand-m7-n2-mstd100").sample(SAMPLES, generator=_gen(1))
    mag100 = params.levels[params.op_ids != IDENTITY].abs()
    assert float(((mag100 == 0) | (mag100 == 10)).double().mean()) > 0.9


def test_uniform_magnitude_is_clipped_by_mmax_not_scaled() -> None:
    """timm draws ``uniform(0, m)`` and then clips to ``mmax``: m=9, mmax=5 puts 4/9 of the
    draws on 5."""
    params = parse_policy("rand-m9-n2-mstd101-mmax5").sample(SAMPLES, generator=_gen(2))
    mag = params.levels[params.op_ids != IDENTITY].abs().double()
    assert float(mag.max()) == 5.0
    assert _binom_ok(int((mag == 5.0).sum()), mag.numel(), 4 / 9)


def test_mmax_clips_the_gaussian() -> None:
    params = parse_policy("rand-m9-n1-mstd2-mmax8").sample(SAMPLES, generator=_gen(3))
    mag = params.levels[params.op_ids != IDENTITY].abs().double()
    assert float(mag.max()) == 8.0
    assert _binom_ok(int((mag == 8.0).sum()), mag.numel(), float(stats.norm.sf(-0.5)))


def test_fixed_magnitude_is_clipped_to_10() -> None:
    params = parse_policy("rand-m15-n2").sample(2000, generator=_gen(4))
    mag = params.levels[params.op_ids != IDENTITY].abs()
    assert (mag == 10.0).all()


def test_inc1_op_set_and_signs() -> None:
    policy = parse_policy("rand-m9-n2-inc1")
    assert isinstance(policy, TimmRandAugment) and policy.increasing
    params = policy.sample(SAMPLES, generator=_gen(5))
    drawn = set(params.op_ids.unique().tolist()) - {IDENTITY}
    assert drawn == {index(op) for _, op in TIMM_RAND_INCREASING_TRANSFORMS}
    color = params.levels[params.op_ids == index("Color")]
    assert _binom_ok(int((color < 0).sum()), color.numel(), 0.5)  # ColorIncreasing: negated
    plain = parse_policy("rand-m9-n2").sample(SAMPLES, generator=_gen(5))
    assert (plain.levels[plain.op_ids == index("ColorTimm")] == 9.0).all()  # never negated


def test_p_is_the_apply_probability() -> None:
    for p in (0.0, 0.2, 1.0):
        params = parse_policy(f"rand-m9-n3-p{p}").sample(SAMPLES, generator=_gen(6))
        applied = int((params.op_ids != IDENTITY).sum())
        if p in (0.0, 1.0):
            assert applied == p * SAMPLES * 3
        else:
            assert _binom_ok(applied, SAMPLES * 3, p)


def test_op_probabilities() -> None:
    probs = parse_policy("rand-m9-n2-mstd0.5").op_probabilities()
    ids = [index(op) for _, op in TIMM_RAND_TRANSFORMS]
    torch.testing.assert_close(probs[:, ids], torch.full((2, 15), 0.5 / 15))
    torch.testing.assert_close(probs[:, IDENTITY], torch.full((2,), 0.5))


def test_ra_keeps_the_previous_meaning() -> None:
    """``ra-`` is the former ``rand-``: every op applied, the paper's 14 ops, Gaussian mstd."""
    policy = parse_policy("ra-m9-n2-mstd101")
    assert isinstance(policy, RandAugment) and policy.prob == 1.0
    params = policy.sample(SAMPLES, generator=_gen(7))
    mag = params.levels.abs()
    assert float(((mag == 0) | (mag == 10)).double().mean()) > 0.9  # not uniform


# ---- the new ops -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_solarize_add_adds_below_128(backend: str) -> None:
    ramp = np.arange(256, dtype=np.uint8)
    images = np.broadcast_to(ramp.reshape(1, 16, 16, 1), (2, 16, 16, 3)).copy()
    out = ops.apply("SolarizeAdd", images, 9.0, backend=backend)
    add = int((9.0 / 10.0) * 110)  # 99
    expected = np.where(ramp < 128, np.minimum(255, ramp.astype(int) + add), ramp).astype(np.uint8)
    np.testing.assert_array_equal(out[0, ..., 0].reshape(-1), expected)


@pytest.mark.parametrize("backend", ["torch", "dali"])
@pytest.mark.parametrize(("name", "bits"), [("PosterizeTimm", 0), ("PosterizeIncreasing", 4)])
def test_timm_posterize_at_level_0(backend: str, name: str, bits: int) -> None:
    ramp = np.arange(256, dtype=np.uint8)
    images = np.broadcast_to(ramp.reshape(1, 16, 16, 1), (1, 16, 16, 3)).copy()
    out = ops.apply(name, images, 0.0, backend=backend)
    mask = (0xFF << (8 - bits)) & 0xFF
    np.testing.assert_array_equal(out[0, ..., 0].reshape(-1), ramp & mask)


# ---- against timm's own objects (skipped without timm) --------------------------------------


def _timm() -> object:
    return pytest.importorskip("timm.data.auto_augment")


@pytest.mark.parametrize(
    "name",
    [
        "rand-m9-n2-mstd0.5",
        "rand-m9-n2-mstd101",
        "rand-m7-n3-p0.3-mmax8",
        "rand-m9-n2-mstd0.5-inc1",
        "rand",
    ],
)
def test_policy_fields_match_timm(name: str) -> None:
    aa = _timm()
    ra = aa.rand_augment_transform(name, {})  # type: ignore[attr-defined]
    policy = parse_policy(name)
    assert isinstance(policy, TimmRandAugment)
    table = TIMM_RAND_INCREASING_TRANSFORMS if policy.increasing else TIMM_RAND_TRANSFORMS
    assert [op.name for op in ra.ops] == [t for t, _ in table]
    assert ra.num_layers == policy.n and ra.choice_weights is None
    for op in ra.ops:
        assert op.prob == policy.prob
        assert op.magnitude == policy.m
        std = op.magnitude_std
        assert (std == float("inf")) == policy.uniform
        if not policy.uniform:
            assert std == policy.mstd
        assert (op.magnitude_max or 10.0) == policy.mmax


def test_level_maps_match_timm() -> None:
    aa = _timm()
    hparams = dict(aa._HPARAMS_DEFAULT)  # type: ignore[attr-defined]
    for table in (TIMM_RAND_TRANSFORMS, TIMM_RAND_INCREASING_TRANSFORMS):
        for timm_name, name in table:
            fn = aa.LEVEL_TO_ARG[timm_name]  # type: ignore[attr-defined]
            for level in LEVELS:
                if fn is None:
                    assert not get(name).has_magnitude
                    continue
                random.seed(0)
                (arg,) = fn(level, hparams)
                expected = _timm_arg(timm_name, level)
                if timm_name.endswith("Increasing") and "Posterize" not in timm_name:
                    if "Solarize" not in timm_name:
                        arg = abs(arg - 1.0) if arg >= 1.0 else 1.0 - arg
                assert abs(arg) == pytest.approx(expected), (timm_name, level)


def _record_timm(aa: object, name: str, draws: int) -> list[tuple[str, float | None]]:
    """Runs timm's transform ``draws`` times with every op's kernel replaced by a recorder of
    (op name, argument): the applied ops and their arguments as timm samples them."""
    ra = aa.rand_augment_transform(name, {})  # type: ignore[attr-defined]
    log: list[tuple[str, float | None]] = []
    for op in ra.ops:
        op.aug_fn = lambda img, *args, _n=op.name, **kw: log.append((_n, args[0] if args else None))
    random.seed(0)
    np.random.seed(0)
    for _ in range(draws):
        ra(None)
    return log


def test_sampling_matches_timm_distribution() -> None:
    """rand-m9-n2-mstd0.5: the apply rate, the op frequencies and the distribution of each
    op's argument of dali-aug's samples match timm's (two-sample tests)."""
    aa = _timm()
    draws = 20_000
    log = _record_timm(aa, "rand-m9-n2-mstd0.5", draws)
    policy = parse_policy("rand-m9-n2-mstd0.5")
    params = policy.sample(draws, generator=_gen(11))
    applied = params.op_ids != IDENTITY
    ours_rate, timm_rate = int(applied.sum()), len(log)
    chi = stats.chi2_contingency(
        [[ours_rate, 2 * draws - ours_rate], [timm_rate, 2 * draws - timm_rate]]
    )
    assert chi.pvalue > P_MIN, (ours_rate, timm_rate)
    to_timm = {index(op): t for t, op in TIMM_RAND_TRANSFORMS}
    ours = [
        (to_timm[int(k)], float(get(CATALOG[int(k)].name).param(float(lv))))
        for k, lv in zip(
            params.op_ids[applied].tolist(), params.levels[applied].tolist(), strict=True
        )
    ]
    names = [t for t, _ in TIMM_RAND_TRANSFORMS]
    ours_counts = [sum(1 for n, _ in ours if n == t) for t in names]
    timm_counts = [sum(1 for n, _ in log if n == t) for t in names]
    assert stats.chi2_contingency([ours_counts, timm_counts]).pvalue > P_MIN
    for t in ("Rotate", "Color", "Posterize", "Solarize", "SolarizeAdd", "TranslateXRel"):
        a = np.array([v for n, v in ours if n == t], dtype=float)
        b = np.array([v for n, v in log if n == t], dtype=float)
        if t in ("Posterize", "Solarize", "SolarizeAdd"):  # discrete: compare the values
            values = sorted(set(a) | set(b))
            rows = [[int((a == v).sum()) for v in values], [int((b == v).sum()) for v in values]]
            assert stats.chi2_contingency(rows).pvalue > P_MIN, t
        else:
            assert stats.ks_2samp(a, b).pvalue > P_MIN, t


@pytest.mark.parametrize("table", [TIMM_RAND_TRANSFORMS, TIMM_RAND_INCREASING_TRANSFORMS])
def test_pixels_match_timm_ops(table: tuple[tuple[str, str], ...], photo_batch: np.ndarray) -> None:
    """Each op at magnitude 9 (timm's sign drawn first, then replayed) on the torch backend
    equals timm's ``AugmentOp`` with NEAREST resampling and the gray fill, within the catalog's
    tolerance."""
    aa = _timm()
    from PIL import Image

    hparams = {**aa._HPARAMS_DEFAULT, "interpolation": Image.Resampling.NEAREST}  # type: ignore[attr-defined]
    for timm_name, name in table:
        op = aa.AugmentOp(timm_name, prob=1.0, magnitude=9, hparams=hparams)  # type: ignore[attr-defined]
        for i, image in enumerate(photo_batch[:2]):
            random.seed(i)
            negate = random.random() > 0.5  # timm's _randomly_negate draw
            random.seed(i)
            ref = np.asarray(op(Image.fromarray(image)))
            level = -9.0 if (negate and get(name).signed) else 9.0
            out = ops.apply(name, image[None], level, backend="torch")[0]
            max_abs, max_fraction = get(name).tolerance["torch"]
            diff = np.abs(out.astype(int) - ref.astype(int)).max(axis=-1)
            assert float((diff > max_abs).mean()) <= max_fraction, (timm_name, i, diff.max())
