"""Figures stage: the paper's figures from cached results (no training here).

Subcommands, each reading run folders and writing PDF and PNG:

``curves``      training accuracy and loss per step, moving average of 50 as in the paper,
                mean ± std over seeds (Fig. 1, Fig. 2, App. B.1).
``validation``  validation and full training-set accuracy and loss per epoch (App. B.1).
``spectrum``    counts of negative / positive / positive-chaotic Hessian eigenvalues per step,
                and the gradient's overlap with the positive and negative eigenspaces (B.2).
``spectra``     the distribution of the Hessian's eigenvalues over training: histograms at
                six steps and the density of step against eigenvalue (App. B.2).
``exponents``   finite-time Lyapunov exponents over training: λ1, λN, quantiles, and the
                counts of chaotic / non-chaotic directions (App. C.1).
``subspaces``   similarity of the chaotic and non-chaotic Lyapunov subspaces between
                consecutive readouts (App. C.2).
``divergence``  distances of the perturbed copies to their reference per strategy (Fig. 3a).
``fit``         the distances with √(αt² + βt + ε²) fits and the Lyapunov bounds (Fig. 3b).
``sweep``       distance curves and final accuracy over the ε sweep (App. C.3).
``precision``   small ε in float32 against float64 (App. C.4).
``bounds``      distances against e^{λN t}ε and e^{λ1 t}ε per strategy (App. C.5).

Runs are named by their run ids and read from ``<results>/<stage>/<run>/``. Beside its PDF and
PNG, every figure writes the numbers it draws to a Parquet table (``--data``, by default next
to the first output): one row per plotted point, with the columns ``panel`` and ``series``
naming its curve, ``x``, ``y``, and ``lo`` / ``hi`` for a band
(:class:`chaosgd.analysis.plots.figure_data.FigureData`); each plot function's docstring names
its panels and series. The plots are drawn by ``chaosgd.analysis.plots``: ``training`` (curves,
validation, spectrum), ``spectra`` (spectra), ``lyapunov`` (exponents, subspaces) and
``divergence`` (divergence, fit, sweep, precision, bounds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chaosgd.analysis.plots import style
from chaosgd.analysis.plots.divergence import (
    plot_bounds,
    plot_divergence,
    plot_fit,
    plot_precision,
    plot_sweep,
)
from chaosgd.analysis.plots.figure_data import save
from chaosgd.analysis.plots.loading import load_runs
from chaosgd.analysis.plots.lyapunov import plot_exponents, plot_subspaces
from chaosgd.analysis.plots.spectra import plot_spectra
from chaosgd.analysis.plots.training import plot_curves, plot_spectrum, plot_validation
from chaosgd.planning.vocab import FIGURE_KINDS
from chaosgd.runs.artifacts import explain

# the subcommands: each figure kind of chaosgd.planning.vocab.FIGURE_KINDS and what draws it
PLOTS = {
    "curves": plot_curves,
    "validation": plot_validation,
    "spectrum": plot_spectrum,
    "spectra": plot_spectra,
    "exponents": plot_exponents,
    "subspaces": plot_subspaces,
    "divergence": plot_divergence,
    "fit": plot_fit,
    "sweep": plot_sweep,
    "precision": plot_precision,
    "bounds": plot_bounds,
}


def main(argv: list[str] | None = None) -> int:
    """Draw one figure from the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.figures", description="Draw a figure from training results."
    )
    parser.add_argument("kind", choices=sorted(PLOTS), help="which figure")
    parser.add_argument("--name", required=True, help="figure name (shown in its title)")
    parser.add_argument("--results", default="results", help="the results folder")
    parser.add_argument("--runs", nargs="+", required=True, help="run ids")
    parser.add_argument("--out", nargs="+", required=True, help="output files (.pdf, .png)")
    parser.add_argument("--eps", type=float, default=None, help="the perturbation size shown")
    parser.add_argument(
        "--data",
        default=None,
        help="where the plotted data go (Parquet); default: the first output's name, .parquet",
    )
    args = parser.parse_args(argv)
    try:
        extra = {}
        if FIGURE_KINDS[args.kind].main_eps:
            if args.eps is None:
                raise ValueError(f"{args.kind} needs --eps")
            extra["eps"] = args.eps
        fig, data = PLOTS[args.kind](load_runs(args.results, args.runs), args.name, **extra)
        data_path = args.data or Path(args.out[0]).with_suffix(".parquet")
        save(fig, args.out, data, data_path)
    except (ValueError, KeyError, FileNotFoundError) as exc:  # UnreadableFile is a ValueError
        # a figure given up half drawn is never saved; called in-process, it would stay open
        style.plt.close("all")
        print(f"error: {args.name}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # ArtifactWriteError names the file; a plain one is a read's
        style.plt.close("all")
        print(f"error: {explain(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
