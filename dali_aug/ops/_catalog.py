"""The op catalog: the one source of truth for every image operation in dali_aug.

Every backend (``torch``, ``dali``), every policy and every test reads this table. An op is
an immutable :class:`OpDef`: its name, the kernel family that implements it, whether its
magnitude is signed, and how a magnitude *level* maps to the PIL-level parameter.

Magnitude levels follow the AutoAugment convention (arXiv:1805.09501, ``_MAX_LEVEL = 10``):
a level is a float on the 0-10 scale and the parameter grows linearly with it, so that level 0
is the identity and higher levels are stronger ("increasing" variants, as in torchvision's
``AutoAugment`` and timm's ``*Increasing`` ops). The exceptions are the ops appended for timm's
RandAugment (``rand-...`` policies, ``timm/data/auto_augment.py``): ``PosterizeTimm``,
``SolarizeTimm``, ``ColorTimm``, ``ContrastTimm``, ``BrightnessTimm``, ``SharpnessTimm`` (timm's
default, non-increasing ``Posterize``/``Solarize``/enhance maps) and ``PosterizeIncreasing``
map levels exactly as timm does, so their level 0 is not the identity
(``OpDef.zero_is_identity``); ``SolarizeAdd`` is timm's too. For signed ops a negative level
means the mirrored direction (shear/translate/rotate to the other side, enhancement factor below
one). Levels above 10 are allowed up to ``OpDef.max_level`` (TrivialAugmentWide uses them).

PIL semantics matched (Pillow 10+, the reference of the AutoAugment/RandAugment code):

* geometric ops are ``Image.transform(..., Image.AFFINE, ..., resample=NEAREST,
  fillcolor=(128, 128, 128))`` with the origin at the top-left corner (shear, translate) or
  ``Image.rotate`` about the image centre (counter-clockwise for positive degrees);
* Contrast/Color/Brightness/Sharpness are ``ImageEnhance`` blends ``degenerate + f * (img -
  degenerate)``, truncated toward zero and clipped, as ``Image.blend`` does;
* AutoContrast/Equalize/Invert/Solarize/Posterize are the ``ImageOps`` functions.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import torch

__all__ = [
    "CATALOG",
    "FILL",
    "Family",
    "Mapping",
    "OpDef",
    "check_level",
    "get",
    "index",
    "level_to_param",
    "names",
]

#: Fill value of every geometric op and of Cutout (AutoAugment reference: gray 128).
FILL = 128


class Family(enum.IntEnum):
    """Kernel families: ops that share one kernel run together in one batched call."""

    IDENTITY = 0
    AFFINE = 1
    AUTOCONTRAST = 2
    INVERT = 3
    EQUALIZE = 4
    SOLARIZE = 5
    POSTERIZE = 6
    BLEND_MEAN = 7  # Contrast
    BLEND_GRAY = 8  # Color
    BLEND_BLACK = 9  # Brightness
    BLEND_SMOOTH = 10  # Sharpness
    CUTOUT = 11
    SAMPLE_PAIRING = 12
    SOLARIZE_ADD = 13  # timm's SolarizeAdd


class Mapping(enum.Enum):
    """How a level maps to a parameter: ``param = base + sign * (|level| / 10) * span``."""

    NONE = "none"  # no magnitude
    LINEAR = "linear"  # base + level/10 * span (signed ops keep the sign)
    ROUND = "round"  # as LINEAR, then rounded half up to an integer (Posterize bits)
    #: base + int(level/10 * span): the level term truncated toward zero, as timm's
    #: ``int((level / 10) * span)`` (its Posterize, Solarize and SolarizeAdd maps)
    TRUNC = "trunc"


@dataclasses.dataclass(frozen=True)
class OpDef:
    """One image operation of the catalog.

    Attributes:
        name: the public name (AutoAugment spelling, e.g. ``"ShearX"``).
        family: the kernel family that implements it.
        signed: whether a random sign is drawn by policies (negative level = mirrored).
        base: the parameter at level 0 (the identity parameter).
        span: the parameter change from level 0 to level 10 (may be negative).
        mapping: how the level maps to the parameter.
        unit: what the parameter is, in PIL terms.
        max_level: the largest admissible |level| (above it the parameter stops making sense).
        tolerance: (max abs difference, fraction of pixels allowed above it) of the backends
            against the PIL reference, per backend.
        note: how this op deviates from PIL in some backend, if it does.
        zero_is_identity: whether level 0 is the identity (False only for the timm maps).
    """

    name: str
    family: Family
    signed: bool
    base: float
    span: float
    mapping: Mapping
    unit: str
    max_level: float = 10.0
    tolerance: dict[str, tuple[int, float]] = dataclasses.field(
        default_factory=lambda: {"torch": (0, 0.0), "dali": (1, 0.0)}
    )
    note: str = ""
    zero_is_identity: bool = True

    @property
    def has_magnitude(self) -> bool:
        return self.mapping is not Mapping.NONE

    def param(self, level: Any) -> Any:
        """Maps a level (float, numpy array or torch tensor) to the PIL-level parameter.

        Pure arithmetic, so the same function serves Python floats, numpy and torch (any
        device) without a host sync.
        """
        if self.mapping is Mapping.NONE:
            return level * 0.0
        return level_to_param(
            level,
            base=self.base,
            span=self.span,
            signed=self.signed,
            rounded=self.mapping is Mapping.ROUND,
            truncated=self.mapping is Mapping.TRUNC,
        )

    def replace(self, **overrides: Any) -> OpDef:
        """Returns a copy with some fields changed (e.g. a different ``span``)."""
        return dataclasses.replace(self, **overrides)


def _choose(cond: Any, if_true: Any, if_false: Any) -> Any:
    """``if_true if cond else if_false`` for a bool, elementwise for a bool tensor."""
    if isinstance(cond, bool):
        return if_true if cond else if_false
    return torch.where(cond, if_true, if_false)


def _trunc(x: Any) -> Any:
    """``x`` truncated toward zero (Python's ``int(x)`` as a float), for a float, numpy array
    or tensor."""
    return x // 1 + ((x < 0) & (x % 1 != 0))


def level_to_param(
    level: Any, *, base: Any, span: Any, signed: Any, rounded: Any, truncated: Any = False
) -> Any:
    """The catalog's level -> parameter mapping: ``base + level / 10 * span``, with
    ``|level|`` for unsigned ops, rounded half up for :attr:`Mapping.ROUND`, and
    ``base + int(level / 10 * span)`` (timm's truncation) for :attr:`Mapping.TRUNC`.

    The one implementation of the mapping: :meth:`OpDef.param` calls it with one op's
    fields (Python floats and bools), :func:`~dali_aug.ops.resolve` with per-sample columns
    of the catalog's lookup tables (tensors, mixed ops, no host sync).

    Args:
        level: float, numpy array or tensor of levels.
        base: the parameter at level 0 (float or tensor broadcastable with ``level``).
        span: the parameter change from level 0 to level 10 (float or tensor).
        signed: bool or bool tensor: keep the sign of the level (else use ``|level|``).
        rounded: bool or bool tensor: round the parameter half up to an integer.
        truncated: bool or bool tensor: truncate the level term toward zero before adding
            ``base`` (timm's ``int(...)``).

    Returns:
        the parameter, of the type of ``level`` (promoted with ``base`` and ``span``).
    """
    term = _choose(signed, level, abs(level)) / 10.0 * span
    value = base + _choose(truncated, _trunc(term), term)
    return _choose(rounded, (value + 0.5) // 1, value)


def _op(name: str, family: Family, **kwargs: Any) -> OpDef:
    kwargs.setdefault("signed", False)
    kwargs.setdefault("base", 0.0)
    kwargs.setdefault("span", 0.0)
    kwargs.setdefault("mapping", Mapping.NONE)
    kwargs.setdefault("unit", "none")
    return OpDef(name=name, family=family, **kwargs)


_GEOM = {"torch": (0, 0.0), "dali": (255, 0.002)}
_ROT = {"torch": (255, 0.002), "dali": (255, 0.002)}
_ENH = dict(signed=True, base=1.0, span=0.9, mapping=Mapping.LINEAR, max_level=11.0)
#: timm's ``_enhance_level_to_arg``: ``(level / 10) * 1.8 + 0.1``, unsigned (no random sign).
_ENH_TIMM = dict(base=0.1, span=1.8, mapping=Mapping.LINEAR, zero_is_identity=False)

#: The catalog, in a fixed order: the position is the op id used by every backend and policy.
#: The first 16 are the AutoAugment search space of LB-Aug/AWS (arXiv:1805.09501, Table 6).
#: The ops after FlipUD are timm's RandAugment level maps (``timm/data/auto_augment.py``,
#: ``LEVEL_TO_ARG``), appended so that the ids of the others stay as recorded.
CATALOG: tuple[OpDef, ...] = (
    _op(
        "ShearX",
        Family.AFFINE,
        signed=True,
        span=0.3,
        mapping=Mapping.LINEAR,
        unit="shear factor (x += s*y)",
        max_level=33.0,
        tolerance=_GEOM,
    ),
    _op(
        "ShearY",
        Family.AFFINE,
        signed=True,
        span=0.3,
        mapping=Mapping.LINEAR,
        unit="shear factor (y += s*x)",
        max_level=33.0,
        tolerance=_GEOM,
    ),
    _op(
        "TranslateX",
        Family.AFFINE,
        signed=True,
        span=0.45,
        mapping=Mapping.LINEAR,
        unit="fraction of the width (pixels = fraction * W)",
        max_level=22.0,
        tolerance=_GEOM,
    ),
    _op(
        "TranslateY",
        Family.AFFINE,
        signed=True,
        span=0.45,
        mapping=Mapping.LINEAR,
        unit="fraction of the height (pixels = fraction * H)",
        max_level=22.0,
        tolerance=_GEOM,
    ),
    _op(
        "Rotate",
        Family.AFFINE,
        signed=True,
        span=30.0,
        mapping=Mapping.LINEAR,
        unit="degrees, counter-clockwise",
        max_level=60.0,
        tolerance=_ROT,
        note="PIL rotates in 16.16 fixed point; float coordinates pick another neighbour "
        "for < 0.2% of the pixels",
    ),
    _op("AutoContrast", Family.AUTOCONTRAST, tolerance={"torch": (0, 0.0), "dali": (1, 0.0)}),
    _op("Invert", Family.INVERT),
    _op(
        "Equalize",
        Family.EQUALIZE,
        tolerance={"torch": (0, 0.0), "dali": (255, 1.0)},
        note="dali: fn.equalize follows OpenCV's LUT formula, not PIL's; checked for "
        "monotonicity and a flattened histogram instead of pixel equality",
    ),
    _op(
        "Solarize",
        Family.SOLARIZE,
        base=256.0,
        span=-256.0,
        mapping=Mapping.LINEAR,
        unit="threshold (pixels >= t are inverted)",
    ),
    _op(
        "Posterize",
        Family.POSTERIZE,
        base=8.0,
        span=-4.0,
        mapping=Mapping.ROUND,
        unit="bits kept",
        max_level=17.5,
    ),
    _op("Contrast", Family.BLEND_MEAN, unit="enhancement factor", **_ENH),  # type: ignore[arg-type]
    _op("Color", Family.BLEND_GRAY, unit="enhancement factor", **_ENH),  # type: ignore[arg-type]
    _op("Brightness", Family.BLEND_BLACK, unit="enhancement factor", **_ENH),  # type: ignore[arg-type]
    _op("Sharpness", Family.BLEND_SMOOTH, unit="enhancement factor", **_ENH),  # type: ignore[arg-type]
    _op(
        "Cutout",
        Family.CUTOUT,
        span=0.2,
        mapping=Mapping.LINEAR,
        unit="side as a fraction of the shorter side",
        max_level=50.0,
    ),
    _op(
        "SamplePairing",
        Family.SAMPLE_PAIRING,
        span=0.4,
        mapping=Mapping.LINEAR,
        unit="blend weight of the partner image",
        max_level=25.0,
    ),
    _op("Identity", Family.IDENTITY),
    _op("FlipLR", Family.AFFINE),
    _op("FlipUD", Family.AFFINE),
    _op(
        "SolarizeAdd",
        Family.SOLARIZE_ADD,
        span=110.0,
        mapping=Mapping.TRUNC,
        unit="added to pixels below 128, saturated at 255 (timm: int(level/10 * 110))",
    ),
    _op(
        "PosterizeIncreasing",
        Family.POSTERIZE,
        base=4.0,
        span=-4.0,
        mapping=Mapping.TRUNC,
        unit="bits kept (timm: 4 - int(level/10 * 4); 0 bits = black)",
        zero_is_identity=False,
    ),
    _op(
        "PosterizeTimm",
        Family.POSTERIZE,
        span=4.0,
        mapping=Mapping.TRUNC,
        unit="bits kept (timm's Posterize: int(level/10 * 4); 0 bits = black)",
        zero_is_identity=False,
    ),
    _op(
        "SolarizeTimm",
        Family.SOLARIZE,
        span=256.0,
        mapping=Mapping.TRUNC,
        unit="threshold (timm's Solarize: int(level/10 * 256))",
        zero_is_identity=False,
    ),
    _op("ContrastTimm", Family.BLEND_MEAN, unit="enhancement factor (timm)", **_ENH_TIMM),  # type: ignore[arg-type]
    _op("ColorTimm", Family.BLEND_GRAY, unit="enhancement factor (timm)", **_ENH_TIMM),  # type: ignore[arg-type]
    _op("BrightnessTimm", Family.BLEND_BLACK, unit="enhancement factor (timm)", **_ENH_TIMM),  # type: ignore[arg-type]
    _op("SharpnessTimm", Family.BLEND_SMOOTH, unit="enhancement factor (timm)", **_ENH_TIMM),  # type: ignore[arg-type]
)

_BY_NAME = {op.name: i for i, op in enumerate(CATALOG)}


def names() -> tuple[str, ...]:
    """The op names, in catalog (op id) order."""
    return tuple(op.name for op in CATALOG)


def index(name: str) -> int:
    """The op id of ``name``; raises ValueError with the valid names if unknown."""
    if not isinstance(name, str):
        raise TypeError(f"op name must be a str, got {type(name).__name__}")
    try:
        return _BY_NAME[name]
    except KeyError:
        lowered = {k.lower(): k for k in _BY_NAME}
        hint = f" Did you mean {lowered[name.lower()]!r}?" if name.lower() in lowered else ""
        raise ValueError(f"unknown op {name!r}.{hint} Valid ops: {', '.join(_BY_NAME)}") from None


def get(name: str) -> OpDef:
    """The :class:`OpDef` called ``name``."""
    return CATALOG[index(name)]


def check_level(op: OpDef, level: float) -> None:
    """Raises ValueError if ``level`` is outside what ``op`` admits."""
    if level != level:  # NaN
        raise ValueError(f"{op.name}: magnitude is NaN; pass a level on the 0-10 scale")
    if not op.signed and level < 0:
        raise ValueError(
            f"{op.name}: magnitude {level} is negative but {op.name} is not signed; "
            f"pass a level in [0, {op.max_level:g}]"
        )
    if abs(level) > op.max_level:
        lo = -op.max_level if op.signed else 0.0
        raise ValueError(
            f"{op.name}: magnitude {level} is out of range; pass a level in "
            f"[{lo:g}, {op.max_level:g}] (the AutoAugment scale is 0-10)"
        )
