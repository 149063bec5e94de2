"""Per-sample op parameters: what a policy samples (:class:`OpParams`, the provenance of a
batch) and what the kernels consume (:class:`Resolved`, PIL-level numbers per sample).

Sampling and application are separate (torchvision ``_get_params``/``_transform``): a policy
draws :class:`OpParams` with an explicit ``torch.Generator``; :func:`resolve` turns one layer
of it into kernel parameters with device lookup tables built from the catalog (built once per
device; ``resolve`` reads nothing back from the device, but copies the image size to it, a
small blocking host-to-device copy per call); both backends consume the same
:class:`Resolved` numbers, so replaying the provenance of a DALI batch with the torch backend
reproduces it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from dali_aug.ops._catalog import CATALOG, Mapping, index, level_to_param

__all__ = [
    "OpParams",
    "Resolved",
    "flip_signs",
    "identity_params",
    "random_extras",
    "random_signs",
    "resolve",
    "signed_mask",
]


@dataclasses.dataclass(frozen=True)
class OpParams:
    """The ops applied to a batch, per sample and per layer (applied in layer order).

    Attributes:
        op_ids: int64 [N, L], catalog op ids (``dali_aug.ops.names()`` order).
        levels: float32 [N, L], signed magnitude levels on the 0-10 AutoAugment scale.
        centers: float32 [N, L, 2] in [0, 1), the (y, x) centre of a Cutout box relative to
            the image size (unused by other ops).
        partners: int64 [N, L], the batch index of the SamplePairing partner image (unused by
            other ops).
    """

    op_ids: torch.Tensor
    levels: torch.Tensor
    centers: torch.Tensor
    partners: torch.Tensor

    def __post_init__(self) -> None:
        for field in ("op_ids", "levels", "centers", "partners"):
            if not isinstance(getattr(self, field), torch.Tensor):
                raise TypeError(
                    f"OpParams.{field} must be a torch.Tensor, got {type(getattr(self, field))}"
                )
        if self.op_ids.dim() != 2:
            raise ValueError(f"op_ids must be [N, L], got shape {tuple(self.op_ids.shape)}")
        n, layers = self.op_ids.shape
        expected = {
            "op_ids": ((n, layers), torch.int64),
            "levels": ((n, layers), torch.float32),
            "centers": ((n, layers, 2), torch.float32),
            "partners": ((n, layers), torch.int64),
        }
        for field, (shape, dtype) in expected.items():
            value = getattr(self, field)
            if tuple(value.shape) != shape or value.dtype != dtype:
                raise ValueError(
                    f"OpParams.{field} must be {dtype} of shape {shape}, got "
                    f"{value.dtype} of shape {tuple(value.shape)}"
                )
        if n and layers:
            if int(self.op_ids.min()) < 0 or int(self.op_ids.max()) >= len(CATALOG):
                raise ValueError(f"op_ids must be in [0, {len(CATALOG)}); see ops.names()")

    @property
    def batch_size(self) -> int:
        return int(self.op_ids.shape[0])

    @property
    def num_layers(self) -> int:
        return int(self.op_ids.shape[1])

    @classmethod
    def single(
        cls,
        name: str,
        level: float,
        n: int,
        *,
        generator: torch.Generator | None = None,
    ) -> OpParams:
        """One op at one level on all ``n`` samples (Cutout centres and SamplePairing partners
        drawn from ``generator``; the partner is never the sample itself when n > 1)."""
        op = torch.full((n, 1), index(name), dtype=torch.int64)
        levels = torch.full((n, 1), float(level), dtype=torch.float32)
        return cls(op, levels, *random_extras(n, 1, generator=generator))

    def to(self, device: torch.device | str) -> OpParams:
        return OpParams(*(t.to(device) for t in dataclasses.astuple(self)))

    def then(self, other: OpParams) -> OpParams:
        """These layers followed by ``other``'s (same samples): [B, L1 + L2], on this
        record's device."""
        dev = self.op_ids.device
        return OpParams(
            *(
                torch.cat([getattr(self, f.name), getattr(other, f.name).to(dev)], 1)
                for f in dataclasses.fields(self)
            )
        )

    def select(self, rows: torch.Tensor | slice) -> OpParams:
        """The parameters of some samples (partners keep their original batch indices)."""
        return OpParams(*(t[rows] for t in dataclasses.astuple(self)))

    def repeat_interleave(self, repeats: int) -> OpParams:
        """Each sample's row ``repeats`` times in a row (a clip's ops on each of its frames):
        row ``i`` becomes rows ``i * repeats`` to ``i * repeats + repeats - 1``, and a
        SamplePairing partner ``j`` of row ``i`` becomes, on copy ``t``, row ``j * repeats +
        t`` (the same frame of the partner clip).

        Raises:
            ValueError: ``repeats`` below 1.
        """
        if repeats < 1:
            raise ValueError(f"repeats={repeats} must be >= 1")
        if repeats == 1:
            return self
        n = self.batch_size
        copy = torch.arange(n * repeats, device=self.partners.device) % repeats
        partners = self.partners.repeat_interleave(repeats, 0) * repeats + copy[:, None]
        return OpParams(
            self.op_ids.repeat_interleave(repeats, 0),
            self.levels.repeat_interleave(repeats, 0),
            self.centers.repeat_interleave(repeats, 0),
            partners,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain lists keyed by field, with op names, for logs and JSON."""
        return {
            "ops": [[CATALOG[i].name for i in row] for row in self.op_ids.tolist()],
            "levels": self.levels.tolist(),
            "centers": self.centers.tolist(),
            "partners": self.partners.tolist(),
        }


def random_extras(
    n: int, layers: int, *, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws Cutout centres [n, L, 2] and SamplePairing partners [n, L] (never oneself)."""
    centers = torch.rand((n, layers, 2), generator=generator)
    if n > 1:
        shift = torch.randint(1, n, (n, layers), generator=generator)
        partners = (torch.arange(n).unsqueeze(1) + shift) % n
    else:
        partners = torch.zeros((n, layers), dtype=torch.int64)
    return centers, partners


@dataclasses.dataclass(frozen=True)
class Resolved:
    """Kernel parameters of one layer, per sample (all on the images' device).

    Attributes:
        family: int64 [N], the kernel family (:class:`~dali_aug.ops.Family`) of each sample.
        value: float32 [N], the PIL-level scalar (factor, threshold, bits, weight).
        matrix: float32 [N, 2, 3], the inverse affine map from output pixel-centre
            coordinates to input coordinates (PIL ``Image.transform`` data); identity for
            non-geometric ops.
        box: int64 [N, 4], the Cutout box (y0, x0, y1, x1), half-open; empty for other ops.
        partners: int64 [N], SamplePairing partner index.
    """

    family: torch.Tensor
    value: torch.Tensor
    matrix: torch.Tensor
    box: torch.Tensor
    partners: torch.Tensor


_TABLES: dict[torch.device, dict[str, torch.Tensor]] = {}


#: The ops before timm's (``SolarizeAdd`` onwards) keep their constants rounded to float32, as
#: recorded runs resolved them (bit for bit the same parameters); timm's ops use float64, as
#: timm's Python floats (``(level / 10) * 1.8 + 0.1`` rounds to another float32 than the sum of
#: float32 constants, and PIL's blend sees the difference).
_FLOAT32_CONSTANTS = index("SolarizeAdd")


def _constants(values: list[float], device: torch.device) -> torch.Tensor:
    """float64 [K]: ``values`` per op, the first :data:`_FLOAT32_CONSTANTS` rounded to
    float32."""
    out = torch.tensor(values, dtype=torch.float64)
    out[:_FLOAT32_CONSTANTS] = out[:_FLOAT32_CONSTANTS].float().double()
    return out.to(device)


def _tables(device: torch.device) -> dict[str, torch.Tensor]:
    """Catalog lookup tables on ``device`` (built once per device)."""
    if device not in _TABLES:
        _TABLES[device] = {
            "family": torch.tensor([int(op.family) for op in CATALOG], device=device),
            "base": _constants([op.base for op in CATALOG], device),
            "span": _constants([op.span for op in CATALOG], device),
            "signed": torch.tensor([op.signed for op in CATALOG], device=device),
            "round": torch.tensor([op.mapping is Mapping.ROUND for op in CATALOG], device=device),
            "trunc": torch.tensor([op.mapping is Mapping.TRUNC for op in CATALOG], device=device),
        }
    return _TABLES[device]


def signed_mask(op_ids: torch.Tensor) -> torch.Tensor:
    """Whether each op id names a signed op (:attr:`OpDef.signed`), on the ids' device.

    Args:
        op_ids: int64 catalog op ids, any shape.

    Returns:
        bool tensor of the shape of ``op_ids`` (a lookup in a table built once per device).
    """
    return _tables(op_ids.device)["signed"][op_ids]


def flip_signs(levels: torch.Tensor, op_ids: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Negates the levels of signed ops whose uniform draw is below 0.5 (a fair sign).

    For callers that draw their uniforms with other randomness (LB-Aug's actor); policies
    use :func:`random_signs`.

    Args:
        levels: float levels, any shape.
        op_ids: int64 catalog op ids, the shape of ``levels``.
        uniforms: U[0, 1) draws, the shape of ``levels``, on their device.

    Returns:
        the levels, negated where the op is signed and ``uniforms < 0.5``.
    """
    flip = (uniforms < 0.5) & signed_mask(op_ids)
    return torch.where(flip, -levels, levels)


def random_signs(
    levels: torch.Tensor, op_ids: torch.Tensor, *, generator: torch.Generator | None
) -> torch.Tensor:
    """A fair random sign on the levels of signed ops, every policy's sign draw.

    Draws one uniform per level from ``generator`` (on its device: the CPU generator of the
    policies, or the global CPU RNG when None) whether the op is signed or not, so the
    stream consumed depends only on the shape.

    Args:
        levels: float levels [N, L].
        op_ids: int64 catalog op ids [N, L].
        generator: the source of the uniforms.

    Returns:
        the levels with random signs, on the levels' device.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    uniforms = torch.rand(levels.shape, generator=generator, device=device).to(levels.device)
    return flip_signs(levels, op_ids, uniforms)


_SHEAR_X, _SHEAR_Y, _TRANS_X, _TRANS_Y, _ROTATE = (
    index(n) for n in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
)
_FLIP_LR, _FLIP_UD, _CUTOUT = index("FlipLR"), index("FlipUD"), index("Cutout")


def resolve(
    op_ids: torch.Tensor,
    levels: torch.Tensor,
    centers: torch.Tensor,
    partners: torch.Tensor,
    height: int,
    width: int,
) -> Resolved:
    """Turns one layer of :class:`OpParams` ([N] ids and levels) into kernel parameters.

    The parameter mapping is :func:`~dali_aug.ops.level_to_param` (what :meth:`OpDef.param`
    evaluates), fed with catalog lookup tables on the ids' device; geometric ops become PIL
    inverse affine matrices. The tables hold the catalog's ``base`` and ``span`` as float64,
    rounded to float32 for the ops before timm's (see :data:`_FLOAT32_CONSTANTS`), so values of
    those differ from the scalar :meth:`OpDef.param` by float32 rounding of the constants
    (< 1e-7 relative); timm's ops get exactly :meth:`OpDef.param`'s value.
    """
    t = _tables(op_ids.device)
    value = level_to_param(
        levels.double(),  # double, as PIL's Python floats
        base=t["base"][op_ids],
        span=t["span"][op_ids],
        signed=t["signed"][op_ids],
        rounded=t["round"][op_ids],
        truncated=t["trunc"][op_ids],
    )

    n = op_ids.shape[0]
    one, zero = torch.ones_like(value), torch.zeros_like(value)
    # PIL data (a, b, c, d, e, f): x_in = a*x + b*y + c, y_in = d*x + e*y + f.
    a, b, c, d, e, f = one, zero.clone(), zero.clone(), zero.clone(), one, zero.clone()
    b = torch.where(op_ids == _SHEAR_X, value, b)
    d = torch.where(op_ids == _SHEAR_Y, value, d)
    c = torch.where(op_ids == _TRANS_X, value * width, c)
    f = torch.where(op_ids == _TRANS_Y, value * height, f)
    # Image.rotate: angle -> inverse matrix about the centre (w/2, h/2).
    theta = torch.where(op_ids == _ROTATE, -value * (math.pi / 180.0), zero)
    cos, sin = torch.cos(theta), torch.sin(theta)
    rot = op_ids == _ROTATE
    cx, cy = width / 2.0, height / 2.0
    a = torch.where(rot, cos, a)
    b = torch.where(rot, sin, b)
    d = torch.where(rot, -sin, d)
    e = torch.where(rot, cos, e)
    c = torch.where(rot, cos * -cx + sin * -cy + cx, c)
    f = torch.where(rot, -sin * -cx + cos * -cy + cy, f)
    flip_lr, flip_ud = op_ids == _FLIP_LR, op_ids == _FLIP_UD
    a = torch.where(flip_lr, -one, a)
    c = torch.where(flip_lr, one * width, c)
    e = torch.where(flip_ud, -one, e)
    f = torch.where(flip_ud, one * height, f)
    matrix = torch.stack([a, b, c, d, e, f], dim=-1).reshape(n, 2, 3)

    side = torch.floor(value * min(height, width) + 0.5).long()
    side = torch.where(op_ids == _CUTOUT, side, torch.zeros_like(side))
    size = torch.tensor([height, width], device=op_ids.device)
    centre = torch.floor(centers * size).long()
    start = centre - side.unsqueeze(-1) // 2
    lo = torch.minimum(start.clamp(min=0), size)
    hi = torch.minimum((start + side.unsqueeze(-1)).clamp(min=0), size)
    box = torch.stack([lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1]], dim=-1)
    family = t["family"][op_ids]
    return Resolved(family, value.float(), matrix.float(), box, partners)


def identity_params(n: int, layers: int = 1) -> OpParams:
    """Identity on every sample (the provenance of an un-augmented batch)."""
    ident = index("Identity")
    return OpParams(
        torch.full((n, layers), ident, dtype=torch.int64),
        torch.zeros((n, layers), dtype=torch.float32),
        torch.zeros((n, layers, 2), dtype=torch.float32),
        torch.zeros((n, layers), dtype=torch.int64),
    )
