"""LB-Aug stage A: repeated stratified shuffle splits, critics, and rewards (Eqs. 2, 3, 7).

The paper splits ``D_train`` K times (default K = 8) into ``D_M`` (4/5, the critic's training
set) and ``D_A`` (1/5, the images whose augmented versions the critic scores), "K-fold
stratified shuffling". With K > 5 the splits cannot form a partition; here they are drawn in
rounds of 5: each round is a multi-label stratified 5-fold partition of a fresh shuffle, and
split k is fold ``k mod 5`` of round ``k // 5``. So for K >= 5 every sample is in some ``D_A``
(``D_A`` union = ``D_train``, as the paper's Fig. 4 discussion says for K > 6), and for K < 5
the samples in no ``D_A`` have no critic and are left out of the actor's training (counted).

Multi-label stratification follows Sechidis et al. (ECML 2011, "On the stratification of
multi-label data"), one label at a time: the label with the fewest unassigned positives first,
its unassigned samples shuffled and apportioned to the folds by the folds' remaining desired
counts of that label (largest remainder), then every fold's desired counts are lowered by the
labels of what it received; samples without any label fill the folds' remaining sizes. Then
the fold sizes are evened out and random pairs of samples are swapped between folds while that
lowers the squared deviation of the folds' label counts from their targets (the label-wise pass
balances the rare labels; the swaps even out the common ones).

Reward of sample i (Eq. 7, per instance): the mean over the critics k whose ``D_A`` holds i of
``BCE_k(x_i, y_i) - BCE_k(x_hat_i, y_i)``: positive when the augmented image is *easier* for
critics that never trained on it. BCE is the mean over labels (as the trainer's loss).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dali_aug.batch import Batch
from dali_aug.train import Trainer
from dali_aug.viz import normalize

__all__ = [
    "clean_losses",
    "critic_losses",
    "rewards",
    "shuffle_splits",
    "stratified_folds",
    "train_critic",
]

#: Folds per round of :func:`shuffle_splits` (D_A = 1/5 of the data).
FOLDS_PER_ROUND = 5


def _apportion(total: int, weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Splits ``total`` items into ``len(weights)`` integer counts proportional to the
    (non-negative) weights, by largest remainder with random tie-breaking."""
    w = weights.clamp(min=0).double()
    if float(w.sum()) <= 0:
        w = torch.ones_like(w)
    share = w / w.sum() * total
    counts = share.floor().long()
    left = total - int(counts.sum())
    if left > 0:
        noise = torch.rand(len(w), generator=generator, dtype=torch.float64) * 1e-6
        order = torch.argsort(share - counts.double() + noise, descending=True)
        counts[order[:left]] += 1
    return counts


def stratified_folds(
    labels: torch.Tensor, folds: int, *, generator: torch.Generator
) -> torch.Tensor:
    """A multi-label stratified partition of the samples into ``folds`` folds.

    Args:
        labels: multi-hot [N, C] (0/1; all-zero rows allowed).
        folds: number of folds (>= 2).
        generator: CPU generator (shuffles and tie-breaks).

    Returns:
        int64 [N], the fold of every sample; fold sizes differ by at most a few samples and
        every label's positives are spread over the folds in proportion.
    """
    if folds < 2:
        raise ValueError(f"folds={folds} must be >= 2")
    y = labels.detach().cpu() > 0.5
    n, c = y.shape
    fold = torch.full((n,), -1, dtype=torch.int64)
    size = _apportion(n, torch.ones(folds), generator).double()  # desired sizes
    desired = size.unsqueeze(1) / n * y.sum(0).double().unsqueeze(0)  # [folds, C]
    remaining = y.clone()
    for _ in range(c):
        counts = remaining.sum(0)
        if int(counts.sum()) == 0:
            break
        counts = torch.where(counts > 0, counts, torch.full_like(counts, n + 1))
        label = int(torch.argmin(counts))
        rows = torch.nonzero(remaining[:, label]).squeeze(1)
        rows = rows[torch.randperm(len(rows), generator=generator)]
        # ties between folds with the same desired count of this label: larger size first
        per_fold = _apportion(len(rows), desired[:, label] + 1e-9 * size, generator)
        assign = torch.repeat_interleave(torch.arange(folds), per_fold)
        fold[rows] = assign
        got = torch.zeros((folds, c), dtype=torch.float64)
        got.index_add_(0, assign, y[rows].double())
        desired -= got
        size -= torch.bincount(assign, minlength=folds).double()
        remaining[rows] = False
    rest = torch.nonzero(fold < 0).squeeze(1)
    if len(rest):
        rest = rest[torch.randperm(len(rest), generator=generator)]
        per_fold = _apportion(len(rest), size, generator)
        fold[rest] = torch.repeat_interleave(torch.arange(folds), per_fold)
    # the label-wise pass may overfill a fold by a few samples: move random ones to the
    # folds that lack them, then let the swaps restore the label balance
    want = _apportion(n, torch.ones(folds), generator)
    have = torch.bincount(fold, minlength=folds)
    movers = [
        members[torch.randperm(len(members), generator=generator)[: int(have[f] - want[f])]]
        for f in range(folds)
        if have[f] > want[f]
        for members in [torch.nonzero(fold == f).squeeze(1)]
    ]
    if movers:
        moved = torch.cat(movers)
        fold[moved] = torch.repeat_interleave(torch.arange(folds), (want - have).clamp(min=0))
    return _refine(fold, y.double(), folds, generator)


