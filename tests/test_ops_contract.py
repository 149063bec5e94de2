"""Contract tests (STYLE rule 13a, torchvision ``check_kernel``) run on every op of the catalog,
with both backends (``torch``, ``dali``) and every device: input unchanged, dtype and shape
kept, batch == per sample, empty batch, replay with the same parameters is identical, the
NCHW tensor entry point agrees with the numpy one, layers compose, and a DALI batch replayed
with the torch backend matches within the op's ``tolerance["dali"]``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dali_aug import ops
from dali_aug.ops import CATALOG, OpParams, apply_params, get, index, resolve

NAMES = ops.names()
BACKENDS = ("torch", "dali")
N = 6  # the photo batch size: DALI pipelines are cached per (N, H, W, layers)


def _level(name: str) -> float:
    """A representative level: negative for signed ops, 0 for ops without a magnitude."""
    op = get(name)
    if op.signed:
        return -7.0
    return 7.0 if op.has_magnitude else 0.0


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _run(images: np.ndarray, params: OpParams, backend: str, device: str) -> np.ndarray:
    """Applies ``params`` to uint8 NHWC numpy ``images`` with one backend on one device."""
    if backend == "dali":
        from dali_aug.ops._dali_run import run_dali  # lazily: torch tests run without DALI

        return run_dali(images, params, device_id=0 if device == "cuda" else None)
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2)
    return apply_params(x.contiguous(), params).permute(0, 2, 3, 1).cpu().numpy()


def _row(params: OpParams, i: int) -> OpParams:
    """The parameters of sample ``i`` alone. Partners are reset to 0 (the sample itself):
    they are unused by every op but SamplePairing, which is checked separately, and DALI
    rejects out-of-range partners (see ``test_dali_accepts_selected_params``)."""
    row = params.select(slice(i, i + 1))
    return dataclasses.replace(row, partners=torch.zeros_like(row.partners))


def _layer(params: OpParams, j: int) -> OpParams:
    """Layer ``j`` of ``params`` as a one-layer OpParams."""
    return OpParams(*(t[:, j : j + 1] for t in dataclasses.astuple(params)))


def _random_params(n: int, layers: int, seed: int, exclude: tuple[str, ...] = ()) -> OpParams:
    """Random ops of the whole catalog at random admissible levels (multiples of 0.5)."""
    g = _gen(seed)
    allowed = torch.tensor([i for i, op in enumerate(CATALOG) if op.name not in exclude])
    op_ids = allowed[torch.randint(0, len(allowed), (n, layers), generator=g)]
    top = torch.tensor([min(op.max_level, 10.0) for op in CATALOG])[op_ids]
    signed = torch.tensor([op.signed for op in CATALOG])[op_ids]
    raw = torch.rand((n, layers), generator=g) * top
    raw = torch.where(signed, raw * 2 - top, raw)
    levels = torch.round(raw * 2) / 2
    centers = torch.rand((n, layers, 2), generator=g)
    partners = (torch.arange(n)[:, None] + torch.randint(1, n, (n, layers), generator=g)) % n
    return OpParams(op_ids, levels.float(), centers, partners)


def _fraction_above(a: np.ndarray, b: np.ndarray, max_abs: int) -> float:
    """The fraction of pixels whose abs difference (max over channels) exceeds ``max_abs``."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)
    return float((diff > max_abs).mean()) if diff.size else 0.0


op_names = pytest.mark.parametrize("name", NAMES)
backends = pytest.mark.parametrize("backend", BACKENDS)


@op_names
@backends
def test_input_not_modified(name: str, backend: str, device: str, photo_batch: np.ndarray) -> None:
    before = photo_batch.copy()
    ops.apply(name, photo_batch, _level(name), backend=backend, device=device, generator=_gen(0))
    np.testing.assert_array_equal(photo_batch, before)


@op_names
@backends
def test_dtype_and_shape_kept(
    name: str, backend: str, device: str, photo_batch: np.ndarray
) -> None:
    out = ops.apply(
        name, photo_batch, _level(name), backend=backend, device=device, generator=_gen(0)
    )
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint8
    assert out.shape == photo_batch.shape
    assert not np.shares_memory(out, photo_batch)


@op_names
@backends
def test_batch_equals_per_sample(
    name: str, backend: str, device: str, photo_batch: np.ndarray
) -> None:
    if name == "SamplePairing":
        pytest.skip("mixes samples; see test_sample_pairing_batch_equals_pairs")
    params = OpParams.single(name, _level(name), N, generator=_gen(1))
    batched = _run(photo_batch, params, backend, device)
    for i in range(N):
        single = _run(photo_batch[i : i + 1], _row(params, i), backend, device)
        np.testing.assert_array_equal(batched[i], single[0], err_msg=f"{name}: sample {i}")


