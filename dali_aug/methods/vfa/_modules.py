"""The trainable VFA modules (feature decoupling, per-label VAEs and binary classifiers,
aggregation) with grouped weights: every per-label layer after the first is one tensor with
a leading label axis, applied to all labels in one matmul, with no Python loop over labels;
the first is a dense matmul over all labels, its weight in chunks (below).

Layout: per-label activations are [C, N, k] (label-major, so each grouped layer is one
``baddbmm``); the first decoupling layer D -> C * h is a dense matmul whose weight is stored
in chunks of whole labels, at most :data:`CHUNK_NUMEL` weights each (one chunk for small C).

Why chunks: at C = 80, D = 512, h = 256 that weight has 10.5 M entries (42 MB), and its
gradient is a fresh 42 MB tensor every step. On the CPU, glibc serves allocations above
32 MB with ``mmap`` and returns them on free, so every step pays the page faults of a new
42 MB block; chunks of <= 4 MB are reused from the heap. On a 2-core CPU (1 thread, batch 32;
forward, backward and an SGD step of that layer alone): 154 ms as one tensor, 76 ms as 10
chunks. The Python loop is over the chunks: 10 at C = 80 with D = 512
and h = 256, but one per label once D * h >= 2^20 (e.g. D = 2048 with h = 512). CUDA's
caching allocator has no such cost, so there the chunks only add small matmuls and a
concatenation (not measured on a GPU). The checkpoint holds the chunks, so a
checkpoint written with another chunking (or before it) is refused with a clear error.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CHUNK_NUMEL", "VFAModules", "VFAOutputs"]

#: The most weights per chunk of the first decoupling layer (whole labels per chunk; a label
#: larger than this gets a chunk of its own).
CHUNK_NUMEL = 1 << 20


@dataclasses.dataclass(frozen=True)
class VFAOutputs:
    """One pass of the per-label part, label-major.

    Attributes:
        sub: the decoupled sub-features v^j = f_j(v) [C, N, d].
        mu: VAE means [C, N, D_z].
        logvar: VAE log-variances log sigma^2 [C, N, D_z].
        z: reparameterised latents mu + sigma * eps [C, N, D_z].
        decoded: decoded sub-features d_j(z_j) [C, N, d].
        bin_logits: logits of the binary classifiers h_j(z_j) [C, N].
    """

    sub: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    decoded: torch.Tensor
    bin_logits: torch.Tensor


def _uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator) -> nn.Parameter:
    """nn.Linear's default initialisation (U(-1/sqrt(fan_in), 1/sqrt(fan_in))) for weights
    and biases, drawn from ``generator``."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound, generator=generator))


class VFAModules(nn.Module):
    """f_j, e_j, d_j, h_j for all C labels (grouped) and the aggregation g.

    Args:
        num_labels: C.
        feature_dim: D, the width of the model's penultimate features.
        sub_dim: d, the width of each sub-feature.
        latent_dim: D_z, the width of each VAE latent.
        hidden: the hidden width of each f_j and of g.
        seed: seeds the initialisation.

    Shape:
        :meth:`decouple`: v [N, D] -> :class:`VFAOutputs`; :meth:`aggregate`:
        [N, C, d] -> [N, D].
    """

    def __init__(
        self,
        num_labels: int,
        feature_dim: int,
        *,
        sub_dim: int,
        latent_dim: int,
        hidden: int,
        seed: int = 0,
    ) -> None:
        super().__init__()
        c, dd, d, dz, h = num_labels, feature_dim, sub_dim, latent_dim, hidden
        self.num_labels, self.feature_dim = c, dd
        self.sub_dim, self.latent_dim, self.hidden = d, dz, h
        g = torch.Generator().manual_seed(seed)
        # f_j layer 1, all labels as one dense [D, C*h] matmul, its weight [D, C, h] stored
        # as chunks of whole labels (module docstring)
        per_chunk = max(1, CHUNK_NUMEL // (dd * h))
        full = _uniform((dd, c, h), dd, g).data
        self.f1_weights = nn.ParameterList(
            [nn.Parameter(chunk.clone()) for chunk in full.split(per_chunk, dim=1)]
        )
        self.f1_bias = _uniform((c, h), dd, g)
        self.f2_weight = _uniform((c, h, d), h, g)
        self.f2_bias = _uniform((c, 1, d), h, g)
        # e_j: d -> (mu, log sigma^2), d_j: D_z -> d, h_j: D_z -> 1
        self.enc_weight = _uniform((c, d, 2 * dz), d, g)
        self.enc_bias = _uniform((c, 1, 2 * dz), d, g)
        self.dec_weight = _uniform((c, dz, d), dz, g)
        self.dec_bias = _uniform((c, 1, d), dz, g)
        self.bin_weight = _uniform((c, dz, 1), dz, g)
        self.bin_bias = _uniform((c, 1, 1), dz, g)
        # g: C*d -> hidden -> D
        self.g1_weight = _uniform((c * d, h), c * d, g)
        self.g1_bias = _uniform((h,), c * d, g)
        self.g2_weight = _uniform((h, dd), h, g)
        self.g2_bias = _uniform((dd,), h, g)

    def decouple(self, v: torch.Tensor, *, generator: torch.Generator | None) -> VFAOutputs:
        """f_j, e_j, the reparameterisation, d_j and h_j for every label at once.

        Args:
            v: backbone features [N, D].
            generator: the source of the VAE noise eps (moved to ``v``'s device).
        """
        n = v.shape[0]
        c, h, dz = self.num_labels, self.hidden, self.latent_dim
        bias = self.f1_bias.view(-1)
        chunks, start = [], 0
        for w in self.f1_weights:
            width = w.shape[1] * h
            chunks.append(torch.addmm(bias[start : start + width], v, w.view(self.feature_dim, -1)))
            start += width
        hid = chunks[0] if len(chunks) == 1 else torch.cat(chunks, 1)
        hid = F.relu(hid).view(n, c, h).transpose(0, 1)  # [C, N, h]
        sub = torch.baddbmm(self.f2_bias, hid, self.f2_weight)  # [C, N, d]
        stats = torch.baddbmm(self.enc_bias, sub, self.enc_weight)
        mu, logvar = stats[..., :dz], stats[..., dz:]
        device = generator.device if generator is not None else v.device
        eps = torch.randn(mu.shape, generator=generator, device=device).to(v.device, mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        decoded = torch.baddbmm(self.dec_bias, z, self.dec_weight)
        bin_logits = torch.baddbmm(self.bin_bias, z, self.bin_weight).squeeze(-1)  # [C, N]
        return VFAOutputs(sub, mu, logvar, z, decoded, bin_logits)

    def first_layer_weight(self) -> torch.Tensor:
        """The first decoupling layer's weight [D, C, h] in one tensor (a copy when it is
        stored in more than one chunk)."""
        if len(self.f1_weights) == 1:
            return self.f1_weights[0]
        return torch.cat(list(self.f1_weights), 1)

    def aggregate(self, parts: torch.Tensor) -> torch.Tensor:
        """g: the concatenated sub-features [N, C, d] back to the feature space [N, D]."""
        x = parts.reshape(parts.shape[0], -1)
        return torch.addmm(
            self.g2_bias, F.relu(torch.addmm(self.g1_bias, x, self.g1_weight)), self.g2_weight
        )
