"""Tests for dali_aug.ops._params: the sign helpers (the one random-sign table) and
``resolve``'s use of the catalog's one level -> parameter mapping (``level_to_param``)."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from dali_aug import ops
from dali_aug.ops import (
    CATALOG,
    Mapping,
    flip_signs,
    level_to_param,
    random_signs,
    resolve,
    signed_mask,
)

ALL_IDS = torch.arange(len(CATALOG))


def test_signed_mask_is_the_catalog_column(device: str) -> None:
    ids = ALL_IDS.to(device)
    mask = signed_mask(ids)
    assert mask.dtype == torch.bool and mask.device == ids.device
    assert mask.cpu().tolist() == [op.signed for op in CATALOG]
    grid = ids.repeat(3, 2)
    assert torch.equal(signed_mask(grid), mask.repeat(3, 2))


def test_flip_signs_negates_signed_ops_below_one_half() -> None:
    ids = ALL_IDS.repeat(2)
    levels = torch.full(ids.shape, 3.0)
    uniforms = torch.cat([torch.full((len(CATALOG),), 0.2), torch.full((len(CATALOG),), 0.7)])
    out = flip_signs(levels, ids, uniforms)
    signed = torch.tensor([op.signed for op in CATALOG])
    assert out[: len(CATALOG)].tolist() == torch.where(signed, -3.0, 3.0).tolist()
    assert (out[len(CATALOG) :] == 3.0).all()


def test_random_signs_are_fair_and_replayable() -> None:
    ids = ALL_IDS.repeat(2000, 1)
    levels = torch.full(ids.shape, 5.0)
    a = random_signs(levels, ids, generator=torch.Generator().manual_seed(0))
    b = random_signs(levels, ids, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    signed = signed_mask(ids)
    assert (a[~signed] == 5.0).all()
    k, n = int((a[signed] < 0).sum()), int(signed.sum())
    assert stats.binomtest(k, n, 0.5).pvalue > 1e-3
    # one uniform per level, signed or not: the stream depends on the shape only
    g = torch.Generator().manual_seed(0)
    u = torch.rand(ids.shape, generator=g)
    assert torch.equal(a, flip_signs(levels, ids, u))


@pytest.mark.parametrize("name", ops.names())
def test_resolve_value_is_level_to_param_on_the_tables(name: str) -> None:
    """``resolve`` evaluates the catalog mapping on float32 copies of ``base``/``span`` (the
    ops before timm's, as recorded runs resolved them) or on the float64 constants (timm's)."""
    op = ops.get(name)
    top = op.max_level if op.has_magnitude else 10.0
    levels = torch.linspace(-top if op.signed else 0.0, top, 101)
    ids = torch.full(levels.shape, ops.index(name), dtype=torch.int64)
    r = resolve(ids, levels, torch.zeros((101, 2)), torch.zeros(101, dtype=torch.int64), 32, 40)
    float32 = ops.index(name) < ops.index("SolarizeAdd")
    expected = level_to_param(
        levels.double(),
        base=float(torch.tensor(op.base)) if float32 else op.base,
        span=float(torch.tensor(op.span)) if float32 else op.span,
        signed=op.signed,
        rounded=op.mapping is Mapping.ROUND,
        truncated=op.mapping is Mapping.TRUNC,
    )
    assert torch.equal(r.value, expected.float())


def test_level_to_param_scalar_and_elementwise_forms_agree() -> None:
    lv = torch.linspace(-10, 10, 41, dtype=torch.float64)
    mask = torch.tensor([True, False]).repeat(21)[:41]
    mixed = level_to_param(lv, base=1.0, span=0.9, signed=mask, rounded=~mask)
    for i, v in enumerate(lv.tolist()):
        one = level_to_param(v, base=1.0, span=0.9, signed=bool(mask[i]), rounded=not mask[i])
        assert float(mixed[i]) == one