def _refine(
    fold: torch.Tensor, y: torch.Tensor, folds: int, generator: torch.Generator
) -> torch.Tensor:
    """Swaps pairs of samples between folds while that lowers the squared deviation of the
    folds' label counts from their targets (fold sizes stay as they are). The label-wise pass
    balances the rare labels; this evens out the common ones, whose samples were mostly placed
    by rarer labels. Each round scores a batch of random pairs and applies the best swap."""
    n = len(fold)
    fold = fold.clone()
    sizes = torch.bincount(fold, minlength=folds).double()
    target = sizes.unsqueeze(1) / n * y.sum(0).unsqueeze(0)
    excess = torch.zeros_like(target).index_add_(0, fold, y) - target  # [folds, C]
    for _ in range(_REFINE_ROUNDS):
        i = torch.randint(0, n, (_REFINE_PAIRS,), generator=generator)
        j = torch.randint(0, n, (_REFINE_PAIRS,), generator=generator)
        a, b = fold[i], fold[j]
        d = y[j] - y[i]  # what fold a gains (and b loses) by the swap
        gain = 2 * (d * (excess[a] - excess[b])).sum(1) + 2 * (d * d).sum(1)
        gain = torch.where(a == b, torch.zeros_like(gain), gain)
        best = int(torch.argmin(gain))
        if float(gain[best]) >= -1e-9:
            break
        ia, jb, fa, fb = int(i[best]), int(j[best]), int(a[best]), int(b[best])
        excess[fa] += d[best]
        excess[fb] -= d[best]
        fold[ia], fold[jb] = fb, fa
    return fold


#: Refinement budget of :func:`stratified_folds` (rounds, random pairs scored per round).
_REFINE_ROUNDS = 600
_REFINE_PAIRS = 2048


def shuffle_splits(
    labels: torch.Tensor, splits: int, *, generator: torch.Generator
) -> torch.Tensor:
    """K repeated multi-label stratified shuffle splits, D_M 4/5 and D_A 1/5.

    Args:
        labels: multi-hot [N, C].
        splits: K (>= 1).
        generator: CPU generator.

    Returns:
        bool [K, N]: row k is True on ``D_A^(k)`` (False on ``D_M^(k)``).
    """
    if splits < 1:
        raise ValueError(f"folds={splits} must be >= 1 (the paper uses 8)")
    n = labels.shape[0]
    if n < FOLDS_PER_ROUND:
        raise ValueError(f"{n} samples cannot be split 4/5 : 1/5; give at least 5 samples")
    out = torch.zeros((splits, n), dtype=torch.bool)
    for r in range(math.ceil(splits / FOLDS_PER_ROUND)):
        fold = stratified_folds(labels, FOLDS_PER_ROUND, generator=generator)
        for f in range(FOLDS_PER_ROUND):
            k = r * FOLDS_PER_ROUND + f
            if k < splits:
                out[k] = fold == f
    return out


