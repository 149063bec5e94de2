"""Golden tests (STYLE rule 13b, DALI ``compare_against_baseline``): every op of both backends
against the PIL reference (``dali_aug/ops/pil_reference.py``) at several levels, within the op's
``tolerance[backend]``; and the documented level -> parameter mapping (``ops.param``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import opencv_equalize

from dali_aug import ops
from dali_aug.ops import CATALOG, OpParams, get, resolve
from dali_aug.ops.pil_reference import pil_apply

BACKENDS = ("torch", "dali")
SEED = 11


def _levels(name: str) -> tuple[float, ...]:
    """Levels checked per op: 0, a few inside the 0-10 scale (negative ones for signed ops),
    and the largest admissible level (TrivialAugmentWide goes beyond 10)."""
    op = get(name)
    if not op.has_magnitude:
        return (0.0,)
    if op.signed:
        return (0.0, 3.0, -7.0, 10.0, -op.max_level, op.max_level)
    return (0.0, 4.0, 10.0, op.max_level)


CASES = [
    pytest.param(name, level, backend, id=f"{name}-L{level:g}-{backend}")
    for name in ops.names()
    for level in _levels(name)
    for backend in BACKENDS
]


def _pil_batch(name: str, images: np.ndarray, level: float, seed: int) -> np.ndarray:
    """PIL applied sample by sample, with the Cutout box / SamplePairing partner resolved from
    the same OpParams (same generator seed) that ``ops.apply`` draws."""
    n, h, w, _ = images.shape
    params = OpParams.single(name, level, n, generator=torch.Generator().manual_seed(seed))
    r = resolve(
        params.op_ids[:, 0], params.levels[:, 0], params.centers[:, 0], params.partners[:, 0], h, w
    )
    return np.stack(
        [
            pil_apply(
                name,
                images[i],
                level,
                box=tuple(r.box[i].tolist()),
                partner=images[int(r.partners[i])],
            )
            for i in range(n)
        ]
    )


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel abs difference, max over channels: [..., H, W]."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)


@pytest.mark.parametrize(("name", "level", "backend"), CASES)
def test_matches_pil(name: str, level: float, backend: str, photo_batch: np.ndarray) -> None:
    max_abs, max_fraction = get(name).tolerance[backend]
    out = ops.apply(
        name, photo_batch, level, backend=backend, generator=torch.Generator().manual_seed(SEED)
    )
    ref = _pil_batch(name, photo_batch, level, SEED)
    for i in range(len(photo_batch)):
        diff = _diff(out[i], ref[i])
        frac = float((diff > max_abs).mean())
        assert frac <= max_fraction, (
            f"{name} L{level:g} {backend} sample {i}: {frac:.5f} of pixels differ by more "
            f"than {max_abs} (max {diff.max()}), allowed {max_fraction}"
        )


def test_cutout_box_is_filled(photo_batch: np.ndarray) -> None:
    """Cutout at level 10 paints a non-empty gray box (guards against a vacuous PIL match)."""
    out = ops.apply("Cutout", photo_batch, 10.0, generator=torch.Generator().manual_seed(SEED))
    side = ops.param("Cutout", 10.0, size=photo_batch.shape[1:3])
    assert side == 10.0
    changed = (out != photo_batch).any(axis=-1)
    for i in range(len(photo_batch)):
        assert changed[i].any()
        assert (out[i][changed[i]] == ops.FILL).all()


def test_dali_equalize_follows_opencv(photo_batch: np.ndarray) -> None:
    """DALI's Equalize follows OpenCV's LUT formula (the catalog's documented deviation)."""
    out = ops.apply("Equalize", photo_batch, 0.0, backend="dali")
    for i in range(len(photo_batch)):
        for c in range(3):
            np.testing.assert_array_equal(
                out[i, ..., c],
                opencv_equalize(photo_batch[i, ..., c]),
                err_msg=f"image {i} channel {c}",
            )


def test_dali_equalize_is_monotone_and_close_in_mean(photo_batch: np.ndarray) -> None:
    """DALI's Equalize is not PIL's (loose tolerance): check it is a per-channel monotone map
    of the input and that its mean is close to PIL's. The bound is 12, not 8: on 48x64 images
    PIL's integer ``step = (N - h[last]) // 255`` (11 instead of 12.05 for 3072 pixels)
    brightens uniform noise by about 10 levels."""
    out = ops.apply("Equalize", photo_batch, 0.0, backend="dali")
    ref = _pil_batch("Equalize", photo_batch, 0.0, SEED)
    for i in range(len(photo_batch)):
        for c in range(3):
            x, y = photo_batch[i, ..., c].ravel(), out[i, ..., c].ravel()
            values = np.unique(x)
            lo = np.array([y[x == v].min() for v in values])
            hi = np.array([y[x == v].max() for v in values])
            np.testing.assert_array_equal(lo, hi, err_msg=f"image {i} ch {c}: not a function")
            assert (np.diff(lo.astype(int)) >= 0).all(), f"image {i} ch {c}: not monotone"
            mean_diff = abs(float(y.mean()) - float(ref[i, ..., c].mean()))
            assert mean_diff < 12, f"image {i} ch {c}: mean differs by {mean_diff:.2f}"


# ---- ops.param: the documented level -> parameter mapping ----------------------------------


@pytest.mark.parametrize(
    ("name", "level", "kwargs", "expected"),
    [
        ("Rotate", -5, {}, -15.0),
        ("Rotate", 10, {}, 30.0),
        ("TranslateX", 10, {"size": (224, 224)}, 100.8),
        ("TranslateY", -10, {"size": (100, 224)}, -45.0),
        ("TranslateX", 10, {}, 0.45),
        ("ShearX", 10, {}, 0.3),
        ("Posterize", 0, {}, 8.0),
        ("Posterize", 10, {}, 4.0),
        ("Solarize", 0, {}, 256.0),
        ("Solarize", 10, {}, 0.0),
        ("Color", 10, {}, 1.9),
        ("Contrast", -10, {}, 0.1),
        ("Brightness", 0, {}, 1.0),
        ("Sharpness", 10, {}, 1.9),
        ("Cutout", 10, {"size": (48, 64)}, 10.0),
        ("SamplePairing", 10, {}, 0.4),
        ("Equalize", 0, {}, 0.0),
        ("Identity", 0, {}, 0.0),
        # timm's maps (timm/data/auto_augment.py, LEVEL_TO_ARG): int() truncation
        ("PosterizeTimm", 9, {}, 3.0),
        ("PosterizeTimm", 0, {}, 0.0),
        ("PosterizeIncreasing", 9, {}, 1.0),
        ("PosterizeIncreasing", 0, {}, 4.0),
        ("SolarizeTimm", 9, {}, 230.0),
        ("SolarizeAdd", 9, {}, 99.0),
        ("SolarizeAdd", 10, {}, 110.0),
        ("ColorTimm", 9, {}, 1.72),
        ("ContrastTimm", 0, {}, 0.1),
    ],
    ids=lambda v: repr(v) if not isinstance(v, str) else v,
)
def test_param_documented_values(
    name: str, level: float, kwargs: dict[str, object], expected: float
) -> None:
    assert ops.param(name, level, **kwargs) == pytest.approx(expected, abs=1e-12)


def test_param_examples_exact() -> None:
    """The docstring examples hold exactly."""
    assert ops.param("Rotate", -5) == -15.0
    assert ops.param("TranslateX", 10, size=(224, 224)) == 100.8


def test_param_solarize_zero_is_identity(photo_batch: np.ndarray) -> None:
    assert ops.param("Solarize", 0) == 256.0
    np.testing.assert_array_equal(ops.apply("Solarize", photo_batch, 0), photo_batch)


def test_param_enhancement_levels() -> None:
    for name in ("Contrast", "Color", "Brightness", "Sharpness"):
        assert ops.param(name, 10) == pytest.approx(1.9)
        assert ops.param(name, -10) == pytest.approx(0.1)
        assert ops.param(name, 0) == 1.0


@pytest.mark.parametrize("name", ops.names())
def test_opdef_param_on_tensor_equals_resolve(name: str) -> None:
    """``OpDef.param`` on a tensor of levels equals the vectorised ``resolve(...).value``."""
    op = get(name)
    top = op.max_level if op.has_magnitude else 10.0
    levels = torch.linspace(-top if op.signed else 0.0, top, 41)
    n = levels.numel()
    op_ids = torch.full((n,), ops.index(name), dtype=torch.int64)
    r = resolve(op_ids, levels, torch.zeros((n, 2)), torch.zeros(n, dtype=torch.int64), 48, 64)
    expected = op.param(levels)
    assert isinstance(expected, torch.Tensor)
    torch.testing.assert_close(r.value, expected.float(), rtol=1e-6, atol=1e-6)
    # ... and the scalar form agrees with it too (float64 vs float32).
    scalars = torch.tensor([op.param(float(v)) for v in levels.tolist()], dtype=torch.float32)
    torch.testing.assert_close(r.value, scalars, rtol=0, atol=1e-5)


def test_only_timms_maps_are_not_the_identity_at_level_zero() -> None:
    not_identity = {op.name for op in CATALOG if not op.zero_is_identity}
    assert not_identity == {
        "PosterizeIncreasing",
        "PosterizeTimm",
        "SolarizeTimm",
        "ContrastTimm",
        "ColorTimm",
        "BrightnessTimm",
        "SharpnessTimm",
    }


def test_catalog_level_zero_is_identity(photo_batch: np.ndarray) -> None:
    """Level 0 is the identity parameter of every op with a magnitude (AutoAugment's
    "increasing" mapping)."""
    for op in CATALOG:
        if op.has_magnitude and op.zero_is_identity:
            out = ops.apply(op.name, photo_batch, 0.0)
            np.testing.assert_array_equal(out, photo_batch, err_msg=op.name)
