"""MetaAugment's transformation space (Zhou et al., arXiv:2012.12076, section "Experimental
Results", the paragraph "In our implementation"): K = 14 functions, ordered pairs ``(j, k)``
applied in that order with continuous magnitudes ``m1, m2 ~ U(0, 10)`` on the op catalog's
level scale (a fair random sign for signed ops), and the 28-dim transformation embedding the
policy network reads.

The ops are the catalog's (:mod:`dali_aug.ops`); nothing here re-implements one.
"""

from __future__ import annotations

import dataclasses

import torch

from dali_aug.ops import OpParams, get, index, random_extras, random_signs

__all__ = [
    "FUNCTIONS",
    "NO_MAGNITUDE",
    "Transforms",
    "draw_transforms",
    "embed",
    "function_ops",
]

#: The paper's 14 functions, in its order (the embedding's positions follow it).
FUNCTIONS: tuple[str, ...] = (
    "AutoContrast",
    "Equalize",
    "Rotate",
    "Posterize",
    "Solarize",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Identity",
)

#: The magnitude-free functions: their embedding position holds 11 (the paper's convention).
NO_MAGNITUDE: tuple[str, ...] = tuple(f for f in FUNCTIONS if not get(f).has_magnitude)

_NUM = len(FUNCTIONS)
_OPS = torch.tensor([index(f) for f in FUNCTIONS], dtype=torch.int64)
_HAS_MAG = torch.tensor([get(f).has_magnitude for f in FUNCTIONS])


def function_ops() -> torch.Tensor:
    """int64 [14]: the catalog op id of each function (a copy)."""
    return _OPS.clone()


def _check_functions(name: str, value: torch.Tensor) -> None:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.int64 or value.dim() != 1:
        raise TypeError(f"{name} must be an int64 tensor [N] of function indices (0-{_NUM - 1})")
    if value.numel() and (int(value.min()) < 0 or int(value.max()) >= _NUM):
        raise ValueError(
            f"{name} holds a function index outside [0, {_NUM}); index FUNCTIONS "
            "(AutoContrast=0 ... Identity=13)"
        )


def embed(
    first: torch.Tensor, second: torch.Tensor, m1: torch.Tensor, m2: torch.Tensor
) -> torch.Tensor:
    """The transformation embedding e(T) of the paper, 0-based.

    Position ``2 * first`` holds ``m1 + 1`` and position ``2 * second + 1`` holds ``m2 + 1``
    (the paper's 1-based ``2j - 1`` and ``2k``); AutoContrast, Equalize and Identity put 11 in
    their position; every other entry is 0.

    Args:
        first: int64 [N], the first function's index in :data:`FUNCTIONS`.
        second: int64 [N], the second function's index.
        m1: [N] magnitudes of the first function on the 0-10 scale (unsigned).
        m2: [N] magnitudes of the second function.

    Returns:
        float32 [N, 28], on ``first``'s device.

    Example:
        >>> e = embed(torch.tensor([2]), torch.tensor([13]), torch.tensor([3.0]), torch.zeros(1))
        >>> e[0, 4].item(), e[0, 27].item()
        (4.0, 11.0)
    """
    _check_functions("first", first)
    _check_functions("second", second)
    n = first.shape[0]
    if second.shape != (n,) or m1.shape != (n,) or m2.shape != (n,):
        raise ValueError(
            f"first, second, m1, m2 must all be [N]; got {tuple(first.shape)}, "
            f"{tuple(second.shape)}, {tuple(m1.shape)}, {tuple(m2.shape)}"
        )
    device = first.device
    has_mag = _HAS_MAG.to(device)
    eleven = torch.full((n,), 11.0, device=device)
    v1 = torch.where(has_mag[first], m1.to(device).float().abs() + 1.0, eleven)
    v2 = torch.where(has_mag[second], m2.to(device).float().abs() + 1.0, eleven)
    out = torch.zeros((n, 2 * _NUM), dtype=torch.float32, device=device)
    out.scatter_(1, (2 * first).unsqueeze(1), v1.unsqueeze(1))
    out.scatter_(1, (2 * second + 1).unsqueeze(1), v2.unsqueeze(1))
    return out


@dataclasses.dataclass(frozen=True)
class Transforms:
    """Sampled transformations, one per sample.

    Attributes:
        first: int64 [N], the first function (index into :data:`FUNCTIONS`).
        second: int64 [N], the second function.
        m1: float32 [N], the first magnitude drawn from U(0, 10) (unsigned; the op gets 0 for
            magnitude-free functions).
        m2: float32 [N], the second magnitude.
        params: the catalog ops actually applied, :class:`~dali_aug.ops.OpParams` [N, 2]
            (signed levels).
    """

    first: torch.Tensor
    second: torch.Tensor
    m1: torch.Tensor
    m2: torch.Tensor
    params: OpParams

    def embedding(self) -> torch.Tensor:
        """float32 [N, 28]: :func:`embed` of what was applied."""
        return embed(self.first, self.second, self.m1, self.m2)

    def select(self, rows: slice) -> Transforms:
        """The transformations of some samples."""
        return Transforms(
            self.first[rows], self.second[rows], self.m1[rows], self.m2[rows],
            self.params.select(rows),
        )  # fmt: skip


def draw_transforms(
    first: torch.Tensor, second: torch.Tensor, *, generator: torch.Generator | None
) -> Transforms:
    """Draws the magnitudes (U(0, 10)) and signs of the pairs ``(first, second)`` (CPU).

    Args:
        first: int64 [N] function indices (e.g. from :meth:`PairSampler.sample`).
        second: int64 [N] function indices.
        generator: a CPU generator; the stream consumed depends only on N.

    Returns:
        :class:`Transforms` on the CPU.
    """
    _check_functions("first", first)
    _check_functions("second", second)
    n = first.shape[0]
    mags = torch.rand((n, 2), generator=generator) * 10.0
    pair = torch.stack([first, second], 1)
    ops = _OPS[pair]
    levels = torch.where(_HAS_MAG[pair], mags, 0.0)
    levels = random_signs(levels, ops, generator=generator)
    params = OpParams(ops, levels, *random_extras(n, 2, generator=generator))
    return Transforms(first, second, mags[:, 0].contiguous(), mags[:, 1].contiguous(), params)
