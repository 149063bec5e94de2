"""Tests for dali_aug.policies: sampled op frequencies match ``op_probabilities`` (chi-square,
STYLE rule 13c), random signs, RandAugment's level jitter, determinism (rule 13d),
``to_dict``/``from_dict`` round trips, ``parse_policy`` and the validation messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from dali_aug.ops import CATALOG, OpParams, get, index, names
from dali_aug.policies import (
    POLICY_NAMES,
    RAND_OPS,
    WIDE_MAX_LEVEL,
    AugmentPolicy,
    NoAugment,
    OpSpec,
    Policy,
    RandAugment,
    TimmRandAugment,
    TrivialAugmentWide,
    auto_augment,
    parse_policy,
    policy_from_dict,
)

SAMPLES = 20_000
P_MIN = 1e-3
IDENTITY = index("Identity")
SIGNED = torch.tensor([op.signed for op in CATALOG])

USER_POLICY = Policy(
    "mine",
    (
        (OpSpec("Rotate", 0.5, 9), OpSpec("Equalize", 0.8)),
        (OpSpec("Invert", 0.3),),
        (OpSpec("Solarize", 1.0, 5), OpSpec("ShearX", 0.2, 3), OpSpec("Color", 0.7, 4)),
    ),
)

POLICIES: dict[str, AugmentPolicy] = {
    "aa-imagenet": parse_policy("aa-imagenet"),
    "aa-cifar10": parse_policy("aa-cifar10"),
    "aa-svhn": parse_policy("aa-svhn"),
    "ra-m9-n2": parse_policy("ra-m9-n2"),
    "ra-m5-n3-p0.5": parse_policy("ra-m5-n3-p0.5"),
    "rand-m9-n2-mstd0.5": parse_policy("rand-m9-n2-mstd0.5"),
    "rand-m7-n3-mstd101-inc1-p0.7": parse_policy("rand-m7-n3-mstd101-inc1-p0.7"),
    "ta-wide": parse_policy("ta-wide"),
    "user": USER_POLICY,
}

ALL_POLICIES: dict[str, AugmentPolicy] = {
    **POLICIES,
    "none": NoAugment(),
    "ra-mstd": RandAugment(n=1, m=7.0, mstd=0.5, prob=0.8, ops=("Rotate", "Invert")),
    "rand-mmax": TimmRandAugment(n=1, m=9.0, mstd=2.0, mmax=8.0, prob=0.9, increasing=True),
    "ta-custom": TrivialAugmentWide(ops=("Rotate", "Posterize", "Identity"), num_bins=11),
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _assert_params_equal(a: OpParams, b: OpParams) -> None:
    for field in ("op_ids", "levels", "centers", "partners"):
        torch.testing.assert_close(getattr(a, field), getattr(b, field), rtol=0, atol=0)


# ---- op frequencies (chi-square) ---------------------------------------------------------


@pytest.mark.parametrize("key", list(POLICIES))
def test_op_frequencies_match_op_probabilities(key: str) -> None:
    policy = POLICIES[key]
    probs = policy.op_probabilities().double()
    assert probs.shape == (policy.num_layers, len(CATALOG))
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(policy.num_layers, dtype=torch.double))
    params = policy.sample(SAMPLES, generator=_gen(0))
    assert params.op_ids.shape == (SAMPLES, policy.num_layers)
    for layer in range(policy.num_layers):
        counts = torch.bincount(params.op_ids[:, layer], minlength=len(CATALOG)).double()
        possible = probs[layer] > 0
        impossible = [names()[k] for k in torch.nonzero(~possible & (counts > 0)).flatten()]
        assert not impossible, f"{key} layer {layer}: drew ops of probability 0: {impossible}"
        expected = probs[layer][possible] / probs[layer][possible].sum() * SAMPLES
        result = stats.chisquare(counts[possible].numpy(), expected.numpy())
        assert result.pvalue > P_MIN, (
            f"{key} layer {layer}: chi-square p={result.pvalue:.2e}; "
            f"counts {counts[possible].tolist()} vs expected {expected.tolist()}"
        )


@pytest.mark.parametrize("key", [k for k in POLICIES if k.startswith("aa-") or k == "user"])
def test_sub_policy_levels_are_the_table_levels(key: str) -> None:
    """An AutoAugment-style policy applies each op at its table level (up to the sign)."""
    policy = POLICIES[key]
    assert isinstance(policy, Policy)
    params = policy.sample(2000, generator=_gen(1))
    for layer in range(policy.num_layers):
        allowed = {(IDENTITY, 0.0)} | {
            (index(sub[layer].op), float(sub[layer].level))
            for sub in policy.sub_policies
            if layer < len(sub)
        }
        pairs = zip(
            params.op_ids[:, layer].tolist(), params.levels[:, layer].abs().tolist(), strict=True
        )
        drawn = set(pairs)
        assert drawn <= allowed, f"layer {layer}: unexpected (op, level) {drawn - allowed}"


@pytest.mark.parametrize("key", list(POLICIES))
def test_signs_are_fair(key: str) -> None:
    """Signed ops are mirrored with probability 0.5; unsigned ops never are."""
    params = POLICIES[key].sample(SAMPLES, generator=_gen(2))
    signed = SIGNED[params.op_ids]
    negative = torch.signbit(params.levels)
    assert not negative[~signed].any(), "an unsigned op got a negative level"
    k, n = int(negative[signed].sum()), int(signed.sum())
    assert n > 1000
    p = stats.binomtest(k, n, 0.5).pvalue
    assert p > P_MIN, f"{key}: {k} of {n} signed levels negative (p={p:.2e})"


# ---- RandAugment / TrivialAugmentWide levels ----------------------------------------------


@pytest.mark.parametrize(("m", "mstd"), [(5.0, 1.0), (2.0, 0.5), (9.0, 0.0)])
def test_rand_augment_mstd_jitter(m: float, mstd: float) -> None:
    policy = RandAugment(n=2, m=m, mstd=mstd)
    levels = policy.sample(SAMPLES, generator=_gen(3)).levels.abs().flatten().double()
    assert float(levels.min()) >= 0.0
    assert float(levels.max()) <= 10.0
    if mstd == 0:
        assert (levels == m).all()
        return
    # m is >= 4 sigma inside [0, 10]: the clamp is (almost) never hit.
    assert float(levels.mean()) == pytest.approx(m, abs=0.03)
    assert float(levels.std()) == pytest.approx(mstd, rel=0.03)


def test_rand_augment_mstd_is_clamped_to_scale() -> None:
    levels = RandAugment(n=2, m=9.0, mstd=3.0).sample(SAMPLES, generator=_gen(4)).levels.abs()
    assert float(levels.min()) >= 0.0
    assert float(levels.max()) == 10.0  # about a third of the draws is clamped
    assert 0.25 < float((levels == 10.0).double().mean()) < 0.4


def test_trivial_augment_wide_levels_on_bins() -> None:
    policy = TrivialAugmentWide()
    params = policy.sample(SAMPLES, generator=_gen(5))
    for k in params.op_ids[:, 0].unique().tolist():
        name = CATALOG[k].name
        top = WIDE_MAX_LEVEL.get(name, 10.0)
        levels = params.levels[params.op_ids[:, 0] == k, 0].abs().double()
        assert float(levels.max()) <= top + 1e-5
        assert float(levels.max()) <= CATALOG[k].max_level
        steps = levels / top * (policy.num_bins - 1)
        torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-3)
        if CATALOG[k].has_magnitude:
            counts = torch.bincount(steps.round().long(), minlength=policy.num_bins)
            assert stats.chisquare(counts.numpy()).pvalue > P_MIN, name


# ---- determinism ------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(ALL_POLICIES))
def test_same_seed_same_params(key: str) -> None:
    policy = ALL_POLICIES[key]
    _assert_params_equal(policy.sample(64, generator=_gen(7)), policy.sample(64, generator=_gen(7)))


@pytest.mark.parametrize("key", [k for k in ALL_POLICIES if k != "none"])
def test_different_seed_different_params(key: str) -> None:
    policy = ALL_POLICIES[key]
    a, b = policy.sample(64, generator=_gen(7)), policy.sample(64, generator=_gen(8))
    assert not (torch.equal(a.op_ids, b.op_ids) and torch.equal(a.levels, b.levels))


def test_no_augment_has_no_layers() -> None:
    params = NoAugment().sample(5, generator=_gen(0))
    assert params.op_ids.shape == (5, 0)
    assert NoAugment().op_probabilities().shape == (0, len(CATALOG))


# ---- serialisation ------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(ALL_POLICIES))
def test_dict_round_trip(key: str) -> None:
    policy = ALL_POLICIES[key]
    d = policy.to_dict()
    d_json = json.loads(json.dumps(d))
    assert d_json == d  # plain JSON types only
    for rebuilt in (type(policy).from_dict(d), policy_from_dict(d), policy_from_dict(d_json)):
        assert type(rebuilt) is type(policy)
        assert rebuilt == policy
        assert rebuilt.to_dict() == d
        _assert_params_equal(
            rebuilt.sample(32, generator=_gen(9)), policy.sample(32, generator=_gen(9))
        )


def test_policy_from_dict_errors() -> None:
    with pytest.raises(ValueError, match="'type'"):
        policy_from_dict({"n": 2})
    with pytest.raises(ValueError, match="unknown policy type 'bogus'"):
        policy_from_dict({"type": "bogus"})


# ---- parse_policy -------------------------------------------------------------------------


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_parse_every_policy_name(name: str) -> None:
    policy = parse_policy(name)
    assert isinstance(policy, AugmentPolicy)
    expected = {
        "none": NoAugment(),
        "aa-imagenet": auto_augment("imagenet"),
        "aa-cifar10": auto_augment("cifar10"),
        "aa-svhn": auto_augment("svhn"),
        "ta-wide": TrivialAugmentWide(),
        "rand-m9-n2-mstd0.5": TimmRandAugment(n=2, m=9.0, mstd=0.5),
        "ra-m9-n2-mstd0.5": RandAugment(n=2, m=9.0, mstd=0.5),
    }[name]
    assert policy == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ra-m9-n3-mstd0.5-p0.5", RandAugment(n=3, m=9.0, mstd=0.5, prob=0.5)),
        ("ra-n3-p0.5-mstd0.5-m9", RandAugment(n=3, m=9.0, mstd=0.5, prob=0.5)),
        ("ra", RandAugment()),
        ("ra-m0-n1", RandAugment(n=1, m=0.0)),
        ("ra-m10", RandAugment(m=10.0)),
        ("ra-m7.5-n2", RandAugment(n=2, m=7.5)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_parse_rand_augment(name: str, expected: RandAugment) -> None:
    assert parse_policy(name) == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bogus", "unknown policy"),
        ("aa-imagenett", "unknown AutoAugment table 'imagenett'"),
        ("ra-m11-n2", r"m=11\.0 must be in \[0, 10\]"),
        ("ra-n0", "n=0 must be an int >= 1"),
        ("ra-mX", "cannot read 'mX'"),
        ("ra-m9-m5", "'m' given twice"),
        ("ra-n2.5", "n must be an integer"),
        ("ra-p1.5", r"prob=1\.5 must be in \[0, 1\]"),
        ("ra-m9-x2", "cannot read 'x2'"),
        ("Rand-m9", "unknown policy"),
        ("", "unknown policy"),
    ],
)
def test_parse_policy_errors(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_policy(name)
    assert "Valid forms" in str(info.value)
    assert repr(name) in str(info.value)


@pytest.mark.parametrize("bad", [5, None, ("rand-m9",)], ids=["int", "None", "tuple"])
def test_parse_policy_non_str(bad: object) -> None:
    with pytest.raises(TypeError, match="policy name must be a str"):
        parse_policy(bad)  # type: ignore[arg-type]


# ---- validation of policy objects -----------------------------------------------------------


def test_opspec_unknown_op_lists_valid_ops() -> None:
    with pytest.raises(ValueError, match="unknown op 'Rotat'") as info:
        OpSpec("Rotat", 0.5, 3)
    assert all(name in str(info.value) for name in names())


def test_opspec_wrong_case_suggests_name() -> None:
    with pytest.raises(ValueError, match="Did you mean 'Rotate'"):
        OpSpec("rotate", 0.5, 3)


@pytest.mark.parametrize("prob", [1.5, -0.1])
def test_opspec_bad_prob(prob: float) -> None:
    with pytest.raises(ValueError, match=rf"OpSpec\(Rotate\): prob {prob} must be in \[0, 1\]"):
        OpSpec("Rotate", prob, 3)


@pytest.mark.parametrize(
    ("op", "level", "message"),
    [
        ("Rotate", 99, "Rotate: magnitude 99.0 is out of range"),
        ("Posterize", -1, "Posterize: magnitude -1.0 is negative"),
        ("Solarize", float("nan"), "Solarize: magnitude is NaN"),
    ],
)
def test_opspec_bad_level(op: str, level: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OpSpec(op, 0.5, level)


def test_opspec_repr() -> None:
    assert repr(OpSpec("Rotate", 0.5, 9)) == "OpSpec(Rotate, p=0.5, level=9)"
    assert repr(OpSpec("Equalize", 0.8)) == "OpSpec(Equalize, p=0.8)"


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="'empty' has no sub-policies"):
        Policy("empty", ())
    with pytest.raises(TypeError, match="non-empty tuple of OpSpec"):
        Policy("hollow", ((),))
    with pytest.raises(TypeError, match="non-empty tuple of OpSpec"):
        Policy("raw", ((("Rotate", 0.5, 9),),))  # type: ignore[arg-type]


def test_policy_pads_short_sub_policies_with_identity() -> None:
    assert USER_POLICY.num_layers == 3
    params = USER_POLICY.sample(3000, generator=_gen(10))
    short = params.op_ids[:, 0] == index("Invert")
    assert short.any()
    assert (params.op_ids[short, 1:] == IDENTITY).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n=0 must be an int >= 1"),
        ({"n": 2.0}, "n=2.0 must be an int"),
        ({"n": True}, "n=True must be an int"),
        ({"m": 10.5}, r"m=10.5 must be in \[0, 10\]"),
        ({"mstd": -1.0}, "mstd=-1.0 must be >= 0"),
        ({"prob": 2.0}, r"prob=2.0 must be in \[0, 1\]"),
        ({"ops": ()}, "op list is empty"),
        ({"ops": ("Rotate", "Spin")}, "unknown op 'Spin'"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_rand_augment_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RandAugment(**kwargs)  # type: ignore[arg-type]


def test_trivial_augment_validation() -> None:
    with pytest.raises(ValueError, match="num_bins=1 must be >= 2"):
        TrivialAugmentWide(num_bins=1)
    with pytest.raises(ValueError, match="op list is empty"):
        TrivialAugmentWide(ops=())


def test_auto_augment_unknown_table() -> None:
    with pytest.raises(ValueError, match="unknown AutoAugment table 'mnist'"):
        auto_augment("mnist")


def test_rand_ops_are_catalog_ops() -> None:
    assert set(RAND_OPS) <= set(names())
    assert set(WIDE_MAX_LEVEL) <= set(RAND_OPS)
    assert np.all([WIDE_MAX_LEVEL[k] <= CATALOG[index(k)].max_level for k in WIDE_MAX_LEVEL])


# ---- weighted categorical policy (an exported search) ---------------------------------------


def _searched_policy(k: int = 1296, seed: int = 0) -> Policy:
    """A policy shaped like an exported search: ``k`` two-op sub-policies with random weights
    (many tiny, a few large), as AWS exports them."""
    rng = np.random.default_rng(seed)
    ops = [n for n in RAND_OPS if n != "Identity"]
    subs = tuple(
        tuple(
            OpSpec(
                op,
                float(rng.choice([0.2, 0.5, 0.8, 1.0])),
                float(rng.integers(0, 11)) if get(op).has_magnitude else 0.0,
            )
            for op in rng.choice(ops, 2)
        )
        for _ in range(k)
    )
    weights = tuple(float(w) for w in rng.gamma(0.5, size=k))
    return Policy("searched", subs, weights=weights)


def test_weighted_policy_builds_its_tables_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sampling a 1296-sub-policy policy is tensor work: the Python table build (the only
    loop over sub-policies) runs once, at construction, never in ``sample``."""
    from dali_aug.policies import _policy

    builds: list[int] = []
    real = _policy._build_table

    def counting(*args: object, **kwargs: object) -> object:
        builds.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_policy, "_build_table", counting)
    policy = _searched_policy()
    assert len(builds) == 1
    # from here on a table build would fail: sample must not need one
    monkeypatch.setattr(_policy, "_build_table", lambda *a, **k: pytest.fail("table rebuilt"))
    first = policy.sample(64, generator=_gen(0))
    second = policy.sample(64, generator=_gen(1))
    assert first.op_ids.shape == second.op_ids.shape == (64, 2)
    policy.op_probabilities()
    assert len(builds) == 1


