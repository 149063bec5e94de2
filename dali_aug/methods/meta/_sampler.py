"""MetaAugment's transformation sampler (arXiv:2012.12076, Eq. 5): a categorical over the K²
ordered function pairs, refreshed every ``s`` iterations from the mean raw policy output
``v_jk`` of each pair over the last ``r`` iterations:

    p_jk = (1 - eps) * v_jk / sum(v) + eps / K²

It starts uniform and never goes below ``eps / K²``. A pair with no recorded output in the
window gets ``v_jk`` = the mean of the recorded pairs' ``v`` (neutral: neither favoured nor
penalised); with nothing recorded at all the refresh keeps the uniform distribution.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

__all__ = ["PairSampler"]


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"PairSampler: {name}={value!r} must be a positive int")
    return int(value)


class PairSampler:
    """Samples ordered pairs ``(j, k)`` of K functions and learns their distribution.

    Args:
        num_functions: K (MetaAugment: 14).
        eps: the uniform share, in (0, 1]; 1 = uniform random pairs forever.
        history: r, the iterations whose outputs a refresh averages.
        every: s, refresh every ``every`` iterations (:meth:`step` counts them).

    Attributes:
        probs: float64 [K, K] (CPU), sums to 1, ``>= eps / K²``.
        iteration: completed iterations.
        totals: float64 [K², 2]: the sum and the count of the raw outputs of every pair over
            the whole run (for reports; the refresh uses the window only).

    Example:
        >>> s = PairSampler(eps=0.1, history=200, every=50)
        >>> first, second = s.sample(64, generator=torch.Generator().manual_seed(0))
    """

    def __init__(
        self, num_functions: int = 14, *, eps: float = 0.1, history: int = 200, every: int = 50
    ) -> None:
        self.num_functions = _positive_int("num_functions", num_functions)
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 < eps <= 1.0:
            raise ValueError(
                f"PairSampler: eps={eps!r} must be in (0, 1] (the uniform share of Eq. 5; "
                "the paper uses 0.1, 1 = uniform random pairs)"
            )
        self.eps = float(eps)
        self.history = _positive_int("history", history)
        self.every = _positive_int("every", every)
        k2 = self.num_functions**2
        self.probs = torch.full((self.num_functions,) * 2, 1.0 / k2, dtype=torch.float64)
        self._window = torch.zeros((self.history, k2, 2), dtype=torch.float64)
        self.totals = torch.zeros((k2, 2), dtype=torch.float64)
        self._slot = 0
        self.iteration = 0

    @property
    def floor(self) -> float:
        """The smallest probability a pair can get, ``eps / K²``."""
        return self.eps / self.num_functions**2

    def sample(
        self, n: int, *, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(first, second): int64 [n] function indices drawn from :attr:`probs` (CPU)."""
        if n == 0:
            empty = torch.zeros((0,), dtype=torch.int64)
            return empty, empty.clone()
        flat = torch.multinomial(self.probs.flatten(), n, replacement=True, generator=generator)
        return flat // self.num_functions, flat % self.num_functions

    def record(self, first: torch.Tensor, second: torch.Tensor, raw: torch.Tensor) -> None:
        """Adds the raw (un-normalised) policy outputs of one batch to this iteration."""
        self.record_stats(self.batch_stats(first, second, raw))

    def batch_stats(
        self, first: torch.Tensor, second: torch.Tensor, raw: torch.Tensor
    ) -> torch.Tensor:
        """float64 [K*K, 2]: per pair type, the sum of the raw outputs and the count of one
        batch (what :meth:`record` adds; summed over ranks by a distributed caller)."""
        if not (first.shape == second.shape == raw.shape) or raw.dim() != 1:
            raise ValueError(
                "PairSampler.record: first, second and raw must all be [N]; got "
                f"{tuple(first.shape)}, {tuple(second.shape)}, {tuple(raw.shape)}"
            )
        k = self.num_functions
        flat = (first * k + second).cpu()
        values = raw.detach().double().cpu()
        sums = torch.bincount(flat, weights=values, minlength=k * k)
        counts = torch.bincount(flat, minlength=k * k).double()
        return torch.stack([sums, counts], 1)

    def record_stats(self, batch: torch.Tensor) -> None:
        """Adds :meth:`batch_stats` output to this iteration."""
        batch = batch.double().cpu()
        self._window[self._slot] += batch
        self.totals += batch

    def step(self) -> None:
        """Ends an iteration: every ``every`` iterations, refreshes :attr:`probs`."""
        self.iteration += 1
        if self.iteration % self.every == 0:
            self.refresh()
        self._slot = (self._slot + 1) % self.history
        self._window[self._slot].zero_()

    def mean_outputs(self) -> torch.Tensor:
        """float64 [K, K]: v_jk over the window (NaN for pairs not recorded in it)."""
        window = self._window.sum(0)
        v = window[:, 0] / window[:, 1]
        return v.view(self.num_functions, self.num_functions)

    def refresh(self) -> None:
        """Eq. 5 from the window (the last ``min(iteration, history)`` iterations)."""
        v = self.mean_outputs().flatten()
        seen = ~torch.isnan(v)
        if not bool(seen.any()):
            return
        v = torch.where(seen, v, v[seen].mean())
        total = v.sum()
        k2 = v.numel()
        if not bool(total > 0):
            share = torch.full_like(v, 1.0 / k2)
        else:
            share = v / total
        probs = (1.0 - self.eps) * share + self.eps / k2
        self.probs = (probs / probs.sum()).view(self.num_functions, self.num_functions)

    def state_dict(self) -> dict[str, Any]:
        return {
            "probs": self.probs.clone(),
            "window": self._window.clone(),
            "totals": self.totals.clone(),
            "slot": self._slot,
            "iteration": self.iteration,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["window"].shape) != tuple(self._window.shape):
            raise ValueError(
                f"the checkpoint's sampler window {tuple(state['window'].shape)} does not "
                f"match this sampler's {tuple(self._window.shape)}; resume with the same "
                "--meta-history"
            )
        self.probs = state["probs"].double().cpu().clone()
        self._window = state["window"].double().cpu().clone()
        self.totals = state["totals"].double().cpu().clone()
        self._slot, self.iteration = int(state["slot"]), int(state["iteration"])
