"""Fits stage: the divergence model d(t) = √(αt² + βt + ε²) and the Lyapunov bounds (Fig. 3b).

Reads an ensembles stage's ``distances.parquet`` and the Lyapunov stage's ``exponents.parquet``
and ``lambda1.parquet`` of the same reference run; fits every perturbed member's distance curve
(one per dtype × strategy × ε), checks e^{λN(t)t}ε ≤ d(t) ≤ e^{λ1(t)t}ε at the exact readouts
and d(t) ≤ e^{λ1(t)t}ε at every recorded step (λ1 is recorded per step, λN only at the
readouts), as :mod:`chaosgd.analysis.divergence_fit` describes (by default α, β ≥ 0;
``--unconstrained`` fits without).

Writes ``fits.parquet`` (one row per dtype × strategy × ε: α, β and their standard errors, R²,
the bounds' fractions and margins, ``upper_margin_steps`` and ``upper_steps`` for the upper
bound at every step) and, optionally, ``bounds.parquet``
(long: the distance and both bounds at every exact-readout step).
"""

from __future__ import annotations

import argparse
import sys

from chaosgd.analysis.divergence_fit import GROUP, fit_table
from chaosgd.runs.artifacts import UnreadableFile, explain, read_parquet, write_parquet


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
    parser.add_argument(
        "--lambda1",
        default=None,
        help="results/lyapunov/<run>/lambda1.parquet: the upper bound at every recorded step",
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
        # a fit or a bound over NaN or inf (a diverged ensemble or tangent map) means nothing
        distances = read_parquet(
            args.distances,
            require=GROUP,
            finite=["eps", "step", "distance"],
            nonempty=True,
        )
        exponents = read_parquet(
            args.exponents,
            require=["method"],
            finite=["step", "lambda_1", "lambda_N"],
            nonempty=True,
        )
        lambda1 = None
        if args.lambda1:
            lambda1 = read_parquet(
                args.lambda1, require=["step"], finite=["step", "lambda_1"], nonempty=True
            )
        try:
            fits, bounds_df = fit_table(
                distances, exponents, nonnegative=not args.unconstrained, lambda1=lambda1
            )
        except UnreadableFile:
            raise
        except ValueError as exc:  # a curve the model cannot be fitted to: name its file
            raise ValueError(f"{args.distances}: {exc}") from None
    except (ValueError, OSError) as exc:  # UnreadableFile is a ValueError
        print(f"error: {explain(exc)}", file=sys.stderr)
        return 1
    try:
        if args.out_bounds:
            write_parquet(bounds_df, args.out_bounds)
        write_parquet(fits, args.out_fits)
    except OSError as exc:  # ArtifactWriteError
        print(f"error: {explain(exc, 'writing')}", file=sys.stderr)
        return 1
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