def test_weighted_policy_sub_policy_frequencies_match_weights() -> None:
    """Chi-square: how often each sub-policy is drawn matches the normalised weights. Probe
    sub-policies (each a distinct op always applied at a distinct level) make the drawn
    sub-policy readable from the params."""
    probes = ["ShearX", "Rotate", "Color", "Contrast", "Solarize", "Posterize"]
    subs = tuple((OpSpec(op, 1.0, 3.0),) for op in probes)
    weights = (5.0, 1.0, 0.5, 2.5, 0.0, 1.0)
    policy = Policy("probe", subs, weights=weights)
    params = policy.sample(SAMPLES, generator=_gen(3))
    ids = torch.tensor([index(op) for op in probes])
    which = (params.op_ids[:, :1] == ids).long().argmax(dim=1)
    counts = torch.bincount(which, minlength=len(probes)).double()
    assert counts[4] == 0, "a sub-policy of weight 0 was drawn"
    w = torch.tensor(weights, dtype=torch.double)
    keep = w > 0
    expected = w[keep] / w.sum() * SAMPLES
    result = stats.chisquare(counts[keep].numpy(), expected.numpy())
    assert result.pvalue > P_MIN, f"p={result.pvalue:.2e}: {counts.tolist()} vs {expected}"
    torch.testing.assert_close(policy.selection_probabilities(), w / w.sum())


