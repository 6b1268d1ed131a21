"""Fits stage: the divergence model d(t) = √(αt² + βt + ε²) and the Lyapunov bounds (Fig. 3b).

For every perturbed member of the ensembles stage (one curve per dtype × strategy × ε):

* :func:`fit_divergence` fits the paper's model of the distance to the reference,
  d(t)² = αt² + βt + ε², by linear least squares on d² − ε² (as the reference code fits d²).
  α = ‖w1 − w2‖² (drift) and β = 2Dσ² (diffusion) are non-negative in the model, so by default
  the fit is constrained to α, β ≥ 0 (``scipy.optimize.lsq_linear``): an unconstrained fit of a
  curve the model cannot follow (a perturbation that first shrinks, along the convergent
  direction) returns a negative "variance" or "drift" that has no meaning, while the
  constrained one stays inside the model and lets R² say how poorly it fits. ``constrained``
  in the output says which was used.
* :func:`bounds` checks e^{λN(t)t}ε ≤ d(t) ≤ e^{λ1(t)t}ε at the steps where the Lyapunov stage
  read the spectrum out exactly, and reports the fraction of those steps where each holds.

Writes ``fits.parquet`` (one row per dtype × strategy × ε) and, optionally, ``bounds.parquet``
(long: the distance and both bounds at every exact-readout step).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import lsq_linear

from chaosgd.exponents import EXACT_METHODS, exact_readouts
from chaosgd.io import read_parquet, write_parquet

__all__ = [
    "FitResult",
    "fit_divergence",
    "BoundsResult",
    "bounds",
    "fit_table",
    "main",
]

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
    """

    alpha: float
    beta: float
    r2: float
    r2_squared: float
    residuals: np.ndarray = field(repr=False)
    n: int = 0
    constrained: bool = True

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


def fit_divergence(t, d, eps: float, nonnegative: bool = True) -> FitResult:
    """Fit d(t) = √(αt² + βt + ε²) by least squares on d² − ε² = αt² + βt.

    ``t`` (steps) and ``d`` (distances) are 1-D and of equal length; ``eps`` is the nominal
    perturbation size (d(0) ≈ ε; a float32 member's d(0) differs by its rounding). With
    ``nonnegative`` (default) α, β ≥ 0 is imposed (see the module docstring). Raises
    ``ValueError`` for fewer than 3 points, fewer than 2 distinct non-zero times (α and β not
    identifiable), non-finite input, negative distances or ε.
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
    return FitResult(
        alpha=alpha,
        beta=beta,
        r2=_r2(d, fit_d),
        r2_squared=_r2(d**2, fit_sq),
        residuals=d - fit_d,
        n=int(t.size),
        constrained=bool(nonnegative),
    )


@dataclass(frozen=True)
class BoundsResult:
    """Distances against e^{λN t}ε and e^{λ1 t}ε at the exact-readout steps.

    table: columns step, distance, lower, upper (one row per step with both a distance and an
        exact readout).
    lower_holds / upper_holds: fraction of those steps with lower ≤ d / d ≤ upper (NaN if none).
    n: number of such steps.
    """

    table: pd.DataFrame
    lower_holds: float
    upper_holds: float
    n: int


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
    return BoundsResult(out, lower_holds, upper_holds, n)


def fit_table(
    distances: pd.DataFrame, exponents: pd.DataFrame | None = None, nonnegative: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit every (dtype, strategy, eps) curve; with ``exponents``, check the bounds too.

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
            "r2": fit.r2,
            "r2_squared": fit.r2_squared,
            "n": fit.n,
            "constrained": fit.constrained,
            "final_distance": float(curve["distance"].iloc[-1]),
            "lower_bound_holds": float("nan"),
            "upper_bound_holds": float("nan"),
            "bound_steps": 0,
        }
        if exponents is not None:
            b = bounds(curve, exponents, eps)
            row.update(
                lower_bound_holds=b.lower_holds, upper_bound_holds=b.upper_holds, bound_steps=b.n
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


def main(argv: list[str] | None = None) -> int:
    """Fit every distance curve and check the Lyapunov bounds from the command line.

    Returns the exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.fits",
        description="Fit d(t) = sqrt(alpha t^2 + beta t + eps^2) to every ensemble member's distance "
        "curve and check the Lyapunov bounds exp(lambda_N t) eps <= d(t) <= exp(lambda_1 t) eps.",
    )
    parser.add_argument(
        "--distances", required=True, help="results/ensembles/<run>/distances.parquet"
    )
    parser.add_argument(
        "--exponents", required=True, help="results/lyapunov/<run>/exponents.parquet"
    )
    parser.add_argument("--out-fits", required=True, help="output: fits.parquet")
    parser.add_argument("--out-bounds", default=None, help="output: bounds.parquet (optional)")
    parser.add_argument(
        "--unconstrained",
        action="store_true",
        help="fit alpha and beta without the alpha, beta >= 0 constraint",
    )
    args = parser.parse_args(argv)
    try:
        distances = read_parquet(args.distances)
        exponents = read_parquet(args.exponents)
        fits, bounds_df = fit_table(distances, exponents, nonnegative=not args.unconstrained)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.out_bounds:
        write_parquet(bounds_df, args.out_bounds)
    write_parquet(fits, args.out_fits)
    unchecked = int((fits["bound_steps"] == 0).sum())
    if unchecked:
        print(
            f"warning: {unchecked} curves share no step with an exact readout; their bounds are NaN",
            file=sys.stderr,
        )
    print(f"{len(fits)} curves fitted; median R^2 {fits['r2'].median():.4f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
