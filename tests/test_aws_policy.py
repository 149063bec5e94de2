"""Tests for the AWS search space and pair policy (``dali_aug.methods.aws._space`` and
``_policy``): the 36 elements, pair indexing, the normalized sigmoid, the exported Loader
policy's draws (chi-square) and its determinism, JSON round trips and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from scipy.stats import chisquare

from dali_aug.batch import Batch
from dali_aug.methods.aws import (
    AWS_ELEMENTS,
    Element,
    PairCounter,
    PairPolicy,
    elements_of,
    load_pair_policy,
    pair_index,
    pair_of,
    write_outputs,
)
from dali_aug.ops import get
from dali_aug.policies import parse_policy


def test_elements_are_the_papers_36() -> None:
    assert len(AWS_ELEMENTS) == 36 and len(set(AWS_ELEMENTS)) == 36
    ops = {e.op for e in AWS_ELEMENTS}
    assert "Cutout" not in ops and "SamplePairing" not in ops and len(ops) == 14
    for op in ("AutoContrast", "Equalize", "Invert"):
        assert [e.level for e in AWS_ELEMENTS if e.op == op] == [0.0]
    for op in ops - {"AutoContrast", "Equalize", "Invert"}:
        assert len([e for e in AWS_ELEMENTS if e.op == op]) == 3
    # the magnitudes filled in for the values missing from Table 7 (App. D) of "Improving
    # Auto-Augment via Augmentation-Wise Weight Sharing", on the catalog scale
    assert get("TranslateX").param(10.0) == pytest.approx(0.45)
    assert get("Rotate").param(10.0 / 3.0) == pytest.approx(10.0)
    assert [get("Posterize").param(e.level) for e in AWS_ELEMENTS if e.op == "Posterize"] == [
        6.0,
        5.0,
        4.0,
    ]
    solarize = [get("Solarize").param(e.level) for e in AWS_ELEMENTS if e.op == "Solarize"]
    assert solarize == pytest.approx([179.2, 102.4, 25.6])


def test_pair_index_round_trips() -> None:
    k = torch.arange(1296)
    a, b = pair_of(k)
    assert torch.equal(pair_index(a, b), k)
    assert int(a.max()) == 35 and int(b.max()) == 35
    assert [int(x) for x in pair_of(37)] == [1, 1]
    a, b = torch.meshgrid(torch.arange(36), torch.arange(36), indexing="ij")
    assert torch.equal(pair_index(a.flatten(), b.flatten()), k)


def test_probs_uniform_at_zero_and_sum_to_one() -> None:
    policy = PairPolicy()
    p = policy.probs()
    assert p.shape == (1296,)
    assert torch.allclose(p.detach(), torch.full((1296,), 1 / 1296))
    assert policy.entropy() == pytest.approx(math.log(1296))
    g = torch.Generator().manual_seed(0)
    peaked = PairPolicy(torch.randn(1296, generator=g) * 5)
    assert float(peaked.probs().detach().sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(
        peaked.probs(), torch.sigmoid(peaked.theta) / torch.sigmoid(peaked.theta).sum()
    )
    assert peaked.marginal(0) == pytest.approx(
        float(peaked.matrix()[0].sum() + peaked.matrix()[:, 0].sum() - peaked.matrix()[0, 0]),
        rel=1e-6,
    )
    assert PairPolicy().marginal(3) == pytest.approx(71 / 1296)


def _peaked() -> PairPolicy:
    theta = torch.full((1296,), -6.0)
    theta[[5, 100, 700, 1295]] = torch.tensor([4.0, 2.0, 1.0, 0.0])
    return PairPolicy(theta)


def test_exported_policy_pair_frequencies_match_probs() -> None:
    """Chi-square of the pairs the exported Policy draws (decoded from its op ids and levels,
    as the search counts them) against probs(), for a peaked theta."""
    policy = _peaked()
    exported = policy.to_policy()
    assert exported.num_layers == 2 and len(exported.sub_policies) == 1296
    n = 40_000
    params = exported.sample(n, generator=torch.Generator().manual_seed(3))
    el = elements_of(params.op_ids, params.levels)
    assert bool((el >= 0).all())
    counts = torch.bincount(el[:, 0] * 36 + el[:, 1], minlength=1296).double()
    expected = policy.probs().detach().double() * n
    assert bool((expected >= 5).all())  # every cell large enough for the chi-square
    expected = expected * n / expected.sum()  # float32 probs: renormalise exactly
    assert chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3
    probs = policy.probs().detach()
    top = int(probs.argmax())
    assert float(counts[top]) / n == pytest.approx(float(probs[top]), abs=0.01)


def test_signed_elements_take_a_random_sign() -> None:
    policy = PairPolicy(elements=(Element("Rotate", 10.0), Element("Equalize")))
    params = policy.to_policy().sample(4000, generator=torch.Generator().manual_seed(1))
    rotate = params.levels[params.op_ids == get_index("Rotate")]
    assert set(rotate.abs().tolist()) == {10.0}
    assert 0.45 < float((rotate > 0).double().mean()) < 0.55


def get_index(name: str) -> int:
    from dali_aug.ops import index

    return index(name)


def test_same_seed_same_pairs() -> None:
    exported = _peaked().to_policy()
    a = exported.sample(500, generator=torch.Generator().manual_seed(9))
    b = exported.sample(500, generator=torch.Generator().manual_seed(9))
    c = exported.sample(500, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a.op_ids, b.op_ids) and torch.equal(a.levels, b.levels)
    assert not torch.equal(a.levels, c.levels)


def test_counter_counts_pairs_from_the_op_record() -> None:
    policy = _peaked()
    params = policy.to_policy().sample(64, generator=torch.Generator().manual_seed(2))
    flip = torch.zeros((64, 1), dtype=torch.int64) + get_index("Identity")
    from dali_aug.ops import OpParams

    record = OpParams(
        torch.cat([flip, params.op_ids], 1),
        torch.cat([torch.zeros((64, 1)), params.levels], 1),
        torch.zeros((64, 3, 2)),
        torch.zeros((64, 3), dtype=torch.int64),
    )
    counter = PairCounter()
    batch = Batch(torch.zeros(64, 3, 8, 8), torch.zeros(64, dtype=torch.int64), torch.arange(64))
    with pytest.raises(ValueError, match="op_record=True"):
        counter.add(batch)
    batch.params = record
    counter.add(batch)
    assert int(counter.counts.sum()) == 64
    a, b = AWS_ELEMENTS[0], AWS_ELEMENTS[5]  # pair 5, the most probable one
    rows = (params.op_ids[:, 0] == get_index(a.op)) & (
        params.levels[:, 0].abs() - a.level
    ).abs().lt(1e-4)
    rows &= (params.op_ids[:, 1] == get_index(b.op)) & (
        params.levels[:, 1].abs() - b.level
    ).abs().lt(1e-4)
    assert int(counter.counts[5]) == int(rows.sum()) > 0


def test_json_round_trip_and_train_policy_file(tmp_path: Path) -> None:
    policy = _peaked()
    again = PairPolicy.from_dict(json.loads(json.dumps(policy.to_dict())))
    assert torch.equal(again.theta, policy.theta) and again.elements == policy.elements
    write_outputs(policy, tmp_path, {"note": "test"})
    assert (tmp_path / "aws_probs.png").is_file()
    assert torch.equal(load_pair_policy(tmp_path / "policy.json").theta, policy.theta)
    loaded = parse_policy(str(tmp_path / "policy.json"))  # what `dali-aug train --policy` reads
    assert loaded.to_dict() == policy.to_policy().to_dict()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["aws"]["elements"].__setitem__(0, {"op": "Warp", "level": 3}), "unknown op"),
        (lambda d: d["aws"]["elements"].__setitem__(0, {"op": "Cutout", "level": 3}), "not an AWS"),
        (lambda d: d["aws"]["elements"].__setitem__(0, {"lvl": 3}), "each element is"),
        (lambda d: d["aws"].__setitem__("theta", [0.0] * 1295), "1296 pairs"),
        (lambda d: d["aws"]["theta"].__setitem__(7, float("nan")), "NaN"),
        (lambda d: d["aws"].pop("theta"), "no 'theta'"),
        (lambda d: d["aws"].__setitem__("type", "policy"), "aws_pairs"),
        (lambda d: d.pop("aws"), "no 'aws' entry"),
    ],
)
def test_bad_policy_json(tmp_path: Path, edit: object, match: str) -> None:
    write_outputs(PairPolicy(), tmp_path, {})
    path = tmp_path / "policy.json"
    data = json.loads(path.read_text())
    edit(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match):
        load_pair_policy(path)


def test_bad_theta_and_elements() -> None:
    with pytest.raises(ValueError, match="1296 pairs"):
        PairPolicy(torch.zeros(36))
    with pytest.raises(ValueError, match="NaN"):
        PairPolicy(torch.full((1296,), float("nan")))
    with pytest.raises(TypeError, match="tensor or a list"):
        PairPolicy("zeros")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="listed twice"):
        PairPolicy(elements=(Element("Invert"), Element("Invert")))
    with pytest.raises(ValueError, match="has no magnitude"):
        Element("Invert", 3.0)
    with pytest.raises(ValueError, match="level must be in"):
        Element("Rotate", 0.0)
    with pytest.raises(ValueError, match="not an AWS element"):
        Element("Identity")