def train_critic(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator,
    on_step: Callable[[], None] | None = None,
    shift: int = 0,
) -> nn.Module:
    """Trains one critic with BCE (the :class:`~dali_aug.train.Trainer` step, AdamW) on its
    ``D_M`` (uint8 [n, 3, H, W] images or [n, T, 3, H, W] clips on the model's device,
    multi-hot labels), in a seeded
    order; with ``shift`` > 0 every batch is translated by a random (dy, dx) in
    ``[-shift, shift]`` (edge padding: a small, label-preserving augmentation), else without
    augmentation. Returns the model in eval mode."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    trainer = Trainer(model, opt, multi_label=True)
    n = images.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(images.device)
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            x = normalize(images[idx])
            if shift > 0:  # clips: the same shift on every frame
                dy, dx = (torch.randint(0, 2 * shift + 1, (2,), generator=generator)).tolist()
                h, w = x.shape[-2:]
                flat = F.pad(x.flatten(0, -4), (shift, shift, shift, shift), mode="replicate")
                x = flat[..., dy : dy + h, dx : dx + w].reshape(x.shape)
            trainer.step(Batch(images=x, labels=labels[idx], indices=idx))
            if on_step is not None:
                on_step()
    return model.eval()


@torch.no_grad()
def critic_losses(
    critic: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 512,
    per_label: bool = False,
) -> torch.Tensor:
    """Per-sample BCE (mean over labels) of ``critic`` on uint8 images, in batches; [n]
    (with ``per_label``: every label's BCE, [n, C])."""
    out = []
    for s in range(0, images.shape[0], batch_size):
        logits = critic(normalize(images[s : s + batch_size])).float()
        y = labels[s : s + batch_size].float()
        bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        out.append(bce if per_label else bce.mean(1))
    if not out:
        shape = (0, labels.shape[1]) if per_label else (0,)
        return torch.zeros(shape, device=images.device)
    return torch.cat(out)


@torch.no_grad()
def clean_losses(
    critics: Sequence[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    held_out: torch.Tensor,
    *,
    batch_size: int = 512,
    per_label: bool = False,
) -> torch.Tensor:
    """float32 [K, N]: critic k's BCE on the clean image i where ``held_out[k, i]`` (i in
    ``D_A^(k)``), 0 elsewhere (with ``per_label``: every label's BCE, [K, N, C])."""
    k, n = held_out.shape
    shape = (k, n, labels.shape[1]) if per_label else (k, n)
    out = torch.zeros(shape, device=images.device)
    for j, critic in enumerate(critics):
        rows = torch.nonzero(held_out[j]).squeeze(1).to(images.device)
        out[j, rows] = critic_losses(
            critic, images[rows], labels[rows], batch_size=batch_size, per_label=per_label
        )
    return out


@torch.no_grad()
def rewards(
    critics: Sequence[nn.Module],
    augmented: torch.Tensor,
    labels: torch.Tensor,
    members: torch.Tensor,
    clean: torch.Tensor,
    weights: torch.Tensor,
    *,
    per_label: bool = False,
) -> torch.Tensor:
    """Eq. 7 for a batch: ``w * mean_k [BCE_k(x) - BCE_k(x_hat)]`` over the critics whose D_A
    holds each sample; 0 where the weight is 0 or no critic holds the sample.

    With ``weights`` the 0/1 "applied" draws this is the reward of Eq. 7 (0 when the op was not
    applied, ``x_hat = x``); with the apply probabilities ``p`` (and every op applied) it is its
    expectation over the apply draw, ``p * reward(applied)``.

    Args:
        critics: the K critics, eval mode, on the images' device.
        augmented: uint8 [B, 3, H, W], the augmented images (or clips [B, T, 3, H, W]).
        labels: multi-hot [B, C].
        members: bool [K, B], whether sample b is in ``D_A^(k)``.
        clean: float32 [K, B], the critics' BCE on the clean images (:func:`clean_losses`;
            [K, B, C] with ``per_label``).
        weights: bool or float [B], the applied draws or the apply probabilities.
        per_label: every label's loss change, [B, C], instead of their mean (the search's
            ``reward="label"``); the mean over labels of this is the per-sample reward.

    Returns:
        float32 [B] (``per_label``: [B, C]).
    """
    b = augmented.shape[0]
    total = torch.zeros((b, labels.shape[1]) if per_label else (b,), device=augmented.device)
    for k, critic in enumerate(critics):
        rows = torch.nonzero(members[k] & (weights > 0)).squeeze(1)
        if len(rows) == 0:
            continue
        aug = critic_losses(critic, augmented[rows], labels[rows], per_label=per_label)
        total.index_add_(0, rows, clean[k, rows] - aug)
    count = members.sum(0).clamp(min=1).to(total.dtype)
    w = weights.to(total.dtype)
    if per_label:
        return total / count[:, None] * w[:, None]
    return total / count * w
