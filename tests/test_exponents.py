"""Finite-time Lyapunov exponents' helpers: readout schedule (App. C.1), subspace stability
against fixed reference times with random baselines (App. C.2)."""

from __future__ import annotations

import numpy as np
import pytest

from chaosgd import exponents


def test_readout_schedule_resolves_the_start():
    even = exponents.readout_steps(36480, 10)
    assert even[0] == 3648 and even[-1] == 36480 and len(even) == 10
    steps = exponents.readout_steps(36480, 10, early=6, anchors=(10, 10_000, 99_999))
    assert steps[0] == 1 and set(even) < set(steps)
    early = [s for s in steps if s < 3648]
    assert len(early) >= 6 and 10 in steps and 10_000 in steps and 99_999 not in steps
    ratios = np.diff(np.log(early[:6]))
    assert np.all(ratios > 0)  # log-spaced, increasing
    assert exponents.readout_steps(5, 10) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        exponents.readout_steps(0, 3)


def test_anchor_steps_are_clipped_to_the_run():
    assert exponents.anchor_steps([10, 10_000], 912) == [10, 912]
    assert exponents.anchor_steps([10, 10_000], 36480) == [10, 10_000]
    assert exponents.anchor_steps([0, 5, 5], 3) == [1, 3]


def _orthonormal(rng, n, k):
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return q


def test_random_baseline_is_the_mean_for_random_subspaces():
    rng = np.random.default_rng(0)
    n, d1, d2 = 60, 10, 20
    sims = [
        exponents.subspace_similarity(_orthonormal(rng, n, d1), _orthonormal(rng, n, d2))
        for _ in range(400)
    ]
    stderr = np.std(sims) / np.sqrt(len(sims))
    assert abs(np.mean(sims) - exponents.random_baseline(d1, d2, n)) < 4 * stderr
    assert exponents.random_baseline(d1, d2, n) == pytest.approx(20 / 60)
    assert np.isnan(exponents.random_baseline(0, 5, n))


def test_stability_row_separates_a_stable_split_from_an_unrelated_one():
    rng = np.random.default_rng(1)
    n = 80
    basis = _orthonormal(rng, n, n)
    lam = np.concatenate([np.full(20, 0.01), np.full(5, 0.0), np.full(55, -0.01)])
    same = exponents.stability_row(basis, lam, 10, basis, lam, 100, 1e-8, rng)
    assert same["dim0_chaotic"] == same["dim_chaotic"] == 20
    assert same["dim_edge"] == 25 and same["dim_nonchaotic"] == 55
    assert same["similarity_chaotic"] == pytest.approx(1.0)
    assert same["similarity_nonchaotic"] == pytest.approx(1.0)
    assert same["similarity_chaotic_vs_nonchaotic"] == pytest.approx(0.0, abs=1e-12)
    assert same["baseline_chaotic"] == pytest.approx(20 / 80)
    # a basis unrelated to the first: every similarity sits near its random baseline
    other = _orthonormal(rng, n, n)
    far = exponents.stability_row(basis, lam, 10, other, lam, 100, 1e-8, rng)
    assert abs(far["similarity_chaotic"] - far["baseline_chaotic"]) < 0.15
    assert far["similarity_chaotic"] < 0.5 < same["similarity_chaotic"]
    assert abs(far["random_chaotic"] - far["baseline_chaotic"]) < 0.15