def test_weighted_policy_op_frequencies_match_op_probabilities() -> None:
    policy = Policy(
        "weighted-user",
        USER_POLICY.sub_policies,
        weights=(0.6, 0.1, 0.3),
    )
    probs = policy.op_probabilities().double()
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(policy.num_layers, dtype=torch.double))
    params = policy.sample(SAMPLES, generator=_gen(4))
    for layer in range(policy.num_layers):
        counts = torch.bincount(params.op_ids[:, layer], minlength=len(CATALOG)).double()
        possible = probs[layer] > 0
        assert not (counts[~possible] > 0).any()
        expected = probs[layer][possible] / probs[layer][possible].sum() * SAMPLES
        assert stats.chisquare(counts[possible].numpy(), expected.numpy()).pvalue > P_MIN


def test_unweighted_policy_draws_are_unchanged() -> None:
    """``weights=None`` keeps the uniform ``randint`` draw and the stream of earlier releases
    (golden values of aa-imagenet at seed 0, recorded before the tables were cached)."""
    params = auto_augment("imagenet").sample(6, generator=_gen(0))
    assert params.op_ids.tolist() == [[16, 16], [11, 10], [16, 8], [4, 11], [6, 7], [16, 16]]
    assert params.levels.tolist() == [
        [0.0, 0.0],
        [4.0, 8.0],
        [0.0, 8.0],
        [-8.0, 0.0],
        [0.0, 0.0],
        [0.0, 0.0],
    ]
    assert params.partners.tolist() == [[2, 1], [5, 3], [4, 5], [2, 5], [2, 3], [0, 0]]


