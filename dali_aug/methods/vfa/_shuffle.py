"""The per-label shuffle of VFA (Eq. 4 of Chen et al., "Enhance via Decoupling", see
:mod:`dali_aug.methods.vfa`) and the label statistic that shows what it does (pairwise mutual
information of labels)."""

from __future__ import annotations

import torch

__all__ = ["label_mutual_information", "shuffle"]


def shuffle(
    sub: torch.Tensor, targets: torch.Tensor, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Permutes the batch independently for every label, moving each label's sub-feature and
    its target together.

    All ``C`` permutations are drawn at once (argsort of uniform noise), with no Python loop
    over labels: ``shuffled[:, j] = sub[perm[j], j]`` and
    ``shuffled_targets[:, j] = targets[perm[j], j]``.

    Args:
        sub: per-label sub-features [N, C, d].
        targets: multi-hot (or soft) targets [N, C].
        generator: the source of the permutations (on any device; the noise is moved to
            ``sub``'s device). Results are not reproducible across devices.

    Returns:
        ``(shuffled [N, C, d], shuffled_targets [N, C], perm int64 [C, N])``.

    Raises:
        ValueError: ``sub`` is not [N, C, d] or ``targets`` is not [N, C].

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> s, t, perm = shuffle(torch.randn(8, 3, 4), torch.ones(8, 3), generator=g)
        >>> perm.shape
        torch.Size([3, 8])
    """
    if sub.dim() != 3:
        raise ValueError(
            f"vfa shuffle: sub has shape {tuple(sub.shape)}; give the per-label sub-features "
            "as [N, C, d]"
        )
    n, c = sub.shape[:2]
    if targets.shape != (n, c):
        raise ValueError(
            f"vfa shuffle: targets have shape {tuple(targets.shape)} but sub "
            f"{tuple(sub.shape)}; give multi-hot targets [N, C] = [{n}, {c}]"
        )
    device = generator.device if generator is not None else sub.device
    noise = torch.rand(c, n, generator=generator, device=device)
    perm = noise.argsort(dim=1).to(sub.device)
    index = perm.t()  # [N, C]: index[i, j] = perm[j, i]
    shuffled = sub.gather(0, index[:, :, None].expand_as(sub))
    shuffled_targets = targets.gather(0, index.to(targets.device))
    return shuffled, shuffled_targets, perm


def label_mutual_information(targets: torch.Tensor, *, eps: float = 1e-12) -> torch.Tensor:
    """Pairwise mutual information (nats) between binary labels, from their empirical joint.

    Args:
        targets: multi-hot targets [N, C] (values in {0, 1}).
        eps: added inside the logarithms (empty cells contribute 0).

    Returns:
        [C, C] float64; the diagonal holds each label's entropy.

    Raises:
        ValueError: ``targets`` is not [N, C] with N >= 1.
    """
    if targets.dim() != 2 or targets.shape[0] < 1:
        raise ValueError(
            f"label_mutual_information: targets have shape {tuple(targets.shape)}; give "
            "multi-hot targets [N, C] with N >= 1"
        )
    y = (targets > 0.5).double()
    n = y.shape[0]
    p11 = y.t() @ y / n
    p1 = y.mean(0)
    p10 = p1[:, None] - p11
    p01 = p1[None, :] - p11
    p00 = 1 - p11 - p10 - p01
    joint = torch.stack([p00, p01, p10, p11])  # [4, C, C]
    q0, q1 = 1 - p1, p1
    outer = torch.stack(
        [
            q0[:, None] * q0[None],
            q0[:, None] * q1[None],
            q1[:, None] * q0[None],
            q1[:, None] * q1[None],
        ]
    )
    joint = joint.clamp_min(0)
    terms = joint * (torch.log(joint + eps) - torch.log(outer + eps))
    return terms.sum(0)