@backends
def test_sample_pairing_batch_equals_pairs(
    backend: str, device: str, photo_batch: np.ndarray
) -> None:
    """Each sample equals the blend with the partner of the resolved params, computed both
    as PIL's float32 ``Image.blend`` formula and by the backend on the pair alone."""
    params = OpParams.single("SamplePairing", 7.0, N, generator=_gen(2))
    r = resolve(
        params.op_ids[:, 0],
        params.levels[:, 0],
        params.centers[:, 0],
        params.partners[:, 0],
        *photo_batch.shape[1:3],
    )
    batched = _run(photo_batch, params, backend, device)
    for i in range(N):
        j = int(r.partners[i])
        assert j != i
        x, p = photo_batch[i].astype(np.float32), photo_batch[j].astype(np.float32)
        weight = np.float32(r.value[i].item())
        expected = np.clip(np.trunc(x + weight * (p - x)), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(batched[i], expected, err_msg=f"sample {i}, partner {j}")
        # The pair (i, partner) as a batch of two, each the other's partner.
        pair = OpParams(
            params.op_ids[[i, i]],
            params.levels[[i, i]],
            params.centers[[i, i]],
            torch.tensor([[1], [0]]),
        )
        out = _run(photo_batch[[i, j]], pair, backend, device)
        np.testing.assert_array_equal(batched[i], out[0], err_msg=f"sample {i}, partner {j}")


@backends
def test_dali_accepts_selected_params(backend: str, photo_batch: np.ndarray) -> None:
    """``OpParams.select`` keeps the original partner indices; ops other than SamplePairing
    must not read them, so a selected sub-batch runs on every backend."""
    params = OpParams.single("Rotate", 3.0, N, generator=_gen(0))
    expected = _run(photo_batch, params, backend, "cpu")
    rows = torch.tensor([0, 1])
    sub = params.select(rows)
    assert int(sub.partners.max()) >= 2  # some partner index lies outside the sub-batch
    out = _run(photo_batch[:2], sub, backend, "cpu")
    np.testing.assert_array_equal(out, expected[:2])


@op_names
@backends
def test_empty_batch(name: str, backend: str, device: str, photo_batch: np.ndarray) -> None:
    empty = photo_batch[:0]
    out = ops.apply(name, empty, _level(name), backend=backend, device=device, generator=_gen(0))
    assert out.shape == empty.shape
    assert out.dtype == np.uint8
    params = OpParams.single(name, _level(name), 0, generator=_gen(0))
    assert _run(empty, params, backend, device).shape == empty.shape


@op_names
@backends
def test_same_seed_same_output(
    name: str, backend: str, device: str, photo_batch: np.ndarray
) -> None:
    first = ops.apply(
        name, photo_batch, _level(name), backend=backend, device=device, generator=_gen(3)
    )
    again = ops.apply(
        name, photo_batch, _level(name), backend=backend, device=device, generator=_gen(3)
    )
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("name", ["Cutout", "SamplePairing"])
@backends
def test_generator_drives_random_extras(name: str, backend: str, photo_batch: np.ndarray) -> None:
    """Cutout centres and SamplePairing partners come from the generator."""
    a = ops.apply(name, photo_batch, 5.0, backend=backend, generator=_gen(0))
    b = ops.apply(name, photo_batch, 5.0, backend=backend, generator=_gen(1))
    assert not np.array_equal(a, b)


@op_names
def test_torch_nchw_tensor_equals_apply(name: str, device: str, photo_batch: np.ndarray) -> None:
    level = _level(name)
    expected = ops.apply(name, photo_batch, level, device=device, generator=_gen(4))
    x = torch.from_numpy(photo_batch).permute(0, 3, 1, 2).contiguous().to(device)
    before = x.clone()
    params = OpParams.single(name, level, N, generator=_gen(4))
    out = apply_params(x, params)
    assert out.dtype == torch.uint8
    assert out.device == x.device
    assert out.shape == x.shape
    assert out.data_ptr() != x.data_ptr()
    torch.testing.assert_close(x, before, rtol=0, atol=0)
    np.testing.assert_array_equal(out.permute(0, 2, 3, 1).cpu().numpy(), expected)
    # A non-contiguous NCHW view (channels-last memory) gives the same result.
    view = torch.from_numpy(photo_batch).to(device).permute(0, 3, 1, 2)
    assert not view.is_contiguous()
    np.testing.assert_array_equal(apply_params(view, params).cpu().numpy(), out.cpu().numpy())


@pytest.mark.parametrize("seed", [0, 1, 2])
@backends
def test_layers_compose(seed: int, backend: str, device: str, photo_batch: np.ndarray) -> None:
    """A multi-layer OpParams equals applying its layers one after the other."""
    params = _random_params(N, 3, seed)
    out = _run(photo_batch, params, backend, device)
    x = photo_batch
    for j in range(params.num_layers):
        x = _run(x, _layer(params, j), backend, device)
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("seed", [0, 1])
@backends
def test_mixed_ops_batch_equals_per_sample(
    seed: int, backend: str, device: str, photo_batch: np.ndarray
) -> None:
    """Every sample of a batch with a different op per sample equals that sample alone."""
    params = _random_params(N, 2, seed, exclude=("SamplePairing",))
    batched = _run(photo_batch, params, backend, device)
    for i in range(N):
        single = _run(photo_batch[i : i + 1], _row(params, i), backend, device)
        np.testing.assert_array_equal(batched[i], single[0], err_msg=f"sample {i}")


REPLAY_LEVELS = [
    pytest.param(name, level, id=f"{name}-L{level:g}")
    for name in NAMES
    for level in (
        (0.0, 5.0, 10.0) + ((-5.0,) if get(name).signed else ())
        if get(name).has_magnitude
        else (0.0,)
    )
]


@pytest.mark.parametrize(("name", "level"), REPLAY_LEVELS)
def test_dali_replays_with_torch(
    name: str, level: float, device: str, photo_batch: np.ndarray
) -> None:
    """The same OpParams give the same images on both backends, within ``tolerance["dali"]``
    (the torch backend is exact against PIL, so the DALI tolerance bounds the gap)."""
    max_abs, max_fraction = get(name).tolerance["dali"]
    params = OpParams.single(name, level, N, generator=_gen(5))
    dali = _run(photo_batch, params, "dali", device)
    replay = _run(photo_batch, params, "torch", device)
    for i in range(N):
        frac = _fraction_above(dali[i], replay[i], max_abs)
        assert frac <= max_fraction, f"{name} L{level:g} sample {i}: {frac:.4f} > {max_fraction}"


@pytest.mark.parametrize("start", [0, 6, 12, 18])
def test_dali_replays_mixed_batch_with_torch(
    start: int, device: str, photo_batch: np.ndarray
) -> None:
    """A batch with a different op per sample (DALI conditionals) replays with torch, each
    sample within its own op's tolerance; the four batches cover the whole catalog."""
    ids = torch.tensor([(start + i) % len(CATALOG) for i in range(N)])
    levels = torch.tensor([5.0 if CATALOG[int(k)].has_magnitude else 0.0 for k in ids])
    base = OpParams.single("Identity", 0.0, N, generator=_gen(6))
    params = dataclasses.replace(base, op_ids=ids[:, None], levels=levels[:, None])
    dali = _run(photo_batch, params, "dali", device)
    replay = _run(photo_batch, params, "torch", device)
    for i, k in enumerate(ids.tolist()):
        max_abs, max_fraction = CATALOG[k].tolerance["dali"]
        frac = _fraction_above(dali[i], replay[i], max_abs)
        assert frac <= max_fraction, f"sample {i} ({CATALOG[k].name}): {frac:.4f}"


@pytest.mark.needs_cuda
@op_names
@backends
def test_cuda_matches_cpu(name: str, backend: str, photo_batch: np.ndarray) -> None:
    """CPU ~ GPU: torch is exact across devices; DALI GPU is within its tolerance of CPU."""
    params = OpParams.single(name, _level(name), N, generator=_gen(7))
    cpu = _run(photo_batch, params, backend, "cpu")
    gpu = _run(photo_batch, params, backend, "cuda")
    if backend == "torch":
        np.testing.assert_array_equal(gpu, cpu)
    else:
        max_abs, max_fraction = get(name).tolerance["dali"]
        assert _fraction_above(gpu, cpu, max_abs) <= max_fraction


@backends
def test_read_only_input(backend: str, photo_batch: np.ndarray) -> None:
    """A read-only array (memory map, np.frombuffer) is accepted without a warning."""
    photo_batch.flags.writeable = False
    out = ops.apply("Rotate", photo_batch, 3.0, backend=backend)
    assert out.shape == photo_batch.shape


def test_names_follow_catalog_order() -> None:
    assert NAMES == tuple(op.name for op in CATALOG)
    assert len(set(NAMES)) == len(NAMES)
    for i, name in enumerate(NAMES):
        assert index(name) == i
        assert get(name) is CATALOG[i]
