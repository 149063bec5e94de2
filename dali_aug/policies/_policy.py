"""Augmentation policies as validated, immutable objects.

A policy samples per-sample :class:`~dali_aug.ops.OpParams` ([N, L] op ids and signed levels)
with an explicit ``torch.Generator``; the backends apply them. Policies never parse strings
(see :func:`dali_aug.policies.parse_policy` for the command-line edge).

* :class:`Policy`: AutoAugment-style sub-policies (arXiv:1805.09501): one sub-policy drawn
  per sample, uniformly or, with ``weights``, from a weighted categorical distribution (the
  export of a searched distribution: AWS, MetaAugment's sampler), each of its ops applied with
  its probability. User-defined policies and exported learned policies are of this type.
* :class:`RandAugment` (arXiv:1909.13719, dali-aug's ``ra-...`` names): ``n`` ops drawn
  uniformly from the paper's 14, all at level ``m`` (optionally jittered by a Gaussian of std
  ``mstd``), each applied with ``prob`` (1.0 by default).
* :class:`TimmRandAugment` (timm's ``rand-...`` names): timm's 15-op set, each drawn op
  applied with ``prob`` 0.5, timm's magnitude rule (``mstd``, ``mstd > 100`` uniform, ``mmax``).
* :class:`TrivialAugmentWide` (arXiv:2103.10158): one op, a level drawn uniformly from 31
  bins over the op's wide range.
* :class:`NoAugment`: no op.

Signed ops get a random sign with probability 0.5 in every policy
(:func:`dali_aug.ops.random_signs`).

The lookup tables a policy samples from are built once, in ``__post_init__``; ``sample`` is
tensor work only (no Python loop over sub-policies, ops or samples). The tables are not
dataclass fields: equality, hashing, ``dataclasses.replace`` and ``to_dict`` see the fields
only, and pickling drops the tables and rebuilds them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch

from dali_aug.ops import CATALOG, OpParams, check_level, get, index, random_extras, random_signs
from dali_aug.policies._tables import (
    RAND_OPS,
    TABLES,
    TIMM_RAND_INCREASING_TRANSFORMS,
    TIMM_RAND_TRANSFORMS,
    TIMM_UNIFORM_MSTD,
    WIDE_MAX_LEVEL,
)

__all__ = [
    "MAX_ENTRIES",
    "MAX_LAYERS",
    "AugmentPolicy",
    "NoAugment",
    "OpSpec",
    "Policy",
    "RandAugment",
    "TimmRandAugment",
    "TrivialAugmentWide",
    "auto_augment",
    "check_policy",
    "policy_from_dict",
]

_IDENTITY = index("Identity")


@runtime_checkable
class AugmentPolicy(Protocol):
    """What the Loader and the trainer need of a policy."""

    @property
    def num_layers(self) -> int: ...

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> OpParams: ...

    def op_probabilities(self) -> torch.Tensor: ...

    def to_dict(self) -> dict[str, Any]: ...


def _layer_probabilities(n: int, ops: Sequence[str], prob: float) -> torch.Tensor:
    """[n, len(CATALOG)]: each of ``n`` layers draws one of ``ops`` uniformly and applies it
    with ``prob`` (else the identity)."""
    out = torch.zeros((n, len(CATALOG)))
    for name in ops:
        out[:, index(name)] += prob / len(ops)
    out[:, _IDENTITY] += 1.0 - prob
    return out


def _params(ops: torch.Tensor, levels: torch.Tensor, g: torch.Generator | None) -> OpParams:
    n, layers = ops.shape
    levels = random_signs(levels.float(), ops, generator=g)
    return OpParams(ops, levels, *random_extras(n, layers, generator=g))


class _Cached:
    """Base of the frozen policy dataclasses that precompute tensors in ``__post_init__``.

    The tensors are stored next to the fields (``object.__setattr__``), not as fields, so
    equality, hashing, ``repr``, ``dataclasses.replace`` (which re-runs ``__post_init__``)
    and ``to_dict`` ignore them; pickling and copying keep the fields only and rebuild them.
    The annotations below only type them (a plain base class adds no dataclass fields).
    """

    _table: _SubPolicyTable  # Policy
    _ids: torch.Tensor  # RandAugment, TrivialAugmentWide: the op ids
    _top: torch.Tensor  # TrivialAugmentWide: the largest level per op

    def __post_init__(self) -> None:  # pragma: no cover - every subclass defines it
        pass

    def _cache(self, **values: Any) -> None:
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def __getstate__(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)
        self.__post_init__()


@dataclasses.dataclass(frozen=True)
class _SubPolicyTable:
    """The sampling tables of a :class:`Policy` (built once by :func:`_build_table`).

    Attributes:
        ops: int64 [K, L], the op id of each layer of each sub-policy (Identity padding).
        probs: float32 [K, L], the probability that the layer applies its op.
        levels: float32 [K, L], the level of the op.
        select: float64 [K], the probability of drawing each sub-policy (normalised weights),
            or None for the uniform draw.
    """

    ops: torch.Tensor
    probs: torch.Tensor
    levels: torch.Tensor
    select: torch.Tensor | None


#: The most ops one image gets from a policy (RandAugment's ``n``, a sub-policy's length): our
#: limit (published policies use 1-3; every layer is a pipeline stage and a column of the
#: provenance, so a policy file asking for 10**6 would run for minutes before its first batch).
MAX_LAYERS = 16
#: The most sub-policies (or ops of a RandAugment/TrivialAugment op list) read from a policy
#: file or dict: our limit (a searched AWS policy over 36 elements has 1296 sub-policies).
MAX_ENTRIES = 65536


def _check_number(who: str, name: str, value: object) -> float:
    """``value`` as a finite float, or TypeError/ValueError naming ``who`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{who}: {name}={value!r} is not a number; give a finite number")
    try:
        finite = math.isfinite(float(value))
    except OverflowError:  # an int past float's range
        finite = False
    if not finite:
        raise ValueError(f"{who}: {name}={value!r} is not finite; give a finite number")
    return float(value)


def _check_entries(who: str, name: str, value: object) -> list[Any]:
    """``value`` (a list read from a file or dict) as a list of at most :data:`MAX_ENTRIES`."""
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Sequence):
        raise TypeError(f"{who}: {name} must be a list, got {type(value).__name__}")
    if len(value) > MAX_ENTRIES:
        raise ValueError(
            f"{who}: {len(value)} {name} exceed dali-aug's limit of {MAX_ENTRIES}; "
            "give a shorter list"
        )
    return list(value)


def _build_table(
    sub_policies: tuple[tuple[OpSpec, ...], ...], weights: tuple[float, ...] | None
) -> _SubPolicyTable:
    """The tables of a policy's sub-policies, padded with Identity to the longest one."""
    layers = max(len(sub) for sub in sub_policies)
    pad = [(_IDENTITY, 0.0, 0.0)] * layers
    rows = [[(index(s.op), s.prob, s.level) for s in sub] + pad[len(sub) :] for sub in sub_policies]
    ops = torch.tensor([[r[0] for r in row] for row in rows], dtype=torch.int64)
    probs = torch.tensor([[r[1] for r in row] for row in rows], dtype=torch.float32)
    levels = torch.tensor([[r[2] for r in row] for row in rows], dtype=torch.float32)
    select = None
    if weights is not None:
        w = torch.tensor(weights, dtype=torch.float64)
        w = w / w.max()  # finite weights near the float64 limit must not sum to inf
        select = w / w.sum()
    return _SubPolicyTable(ops, probs, levels, select)


def _check_weights(name: str, k: int, weights: object) -> tuple[float, ...]:
    """The weights of a :class:`Policy` as floats, or ValueError/TypeError naming the fix."""
    if isinstance(weights, (torch.Tensor, np.ndarray)) and weights.ndim == 1:
        weights = weights.tolist()
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise TypeError(
            f"Policy {name!r}: weights must be a sequence of {k} numbers (one per "
            f"sub-policy), got {type(weights).__name__}"
        )
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, numbers.Real):
            raise TypeError(f"Policy {name!r}: weight {w!r} is not a number")
    values = tuple(float(w) for w in weights)
    if len(values) != k:
        raise ValueError(
            f"Policy {name!r}: {len(values)} weights for {k} sub-policies; give one weight "
            "per sub-policy"
        )
    bad = [w for w in values if not math.isfinite(w) or w < 0]
    if bad:
        raise ValueError(
            f"Policy {name!r}: weight {bad[0]} is not a finite number >= 0; weights are "
            "non-negative selection weights (normalised by their sum)"
        )
    if not max(values, default=0.0) > 0:
        raise ValueError(
            f"Policy {name!r}: the weights sum to 0; give at least one positive weight "
            "(or weights=None for the uniform draw)"
        )
    return values


def _check_op_names(ops: tuple[str, ...], who: str) -> None:
    if not ops:
        raise ValueError(f"{who}: the op list is empty; give at least one op name")
    for name in ops:
        index(name)


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One op of a sub-policy: apply ``op`` at ``level`` with probability ``prob``."""

    op: str
    prob: float
    level: float = 0.0

    def __post_init__(self) -> None:
        opdef = get(self.op)
        _check_number(f"OpSpec({self.op})", "prob", self.prob)
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"OpSpec({self.op}): prob {self.prob} must be in [0, 1]")
        check_level(opdef, float(self.level))

    def __repr__(self) -> str:
        lvl = f", level={self.level:g}" if get(self.op).has_magnitude else ""
        return f"OpSpec({self.op}, p={self.prob:g}{lvl})"


@dataclasses.dataclass(frozen=True)
class Policy(_Cached):
    """AutoAugment-style policy: a list of sub-policies, one drawn per sample.

    Without ``weights`` the sub-policy is drawn uniformly (``torch.randint``); with them it is
    a weighted categorical policy, the export of a searched distribution (AWS, MetaAugment),
    drawn with ``torch.multinomial``. The sampling tables are built once, here.

    Args:
        name: a label for logs.
        sub_policies: each a tuple of :class:`OpSpec`, applied in order; sub-policies of
            different lengths are padded with Identity.
        weights: optional selection weights, one per sub-policy: finite, >= 0, with a
            positive sum; sub-policy ``i`` is drawn with probability ``weights[i] /
            sum(weights)``. Kept as given (as floats) so that ``to_dict`` round-trips them
            exactly. Explicit equal weights give the same distribution as None but other
            draws (multinomial, not randint).

    Example:
        >>> Policy("mine", ((OpSpec("Rotate", 0.5, 9), OpSpec("Equalize", 0.8)),))
        >>> Policy("searched", subs, weights=(0.7, 0.2, 0.1))
    """

    name: str
    sub_policies: tuple[tuple[OpSpec, ...], ...]
    weights: tuple[float, ...] | None = None
    kind: ClassVar[str] = "policy"

    def __post_init__(self) -> None:
        if not self.sub_policies:
            raise ValueError(f"Policy {self.name!r} has no sub-policies; use NoAugment() instead")
        for sub in self.sub_policies:
            if not sub or not all(isinstance(s, OpSpec) for s in sub):
                raise TypeError(
                    f"Policy {self.name!r}: every sub-policy must be a non-empty tuple of OpSpec"
                )
            if len(sub) > MAX_LAYERS:
                raise ValueError(
                    f"Policy {self.name!r}: a sub-policy of {len(sub)} ops exceeds dali-aug's "
                    f"limit of {MAX_LAYERS} ops per image; give at most {MAX_LAYERS}"
                )
        if self.weights is not None:
            weights = _check_weights(self.name, len(self.sub_policies), self.weights)
            object.__setattr__(self, "weights", weights)
        self._cache(_table=_build_table(self.sub_policies, self.weights))

    @property
    def num_layers(self) -> int:
        return int(self._table.ops.shape[1])

    def selection_probabilities(self) -> torch.Tensor:
        """float64 [K]: the probability of drawing each sub-policy."""
        select = self._table.select
        if select is None:
            k = len(self.sub_policies)
            return torch.full((k,), 1.0 / k, dtype=torch.float64)
        return select.clone()

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> OpParams:
        t: _SubPolicyTable = self._table
        if t.select is None:
            pick = torch.randint(0, len(self.sub_policies), (n,), generator=generator)
        elif n > 0:
            pick = torch.multinomial(t.select, n, replacement=True, generator=generator)
        else:  # multinomial refuses 0 samples
            pick = torch.zeros((0,), dtype=torch.int64)
        applied = torch.rand((n, self.num_layers), generator=generator) < t.probs[pick]
        ops = t.ops[pick]
        chosen = torch.where(applied, ops, torch.full_like(ops, _IDENTITY))
        return _params(chosen, torch.where(applied, t.levels[pick], 0.0), generator)

    def op_probabilities(self) -> torch.Tensor:
        """[L, K]: the probability that layer l applies op k (Identity gets the rest)."""
        t: _SubPolicyTable = self._table
        out = torch.zeros((self.num_layers, len(CATALOG)))
        for layer in range(self.num_layers):
            if t.select is None:
                mass = t.probs[:, layer] / len(self.sub_policies)
            else:
                mass = (t.probs[:, layer].double() * t.select).float()
            out[layer].index_add_(0, t.ops[:, layer], mass)
            out[layer, _IDENTITY] += 1.0 - out[layer].sum()
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "type": self.kind,
            "name": self.name,
            "sub_policies": [
                [{"op": s.op, "prob": s.prob, "level": s.level} for s in sub]
                for sub in self.sub_policies
            ],
        }
        if self.weights is not None:
            d["weights"] = list(self.weights)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Policy:
        """Rebuilds a policy from :meth:`to_dict` (a file's data: list sizes are bounded by
        :data:`MAX_ENTRIES` and :data:`MAX_LAYERS`, numbers must be finite)."""
        name = d.get("name", "custom")
        who = f"Policy {name!r}"
        subs = []
        for sub in _check_entries(who, "sub_policies", d["sub_policies"]):
            sub = _check_entries(who, "ops of a sub-policy", sub)
            if len(sub) > MAX_LAYERS:
                raise ValueError(
                    f"{who}: a sub-policy of {len(sub)} ops exceeds dali-aug's limit of "
                    f"{MAX_LAYERS} ops per image; give at most {MAX_LAYERS}"
                )
            for s in sub:
                if not isinstance(s, dict):
                    raise TypeError(f"{who}: op {s!r} is not a dict with 'op', 'prob', 'level'")
            subs.append(tuple(OpSpec(**s) for s in sub))
        weights = d.get("weights")
        return cls(
            name=name,
            sub_policies=tuple(subs),
            weights=None if weights is None else tuple(_check_entries(who, "weights", weights)),
        )

    def __repr__(self) -> str:
        weighted = ", weighted" if self.weights is not None else ""
        return f"Policy({self.name!r}, {len(self.sub_policies)} sub-policies{weighted})"


def auto_augment(table: str = "imagenet") -> Policy:
    """The AutoAugment policy learned on ``table`` ("imagenet", "cifar10" or "svhn")."""
    if table not in TABLES:
        raise ValueError(f"unknown AutoAugment table {table!r}; use one of {sorted(TABLES)}")
    subs = tuple(
        tuple(OpSpec(op, prob, 0.0 if level is None else float(level)) for op, prob, level in sub)
        for sub in TABLES[table]
    )
    return Policy(name=f"aa-{table}", sub_policies=subs)


@dataclasses.dataclass(frozen=True)
class RandAugment(_Cached):
    """RandAugment: ``n`` ops drawn uniformly from ``ops``, each at level ``m``.

    Args:
        n: ops per image (layers).
        m: level on the 0-10 scale.
        mstd: std of a Gaussian jitter of the level per op (0 = fixed, as in the paper).
        prob: probability of applying each drawn op (1.0 in the paper; timm uses 0.5).
        ops: the op set (default: the paper's 14 ops).
    """

    n: int = 2
    m: float = 9.0
    mstd: float = 0.0
    prob: float = 1.0
    ops: tuple[str, ...] = RAND_OPS
    kind: ClassVar[str] = "rand_augment"

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"RandAugment: n={self.n!r} must be an int >= 1 (ops per image)")
        if self.n > MAX_LAYERS:
            raise ValueError(
                f"RandAugment: n={self.n} exceeds dali-aug's limit of {MAX_LAYERS} ops per "
                f"image (the paper uses 1-3); give n <= {MAX_LAYERS}"
            )
        for field in ("m", "mstd", "prob"):
            _check_number("RandAugment", field, getattr(self, field))
        if not 0.0 <= float(self.m) <= 10.0:
            raise ValueError(f"RandAugment: m={self.m} must be in [0, 10] (AutoAugment scale)")
        if self.mstd < 0:
            raise ValueError(f"RandAugment: mstd={self.mstd} must be >= 0")
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"RandAugment: prob={self.prob} must be in [0, 1]")
        _check_op_names(tuple(self.ops), "RandAugment")
        self._cache(_ids=torch.tensor([index(o) for o in self.ops]))

    @property
    def num_layers(self) -> int:
        return self.n

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> OpParams:
        ids: torch.Tensor = self._ids
        ops = ids[torch.randint(0, len(ids), (n, self.n), generator=generator)]
        levels = torch.full((n, self.n), float(self.m))
        if self.mstd > 0:
            noise = torch.randn((n, self.n), generator=generator) * self.mstd
            levels = (levels + noise).clamp(0.0, 10.0)
        if self.prob < 1.0:
            applied = torch.rand((n, self.n), generator=generator) < self.prob
            ops = torch.where(applied, ops, torch.full_like(ops, _IDENTITY))
        return _params(ops, levels, generator)

    def op_probabilities(self) -> torch.Tensor:
        return _layer_probabilities(self.n, self.ops, self.prob)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "n": self.n,
            "m": self.m,
            "mstd": self.mstd,
            "prob": self.prob,
            "ops": list(self.ops),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RandAugment:
        return cls(
            n=d["n"],
            m=d["m"],
            mstd=d.get("mstd", 0.0),
            prob=d.get("prob", 1.0),
            ops=tuple(_check_entries("RandAugment", "ops", d.get("ops", RAND_OPS))),
        )


@dataclasses.dataclass(frozen=True)
class TimmRandAugment(_Cached):
    """timm's RandAugment (``timm.data.rand_augment_transform``, the ``rand-...`` names).

    Per image, ``n`` ops are drawn uniformly with replacement from timm's 15-op set
    (:data:`~dali_aug.policies._tables.TIMM_RAND_TRANSFORMS`, or with ``increasing`` the
    ``_RAND_INCREASING_TRANSFORMS`` set); each drawn op is applied with probability ``prob``
    (timm's ``AugmentOp``: ``random() > prob`` skips it), at a magnitude drawn per
    application: ``m`` if ``mstd == 0``, ``N(m, mstd)`` if ``0 < mstd <= 100``, ``U(0, m)`` if
    ``mstd > 100`` (timm's ``mstd > 100`` -> inf), then clipped to ``[0, mmax]``. Rotate,
    ShearX/Y, TranslateX/YRel and the increasing enhance ops get a fair random sign (timm's
    ``_randomly_negate``). Sampling is vectorised over the batch, as every policy here.

    Args:
        n: ops per image (timm's ``n``, default 2).
        m: magnitude (timm's ``m``; its default is 10).
        mstd: magnitude std (timm's ``mstd``); above 100 the magnitude is uniform in [0, m].
        mmax: upper clip of the magnitude (timm's ``mmax``, default 10; at most 10 here, as
            the catalog's timm maps are defined on levels 0-10).
        prob: the probability of applying each drawn op (timm's ``p``, default 0.5).
        increasing: timm's ``inc1`` op set (severity increasing with the magnitude).
    """

    n: int = 2
    m: float = 10.0
    mstd: float = 0.0
    mmax: float = 10.0
    prob: float = 0.5
    increasing: bool = False
    kind: ClassVar[str] = "timm_rand_augment"

    def __post_init__(self) -> None:
        who = "TimmRandAugment"
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"{who}: n={self.n!r} must be an int >= 1 (ops per image)")
        if self.n > MAX_LAYERS:
            raise ValueError(
                f"{who}: n={self.n} exceeds dali-aug's limit of {MAX_LAYERS} ops per image; "
                f"give n <= {MAX_LAYERS}"
            )
        for field in ("m", "mstd", "mmax", "prob"):
            _check_number(who, field, getattr(self, field))
        if self.m < 0:
            raise ValueError(f"{who}: m={self.m} must be >= 0 (timm's 0-10 magnitude scale)")
        if self.mstd < 0:
            raise ValueError(f"{who}: mstd={self.mstd} must be >= 0")
        if not 0.0 < self.mmax <= 10.0:
            raise ValueError(
                f"{who}: mmax={self.mmax} must be in (0, 10]: the catalog's timm level maps "
                "stop at 10 (timm's mmax > 10 is not supported)"
            )
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"{who}: prob={self.prob} must be in [0, 1]")
        if not isinstance(self.increasing, bool):
            raise TypeError(f"{who}: increasing={self.increasing!r} must be a bool")
        self._cache(_ids=torch.tensor([index(o) for o in self.ops]))

    @property
    def ops(self) -> tuple[str, ...]:
        """The catalog ops of timm's op set, in timm's order."""
        table = TIMM_RAND_INCREASING_TRANSFORMS if self.increasing else TIMM_RAND_TRANSFORMS
        return tuple(op for _, op in table)

    @property
    def num_layers(self) -> int:
        return self.n

    @property
    def uniform(self) -> bool:
        """Whether the magnitude is uniform in [0, m] (timm's ``mstd > 100``)."""
        return self.mstd > TIMM_UNIFORM_MSTD

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> OpParams:
        ids: torch.Tensor = self._ids
        ops = ids[torch.randint(0, len(ids), (n, self.n), generator=generator)]
        shape = (n, self.n)
        if self.uniform:  # random.uniform(0, m)
            levels = torch.rand(shape, generator=generator, dtype=torch.float64) * self.m
        elif self.mstd > 0:  # random.gauss(m, mstd)
            noise = torch.randn(shape, generator=generator, dtype=torch.float64)
            levels = self.m + noise * self.mstd
        else:
            levels = torch.full(shape, float(self.m), dtype=torch.float64)
        levels = levels.clamp(0.0, float(self.mmax)).float()
        applied = torch.rand(shape, generator=generator) < self.prob
        ops = torch.where(applied, ops, torch.full_like(ops, _IDENTITY))
        return _params(ops, torch.where(applied, levels, 0.0), generator)

    def op_probabilities(self) -> torch.Tensor:
        return _layer_probabilities(self.n, self.ops, self.prob)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "n": self.n,
            "m": self.m,
            "mstd": self.mstd,
            "mmax": self.mmax,
            "prob": self.prob,
            "increasing": self.increasing,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimmRandAugment:
        return cls(
            n=d["n"],
            m=d["m"],
            mstd=d.get("mstd", 0.0),
            mmax=d.get("mmax", 10.0),
            prob=d.get("prob", 0.5),
            increasing=d.get("increasing", False),
        )


@dataclasses.dataclass(frozen=True)
class TrivialAugmentWide(_Cached):
    """TrivialAugmentWide: one op drawn uniformly, a level drawn uniformly from ``num_bins``
    bins over the op's wide range (:data:`~dali_aug.policies._tables.WIDE_MAX_LEVEL`)."""

    ops: tuple[str, ...] = RAND_OPS
    num_bins: int = 31
    kind: ClassVar[str] = "trivial_augment_wide"

    def __post_init__(self) -> None:
        _check_op_names(tuple(self.ops), "TrivialAugmentWide")
        if isinstance(self.num_bins, bool) or not isinstance(self.num_bins, int):
            raise TypeError(
                f"TrivialAugmentWide: num_bins={self.num_bins!r} is not an int; give a whole "
                "number of level bins >= 2 (31 in the paper)"
            )
        if self.num_bins < 2:
            raise ValueError(f"TrivialAugmentWide: num_bins={self.num_bins} must be >= 2")
        self._cache(
            _ids=torch.tensor([index(o) for o in self.ops]),
            _top=torch.tensor([WIDE_MAX_LEVEL.get(o, 10.0) for o in self.ops]),
        )

    @property
    def num_layers(self) -> int:
        return 1

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> OpParams:
        ids: torch.Tensor = self._ids
        top: torch.Tensor = self._top
        which = torch.randint(0, len(ids), (n, 1), generator=generator)
        bins = torch.randint(0, self.num_bins, (n, 1), generator=generator)
        levels = bins.float() / (self.num_bins - 1) * top[which]
        return _params(ids[which], levels, generator)

    def op_probabilities(self) -> torch.Tensor:
        out = torch.zeros((1, len(CATALOG)))
        for name in self.ops:
            out[0, index(name)] += 1.0 / len(self.ops)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "ops": list(self.ops), "num_bins": self.num_bins}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrivialAugmentWide:
        ops = _check_entries("TrivialAugmentWide", "ops", d.get("ops", RAND_OPS))
        return cls(ops=tuple(ops), num_bins=d.get("num_bins", 31))


@dataclasses.dataclass(frozen=True)
class NoAugment:
    """No op: the provenance holds zero layers."""

    kind: ClassVar[str] = "none"

    @property
    def num_layers(self) -> int:
        return 0

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> OpParams:
        ops = torch.zeros((n, 0), dtype=torch.int64)
        return OpParams(ops, ops.float(), torch.zeros((n, 0, 2)), ops.clone())

    def op_probabilities(self) -> torch.Tensor:
        return torch.zeros((0, len(CATALOG)))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NoAugment:
        return cls()


_KINDS: dict[str, Any] = {
    c.kind: c for c in (Policy, RandAugment, TimmRandAugment, TrivialAugmentWide, NoAugment)
}


def check_policy(policy: object) -> AugmentPolicy:
    """Returns ``policy`` if it is a policy object; TypeError naming the fix otherwise."""
    if isinstance(policy, str):
        raise TypeError(
            f"policy {policy!r} is a string; build the object with "
            "dali_aug.policies.parse_policy(name) or e.g. RandAugment(n=2, m=9)"
        )
    if isinstance(policy, type) or not isinstance(policy, AugmentPolicy):
        what = policy.__name__ if isinstance(policy, type) else type(policy).__name__
        raise TypeError(
            f"policy must be a policy instance (RandAugment(...), auto_augment(...), Policy(...)),"
            f" got {what}{' (a class: call it)' if isinstance(policy, type) else ''}"
        )
    return policy


def policy_from_dict(d: dict[str, Any]) -> AugmentPolicy:
    """Rebuilds any policy from its ``to_dict()`` (checkpoints, search logs)."""
    if not isinstance(d, dict) or "type" not in d:
        raise ValueError("a policy dict needs a 'type' key; produce it with policy.to_dict()")
    if d["type"] not in _KINDS:
        raise ValueError(f"unknown policy type {d['type']!r}; known: {sorted(_KINDS)}")
    return _KINDS[d["type"]].from_dict(d)  # type: ignore[no-any-return]
