"""The claims on the finite-time Lyapunov spectrum of SGD runs (Sec. 4.2, App. C.1, C.2).

5. Sec. 4.2, App. C.1: the finite-time exponents start above 0 and approach it. λ1 is ≥ 0 almost
   by construction (directions no Hessian touched keep σ = 1), so "above 0" means
   λ1(t)·t > ``POSITIVE_MARGIN`` × neutral_tol at every exact readout from the first (lower
   end); "approach 0": the slope of ln λ1 against ln t over the readouts after the first is
   below 0 with its 95 % interval, for every seed.
9. Sec. 4.2, App. C.2: the chaotic Lyapunov subspace stabilises: for the latest reference time
   t₀ with later readouts, the similarity of the chaotic subspaces at t₀ and later exceeds both
   of its baselines (random subspaces of its dimensions; random index sets of the same bases) by
   ``SUBSPACE_MARGIN`` (0.1) at every later readout (lower end).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from chaosgd.analysis.claims.results import SUBSPACE_COLUMNS, SUBSPACE_SIMILARITIES, Results
from chaosgd.analysis.claims.verdicts import (
    LOW,
    Claim,
    fmt_values,
    mean_ci,
    measured_claim,
    not_run_claim,
)
from chaosgd.engine.exponents import exact_readouts
from chaosgd.planning.config import schema_default

POSITIVE_MARGIN = 100.0  # λ1·t above this many neutral_tol: more than an untouched direction
# the Lyapunov stage's default (config lyapunov.neutral_tol), from the schema: the two cannot drift
NEUTRAL_TOL = schema_default("lyapunov", "neutral_tol")
SUBSPACE_MARGIN = 0.1  # chaotic-subspace similarity above both baselines by this much


def loglog_slope(t, lam) -> tuple[float, float, int]:
    """Least-squares slope of ln λ against ln t, the upper end of its 95 % interval (Student t,
    n − 2 degrees of freedom) and the number of points; NaN where a λ is not > 0 or fewer than 3
    points leave no uncertainty to estimate."""
    t, lam = np.asarray(t, dtype=float), np.asarray(lam, dtype=float)
    n = int(t.size)
    if n < 3 or not (lam > 0).all() or np.unique(t).size < 2:
        return math.nan, math.nan, n
    fit = stats.linregress(np.log(t), np.log(lam))
    return float(fit.slope), float(fit.slope + stats.t.ppf(0.975, n - 2) * fit.stderr), n


def claim_exponents(
    res: Results, lyapunov: dict[str, list[str]], neutral_tol: float = NEUTRAL_TOL
) -> list[Claim]:
    """Claim 5 (Sec. 4.2, App. C.1): finite-time Lyapunov exponents start > 0 and approach 0.

    SGD runs of the Lyapunov stage, exact readouts. Above 0: λ1(t)·t > ``POSITIVE_MARGIN`` ×
    ``neutral_tol`` at every readout (lower end over seeds): λ1 ≥ 0 holds almost by
    construction, since the directions no Hessian touched keep σ = 1, so a bare λ1 > 0 would
    test nothing. Approaching 0: the slope of ln λ1 against ln t over the readouts after the
    first, below 0 with its 95 % interval, for every seed.
    """
    margin = POSITIVE_MARGIN * neutral_tol
    rows = []
    for exp, runs in lyapunov.items():
        runs = [r for r in runs if res.settings(r)["variant"] == "sgd"]
        if not runs:
            continue
        stretch, slopes, uppers, counts, ratios, firsts = [], [], [], [], [], []
        for r in runs:
            e = res.table(
                "lyapunov",
                r,
                "exponents",
                ["step", "method", "lambda_1", "lambda_N"],
                finite=["step", "lambda_1", "lambda_N"],
            )
            path = e.attrs["path"]
            e = exact_readouts(e)
            if e.empty:
                raise ValueError(f"{path}: no exact (SVD) readout; delete it and rerun")
            t = e["step"].to_numpy(dtype=float)
            lam = e["lambda_1"].to_numpy(dtype=float)
            stretch.append(float((lam * t).min()))
            firsts.append(f"step {int(t[0])}: λ1·t = {lam[0] * t[0]:.3g}")
            slope, upper, n = loglog_slope(t[1:], lam[1:])
            slopes.append(slope)
            uppers.append(upper)
            counts.append(n)
            ratios.append(float(lam[-1] / lam[1:].max()) if len(lam) > 1 else math.nan)
        st = mean_ci(stretch)
        rows.append(
            measured_claim(
                claim=5,
                statement=(
                    "the finite-time Lyapunov exponents start above 0 and stay above it "
                    "(Sec. 4.2, App. C.1)"
                ),
                experiment=exp,
                quantity="smallest λ1(t)·t = ln σ1 over the exact readouts",
                stat=st,
                ok=st.low > margin,
                threshold=f"{LOW} > {margin:.3g} ({POSITIVE_MARGIN:g} × neutral_tol)",
                criterion=(
                    f"λ1·t at every readout, {LOW} > {POSITIVE_MARGIN:g} × neutral_tol "
                    f"({neutral_tol:g}): more than the untouched directions' 0"
                ),
                detail="first readout: " + "; ".join(firsts),
            )
        )
        statement = (
            "the finite-time Lyapunov exponents approach 0 over training (Sec. 4.2, App. C.1)"
        )
        quantity = "slope of ln λ1 against ln t, readouts after the first"
        threshold = "95 % interval of each seed's slope < 0"
        criterion = (
            "least-squares slope of ln λ1 on ln t over the exact readouts after the first; the "
            "upper end of its 95 % interval below 0 for every seed"
        )
        if min(counts) < 3:
            rows.append(
                not_run_claim(
                    claim=5,
                    statement=statement,
                    quantity=quantity,
                    threshold=threshold,
                    criterion=criterion,
                    why=(
                        f"{min(counts) + 1} exact readouts; the slope's uncertainty needs 4 or "
                        "more (lyapunov.readouts, lyapunov.early_readouts)"
                    ),
                    experiment=exp,
                )
            )
            continue
        st = mean_ci(slopes)
        rows.append(
            measured_claim(
                claim=5,
                statement=statement,
                experiment=exp,
                quantity=quantity,
                stat=st,
                ok=all(np.isfinite(u) and u < 0 for u in uppers),
                threshold=threshold,
                criterion=criterion,
                detail=(
                    f"upper ends of the slopes' intervals: {fmt_values(uppers)}; λ1 at the "
                    f"last readout over its largest after the first: {fmt_values(ratios)}"
                ),
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=5,
                statement="finite-time exponents start > 0 and approach 0 (App. C.1)",
                quantity="λ1 over training",
                threshold=f"{LOW} > {POSITIVE_MARGIN:g} × neutral_tol; slope < 0",
                criterion="see claim 5 in the module docstring",
                why="no SGD run has a tangent map (lyapunov.runs)",
            )
        )
    return rows


def claim_subspaces(res: Results, lyapunov: dict[str, list[str]]) -> list[Claim]:
    """Claim 9 (Sec. 4.2, App. C.2): the chaotic Lyapunov subspace stabilises.

    SGD runs of the Lyapunov stage. For the latest reference time t₀ with later readouts, the
    chaotic–chaotic similarity minus the larger of its two baselines (random subspaces of the
    same dimensions, max(d₀, d)/N; random index sets of the same two bases), at its smallest
    over the later readouts: above ``SUBSPACE_MARGIN`` (lower end over seeds). An empty chaotic
    subspace has no similarity (NaN) and supports nothing.
    """
    statement = "the chaotic Lyapunov subspace stabilises towards the end (Sec. 4.2, App. C.2)"
    quantity = "similarity of the chaotic subspaces at t₀ and later, minus the larger baseline"
    threshold = f"{LOW} ≥ {SUBSPACE_MARGIN:g}"
    criterion = (
        "latest t₀ with later readouts: the smallest excess over them of ‖V₀ᵀV‖²/min(dim) above "
        f"max(baseline, random index sets), {LOW} ≥ {SUBSPACE_MARGIN}"
    )
    rows = []
    for exp, runs in lyapunov.items():
        runs = [r for r in runs if res.settings(r)["variant"] == "sgd"]
        if not runs:
            continue
        excess, details = [], []
        for r in runs:
            s = res.table(
                "lyapunov",
                r,
                "subspaces",
                SUBSPACE_COLUMNS + SUBSPACE_SIMILARITIES,
                finite=SUBSPACE_COLUMNS,
                numeric=SUBSPACE_SIMILARITIES,
                nonempty=False,
            )
            s = s[s["step"] > s["t0"]]
            if s.empty:
                excess = []
                break
            t0 = int(s["t0"].max())
            late = s[s["t0"] == t0].sort_values("step")
            base = np.maximum(late["baseline_chaotic"], late["random_chaotic"])
            # numpy, not pandas: an empty subspace's NaN must fail, not be skipped
            gap = (late["similarity_chaotic"] - base).to_numpy(dtype=float)
            excess.append(float(gap.min()) if np.isfinite(gap).all() else math.nan)
            details.append(
                f"t₀ = {t0}: steps {late['step'].iloc[0]}–{late['step'].iloc[-1]}, similarity "
                f"{fmt_values(late['similarity_chaotic'])} against baselines {fmt_values(base)} "
                f"(chaotic dimension {int(late['dim0_chaotic'].iloc[0])} at t₀)"
            )
        if not excess:
            rows.append(
                not_run_claim(
                    claim=9,
                    statement=statement,
                    quantity=quantity,
                    threshold=threshold,
                    criterion=criterion,
                    why="no exact readout after a reference time t₀ (lyapunov.anchors, readouts)",
                    experiment=exp,
                )
            )
            continue
        st = mean_ci(excess)
        rows.append(
            measured_claim(
                claim=9,
                statement=statement,
                experiment=exp,
                quantity=quantity,
                stat=st,
                ok=st.low >= SUBSPACE_MARGIN,
                threshold=threshold,
                criterion=criterion,
                detail="; ".join(details),
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=9,
                statement=statement,
                quantity=quantity,
                threshold=threshold,
                criterion=criterion,
                why="no SGD run has a tangent map (lyapunov.runs)",
            )
        )
    return rows
