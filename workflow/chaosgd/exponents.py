"""Finite-time Lyapunov exponents: readout schedule, classification, summaries, subspaces.

The exponents of a tangent map Y(t) are ln σ_i(Y(t)) / t (the eigenvalues of the paper's
Lyapunov matrix Λ(t) = (1/2t) ln(Y(t)ᵀY(t)), Sec. 2); their right singular vectors are the
Lyapunov vectors. These helpers work on exponents and tables (numpy, pandas), not on the tangent
map itself (``chaosgd.tangent``, ``chaosgd.tangent_hook``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# readout methods of exact (SVD) readouts, as recorded in exponents.parquet
EXACT_METHODS = ("svd", "svd_deflated")


def readout_steps(total: int, readouts: int) -> list[int]:
    """``readouts`` steps evenly spaced over ``total``, the last one at ``total``."""
    return sorted({max(1, round(k * total / readouts)) for k in range(1, readouts + 1)})


def classify(exponents: np.ndarray, t: int, neutral_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the chaotic (λ t > tol) and non-chaotic (λ t < −tol) exponents."""
    growth = exponents * t
    return growth > neutral_tol, growth < -neutral_tol


def summary(exponents: np.ndarray, t: int, neutral_tol: float, quantiles: list[float]) -> dict:
    """One readout's row of the exponents table: λ1, λN, counts of chaotic / non-chaotic / neutral
    exponents (see :func:`classify`) and the exponents' ``quantiles`` (columns ``q<q>``).
    """
    pos, neg = classify(exponents, t, neutral_tol)
    row = {
        "lambda_1": float(exponents.max()),
        "lambda_N": float(exponents.min()),
        "n_positive": int(pos.sum()),
        "n_negative": int(neg.sum()),
        "n_neutral": int(len(exponents) - pos.sum() - neg.sum()),
    }
    for q, v in zip(quantiles, np.quantile(exponents, quantiles)):
        row[f"q{q:g}"] = float(v)
    return row


def subspace_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared cosine of the principal angles between span(a) and span(b) (orthonormal
    columns), normalized by the smaller dimension; NaN when either is empty."""
    k = min(a.shape[1], b.shape[1])
    if k == 0:
        return float("nan")
    return float(np.linalg.norm(a.T @ b) ** 2 / k)


def exact_readouts(
    exponents_df: pd.DataFrame, methods: tuple[str, ...] = EXACT_METHODS
) -> pd.DataFrame:
    """The exponent rows of the exact readouts (step, lambda_1, lambda_N), one per step."""
    missing = {"step", "method", "lambda_1", "lambda_N"} - set(exponents_df.columns)
    if missing:
        raise ValueError(f"exponents table lacks columns {sorted(missing)}")
    rows = exponents_df[exponents_df["method"].isin(methods)]
    rows = rows[["step", "lambda_1", "lambda_N"]].drop_duplicates("step", keep="last")
    return rows.sort_values("step", kind="stable").reset_index(drop=True)
