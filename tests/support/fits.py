"""Synthetic distance curves for the fit and claim tests."""

from __future__ import annotations

import numpy as np


def diffusing_distances(seed, drift=0.0, n_dim=2000, total=4000, every=10, eps=0.1):
    """‖θ_B − θ_A‖ of a perturbation ε that diffuses (a Gaussian random walk in ``n_dim``
    dimensions, d² growing by ≈ 1 over ``total`` steps) and drifts by ``drift`` per ``total``
    steps: the paper's model with α = (drift / total)², β ≈ 1 / total (Sec. 4.2, Eq. 15)."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, total + 1, every, dtype=np.float64)
    steps = rng.standard_normal((t.size - 1, n_dim)) * np.sqrt(every / (n_dim * total))
    walk = np.vstack([np.zeros(n_dim), np.cumsum(steps, axis=0)])
    walk[:, 0] += eps
    walk[:, 1] += drift * t / total
    return t, np.linalg.norm(walk, axis=1)
