"""The divergence model d(t) = √(αt² + βt + ε²) of Sec. 4.2 (Eq. 15, Fig. 3b) and the Lyapunov
bounds e^{λN t}ε ≤ d(t) ≤ e^{λ1 t}ε (Eq. 5, App. C.5), for the distance curves of the
perturbed ensembles (one per dtype × strategy × ε):

* :func:`fit_divergence` fits the paper's model of the distance to the reference,
  d(t)² = αt² + βt + ε², by linear least squares on d² − ε² (as the reference code fits d²).
  α = ‖w1 − w2‖² (drift) and β = 2Dσ² (diffusion) are non-negative in the model, so by default
  the fit is constrained to α, β ≥ 0 (``scipy.optimize.lsq_linear``): an unconstrained fit of a
  curve the model cannot follow (a perturbation that first shrinks, along the convergent
  direction) returns a negative "variance" or "drift" that has no meaning, while the
  constrained one stays inside the model and lets R² say how poorly it fits. ``constrained``
  in the output says which was used.
* ``alpha_se`` / ``beta_se``: the standard errors of α and β under the model's own noise. The
  residuals of d² are treated as a random walk (the diffusion behind β, App. A.10) plus
  independent scatter, with both variances estimated from the residuals' increments (their
  mean square and lag-1 autocovariance). Ordinary least-squares errors, which take the
  residuals as independent, are far too small for a diffusing curve: fitted to 20 synthetic
  random walks (α = 0), α came out more than 2 such errors above 0 in 8 of them, which would
  pass diffusion off as the paper's linear divergence (Sec. 4.2, Eq. 15); with these errors in
  none (tests/unit/analysis/test_divergence_fit.py).
* :func:`bounds` checks e^{λN(t)t}ε ≤ d(t) ≤ e^{λ1(t)t}ε at the steps where the Lyapunov stage
  read the spectrum out exactly, reports the fraction of those steps where each holds, and each
  bound's worst margin in log units (``upper_margin`` = min ln(e^{λ1 t}ε / d), ``lower_margin``
  = min ln(d / e^{λN t}ε); ≥ 0 where the bound holds throughout) and ``lower_log_max`` = the
  largest λN t: a lower bound e^{λN t}ε far below ε (λN t ≪ 0) holds without saying anything.
* :func:`upper_bound_steps` checks the upper bound d(t) ≤ e^{λ1(t)t}ε at every recorded
  distance step t ≥ 1, with λ1(t) from the Lyapunov stage's per-step ``lambda1.parquet`` (the
  paper draws the bound at every step, Fig. 3b): ``upper_margin_steps`` = min ln(e^{λ1 t}ε / d)
  over those steps, ``upper_steps`` their number. The lower bound needs λN, which is read out
  at the exact readouts only.

:func:`fit_table` does both for every curve of an ensembles stage's distances: one row per
dtype × strategy × ε (α, β and their standard errors, R², the bounds' fractions and margins),
and the long table of the distance and both bounds at every exact-readout step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

from chaosgd.engine.exponents import EXACT_METHODS, exact_readouts

__all__ = [
    "GROUP",
    "FitResult",
    "fit_divergence",
    "BoundsResult",
    "bounds",
    "upper_bound_steps",
    "fit_table",
]

# what names one distance curve in the ensembles stage's distances table
GROUP = ["dtype", "strategy", "eps"]


@dataclass(frozen=True)
class FitResult:
    """Least-squares fit of d(t)² = αt² + βt + ε².

    alpha, beta: the coefficients (per step², per step).
    r2: coefficient of determination of the fitted d(t) = √(αt² + βt + ε²) against d.
    r2_squared: the same for d² (the quantity fitted).
    residuals: d − fitted d, one per point.
    n: number of points.
    constrained: whether α, β ≥ 0 was imposed.
    alpha_se, beta_se: standard errors of α and β under the random-walk-plus-scatter model of the
        residuals (see the module docstring and :func:`_standard_errors`).
    """

    alpha: float
    beta: float
    r2: float
    r2_squared: float
    residuals: np.ndarray = field(repr=False)
    n: int = 0
    constrained: bool = True
    alpha_se: float = math.nan
    beta_se: float = math.nan

    def predict(self, t: np.ndarray, eps: float) -> np.ndarray:
        """The fitted distance √(αt² + βt + ε²) at steps ``t`` (clipped at 0 under the root)."""
        t = np.asarray(t, dtype=np.float64)
        return np.sqrt(np.maximum(self.alpha * t**2 + self.beta * t + eps**2, 0.0))


def _r2(y: np.ndarray, fit: np.ndarray) -> float:
    """1 − SS_res/SS_tot; NaN for a constant target (nothing to explain)."""
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((y - fit) ** 2)) / ss_tot


def _standard_errors(tau: np.ndarray, design: np.ndarray, residuals: np.ndarray) -> np.ndarray:
    """Standard errors of the least-squares coefficients of ``design`` when the ``residuals``
    (at the times ``tau``, ascending) are a random walk plus independent scatter.

    The model Cov(r_i, r_j) = q·(min(τ_i, τ_j) − τ_0) + s·[i = j]; with e_k = r_k − r_{k−1} and
    Δτ_k = τ_k − τ_{k−1}: E e_k² = q Δτ_k + 2s and E e_k e_{k−1} = −s, which give s and q
    (clipped at 0). For the linear estimator with rows p of the pseudo-inverse,
    Var = q Σ_k Δτ_k (Σ_{i≥k} p_i)² + s Σ_i p_i², scaled by n/(n − 2) for the two fitted
    coefficients. Zero residuals give zero errors.
    """
    n = residuals.size
    e, dtau = np.diff(residuals), np.diff(tau)
    scatter = max(0.0, -float(np.mean(e[1:] * e[:-1]))) if e.size > 1 else 0.0
    walk = max(0.0, (float(np.sum(e**2)) - 2.0 * scatter * e.size) / float(np.sum(dtau)))
    pinv = np.linalg.pinv(design).T  # n × 2
    # tails[k] = Σ_{i≥k} p_i, for the increments k = 1..n-1
    tails = np.cumsum(pinv[::-1], axis=0)[::-1][1:]
    var = walk * (dtau[:, None] * tails**2).sum(axis=0) + scatter * (pinv**2).sum(axis=0)
    return np.sqrt(var * n / max(n - 2, 1))


def fit_divergence(t, d, eps: float, nonnegative: bool = True) -> FitResult:
    """Fit d(t) = √(αt² + βt + ε²) by least squares on d² − ε² = αt² + βt.

    ``t`` (steps) and ``d`` (distances) are 1-D and of equal length; ``eps`` is the nominal
    perturbation size (d(0) ≈ ε; a float32 member's d(0) differs by its rounding). With
    ``nonnegative`` (default) α, β ≥ 0 is imposed (see the module docstring). Raises
    ``ValueError`` for fewer than 3 points, fewer than 2 distinct non-zero times (α and β not
    identifiable), non-finite input, negative distances or ε. The points may come in any
    order; the residuals are returned in that order.
    """
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    eps = float(eps)
    if t.shape != d.shape:
        raise ValueError(f"t and d differ in length: {t.size} vs {d.size}")
    if t.size < 3:
        raise ValueError(f"fit_divergence needs at least 3 points, got {t.size}")
    if not (np.isfinite(t).all() and np.isfinite(d).all() and np.isfinite(eps)):
        raise ValueError("fit_divergence: non-finite t, d or eps")
    if (d < 0).any() or eps < 0:
        raise ValueError("fit_divergence: distances and eps must be non-negative")
    if np.unique(t[t != 0]).size < 2:
        raise ValueError(
            "fit_divergence needs at least 2 distinct non-zero times to separate alpha and beta"
        )
    # columns scaled to O(1) (t reaches ~4e4, t² ~1e9): the solver's tolerances are relative
    scale = float(np.abs(t).max())
    tau = t / scale
    design = np.column_stack([tau**2, tau])
    target = d**2 - eps**2
    if nonnegative:
        sol = lsq_linear(design, target, bounds=(0.0, np.inf), method="bvls", tol=1e-12)
        coef = sol.x
    else:
        coef = np.linalg.lstsq(design, target, rcond=None)[0]
    alpha, beta = float(coef[0] / scale**2), float(coef[1] / scale)
    fit_sq = alpha * t**2 + beta * t + eps**2
    fit_d = np.sqrt(np.maximum(fit_sq, 0.0))
    # the noise model is a walk along t: its increments need the points in time order
    order = np.argsort(t, kind="stable")
    se = _standard_errors(tau[order], design[order], (target - design @ coef)[order])
    return FitResult(
        alpha=alpha,
        beta=beta,
        r2=_r2(d, fit_d),
        r2_squared=_r2(d**2, fit_sq),
        residuals=d - fit_d,
        n=int(t.size),
        constrained=bool(nonnegative),
        alpha_se=float(se[0] / scale**2),
        beta_se=float(se[1] / scale),
    )


@dataclass(frozen=True)
class BoundsResult:
    """Distances against e^{λN t}ε and e^{λ1 t}ε at the exact-readout steps.

    table: columns step, distance, lower, upper (one row per step with both a distance and an
        exact readout).
    lower_holds / upper_holds: fraction of those steps with lower ≤ d / d ≤ upper (NaN if none).
    n: number of such steps.
    upper_margin: the smallest ln(e^{λ1 t}ε / d) over those steps (< 0 where the upper bound
        fails; NaN if none).
    lower_margin: the smallest ln(d / e^{λN t}ε) (< 0 where the lower bound fails; NaN if none).
    lower_log_max: the largest λN t, ln of the lower bound's largest share of ε: far below 0,
        the lower bound is close to 0 at every step and holds without telling anything.
    """

    table: pd.DataFrame
    lower_holds: float
    upper_holds: float
    n: int
    upper_margin: float = math.nan
    lower_margin: float = math.nan
    lower_log_max: float = math.nan


def bounds(
    distances_df: pd.DataFrame,
    exponents_df: pd.DataFrame,
    eps: float,
    methods: tuple[str, ...] = EXACT_METHODS,
) -> BoundsResult:
    """Check e^{λN(t)t}ε ≤ d(t) ≤ e^{λ1(t)t}ε for one distance curve.

    ``distances_df`` holds one curve (columns ``step``, ``distance``); ``exponents_df`` is the
    Lyapunov stage's ``exponents.parquet``. Only the exact readouts (``method`` in ``methods``,
    default :data:`EXACT_METHODS`) are used: the ``benettin`` rows are QR-diagonal estimates
    whose exponents are off by O(1/t), an O(1) error in λt, i.e. a constant factor in the bound,
    which is the size of the effect checked here; they are ignored. Steps are matched exactly,
    so a thinned distance record (``record_every``) must include the readout steps to be
    checked there. The comparison is strict (no tolerance).
    """
    missing = {"step", "distance"} - set(distances_df.columns)
    if missing:
        raise ValueError(f"distances table lacks columns {sorted(missing)}")
    eps = float(eps)
    exact = exact_readouts(exponents_df, methods)
    table = distances_df[["step", "distance"]].merge(exact, on="step", how="inner")
    table = table.sort_values("step", kind="stable").reset_index(drop=True)
    t = table["step"].to_numpy(dtype=np.float64)
    d = table["distance"].to_numpy(dtype=np.float64)
    with np.errstate(over="ignore"):  # an infinite upper bound is a true statement
        lower = np.exp(table["lambda_N"].to_numpy() * t) * eps
        upper = np.exp(table["lambda_1"].to_numpy() * t) * eps
    out = pd.DataFrame(
        {"step": table["step"].astype(np.int64), "distance": d, "lower": lower, "upper": upper}
    )
    n = len(out)
    lower_holds = float(np.mean(lower <= d)) if n else float("nan")
    upper_holds = float(np.mean(d <= upper)) if n else float("nan")
    if not n:
        return BoundsResult(out, lower_holds, upper_holds, n)
    # in logs, from λt itself: the bounds' exponentials over- and underflow long before λt does
    lam1_t = table["lambda_1"].to_numpy() * t
    lamn_t = table["lambda_N"].to_numpy() * t
    with np.errstate(divide="ignore", invalid="ignore"):
        log_eps, log_d = np.log(eps), np.log(d)
        upper_gap = lam1_t + log_eps - log_d
        lower_gap = log_d - (lamn_t + log_eps)
    # NaN only from d = 0 = ε (an unperturbed member): both bounds hold with equality
    upper_gap, lower_gap = np.nan_to_num(upper_gap, nan=0.0), np.nan_to_num(lower_gap, nan=0.0)
    return BoundsResult(
        out,
        lower_holds,
        upper_holds,
        n,
        upper_margin=float(upper_gap.min()),
        lower_margin=float(lower_gap.min()),
        lower_log_max=float(lamn_t.max()),
    )


def upper_bound_steps(
    distances_df: pd.DataFrame, lambda1_df: pd.DataFrame, eps: float
) -> tuple[float, int]:
    """(min ln(e^{λ1(t)t}ε / d(t)), number of steps) over the curve's steps t ≥ 1 that
    ``lambda1_df`` (the Lyapunov stage's ``lambda1.parquet``: step, lambda_1) has; (NaN, 0) for
    none. < 0 where the distance rises above the upper bound anywhere, also between the exact
    readouts. Computed in logs from λ1 t = ln σ1(Y(t)), as :func:`bounds` does."""
    missing = {"step", "distance"} - set(distances_df.columns)
    if missing:
        raise ValueError(f"distances table lacks columns {sorted(missing)}")
    if {"step", "lambda_1"} - set(lambda1_df.columns):
        raise ValueError("lambda1 table lacks columns step, lambda_1")
    table = distances_df.loc[distances_df["step"] >= 1, ["step", "distance"]].merge(
        lambda1_df[["step", "lambda_1"]], on="step", how="inner"
    )
    if table.empty:
        return math.nan, 0
    t = table["step"].to_numpy(dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = table["lambda_1"].to_numpy() * t + np.log(float(eps)) - np.log(table["distance"])
    # NaN only from d = 0 = ε (an unperturbed member): the bound holds with equality
    gap = np.nan_to_num(np.asarray(gap, dtype=np.float64), nan=0.0)
    return float(gap.min()), int(len(table))


def fit_table(
    distances: pd.DataFrame,
    exponents: pd.DataFrame | None = None,
    nonnegative: bool = True,
    lambda1: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit every (dtype, strategy, eps) curve; with ``exponents``, check the bounds at the exact
    readouts too, and with ``lambda1`` (per-step λ1) the upper bound at every recorded step.

    Returns ``fits`` (one row per curve) and ``bounds`` (long; empty without exponents).
    """
    missing = set(GROUP + ["step", "distance"]) - set(distances.columns)
    if missing:
        raise ValueError(f"distances table lacks columns {sorted(missing)}")
    if distances.empty:
        raise ValueError("distances table is empty")
    rows, long = [], []
    for (dtype, strategy, eps), curve in distances.groupby(GROUP, sort=True):
        curve = curve.sort_values("step", kind="stable")
        try:
            fit = fit_divergence(
                curve["step"].to_numpy(), curve["distance"].to_numpy(), eps, nonnegative
            )
        except ValueError as exc:
            raise ValueError(f"{dtype} {strategy} eps={eps:g}: {exc}") from None
        row = {
            "dtype": str(dtype),
            "strategy": str(strategy),
            "eps": float(eps),
            "alpha": fit.alpha,
            "beta": fit.beta,
            "alpha_se": fit.alpha_se,
            "beta_se": fit.beta_se,
            "r2": fit.r2,
            "r2_squared": fit.r2_squared,
            "n": fit.n,
            "constrained": fit.constrained,
            "final_distance": float(curve["distance"].iloc[-1]),
            "lower_bound_holds": float("nan"),
            "upper_bound_holds": float("nan"),
            "bound_steps": 0,
            "upper_margin": float("nan"),
            "lower_margin": float("nan"),
            "lower_log_max": float("nan"),
            "upper_margin_steps": float("nan"),
            "upper_steps": 0,
        }
        if lambda1 is not None:
            margin, count = upper_bound_steps(curve, lambda1, eps)
            row.update(upper_margin_steps=margin, upper_steps=count)
        if exponents is not None:
            b = bounds(curve, exponents, eps)
            row.update(
                lower_bound_holds=b.lower_holds,
                upper_bound_holds=b.upper_holds,
                bound_steps=b.n,
                upper_margin=b.upper_margin,
                lower_margin=b.lower_margin,
                lower_log_max=b.lower_log_max,
            )
            tab = b.table
            tab.insert(0, "eps", float(eps))
            tab.insert(0, "strategy", str(strategy))
            tab.insert(0, "dtype", str(dtype))
            long.append(tab)
        rows.append(row)
    fits = pd.DataFrame(rows)
    fits["n"] = fits["n"].astype(np.int64)
    fits["bound_steps"] = fits["bound_steps"].astype(np.int64)
    fits["upper_steps"] = fits["upper_steps"].astype(np.int64)
    columns = {
        "dtype": str,
        "strategy": str,
        "eps": np.float64,
        "step": np.int64,
        "distance": np.float64,
        "lower": np.float64,
        "upper": np.float64,
    }
    if long:
        bounds_df = pd.concat(long, ignore_index=True)
    else:
        bounds_df = pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    return fits, bounds_df
