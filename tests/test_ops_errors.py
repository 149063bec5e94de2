"""Bad input to the op API raises TypeError/ValueError naming the problem and the fix
(STYLE rule 10): ``ops.apply``, ``ops.param``, ``apply_params`` and ``OpParams``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dali_aug import ops
from dali_aug.ops import CATALOG, OpParams, apply_params, get

BACKENDS = ("torch", "dali")
backends = pytest.mark.parametrize("backend", BACKENDS)


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (2, 8, 10, 3), dtype=np.uint8)


# ---- ops.apply: images ------------------------------------------------------------------


@backends
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint16, bool])
def test_apply_wrong_dtype(backend: str, dtype: type, images: np.ndarray) -> None:
    with pytest.raises(TypeError, match=r"images must be uint8 \(0-255\), got") as info:
        ops.apply("Rotate", images.astype(dtype), 3, backend=backend)
    assert "np.clip" in str(info.value)  # the message shows the conversion


@backends
def test_apply_nchw_layout(backend: str, images: np.ndarray) -> None:
    nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"looks like NCHW: use images\.transpose\(0, 2, 3, 1\)"):
        ops.apply("Rotate", nchw, 3, backend=backend)


@backends
@pytest.mark.parametrize("channels", [1, 4])
def test_apply_not_three_channels(backend: str, channels: int) -> None:
    bad = np.zeros((2, 8, 10, channels), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"3 channels last \[N, H, W, 3\]") as info:
        ops.apply("Rotate", bad, 3, backend=backend)
    assert f"(2, 8, 10, {channels})" in str(info.value)
    assert "gray or RGBA" in str(info.value)
    assert "NCHW" not in str(info.value)


@backends
@pytest.mark.parametrize("shape", [(8, 10, 3), (8, 10), (1, 2, 8, 10, 3)], ids=["3d", "2d", "5d"])
def test_apply_not_4d(backend: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"must be 4-D \[N, H, W, 3\]") as info:
        ops.apply("Rotate", np.zeros(shape, dtype=np.uint8), 3, backend=backend)
    if len(shape) == 3:
        assert "images[None]" in str(info.value)


@backends
def test_apply_torch_tensor(backend: str, images: np.ndarray) -> None:
    with pytest.raises(TypeError, match="numpy array.*apply_params"):
        ops.apply("Rotate", torch.from_numpy(images), 3, backend=backend)


@backends
def test_apply_list(backend: str, images: np.ndarray) -> None:
    with pytest.raises(TypeError, match="numpy uint8 array"):
        ops.apply("Rotate", images.tolist(), 3, backend=backend)


# ---- ops.apply: name, magnitude, backend, device --------------------------------------------


def test_apply_unknown_op(images: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown op 'Spin'") as info:
        ops.apply("Spin", images, 3)
    assert "Valid ops: " + ", ".join(ops.names()) in str(info.value)
    assert "Did you mean" not in str(info.value)


@pytest.mark.parametrize(
    ("bad", "good"), [("rotate", "Rotate"), ("SHEARX", "ShearX"), ("flipLR", "FlipLR")]
)
def test_apply_wrong_case_suggests(bad: str, good: str, images: np.ndarray) -> None:
    with pytest.raises(ValueError, match=f"Did you mean '{good}'"):
        ops.apply(bad, images, 3)


def test_apply_non_str_name(images: np.ndarray) -> None:
    with pytest.raises(TypeError, match="op name must be a str, got int"):
        ops.apply(4, images, 3)  # type: ignore[arg-type]


OVER_MAX = [
    pytest.param(op.name, op.max_level + 1.0, id=f"{op.name}-{op.max_level + 1:g}")
    for op in CATALOG
]


@pytest.mark.parametrize(("name", "level"), OVER_MAX)
def test_apply_magnitude_above_max_level(name: str, level: float, images: np.ndarray) -> None:
    with pytest.raises(ValueError, match=rf"{name}: magnitude {level} is out of range"):
        ops.apply(name, images, level)
    if get(name).signed:
        with pytest.raises(ValueError, match="out of range"):
            ops.apply(name, images, -level)


@pytest.mark.parametrize("name", [op.name for op in CATALOG])
def test_apply_max_level_is_admissible(name: str, images: np.ndarray) -> None:
    op = get(name)
    out = ops.apply(name, images, -op.max_level if op.signed else op.max_level)
    assert out.shape == images.shape


def test_apply_level_above_ten_allowed_up_to_max_level(images: np.ndarray) -> None:
    assert get("Rotate").max_level > 11
    assert ops.apply("Rotate", images, 11).shape == images.shape
    assert ops.apply("Rotate", images, np.float32(11.5)).shape == images.shape
    assert ops.apply("Rotate", images, np.int64(-11)).shape == images.shape


@pytest.mark.parametrize("name", [op.name for op in CATALOG if not op.signed])
def test_apply_negative_magnitude_unsigned(name: str, images: np.ndarray) -> None:
    with pytest.raises(ValueError, match=f"{name}: magnitude -3.0 is negative but {name} is not"):
        ops.apply(name, images, -3)


@pytest.mark.parametrize("level", [float("nan"), np.float32("nan")], ids=["float", "np.float32"])
def test_apply_nan_magnitude(level: float, images: np.ndarray) -> None:
    with pytest.raises(ValueError, match="Rotate: magnitude is NaN"):
        ops.apply("Rotate", images, level)


@pytest.mark.parametrize("level", [float("inf"), float("-inf")])
def test_apply_infinite_magnitude(level: float, images: np.ndarray) -> None:
    with pytest.raises(ValueError, match="out of range"):
        ops.apply("Rotate", images, level)


@pytest.mark.parametrize(
    "level",
    ["3", None, True, [3], torch.tensor(3.0), np.array([3.0])],
    ids=["str", "None", "bool", "list", "tensor", "ndarray"],
)
def test_apply_non_number_magnitude(level: object, images: np.ndarray) -> None:
    with pytest.raises(TypeError, match="Rotate: magnitude must be a number, got"):
        ops.apply("Rotate", images, level)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["DALI", "pil", "", None])
def test_apply_unknown_backend(backend: object, images: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown backend .*; use 'torch' or 'dali'"):
        ops.apply("Rotate", images, 3, backend=backend)  # type: ignore[arg-type]


@pytest.mark.parametrize("device", ["gpu", "cuda:0", "mps"])
def test_apply_unknown_device(device: str, images: np.ndarray) -> None:
    with pytest.raises(ValueError, match=f"unknown device '{device}'; use 'cpu' or 'cuda'"):
        ops.apply("Rotate", images, 3, device=device)


# ---- ops.param ---------------------------------------------------------------------------


def test_param_errors() -> None:
    with pytest.raises(ValueError, match="unknown op 'Spin'"):
        ops.param("Spin", 3)
    with pytest.raises(ValueError, match="Rotate: magnitude 61.0 is out of range"):
        ops.param("Rotate", 61)
    with pytest.raises(ValueError, match="Posterize: magnitude -1.0 is negative"):
        ops.param("Posterize", -1)
    with pytest.raises(ValueError, match="NaN"):
        ops.param("Color", float("nan"))


# ---- apply_params ------------------------------------------------------------------------


@pytest.fixture
def tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


@pytest.fixture
def params() -> OpParams:
    return OpParams.single("Rotate", 3.0, 2, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.int8])
def test_apply_params_wrong_dtype(
    dtype: torch.dtype, tensor: torch.Tensor, params: OpParams
) -> None:
    with pytest.raises(TypeError, match=rf"images must be uint8 \(0-255\), got {dtype}"):
        apply_params(tensor.to(dtype), params)


def test_apply_params_numpy(images: np.ndarray, params: OpParams) -> None:
    with pytest.raises(TypeError, match="must be a torch.Tensor, got ndarray.*permute"):
        apply_params(images, params)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "shape",
    [(2, 8, 10, 3), (2, 1, 8, 10), (2, 4, 8, 10), (3, 8, 10)],
    ids=["nhwc", "gray", "rgba", "3d"],
)
def test_apply_params_wrong_shape(shape: tuple[int, ...], params: OpParams) -> None:
    with pytest.raises(ValueError, match=r"must be NCHW with 3 channels, got shape"):
        apply_params(torch.zeros(shape, dtype=torch.uint8), params)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_apply_params_batch_mismatch(n: int, params: OpParams) -> None:
    x = torch.zeros((n, 3, 8, 10), dtype=torch.uint8)
    with pytest.raises(ValueError, match=f"params hold 2 samples but images hold {n}"):
        apply_params(x, params)


# ---- OpParams ------------------------------------------------------------------------------


def _fields(n: int = 2, layers: int = 1) -> dict[str, torch.Tensor]:
    return {
        "op_ids": torch.zeros((n, layers), dtype=torch.int64),
        "levels": torch.zeros((n, layers), dtype=torch.float32),
        "centers": torch.zeros((n, layers, 2), dtype=torch.float32),
        "partners": torch.zeros((n, layers), dtype=torch.int64),
    }


def test_opparams_valid() -> None:
    p = OpParams(**_fields(3, 2))
    assert (p.batch_size, p.num_layers) == (3, 2)
    assert OpParams(**_fields(0, 1)).batch_size == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("op_ids", torch.zeros((2, 1), dtype=torch.int32)),
        ("levels", torch.zeros((2, 1), dtype=torch.float64)),
        ("levels", torch.zeros((2, 1), dtype=torch.int64)),
        ("centers", torch.zeros((2, 1, 2), dtype=torch.float16)),
        ("partners", torch.zeros((2, 1), dtype=torch.int32)),
    ],
    ids=["op_ids-int32", "levels-float64", "levels-int64", "centers-float16", "partners-int32"],
)
def test_opparams_wrong_dtype(field: str, value: torch.Tensor) -> None:
    fields = _fields() | {field: value}
    with pytest.raises(ValueError, match=f"OpParams.{field} must be torch.*got {value.dtype}"):
        OpParams(**fields)


@pytest.mark.parametrize(
    ("field", "shape"),
    [
        ("levels", (2,)),
        ("levels", (2, 2)),
        ("levels", (3, 1)),
        ("centers", (2, 1)),
        ("centers", (2, 1, 3)),
        ("partners", (1, 1)),
    ],
    ids=lambda v: str(v),
)
def test_opparams_wrong_shape(field: str, shape: tuple[int, ...]) -> None:
    fields = _fields()
    fields[field] = torch.zeros(shape, dtype=fields[field].dtype)
    with pytest.raises(ValueError, match=rf"OpParams.{field} must be .* of shape"):
        OpParams(**fields)


@pytest.mark.parametrize("shape", [(2,), (2, 1, 1)])
def test_opparams_op_ids_not_2d(shape: tuple[int, ...]) -> None:
    fields = _fields() | {"op_ids": torch.zeros(shape, dtype=torch.int64)}
    with pytest.raises(ValueError, match=r"op_ids must be \[N, L\]"):
        OpParams(**fields)


@pytest.mark.parametrize("op_id", [-1, len(CATALOG)])
def test_opparams_op_id_out_of_range(op_id: int) -> None:
    fields = _fields() | {"op_ids": torch.tensor([[0], [op_id]])}
    with pytest.raises(ValueError, match=rf"op_ids must be in \[0, {len(CATALOG)}\)"):
        OpParams(**fields)


@pytest.mark.parametrize("field", ["op_ids", "levels", "centers", "partners"])
def test_opparams_not_a_tensor(field: str) -> None:
    fields: dict[str, object] = dict(_fields())
    fields[field] = fields[field].tolist()  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=f"OpParams.{field} must be a torch.Tensor"):
        OpParams(**fields)  # type: ignore[arg-type]
