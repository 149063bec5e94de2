"""MetaAugment's mechanism on data it was not written for (benchmarks/meta/NOTES.md,
'Mechanism: the planted destroyer'): a planted label-destroying TranslateX
(benchmarks.meta.planted: the class is which half holds the object x its shape), on a seed not
used in development. Slow: a few hundred CPU steps."""

from __future__ import annotations

import pytest

from benchmarks.meta.planted import run

SEED = 11  # development used seed 0


@pytest.mark.slow
def test_the_destroying_function_gets_low_weight_and_low_probability() -> None:
    r = run(seed=SEED, steps=300, mode="exact", every=50, history=100)
    # pairs containing TranslateX end with a clearly lower mean weight than the others
    assert r["window_mean_weight_destroyer_pairs"] < r["window_mean_weight_other_pairs"] - 0.02
    # the sampler moves mass away from them, but never below eps / K^2
    assert r["prob_destroyer_pairs_mean"] < r["uniform"]
    assert r["prob_destroyer_pairs_min"] >= r["floor"] - 1e-12
    # within TranslateX, the final policy's weight falls with the magnitude
    probe = r["probe_weight_by_magnitude"]
    assert sum(probe[7:]) / 3 < sum(probe[:3]) / 3