def test_weighted_policy_dict_round_trip() -> None:
    policy = _searched_policy(k=40, seed=1)
    d = policy.to_dict()
    assert d["weights"] == list(policy.weights or ())
    d_json = json.loads(json.dumps(d))
    for rebuilt in (Policy.from_dict(d), policy_from_dict(d_json)):
        assert rebuilt == policy
        assert rebuilt.to_dict() == d
        _assert_params_equal(
            rebuilt.sample(32, generator=_gen(9)), policy.sample(32, generator=_gen(9))
        )
    assert "weights" not in USER_POLICY.to_dict()  # unweighted dicts are unchanged


def test_policy_cache_is_not_state() -> None:
    """The cached tables are not fields: equality, hashing, ``replace``, pickling, copying
    and ``to_dict`` see the fields only, and every copy samples like the original."""
    import copy
    import dataclasses
    import pickle

    policy = _searched_policy(k=30, seed=2)
    for other in (
        pickle.loads(pickle.dumps(policy)),
        copy.deepcopy(policy),
        copy.copy(policy),
        dataclasses.replace(policy),
    ):
        assert other == policy and hash(other) == hash(policy)
        assert other.to_dict() == policy.to_dict()
        _assert_params_equal(
            other.sample(16, generator=_gen(5)), policy.sample(16, generator=_gen(5))
        )
    assert "_table" not in [f.name for f in dataclasses.fields(policy)]
    assert b"_table" not in pickle.dumps(policy)
    reweighted = dataclasses.replace(policy, weights=(1.0,) + (0.0,) * 29)
    assert (reweighted.sample(50, generator=_gen(6)).op_ids[:, 0] != IDENTITY).any()
    assert reweighted.selection_probabilities()[0] == 1.0
    unweighted = dataclasses.replace(policy, weights=None)
    assert unweighted != policy and "weights" not in unweighted.to_dict()
    for cached in (RandAugment(), TrivialAugmentWide()):
        again = pickle.loads(pickle.dumps(cached))
        assert again == cached
        _assert_params_equal(
            again.sample(8, generator=_gen(7)), cached.sample(8, generator=_gen(7))
        )


