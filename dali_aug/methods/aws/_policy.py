"""The AWS policy: a normalized-sigmoid distribution over element pairs, exported as a
weighted :class:`~dali_aug.policies.Policy` that the DALI Loader runs.

``p_theta(k) = sigmoid(theta_k) / sum_j sigmoid(theta_j)`` over the K = n**2 ordered pairs of
``n`` elements (arXiv:2009.14737, Sec. 3.4); theta = 0 is the uniform distribution.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from dali_aug.methods.aws._space import AWS_ELEMENTS, Element, check_elements, pair_of
from dali_aug.policies import OpSpec, Policy

__all__ = ["PairPolicy", "check_theta", "pair_probs"]


def pair_probs(theta: torch.Tensor) -> torch.Tensor:
    """The normalized sigmoid ``sigmoid(theta) / sum(sigmoid(theta))`` (differentiable)."""
    s = torch.sigmoid(theta)
    return s / s.sum()


def check_theta(theta: Any, k: int) -> torch.Tensor:
    """``theta`` as a float32 [k] tensor; ValueError/TypeError naming the fix otherwise."""
    if isinstance(theta, (list, tuple)):
        theta = torch.tensor(theta, dtype=torch.float64)
    if not isinstance(theta, torch.Tensor):
        raise TypeError(
            f"AWS theta must be a tensor or a list of {k} numbers, got {type(theta).__name__}"
        )
    if theta.dim() != 1 or theta.numel() != k:
        raise ValueError(
            f"AWS theta has shape {tuple(theta.shape)} but the search space has {k} pairs "
            f"({math.isqrt(k)} elements squared); give one logit per pair, or search again "
            "with the same elements"
        )
    if not torch.isfinite(theta).all():
        raise ValueError(
            "AWS theta contains NaN/inf; the search diverged or the file is corrupt: rerun "
            "the search (a lower --policy-lr) or use an earlier policy.json"
        )
    return theta.detach().to(torch.float32).clone()


class PairPolicy(nn.Module):
    """The learned distribution over element pairs.

    Args:
        theta: [K] logits, K = len(elements)**2 (default: zeros, the uniform distribution).
        elements: the search space (default: the paper's 36 :data:`AWS_ELEMENTS`).

    Example:
        >>> policy = PairPolicy()
        >>> policy.probs().sum()  # 1, uniform 1/1296 each
        >>> loader.set_policy(policy.to_policy())
    """

    def __init__(
        self, theta: torch.Tensor | None = None, elements: tuple[Element, ...] = AWS_ELEMENTS
    ) -> None:
        super().__init__()
        self.elements = check_elements(elements)
        k = len(self.elements) ** 2
        start = torch.zeros(k) if theta is None else check_theta(theta, k)
        self.theta = nn.Parameter(start)

    @property
    def num_elements(self) -> int:
        return len(self.elements)

    @property
    def num_pairs(self) -> int:
        return len(self.elements) ** 2

    def probs(self) -> torch.Tensor:
        """[K] pair probabilities (differentiable in theta)."""
        return pair_probs(self.theta)

    def matrix(self) -> torch.Tensor:
        """[n, n] detached pair probabilities: row = first element, column = second."""
        n = self.num_elements
        return self.probs().detach().reshape(n, n)

    def entropy(self) -> float:
        """The entropy of p_theta in nats (log K when uniform)."""
        p = self.probs().detach().double()
        return float(-(p * p.clamp_min(1e-300).log()).sum())

    def marginals(self) -> torch.Tensor:
        """float64 [n]: the probability that a drawn pair contains each element (first,
        second or both)."""
        m = self.matrix().double()
        return m.sum(1) + m.sum(0) - m.diagonal()

    def marginal(self, element: int) -> float:
        """The probability that a drawn pair contains ``element`` (first or second)."""
        return float(self.marginals()[element])

    def top_pairs(self, n: int = 5) -> list[dict[str, Any]]:
        """The ``n`` most probable pairs: ``{"pair": [a, b], "prob": p}`` with element names."""
        p = self.probs().detach()
        values, idx = p.topk(min(n, p.numel()))
        first, second = pair_of(idx, self.num_elements)
        return [
            {"pair": [self.elements[a].name, self.elements[b].name], "prob": float(v)}
            for a, b, v in zip(first.tolist(), second.tolist(), values.tolist(), strict=True)
        ]

    def to_policy(self, name: str = "aws") -> Policy:
        """The dataset-level policy: one pair drawn per sample from :meth:`probs`, both of
        its elements applied (probability 1, in order; signed ops take a random sign)."""
        specs = [OpSpec(e.op, 1.0, e.level) for e in self.elements]
        subs = tuple((a, b) for a in specs for b in specs)  # k = a * n + b
        weights = tuple(self.probs().detach().double().tolist())
        return Policy(name=name, sub_policies=subs, weights=weights)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the elements and theta (``from_dict`` inverts it)."""
        return {
            "type": "aws_pairs",
            "elements": [{"op": e.op, "level": e.level} for e in self.elements],
            "theta": self.theta.detach().tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairPolicy:
        """Rebuilds a :class:`PairPolicy` from :meth:`to_dict` (ValueError naming the fix)."""
        if not isinstance(d, dict) or d.get("type") != "aws_pairs":
            raise ValueError(
                "not an AWS pair policy (needs 'type': 'aws_pairs'); pass the 'aws' entry of "
                "policy.json written by `dali-aug search aws`"
            )
        try:
            elements = tuple(Element(e["op"], float(e.get("level", 0.0))) for e in d["elements"])
        except (KeyError, TypeError) as err:
            raise ValueError(
                f"AWS policy: bad 'elements' entry ({err}); each element is "
                '{"op": NAME, "level": LEVEL}'
            ) from None
        except ValueError as err:
            raise ValueError(f"AWS policy: {err}") from None
        if "theta" not in d:
            raise ValueError("AWS policy: no 'theta'; give one logit per pair")
        return cls(check_theta(d["theta"], len(elements) ** 2), elements)
