"""What the CuPy kernel wrappers share: the availability probe, the compiled-module cache,
torch's stream as a CuPy stream, and the type and shape check of the per-sample uniforms."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

__all__ = ["check_uniforms_tensor", "cupy_stream", "cupy_usable", "raw_module"]


@functools.lru_cache(maxsize=1)
def cupy_usable() -> bool:
    """Whether CuPy imports and sees a CUDA device (cached; never raises)."""
    try:
        import cupy
    except ImportError:
        return False
    try:
        return bool(cupy.cuda.is_available())
    except Exception:  # a broken driver or runtime counts as unavailable
        return False


@functools.cache
def raw_module(source: Path) -> Any:
    """The ``cupy.RawModule`` of a ``.cu`` file; CuPy compiles it on first use, per device."""
    import cupy

    return cupy.RawModule(code=source.read_text(encoding="utf-8"), options=("-std=c++17",))


def cupy_stream(cupy: Any, torch_stream: torch.cuda.Stream) -> Any:
    """A CuPy view of torch's stream (``Stream.from_external`` on CuPy >= 14, which deprecates
    ``ExternalStream``; ``ExternalStream`` before)."""
    from_external = getattr(cupy.cuda.Stream, "from_external", None)
    if from_external is not None:
        return from_external(torch_stream)
    return cupy.cuda.ExternalStream(torch_stream.cuda_stream, torch_stream.device_index)


def check_uniforms_tensor(
    op: str, uniforms: object, shape: tuple[int, ...], *, layout: str, meaning: str
) -> torch.Tensor:
    """Checks that ``uniforms`` is a floating-point tensor of ``shape``; ``layout`` names the
    shape (``"[N]"``, ``"[N, 3]"``) and ``meaning`` what one row holds, for the messages."""
    draw = f"torch.rand({layout[1:-1]}, generator=...)"
    if not isinstance(uniforms, torch.Tensor):
        raise TypeError(
            f"{op}: uniforms must be a torch.Tensor {layout} of floats in [0, 1), got "
            f"{type(uniforms).__name__}; draw them with {draw}"
        )
    if not uniforms.is_floating_point():
        raise TypeError(
            f"{op}: uniforms must be a floating-point tensor, got {uniforms.dtype}; draw them "
            f"with {draw}"
        )
    if tuple(uniforms.shape) != shape:
        raise ValueError(
            f"{op}: uniforms must have shape {layout} = {shape} ({meaning}), got "
            f"{tuple(uniforms.shape)}; draw them with {draw}"
        )
    return uniforms
