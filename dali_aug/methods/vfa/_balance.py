"""Per-label sample weights that make label j independent of the other labels (ours, not the
paper's): the weights of ``VFAConfig(bin_balance="propensity")`` for the binary heads h_j.

Why: h_j on z_j is what makes the decoupled sub-feature of label j carry label j (Eq. 3).
When j co-occurs with a strongly signalled label k, the cheapest way for h_j to predict j is
k's evidence; the sub-feature of j then codes k, and the per-label shuffle moves k's evidence
together with j's label, so it decorrelates the labels but not the evidence. Weighting h_j's
loss by an inverse propensity removes that shortcut: in the weighted data, j is independent
of the others, so only j's own evidence predicts it.

The propensity of label j given the others is a naive-Bayes estimate from running counts of
the training targets (Laplace-smoothed); the weight of sample i for label j is
``P(y_j = y_ij) / P_NB(y_j = y_ij | y_i,-j)``, clipped to ``[1/clip, clip]`` and normalised
to mean 1 over the batch per label.
"""

from __future__ import annotations

import torch

__all__ = ["LabelCounts"]


class LabelCounts:
    """Running label counts of the training targets and the propensity weights they give.

    Args:
        num_labels: C.
        device: where the counts live.
    """

    def __init__(self, num_labels: int, device: torch.device | str | None = None) -> None:
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.single = torch.zeros(num_labels, dtype=torch.float64, device=device)
        self.pair = torch.zeros(num_labels, num_labels, dtype=torch.float64, device=device)

    def update(self, targets: torch.Tensor) -> None:
        """Adds a batch of multi-hot targets [N, C] (values in {0, 1})."""
        y = targets.detach().to(self.pair.dtype)
        self.total += y.shape[0]
        self.single += y.sum(0)
        self.pair += y.t() @ y

    def weights(self, targets: torch.Tensor, *, clip: float) -> torch.Tensor:
        """[N, C] float32 weights (see the module docstring) of ``targets`` [N, C] under the
        counts so far (call :meth:`update` with the batch first)."""
        y = targets.detach().to(self.pair.dtype)
        n, ones = self.total, self.single
        # p1[j, k] = P(y_k = 1 | y_j = 1), p0[j, k] = P(y_k = 1 | y_j = 0), smoothed
        p1 = (self.pair + 1) / (ones[:, None] + 2)
        p0 = (ones[None, :] - self.pair + 1) / (n - ones[:, None] + 2)
        l1 = p1.log() - p0.log()
        l0 = torch.log1p(-p1) - torch.log1p(-p0)
        l1.fill_diagonal_(0.0)
        l0.fill_diagonal_(0.0)
        marginal = (ones + 1) / (n + 2)
        logit = torch.log(marginal / (1 - marginal)) + y @ l1.t() + (1 - y) @ l0.t()
        q = torch.sigmoid(logit)  # P_NB(y_j = 1 | the other labels of sample i)
        propensity = torch.where(y > 0, q, 1 - q)
        prior = torch.where(y > 0, marginal, 1 - marginal)
        w = (prior / propensity.clamp_min(1e-12)).clamp(1.0 / clip, clip)
        return (w / w.mean(0, keepdim=True)).float()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "total": self.total.clone(),
            "single": self.single.clone(),
            "pair": self.pair.clone(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("total", "single", "pair"):
            getattr(self, name).copy_(state[name])
