"""Tests for dali_aug.ops._dali's host side: ``host_inputs`` feeds dense batch arrays (batch
first) to ``external_source(batch=True)``, the numbers of ``resolve`` exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dali_aug.ops import Family, resolve
from dali_aug.policies import RandAugment, auto_augment

pytest.importorskip("nvidia.dali")

from dali_aug.ops._dali import NUM_LAYER_INPUTS, host_inputs  # noqa: E402


@pytest.mark.parametrize("policy", [auto_augment("imagenet"), RandAugment(n=3, m=7, mstd=0.5)])
def test_host_inputs_are_dense_batches_of_the_resolved_numbers(policy: object) -> None:
    params = policy.sample(9, generator=torch.Generator().manual_seed(0))  # type: ignore[attr-defined]
    arrays = host_inputs(params, 20, 24)
    assert len(arrays) == NUM_LAYER_INPUTS * params.num_layers
    shapes = [(9,), (9,), (9, 2, 3), (9, 2), (9, 2), (9,), (9,)]
    dtypes = [np.int32, np.float32, np.float32, np.float32, np.float32, np.uint8, np.int32]
    for layer in range(params.num_layers):
        fam, value, matrix, anchor, shape, mask, partner = arrays[
            NUM_LAYER_INPUTS * layer : NUM_LAYER_INPUTS * (layer + 1)
        ]
        for a, s, d in zip(
            (fam, value, matrix, anchor, shape, mask, partner), shapes, dtypes, strict=True
        ):
            assert isinstance(a, np.ndarray) and a.shape == s and a.dtype == d
            assert a.flags.c_contiguous
        r = resolve(
            params.op_ids[:, layer],
            params.levels[:, layer],
            params.centers[:, layer],
            params.partners[:, layer],
            20,
            24,
        )
        assert np.array_equal(fam, r.family.numpy().astype(np.int32))
        assert value.tobytes() == r.value.numpy().tobytes()
        assert matrix.tobytes() == r.matrix.numpy().tobytes()
        assert np.array_equal(anchor, r.box[:, :2].numpy())
        assert np.array_equal(shape, (r.box[:, 2:] - r.box[:, :2]).numpy())
        pairing = r.family.numpy() == int(Family.SAMPLE_PAIRING)
        assert np.array_equal(partner[~pairing], np.arange(9)[~pairing])
