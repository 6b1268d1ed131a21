"""Distance curves of the divergence model and Lyapunov exponent tables for the tests of the
divergence fit and of the fits stage."""

from __future__ import annotations

import numpy as np
import pandas as pd


def divergence_model(t, alpha, beta, eps):
    """d(t) = √(αt² + βt + ε²), the paper's model of the distance (Sec. 4.2, Eq. 15)."""
    return np.sqrt(alpha * t**2 + beta * t + eps**2)


def exponents_table():
    """Exact readouts at 100..400 and Benettin estimates between them (absurd on purpose)."""
    return pd.DataFrame(
        {
            "step": [50, 100, 150, 200, 300, 400],
            "method": ["benettin", "svd", "benettin", "svd", "svd_deflated", "svd"],
            "lambda_1": [9.0, 1e-3, 9.0, 1e-3, 1e-3, 1e-3],
            "lambda_N": [-9.0, -1e-3, -9.0, -1e-3, -1e-3, -1e-3],
        }
    )


def synthetic_distances():
    """An ensembles stage's distances table of the model with known α, β per curve (2 dtypes ×
    2 strategies × 2 ε, 1e-3 relative noise, shuffled rows), and that truth by curve."""
    rows = []
    truth = {}
    rng = np.random.default_rng(0)
    steps = np.arange(0, 401, 10)
    for dtype in ("float32", "float64"):
        for k, strategy in enumerate(("max_chaos", "random")):
            for eps in (0.01, 0.1):
                alpha, beta = (k + 1) * 1e-7, (k + 1) * eps * 1e-4
                truth[(dtype, strategy, eps)] = (alpha, beta)
                d = divergence_model(steps, alpha, beta, eps) * (
                    1 + 1e-3 * rng.standard_normal(steps.size)
                )
                for s, v in zip(steps, d):
                    rows.append(
                        {
                            "dtype": dtype,
                            "strategy": strategy,
                            "eps": eps,
                            "step": s,
                            "distance": v,
                            "distance_along": v / 2,
                            "loss": 1.0,
                            "acc": 0.5,
                        }
                    )
    df = pd.DataFrame(rows)
    df["step"] = df["step"].astype(np.int64)
    return df.sample(frac=1.0, random_state=0), truth  # shuffled: the stage must not rely on order
