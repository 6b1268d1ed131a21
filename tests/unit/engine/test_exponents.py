"""Finite-time Lyapunov exponents' helpers: subspace stability against fixed reference times
with random baselines (App. C.2)."""

from __future__ import annotations

import numpy as np
import pytest

from chaosgd.engine import exponents


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


def test_subspace_similarity():
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(10, 4)))
    assert exponents.subspace_similarity(q, q) == pytest.approx(1.0)
    assert exponents.subspace_similarity(q[:, :2], q) == pytest.approx(1.0)  # contained
    assert exponents.subspace_similarity(q[:, :2], q[:, 2:]) == pytest.approx(0.0, abs=1e-15)
    assert np.isnan(exponents.subspace_similarity(q[:, :0], q))
