"""Augmentation policies as validated, immutable objects.

A policy samples per-sample :class:`~dali_aug.ops.OpParams` ([N, L] op ids and signed levels)
with an explicit ``torch.Generator``; the backends apply them. Policies never parse strings
(see :func:`dali_aug.policies.parse_policy` for the command-line edge).

* :class:`Policy`: AutoAugment-style sub-policies (arXiv:1805.09501): one sub-policy drawn
  uniformly per sample, each of its ops applied with its probability. User-defined policies
  and exported learned policies (AWS) are of this type.
* :class:`RandAugment` (arXiv:1909.13719): ``n`` ops drawn uniformly, all at level ``m``
  (optionally jittered by a Gaussian of std ``mstd``, as timm's ``mstd``).
* :class:`TrivialAugmentWide` (arXiv:2103.10158): one op, a level drawn uniformly from 31
  bins over the op's wide range.
* :class:`NoAugment`: no op.

Signed ops get a random sign with probability 0.5 in every policy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from dali_aug.ops import CATALOG, OpParams, check_level, get, index, random_extras
from dali_aug.policies._tables import RAND_OPS, TABLES, WIDE_MAX_LEVEL

__all__ = [
    "AugmentPolicy",
    "NoAugment",
    "OpSpec",
    "Policy",
    "RandAugment",
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


def _random_sign(
    levels: torch.Tensor, ops: torch.Tensor, g: torch.Generator | None
) -> torch.Tensor:
    signed = torch.tensor([op.signed for op in CATALOG])[ops]
    flip = (torch.rand(levels.shape, generator=g) < 0.5) & signed
    return torch.where(flip, -levels, levels)


def _params(ops: torch.Tensor, levels: torch.Tensor, g: torch.Generator | None) -> OpParams:
    n, layers = ops.shape
    levels = _random_sign(levels.float(), ops, g)
    return OpParams(ops, levels, *random_extras(n, layers, generator=g))


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
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"OpSpec({self.op}): prob {self.prob} must be in [0, 1]")
        check_level(opdef, float(self.level))

    def __repr__(self) -> str:
        lvl = f", level={self.level:g}" if get(self.op).has_magnitude else ""
        return f"OpSpec({self.op}, p={self.prob:g}{lvl})"


@dataclasses.dataclass(frozen=True)
class Policy:
    """AutoAugment-style policy: a list of sub-policies, one drawn uniformly per sample.

    Args:
        name: a label for logs.
        sub_policies: each a tuple of :class:`OpSpec`, applied in order; sub-policies of
            different lengths are padded with Identity.

    Example:
        >>> Policy("mine", ((OpSpec("Rotate", 0.5, 9), OpSpec("Equalize", 0.8)),))
    """

    name: str
    sub_policies: tuple[tuple[OpSpec, ...], ...]
    kind: ClassVar[str] = "policy"

    def __post_init__(self) -> None:
        if not self.sub_policies:
            raise ValueError(f"Policy {self.name!r} has no sub-policies; use NoAugment() instead")
        for sub in self.sub_policies:
            if not sub or not all(isinstance(s, OpSpec) for s in sub):
                raise TypeError(
                    f"Policy {self.name!r}: every sub-policy must be a non-empty tuple of OpSpec"
                )

    @property
    def num_layers(self) -> int:
        return max(len(s) for s in self.sub_policies)

    def _table(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k, layers = len(self.sub_policies), self.num_layers
        ops = torch.full((k, layers), _IDENTITY, dtype=torch.int64)
        probs = torch.zeros((k, layers))
        levels = torch.zeros((k, layers))
        for i, sub in enumerate(self.sub_policies):
            for j, spec in enumerate(sub):
                ops[i, j], probs[i, j], levels[i, j] = index(spec.op), spec.prob, spec.level
        return ops, probs, levels

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> OpParams:
        ops, probs, levels = self._table()
        pick = torch.randint(0, len(self.sub_policies), (n,), generator=generator)
        applied = torch.rand((n, self.num_layers), generator=generator) < probs[pick]
        chosen = torch.where(applied, ops[pick], torch.full_like(ops[pick], _IDENTITY))
        return _params(chosen, torch.where(applied, levels[pick], 0.0), generator)

    def op_probabilities(self) -> torch.Tensor:
        """[L, K]: the probability that layer l applies op k (Identity gets the rest)."""
        ops, probs, _ = self._table()
        out = torch.zeros((self.num_layers, len(CATALOG)))
        for layer in range(self.num_layers):
            out[layer].index_add_(0, ops[:, layer], probs[:, layer] / len(self.sub_policies))
            out[layer, _IDENTITY] += 1.0 - out[layer].sum()
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "name": self.name,
            "sub_policies": [
                [{"op": s.op, "prob": s.prob, "level": s.level} for s in sub]
                for sub in self.sub_policies
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Policy:
        subs = tuple(tuple(OpSpec(**s) for s in sub) for sub in d["sub_policies"])
        return cls(name=d.get("name", "custom"), sub_policies=subs)

    def __repr__(self) -> str:
        return f"Policy({self.name!r}, {len(self.sub_policies)} sub-policies)"


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
class RandAugment:
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
        if not 0.0 <= float(self.m) <= 10.0:
            raise ValueError(f"RandAugment: m={self.m} must be in [0, 10] (AutoAugment scale)")
        if self.mstd < 0:
            raise ValueError(f"RandAugment: mstd={self.mstd} must be >= 0")
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"RandAugment: prob={self.prob} must be in [0, 1]")
        _check_op_names(tuple(self.ops), "RandAugment")

    @property
    def num_layers(self) -> int:
        return self.n

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> OpParams:
        ids = torch.tensor([index(o) for o in self.ops])
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
        out = torch.zeros((self.n, len(CATALOG)))
        for name in self.ops:
            out[:, index(name)] += self.prob / len(self.ops)
        out[:, _IDENTITY] += 1.0 - self.prob
        return out

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
            ops=tuple(d.get("ops", RAND_OPS)),
        )


@dataclasses.dataclass(frozen=True)
class TrivialAugmentWide:
    """TrivialAugmentWide: one op drawn uniformly, a level drawn uniformly from ``num_bins``
    bins over the op's wide range (:data:`~dali_aug.policies._tables.WIDE_MAX_LEVEL`)."""

    ops: tuple[str, ...] = RAND_OPS
    num_bins: int = 31
    kind: ClassVar[str] = "trivial_augment_wide"

    def __post_init__(self) -> None:
        _check_op_names(tuple(self.ops), "TrivialAugmentWide")
        if self.num_bins < 2:
            raise ValueError(f"TrivialAugmentWide: num_bins={self.num_bins} must be >= 2")

    @property
    def num_layers(self) -> int:
        return 1

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> OpParams:
        ids = torch.tensor([index(o) for o in self.ops])
        top = torch.tensor([WIDE_MAX_LEVEL.get(o, 10.0) for o in self.ops])
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
        return cls(ops=tuple(d.get("ops", RAND_OPS)), num_bins=d.get("num_bins", 31))


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


_KINDS: dict[str, Any] = {c.kind: c for c in (Policy, RandAugment, TrivialAugmentWide, NoAugment)}


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