def test_weighted_policy_empty_batch() -> None:
    params = _searched_policy(k=5).sample(0, generator=_gen(0))
    assert params.op_ids.shape == (0, 2)


@pytest.mark.parametrize(
    ("weights", "error", "message"),
    [
        ((1.0, 2.0), ValueError, "2 weights for 3 sub-policies"),
        ((1.0, -1.0, 1.0), ValueError, "weight -1.0 is not a finite number >= 0"),
        ((1.0, float("nan"), 1.0), ValueError, "weight nan is not a finite"),
        ((1.0, float("inf"), 1.0), ValueError, "weight inf is not a finite"),
        ((0.0, 0.0, 0.0), ValueError, "the weights sum to 0"),
        ("abc", TypeError, "weights must be a sequence of 3 numbers"),
        (3.0, TypeError, "weights must be a sequence of 3 numbers"),
        ((1.0, "x", 1.0), TypeError, "weight 'x' is not a number"),
        ((1.0, True, 1.0), TypeError, "weight True is not a number"),
    ],
    ids=lambda v: repr(v) if not isinstance(v, type) else v.__name__,
)
def test_weighted_policy_validation(weights: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        Policy("w", USER_POLICY.sub_policies, weights=weights)  # type: ignore[arg-type]


def test_weighted_policy_accepts_arrays_and_keeps_weights_as_given() -> None:
    subs = USER_POLICY.sub_policies
    for given in ([1, 2, 1], np.array([1.0, 2.0, 1.0]), torch.tensor([1.0, 2.0, 1.0])):
        policy = Policy("w", subs, weights=given)  # type: ignore[arg-type]
        assert policy.weights == (1.0, 2.0, 1.0)
        torch.testing.assert_close(
            policy.selection_probabilities(), torch.tensor([0.25, 0.5, 0.25], dtype=torch.double)
        )
    assert repr(Policy("w", subs, weights=(1, 1, 1))) == "Policy('w', 3 sub-policies, weighted)"


def test_parse_policy_reads_a_policy_json_file(tmp_path: Path) -> None:
    import json

    from dali_aug.policies import OpSpec, Policy, parse_policy

    weighted = Policy(
        "searched",
        ((OpSpec("Rotate", 1.0, 3.0), OpSpec("Invert", 0.5, 0.0)), (OpSpec("Color", 1.0, 9.0),)),
        weights=(3.0, 1.0),
    )
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(weighted.to_dict()))
    assert parse_policy(str(path)) == weighted
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"policy": weighted.to_dict(), "search": {"steps": 3}}))
    assert parse_policy(str(wrapped)) == weighted
    with pytest.raises(ValueError, match="does not exist"):
        parse_policy(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        parse_policy(str(tmp_path / "bad.json"))
    (tmp_path / "odd.json").write_text(
        json.dumps({"type": "policy", "sub_policies": [[{"op": "Nope", "prob": 1, "level": 1}]]})
    )
    with pytest.raises(ValueError, match="not a policy written by"):
        parse_policy(str(tmp_path / "odd.json"))
