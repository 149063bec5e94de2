"""Held-out splits of a training set (for bilevel methods and policy searches): a fixed,
seeded, stratified fraction of the *training* data, never the evaluation set."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from dali_aug.sources import ArraySource, FolderSource, Source

__all__ = ["holdout", "stratified_holdout", "subset"]


def stratified_holdout(
    targets: torch.Tensor, fraction: float, *, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held-out) sample indices, both sorted int64.

    Single-label ``targets`` [N]: ``round(fraction * n_c)`` samples of every class ``c``
    (drawn with a generator seeded by ``seed``). Multi-hot ``targets`` [N, C]: a seeded random
    ``round(fraction * N)`` samples, checked to hold a positive of every label that has one.

    Raises:
        ValueError: ``fraction`` outside (0, 1), or a class (label) left with no held-out or
            no kept sample; the message names it and the fix.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction={fraction} must be in (0, 1), e.g. 0.02")
    g = torch.Generator().manual_seed(seed)
    n = int(targets.shape[0])
    if targets.dim() == 1:
        order = torch.randperm(n, generator=g)
        labels = targets[order]
        # rank of each sample within its class in the random order
        by_class = torch.argsort(labels, stable=True)
        counts = torch.bincount(labels, minlength=1)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty(n, dtype=torch.int64)
        rank[by_class] = torch.arange(n) - starts[labels[by_class]]
        take = torch.floor(counts.double() * fraction + 0.5).long()
        held = rank < take[labels]
        none_held = [c for c in range(len(counts)) if counts[c] > 0 and take[c] == 0]
        none_kept = [c for c in range(len(counts)) if counts[c] > 0 and take[c] == counts[c]]
        if none_held:
            raise ValueError(
                f"holding out {fraction:.3g} of the training set leaves class(es) {none_held} "
                "with no validation sample (too few samples per class); raise the fraction "
                "(e.g. --val-fraction 0.1) or add data"
            )
        if none_kept:
            raise ValueError(
                f"holding out {fraction:.3g} of the training set leaves class(es) {none_kept} "
                "with no training sample; lower the fraction or add data"
            )
        val, keep = order[held], order[~held]
    else:
        order = torch.randperm(n, generator=g)
        k = math.floor(fraction * n + 0.5)
        val, keep = order[:k], order[k:]
        present = targets.sum(0) > 0
        empty = (present & (targets[val].sum(0) == 0)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(
                f"holding out {fraction:.3g} of the training set ({k} samples) leaves label(s) "
                f"{empty} with no held-out positive; raise the fraction (e.g. --val-fraction "
                "0.1) or add data"
            )
    return keep.sort().values, val.sort().values


def subset(source: Source, indices: torch.Tensor) -> Source:
    """The samples ``indices`` of ``source`` as a source of the same kind (same classes)."""
    idx = indices.long()
    if isinstance(source, ArraySource):
        return dataclasses.replace(
            source, images=source.images[idx.numpy()], targets=source.targets[idx]
        )
    if not isinstance(source, FolderSource):
        raise ValueError(
            f"a subset (held-out split) of a {type(source).__name__} is not supported; hold "
            "out from the image folder and pack each part (`dali-aug pack`), or use the folder"
        )
    paths = tuple(np.asarray(source.paths, dtype=object)[idx.numpy()].tolist())
    return dataclasses.replace(source, paths=paths, targets=source.targets[idx])


def holdout(source: Source, fraction: float, *, seed: int) -> tuple[Source, Source]:
    """(training part, held-out part) of ``source``: :func:`stratified_holdout` applied."""
    keep, val = stratified_holdout(source.targets, fraction, seed=seed)
    return subset(source, keep), subset(source, val)
