"""The AWS search space: 36 augmentation elements and their 1296 ordered pairs.

AWS (Tian et al., "Improving Auto-Augment via Augmentation-Wise Weight Sharing",
arXiv:2009.14737) searches over *operations* that are ordered pairs of *elements*; an element
is an AutoAugment op (without Cutout and SamplePairing) at a fixed magnitude. The 11 ops with
a magnitude get 3 levels each, AutoContrast, Equalize and Invert none: 33 + 3 = 36 elements,
K = 36**2 = 1296 pairs, pair ``k`` <-> elements ``(k // 36, k % 36)`` (repeats allowed).

Levels (gap-fill: the magnitude values of the paper's Table 7, App. D, are missing from the
text this follows). They are the catalog levels (:mod:`dali_aug.ops`, 0-10 scale) that
reproduce the magnitudes of the unofficial reimplementation
(github.com/tgisaturday/aws_autoaugment):

============  ======================  ==========================================
op            catalog levels          parameter (catalog mapping)
============  ======================  ==========================================
ShearX/Y      10/3, 20/3, 10          shear 0.1, 0.2, 0.3
TranslateX/Y  10/3, 20/3, 10          0.15, 0.30, 0.45 x image side
Rotate        10/3, 20/3, 10          10, 20, 30 degrees
Contrast      10/3, 20/3, 10          enhancement factor 1 +- 0.3, 0.6, 0.9
Color         10/3, 20/3, 10          enhancement factor 1 +- 0.3, 0.6, 0.9
Brightness    10/3, 20/3, 10          enhancement factor 1 +- 0.3, 0.6, 0.9
Sharpness     10/3, 20/3, 10          enhancement factor 1 +- 0.3, 0.6, 0.9
Solarize      3, 6, 9                 threshold 179.2, 102.4, 25.6 (hint 179, 102, 26)
Posterize     5, 7.5, 10              6, 5, 4 bits (hint 6.8, 5.6, 4.4 truncated)
AutoContrast  -                       -
Equalize      -                       -
Invert        -                       -
============  ======================  ==========================================

Signs: every signed catalog op (the geometric ones *and* the four enhancement ops, which the
catalog signs as ``1 +- f``) gets a random sign with probability 0.5 per application, drawn
by the exported :class:`~dali_aug.policies.Policy` like every policy does
(:func:`dali_aug.ops.random_signs`); an element is therefore a magnitude, not a direction.
The reimplementation signs the geometric ops only and uses factors above 1 for the
enhancement ops: our enhancement elements also go below 1 half of the time.
"""

from __future__ import annotations

import dataclasses

import torch

from dali_aug.ops import get, index

__all__ = [
    "AWS_ELEMENTS",
    "Element",
    "check_elements",
    "element_names",
    "elements_of",
    "pair_index",
    "pair_of",
]

_THIRDS = (10.0 / 3.0, 20.0 / 3.0, 10.0)
_LEVELS: dict[str, tuple[float, ...]] = {
    "ShearX": _THIRDS,
    "ShearY": _THIRDS,
    "TranslateX": _THIRDS,
    "TranslateY": _THIRDS,
    "Rotate": _THIRDS,
    "Solarize": (3.0, 6.0, 9.0),
    "Posterize": (5.0, 7.5, 10.0),
    "Contrast": _THIRDS,
    "Color": _THIRDS,
    "Brightness": _THIRDS,
    "Sharpness": _THIRDS,
}
_PLAIN = ("AutoContrast", "Equalize", "Invert")


@dataclasses.dataclass(frozen=True)
class Element:
    """One augmentation element: a catalog op at a fixed level (0 for ops without one)."""

    op: str
    level: float = 0.0

    def __post_init__(self) -> None:
        opdef = get(self.op)  # ValueError naming the valid ops
        if opdef.name in ("Cutout", "SamplePairing", "Identity", "FlipLR", "FlipUD"):
            raise ValueError(
                f"Element({self.op!r}): not an AWS element (the AutoAugment ops without Cutout "
                "and SamplePairing); use one of the ops of AWS_ELEMENTS"
            )
        if not opdef.has_magnitude and self.level != 0.0:
            raise ValueError(f"Element({self.op!r}): has no magnitude; use level=0")
        if opdef.has_magnitude and not 0.0 < float(self.level) <= opdef.max_level:
            raise ValueError(
                f"Element({self.op!r}, level={self.level}): the level must be in "
                f"(0, {opdef.max_level:g}] (catalog scale, sign drawn at random)"
            )

    @property
    def name(self) -> str:
        """``"Rotate@6.67"``, or the op name for ops without a magnitude."""
        return f"{self.op}@{self.level:.3g}" if get(self.op).has_magnitude else self.op


#: The 36 elements of the paper's search space (order: the 11 ops with a magnitude in catalog
#: order, 3 rising levels each, then AutoContrast, Equalize, Invert).
AWS_ELEMENTS: tuple[Element, ...] = tuple(
    [Element(op, lvl) for op, levels in _LEVELS.items() for lvl in levels]
    + [Element(op) for op in _PLAIN]
)


def check_elements(elements: tuple[Element, ...]) -> tuple[Element, ...]:
    """``elements`` as a tuple of distinct :class:`Element`; ValueError/TypeError otherwise."""
    if not isinstance(elements, tuple) or not all(isinstance(e, Element) for e in elements):
        raise TypeError("elements must be a tuple of Element (e.g. AWS_ELEMENTS)")
    if len(elements) < 2:
        raise ValueError(f"{len(elements)} element(s): give at least 2 (AWS_ELEMENTS has 36)")
    if len(set(elements)) != len(elements):
        dup = next(e for e in elements if elements.count(e) > 1)
        raise ValueError(f"element {dup.name} is listed twice; give distinct elements")
    return elements


def element_names(elements: tuple[Element, ...] = AWS_ELEMENTS) -> tuple[str, ...]:
    """The display names of ``elements`` (``"Rotate@6.67"``)."""
    return tuple(e.name for e in elements)


def pair_index(first: torch.Tensor | int, second: torch.Tensor | int, n: int = 36) -> torch.Tensor:
    """The operation index ``first * n + second`` of the element pair (first, second)."""
    return torch.as_tensor(first) * n + torch.as_tensor(second)


def pair_of(k: torch.Tensor | int, n: int = 36) -> tuple[torch.Tensor, torch.Tensor]:
    """The element pair ``(k // n, k % n)`` of operation index ``k``."""
    k = torch.as_tensor(k)
    return k // n, k % n


def elements_of(
    op_ids: torch.Tensor, levels: torch.Tensor, elements: tuple[Element, ...] = AWS_ELEMENTS
) -> torch.Tensor:
    """The element index of each recorded op (from a Loader's op record), -1 where none fits.

    Args:
        op_ids: int64 [...], catalog op ids.
        levels: float [...], the signed levels applied (the sign is the random one).

    Returns:
        int64 [...], the index in ``elements`` of the element with that op and ``|level|``.
    """
    ops = torch.tensor([index(e.op) for e in elements])
    lvl = torch.tensor([e.level for e in elements], dtype=torch.float32)
    hit = (op_ids[..., None] == ops) & ((levels.abs()[..., None] - lvl).abs() < 1e-3)
    found = hit.any(-1)
    return torch.where(found, hit.to(torch.int8).argmax(-1), torch.full_like(op_ids, -1))
