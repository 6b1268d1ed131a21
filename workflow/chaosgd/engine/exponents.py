"""Finite-time Lyapunov exponents: classification, summaries, subspaces.

The exponents of a tangent map Y(t) are ln σ_i(Y(t)) / t (the eigenvalues of the paper's
Lyapunov matrix Λ(t) = (1/2t) ln(Y(t)ᵀY(t)), Sec. 2); their right singular vectors are the
Lyapunov vectors. These helpers work on exponents and tables (numpy, pandas), not on the tangent
map itself (``chaosgd.engine.tangent_map``, ``chaosgd.runs.tangent_tracker``); when the readouts
fall is the run's schedule (``chaosgd.planning.schedule``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# readout methods of exact (SVD) readouts, as recorded in exponents.parquet
EXACT_METHODS = ("svd", "svd_deflated")
# those of the k leading exponents (chaosgd.engine.topk_tangent): lower bounds of the exact ones,
# exactly ln σ_i(Y(t)Q0)/t
TOPK_PREFIX = "topk_"
TOPK_METHODS = tuple(TOPK_PREFIX + m for m in EXACT_METHODS)


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


def random_baseline(d1: int, d2: int, n: int) -> float:
    """E‖VᵀW‖²_F / min(d1, d2) for independent uniformly random subspaces of dimensions d1, d2
    in ℝⁿ: d1·d2/n / min(d1, d2) = max(d1, d2)/n (the reference code's baseline for App. C.2)."""
    if min(d1, d2) == 0:
        return float("nan")
    return max(d1, d2) / n


def stability_row(
    ref: np.ndarray,
    ref_exponents: np.ndarray,
    ref_t: int,
    cur: np.ndarray,
    cur_exponents: np.ndarray,
    cur_t: int,
    neutral_tol: float,
    rng: np.random.Generator,
) -> dict:
    """App. C.2 as the reference code measured it: the Lyapunov basis ``ref`` (N×N, or N×k of
    the k leading vectors; columns in the order of ``ref_exponents``) fixed at t₀ = ``ref_t``
    against a later basis ``cur``. With k vectors each subspace is its part among the k (the
    chaotic subspace truncated to the k leading directions), and the random index sets are
    drawn from the k.

    For each pair (at t₀, now): chaotic–chaotic (λ > 0), edge–edge (λ ≥ 0: chaotic or neutral),
    non-chaotic–non-chaotic (λ < 0), and the cross terms chaotic–non-chaotic both ways: the
    similarity ‖VᵀW‖²_F / min(dim), its random baseline max(dim)/N, and random–random: the same
    similarity for random index sets of the same dimensions drawn from the two bases, which is
    what the value would be if the split carried no information. A subspace that stabilises
    has chaotic–chaotic well above both baselines.
    """
    n = ref.shape[0]
    pos0, neg0 = classify(ref_exponents, ref_t, neutral_tol)
    pos1, neg1 = classify(cur_exponents, cur_t, neutral_tol)
    sets0 = {"chaotic": pos0, "edge": ~neg0, "nonchaotic": neg0}
    sets1 = {"chaotic": pos1, "edge": ~neg1, "nonchaotic": neg1}
    row: dict = {"t0": int(ref_t), "step": int(cur_t)}
    for a, b in (
        ("chaotic", "chaotic"),
        ("edge", "edge"),
        ("nonchaotic", "nonchaotic"),
        ("chaotic", "nonchaotic"),
        ("nonchaotic", "chaotic"),
    ):
        m0, m1 = sets0[a], sets1[b]
        d0, d1 = int(m0.sum()), int(m1.sum())
        name = a if a == b else f"{a}_vs_{b}"
        value = subspace_similarity(ref[:, m0], cur[:, m1])
        # from the columns each basis has: all N, or the k of a top-k readout
        idx0 = rng.choice(ref.shape[1], size=d0, replace=False)
        idx1 = rng.choice(cur.shape[1], size=d1, replace=False)
        rand = subspace_similarity(ref[:, idx0], cur[:, idx1])
        row.update(
            {
                f"dim0_{name}": d0,
                f"dim_{name}": d1,
                f"similarity_{name}": value,
                f"baseline_{name}": random_baseline(d0, d1, n),
                f"random_{name}": rand,
            }
        )
    return row
