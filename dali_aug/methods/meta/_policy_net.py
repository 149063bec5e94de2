"""MetaAugment's augmentation policy network (arXiv:2012.12076, section "Experimental
Results", the paragraph "In our implementation"): the task network's penultimate feature of
the augmented image (detached) and the transformation embedding, each through FC(100) +
ReLU, concatenated, FC(1), sigmoid; the weights are normalised within the batch (each
divided by the batch sum)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PolicyNet", "effective_sample_share", "normalise_weights"]


class PolicyNet(nn.Module):
    """P(f(T(x)), e(T); theta) -> a raw weight in (0, 1) per sample.

    Args:
        feature_dim: D, the width of the task network's penultimate features.
        hidden: the width of each branch (the paper: 100).
        embed_dim: the width of the transformation embedding (2K = 28).

    Shape:
        features [N, D], embedding [N, embed_dim] -> [N].
    """

    def __init__(self, feature_dim: int, *, hidden: int = 100, embed_dim: int = 28) -> None:
        super().__init__()
        for name, value in (("feature_dim", feature_dim), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PolicyNet: {name}={value!r} must be a positive int")
        self.feature_dim, self.embed_dim = feature_dim, embed_dim
        self.feature = nn.Linear(feature_dim, hidden)
        self.transform = nn.Linear(embed_dim, hidden)
        self.out = nn.Linear(2 * hidden, 1)

    def forward(self, features: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(
                f"PolicyNet: features must be [N, {self.feature_dim}], got "
                f"{tuple(features.shape)}; build the net with the task model's feature width"
            )
        if embedding.shape != (features.shape[0], self.embed_dim):
            raise ValueError(
                f"PolicyNet: embedding must be [{features.shape[0]}, {self.embed_dim}], got "
                f"{tuple(embedding.shape)}"
            )
        dtype = self.out.weight.dtype
        h = torch.cat(
            [
                torch.relu(self.feature(features.to(dtype))),
                torch.relu(self.transform(embedding.to(dtype))),
            ],
            dim=1,
        )
        return torch.sigmoid(self.out(h)).squeeze(1)


def normalise_weights(raw: torch.Tensor) -> torch.Tensor:
    """Each weight divided by the batch sum (differentiable).

    Raises:
        ValueError: a weight is NaN/inf, or they all are 0 (the message names the fix).
    """
    if not bool(torch.isfinite(raw).all()):
        raise ValueError(
            "MetaAugment: the policy network gave NaN/inf weights (non-finite task features "
            "or a diverged meta step); lower --meta-lr or --lr, or train without --amp fp16"
        )
    total = raw.sum()
    if not bool(total > 0):
        raise ValueError(
            "MetaAugment: every policy weight is 0 (a saturated sigmoid); lower --meta-lr"
        )
    return raw / total


def effective_sample_share(weights: torch.Tensor) -> torch.Tensor:
    """Kish's effective sample size of non-negative ``weights`` [N] as a share of N:
    ``(sum w)^2 / (N * sum w^2)``, in (0, 1]; 1 for equal weights, 1/N when one sample holds
    all the weight (a diagnostic: how many samples a weighted step really learns from)."""
    w = weights.detach().double()
    return (w.sum() ** 2 / (len(w) * (w * w).sum()).clamp_min(1e-300)).float()
