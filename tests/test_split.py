"""Held-out splits of the training set (dali_aug.datasets.holdout / stratified_holdout /
subset): stratified, seeded, disjoint, and clear errors when a class would be left empty."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dali_aug.datasets import holdout, make_shapes, stratified_holdout, subset
from dali_aug.sources import ArraySource, open_source


def test_single_label_holdout_is_stratified_seeded_and_disjoint() -> None:
    targets = torch.tensor([0] * 50 + [1] * 100 + [2] * 150)[torch.randperm(300)]
    keep, val = stratified_holdout(targets, 0.1, seed=3)
    assert torch.bincount(targets[val]).tolist() == [5, 10, 15]
    assert len(keep) + len(val) == 300
    assert not set(keep.tolist()) & set(val.tolist())
    again = stratified_holdout(targets, 0.1, seed=3)
    assert torch.equal(again[1], val)
    assert not torch.equal(stratified_holdout(targets, 0.1, seed=4)[1], val)


def test_multi_label_holdout_holds_every_label() -> None:
    g = torch.Generator().manual_seed(0)
    targets = (torch.rand(400, 6, generator=g) < 0.3).float()
    keep, val = stratified_holdout(targets, 0.05, seed=1)
    assert len(val) == 20 and len(keep) == 380
    assert (targets[val].sum(0) > 0).all()


def test_holdout_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="no validation sample"):
        stratified_holdout(torch.tensor([0] * 100 + [1] * 10), 0.02, seed=0)
    with pytest.raises(ValueError, match="no training sample"):
        stratified_holdout(torch.tensor([0] * 100 + [1]), 0.6, seed=0)
    rare = torch.zeros(100, 2)
    rare[:, 0], rare[0, 1] = 1.0, 1.0
    with pytest.raises(ValueError, match=r"label\(s\) \[1\] with no held-out positive"):
        stratified_holdout(rare, 0.05, seed=0)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
        stratified_holdout(torch.zeros(4, dtype=torch.long), 0.0, seed=0)


def test_subset_of_folder_and_array_sources(tmp_path: Path) -> None:
    folder = open_source(make_shapes(tmp_path / "s", 40, seed=2, size=32))
    train, held = holdout(folder, 0.25, seed=0)
    assert len(train) + len(held) == 40 and len(held) == 12  # round(2.5) = 3 per class
    assert set(train.paths).isdisjoint(held.paths) and held.classes == folder.classes
    assert torch.equal(held.targets, folder.targets[[folder.paths.index(p) for p in held.paths]])
    x = np.arange(8 * 4 * 4 * 3, dtype=np.uint8).reshape(8, 4, 4, 3)
    arrays = ArraySource.from_arrays(x, np.array([0, 1] * 4))
    part = subset(arrays, torch.tensor([1, 3]))
    assert isinstance(part, ArraySource)
    assert np.array_equal(part.images, x[[1, 3]]) and part.targets.tolist() == [1, 1]
