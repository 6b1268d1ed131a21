"""Figures stage: the paper's figures from cached results (no training here).

Subcommands, each reading run folders and writing PDF and PNG:

``curves``      training accuracy and loss per step, moving average of 50 as in the paper,
                mean ± std over seeds (Fig. 1, Fig. 2, App. B.1).
``validation``  validation and full training-set accuracy and loss per epoch (App. B.1).
``spectrum``    counts of negative / positive / positive-chaotic Hessian eigenvalues per step,
                and the gradient's overlap with the positive and negative eigenspaces (B.2).
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
naming its curve, ``x``, ``y``, and ``lo`` / ``hi`` for a band (:class:`chaosgd.plotting.
FigureData`); each plot function's docstring names its panels and series.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from chaosgd import plotting
from chaosgd.io import parquet_columns, read_parquet, read_run_info
from chaosgd.models import build_model, init_distance
from chaosgd.vocab import ARCHITECTURES, DATASETS, FIGURE_KINDS, STRATEGIES

# what the figures read from each table: (columns that must be there, those of them that must
# hold finite numbers). A NaN or inf elsewhere means something: an empty Lyapunov subspace has
# no similarity, a curve without an exact readout step no bound fractions, and e^{λ1 t}ε may
# overflow. A NaN where a number is drawn would leave a silent gap in the figure.
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "steps": (("step", "acc", "loss"), ("step", "acc", "loss")),
    "epochs": (
        ("step", "epoch", "train_acc", "train_loss", "val_acc", "val_loss"),
        ("step", "epoch", "train_acc", "train_loss", "val_acc", "val_loss"),
    ),
    "exponents": (
        ("step", "lambda_1", "lambda_N", "n_positive", "n_negative"),
        ("step", "lambda_1", "lambda_N", "n_positive", "n_negative"),
    ),
    "subspaces": (
        ("step", "similarity_chaotic", "similarity_nonchaotic", "dim_chaotic", "dim_nonchaotic"),
        ("step", "dim_chaotic", "dim_nonchaotic"),
    ),
    "distances": (("dtype", "strategy", "eps", "step", "distance"), ("eps", "step", "distance")),
    "fits": (
        ("dtype", "strategy", "eps", "alpha", "beta", "r2", "lower_bound_holds"),
        ("eps", "alpha", "beta"),
    ),
    "bounds": (
        ("dtype", "strategy", "eps", "step", "distance", "lower", "upper"),
        ("eps", "step", "distance"),
    ),
    "members": (
        ("dtype", "strategy", "eps", "train_acc", "val_acc"),
        ("eps", "train_acc", "val_acc"),
    ),
}
# the settings the figures read from a run's run.json
SETTINGS = (
    "run_id", "dataset", "model", "activation", "hidden", "variant", "onset", "momentum", "seed",
    "lr", "batch_size", "dtype", "spectrum",
)  # fmt: skip


@dataclass
class Run:
    """A training run: its settings (from ``run.json``) and the results folder with its tables."""

    settings: dict
    results: Path

    @property
    def run_id(self) -> str:
        """The run's id, its folder name in every stage."""
        return self.settings["run_id"]

    @property
    def condition(self) -> tuple[str, int, float]:
        """(variant, onset, momentum): what the run's seeds are averaged over."""
        s = self.settings
        return (s["variant"], s["onset"], s["momentum"])

    def path(self, name: str, stage: str = "train") -> Path:
        """The run's table ``<results>/<stage>/<run_id>/<name>.parquet``."""
        return self.results / stage / self.run_id / f"{name}.parquet"

    def table(
        self, name: str, columns: list[str] | None = None, stage: str = "train"
    ) -> pd.DataFrame:
        """Read the run's table ``<stage>/<run_id>/<name>.parquet`` (only ``columns``, if given).

        The columns the figures draw (``columns``, else those of :data:`TABLES`) must be there
        and hold numbers (finite ones where :data:`TABLES` says), and the table rows; else
        :class:`chaosgd.io.UnreadableFile` names the file.
        """
        required, finite = TABLES[name]
        path = self.path(name, stage)
        if columns is not None:
            return read_parquet(path, columns=columns, finite=columns, nonempty=True)
        numeric = [c for c in required if c not in ("dtype", "strategy")]
        return read_parquet(path, require=required, finite=finite, numeric=numeric, nonempty=True)


def load_runs(results: str | Path, run_ids: list[str]) -> list[Run]:
    """The runs ``run_ids`` with their settings read from ``<results>/train/<run>/run.json``."""
    if not run_ids:
        raise ValueError("no runs given")
    results = Path(results)
    return [
        Run(read_run_info(results / "train" / rid / "run.json", rid, SETTINGS)["settings"], results)
        for rid in run_ids
    ]


def conditions(runs: list[Run]) -> dict[tuple, list[Run]]:
    """Runs grouped by (variant, onset, momentum), SGD first, in a stable order."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.condition, []).append(run)

    def order(key):
        variant, onset, momentum = key
        return (variant != "sgd", variant, onset, momentum)

    return {k: groups[k] for k in sorted(groups, key=order)}


def _dataset_title(settings: dict) -> str:
    known = DATASETS.get(settings["dataset"])
    return known.title if known else settings["dataset"]


def title(runs: list[Run], name: str) -> str:
    """The figure's title: name, dataset, architecture, lr, batch size, number of seeds."""
    s = runs[0].settings
    arch = f"{ARCHITECTURES[s['model']].title}-{s['activation']}"
    if ARCHITECTURES[s["model"]].uses_hidden:
        arch += f" (h={s['hidden']})"
    seeds = sorted({r.settings["seed"] for r in runs})
    where = f"{_dataset_title(s)}, {arch}, lr {s['lr']:g}, batch {s['batch_size']}"
    return f"{name}: {where}, {len(seeds)} seed(s)"


def _seed_stats(frames: list[pd.DataFrame], x: str, y: str, window: int):
    """Mean and std over seeds of a smoothed column, aligned on ``x``."""
    wide = pd.concat(
        [plotting.smooth(f.set_index(x)[y], window).rename(i) for i, f in enumerate(frames)],
        axis=1,
    ).sort_index()
    mean = wide.mean(axis=1)
    std = wide.std(axis=1, ddof=1) if wide.shape[1] > 1 else None
    return wide.index.to_numpy(), mean.to_numpy(), None if std is None else std.to_numpy()


def _draw_order(item) -> int:
    """Chaotic pruning over the others (dashed over solid: it often equals negative pruning),
    SGD last, so the baseline stays visible where a variant still coincides with it."""
    variant = item[0][0]
    return 2 if variant == "sgd" else 1 if variant.startswith("cgd-chaotic") else 0


@dataclass
class Conditions:
    """A figure's runs grouped by condition, with what styles their lines."""

    groups: dict[tuple, list[Run]]

    @classmethod
    def of(cls, runs: list[Run]) -> Conditions:
        """The conditions of ``runs`` (see :func:`conditions`)."""
        return cls(conditions(runs))

    @property
    def onsets(self) -> list[int]:
        """Every pruning onset (0: from the start)."""
        return sorted({k[1] for k in self.groups})

    def label(self, key: tuple) -> str:
        """A condition's legend label; momentum shown when the figure has several."""
        variant, onset, momentum = key
        show = len({k[2] for k in self.groups}) > 1
        return plotting.variant_label(variant, onset, momentum, show)

    def draw(
        self,
        ax,
        data: plotting.FigureData,
        panel: str,
        table: str,
        x: str,
        y: str,
        window: int,
        linestyle: str | None = None,
        legend: bool = True,
        suffix: str = "",
    ) -> None:
        """One mean ± std line per condition of the column ``y`` of ``table``, smoothed over
        ``window`` rows, recorded in ``data`` as series "<condition><suffix>"; ``linestyle=None``
        styles lines by variant, ``legend=False`` leaves them out of the legend."""
        for key, members in sorted(self.groups.items(), key=_draw_order):
            variant, onset, _ = key
            frames = [m.table(table, [x, y]) for m in members]
            xs, mean, std = _seed_stats(frames, x, y, window)
            xs, mean, *rest = plotting.thin(xs, mean, *([std] if std is not None else []))
            colour = plotting.variant_colour(variant, onset, self.onsets)
            style = linestyle or plotting.variant_linestyle(variant)
            label = self.label(key) if legend else None
            spread = rest[0] if rest else None
            data.band(ax, panel, self.label(key) + suffix, xs, mean, spread, colour, label, style)

    def onset_lines(self, ax) -> None:
        """Dotted vertical lines at the pruning onsets."""
        for onset in (o for o in self.onsets if o):
            ax.axvline(onset, color="#888888", linewidth=0.6, linestyle=":")


def _suptitle(fig, text: str) -> None:
    fig.suptitle(text, x=0.01, ha="left", fontsize=8)


def plot_curves(runs: list[Run], name: str, window: int = 50):
    """Training accuracy and loss per step, mean ± std over seeds (Fig. 1, Fig. 2, App. B.1).

    Batch values smoothed with a moving average of ``window`` steps, as in the paper; pruning
    onsets are marked by dotted vertical lines. Data: panels ``accuracy`` and ``loss``, one
    series per condition (its legend label), the band mean ± std over seeds.
    """
    cond = Conditions.of(runs)
    data = plotting.FigureData()
    fig, (ax_acc, ax_loss) = plotting.figure(2)
    cond.draw(ax_acc, data, "accuracy", "steps", "step", "acc", window)
    cond.draw(ax_loss, data, "loss", "steps", "step", "loss", window, legend=False)
    for ax, ylabel, tag in (
        (ax_acc, "training accuracy (batch)", "(a)"),
        (ax_loss, "training loss (batch)", "(b)"),
    ):
        cond.onset_lines(ax)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(tag, loc="left")
    ax_loss.set_yscale("log")
    _suptitle(fig, title(runs, name) + f"\nmoving average of {window} steps; mean ± std over seeds")
    plotting.legend_below(fig, len(cond.groups))
    return fig, data


def plot_validation(runs: list[Run], name: str):
    """Validation and full training-set accuracy and loss per epoch, mean ± std (App. B.1).

    Data: panels ``accuracy`` and ``loss``, series "<condition>: validation" and
    "<condition>: training set" over the epoch.
    """
    cond = Conditions.of(runs)
    data = plotting.FigureData()
    fig, (ax_acc, ax_loss) = plotting.figure(2)
    for ax, panel, column, style, suffix in (
        (ax_acc, "accuracy", "val_acc", "-", ": validation"),
        (ax_acc, "accuracy", "train_acc", "--", ": training set"),
        (ax_loss, "loss", "val_loss", "-", ": validation"),
        (ax_loss, "loss", "train_loss", "--", ": training set"),
    ):
        legend = ax is ax_acc and column == "val_acc"
        cond.draw(ax, data, panel, "epochs", "epoch", column, 1, style, legend, suffix)
    for ax, ylabel in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
    ax_acc.set_title("(a) validation (solid), full training set (dashed)", loc="left")
    ax_loss.set_title("(b)", loc="left")
    ax_loss.set_yscale("log")
    _suptitle(fig, title(runs, name) + "\nper epoch; mean ± std over seeds")
    plotting.legend_below(fig, len(cond.groups))
    return fig, data


# App. B.2 in two conventions. Ours counts the nonzero eigenvalues (|λ| above the curvature
# engine's null tolerance) and measures the gradient's energy ‖P g‖²/‖g‖² in each eigenspace.
# The reference code counted the signs of all N eigenvalues of a dense float32 Hessian, the
# numerically null ones falling to either side (split evenly here), and averaged |cos(g, v)|
# over the eigenvectors of each sign (chaosgd.cgd.spectrum_diagnostics).
# (panel = column, y label, title); the last of each row draws two columns, solid and dashed
SPECTRUM_OURS = (
    ("n_negative", "nonzero λ < 0 (count)", "(a) negative"),
    ("n_positive", "nonzero λ > 0 (count)", "(b) positive"),
    ("n_positive_chaotic", "λ > 2/η (count)", "(c) positive-chaotic"),
)
SPECTRUM_REF = (
    ("ref_n_negative", "λ < 0 of all N (count)", "(e) ref.: negative"),
    ("ref_n_positive", "λ > 0 of all N (count)", "(f) ref.: positive"),
)
# (panel, (solid column, series suffix), (dashed column, series suffix), y label, title)
SPECTRUM_PAIRS = {
    "grad_frac": (
        ("grad_frac_positive", ": positive"),
        ("grad_frac_negative", ": negative"),
        "‖P g‖²/‖g‖²\nλ>0 solid, λ<0 dashed",
        "(d) gradient energy",
    ),
    "ref_cos": (
        ("ref_cos_positive", ": positive"),
        ("ref_cos_negative", ": negative"),
        "mean |cos(g, v)| over all N\nλ>0 solid, λ<0 dashed",
        "(g) ref.: mean |cos|",
    ),
    "cos_extreme": (
        ("cos_lambda_max", ": lambda_max"),
        ("cos_lambda_min", ": lambda_min"),
        "|cos(g, v)|, v of λmax solid,\nv of λmin dashed",
        "(h) ref.: λmax, λmin",
    ),
}
REF_COLUMNS = (
    "ref_n_negative", "ref_n_positive", "ref_cos_positive", "ref_cos_negative",
    "cos_lambda_max", "cos_lambda_min",
)  # fmt: skip


def plot_spectrum(runs: list[Run], name: str, window: int = 50):
    """Hessian spectrum per step (App. B.2) in both conventions, each named in the figure.

    Ours (panels a–d): counts of nonzero negative, positive and positive-chaotic (λ > 2/η)
    eigenvalues, and the fractions of ‖g‖² in the positive and negative eigenspaces. The
    reference code's (e–h): the signs of all N eigenvalues, numerically null ones split evenly;
    the mean |cos(g, v)| over the eigenvectors of each sign; |cos| with the eigenvectors of λmax
    and λmin. Steps tables of older runs lack the reference columns: then ours only, as the title
    says. Data: panels named by column (``n_negative``, ..., ``ref_n_positive``) and the pairs
    ``grad_frac``, ``ref_cos``, ``cos_extreme`` (series "<condition>: positive" etc.).

    Only runs that recorded the spectrum are drawn; raises ``ValueError`` when none did.
    """
    # by the settings, not by the columns: a run that should have the spectrum columns and
    # lacks them is a damaged file to name, not a run to leave out silently
    runs = [r for r in runs if r.settings["spectrum"] or r.settings["variant"] != "sgd"]
    if not runs:
        raise ValueError(f"{name}: no run recorded the Hessian spectrum (training.spectrum)")
    has_ref = all(set(REF_COLUMNS) <= set(parquet_columns(r.path("steps", "train"))) for r in runs)
    cond = Conditions.of(runs)
    data = plotting.FigureData()
    singles = SPECTRUM_OURS + (SPECTRUM_REF if has_ref else ())
    pairs = ["grad_frac"] + (["ref_cos", "cos_extreme"] if has_ref else [])
    rows = 2 if has_ref else 1
    fig, axes = plotting.figure(len(singles) + len(pairs), height=2.3, rows=rows)
    # row by row: ours, then the reference's
    order = [*SPECTRUM_OURS, "grad_frac", *(SPECTRUM_REF if has_ref else ()), *pairs[1:]]
    for i, (ax, item) in enumerate(zip(axes, order)):
        if isinstance(item, str):
            (solid, s_suffix), (dashed, d_suffix), ylabel, tag = SPECTRUM_PAIRS[item]
            cond.draw(ax, data, item, "steps", "step", solid, window, "-", False, s_suffix)
            cond.draw(ax, data, item, "steps", "step", dashed, window, "--", False, d_suffix)
            if item == "grad_frac":
                ax.set_ylim(-0.02, 1.02)
            else:
                # mean |cos| over thousands of mostly null eigenvectors is tiny: a 0..1 axis
                # would flatten it
                ax.set_ylim(bottom=0)
        else:
            column, ylabel, tag = item
            cond.draw(ax, data, column, "steps", "step", column, window, legend=i == 0)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("step")
        ax.set_title(tag, loc="left")
        cond.onset_lines(ax)
    conventions = (
        "(a–d) ours: nonzero eigenvalues, energy fractions; (e–h) the reference code's: "
        "all N eigenvalues (null split evenly), |cos|"
        if has_ref
        else "ours only: these runs' steps tables lack the reference code's convention (ref_*)"
    )
    _suptitle(
        fig,
        title(runs, name)
        + f"\nHessian spectrum per step, moving average of {window} steps\n"
        + conventions,
    )
    plotting.legend_below(fig, len(cond.groups))
    return fig, data


def _run_label(run: Run, runs: list[Run]) -> str:
    s = run.settings
    label = plotting.variant_label(s["variant"], s["onset"], s["momentum"], s["momentum"] != 0)
    return label + f", seed {s['seed']}" if len(runs) > 1 else label


def _step_axis(ax, steps) -> None:
    """A log step axis, so that the first readouts (steps 1, 2, 4, ...) are resolved; symlog
    where a step 0 is drawn."""
    if len(steps) and np.min(steps) > 0:
        ax.set_xscale("log")
    else:
        ax.set_xscale("symlog", linthresh=1.0)
    lo, hi = (np.min(steps), np.max(steps)) if len(steps) else (1, 1)
    if lo > 0 and hi / lo < 30:
        # within little more than a decade there are too few powers of ten to read it by
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    # matplotlib labels minor ticks over short ranges, on top of each other
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("step (log scale)")


def plot_exponents(runs: list[Run], name: str):
    """Finite-time Lyapunov exponents over training, one line per run (App. C.1), on a log step
    axis: the readouts are log-spaced from step 1 to resolve the start, where the exponents are
    above 0.

    Panels: λ1 and λN; the median with the outermost recorded quantiles; the numbers of chaotic
    (λ > 0) and non-chaotic (λ < 0) exponents. Data: panels ``extremes`` (series "<run>: λ1",
    "<run>: λN"), ``quantiles`` ("<run>: median", band the outermost quantiles), ``counts``
    ("<run>: λ>0", "<run>: λ<0").
    """
    data = plotting.FigureData()
    fig, (ax_ext, ax_q, ax_n) = plotting.figure(3)
    steps = []
    for run, colour in zip(runs, plt_colours(len(runs))):
        exact = run.table("exponents", stage="lyapunov")
        steps.extend(exact["step"])
        label = _run_label(run, runs)
        for col, marker, sym in (("lambda_1", "o", "λ1"), ("lambda_N", "s", "λN")):
            data.plot(
                ax_ext,
                "extremes",
                f"{label}: {sym}",
                exact["step"],
                exact[col],
                marker=marker,
                ms=3,
                color=colour,
                label=f"{label}: {sym}",
            )
        qcols = sorted((c for c in exact.columns if c.startswith("q")), key=lambda c: float(c[1:]))
        if qcols:
            lo, hi = qcols[0], qcols[-1]
            mid = min(qcols, key=lambda c: abs(float(c[1:]) - 0.5))
            data.add(
                "quantiles", f"{label}: median", exact["step"], exact[mid], exact[lo], exact[hi]
            )
            ax_q.fill_between(
                exact["step"], exact[lo], exact[hi], color=colour, alpha=0.2, linewidth=0
            )
            ax_q.plot(exact["step"], exact[mid], color=colour, marker="o", ms=3)
            ax_q.set_title(f"(b) median, {lo[1:]}–{hi[1:]} quantiles", loc="left")
        data.plot(
            ax_n,
            "counts",
            f"{label}: λ>0",
            exact["step"],
            exact["n_positive"],
            color=colour,
            marker="o",
            ms=3,
        )
        data.plot(
            ax_n,
            "counts",
            f"{label}: λ<0",
            exact["step"],
            exact["n_negative"],
            color=colour,
            marker="s",
            ms=3,
            linestyle="--",
        )
    for ax in (ax_ext, ax_q):
        ax.axhline(0, color="#888888", linewidth=0.6)
        ax.set_ylabel("exponent (per step)")
    ax_ext.set_title("(a) λ1 (○), λN (□)", loc="left")
    ax_n.set_title("(c) λ>0 (○), λ<0 (□)", loc="left")
    ax_n.set_ylabel("number of exponents")
    for ax in (ax_ext, ax_q, ax_n):
        _step_axis(ax, steps)
    _suptitle(
        fig,
        title(runs, name)
        + "\nfinite-time Lyapunov exponents ln σ_i(Y(t))/t of the tangent map (log step axis)",
    )
    plotting.legend_below(fig, 2 * len(runs))
    return fig, data


# App. C.2's subspace pairs (chaosgd.exponents.stability_row): (column suffix, label, colour)
SUBSPACE_SAME = (
    ("chaotic", "chaotic (λ > 0)", "#2171b5"),
    ("edge", "edge (λ ≥ 0)", "#8c6bb1"),
    ("nonchaotic", "non-chaotic (λ < 0)", "#41ab5d"),
)
SUBSPACE_CROSS = (
    ("chaotic_vs_nonchaotic", "chaotic at t₀ vs non-chaotic", "#e6550d"),
    ("nonchaotic_vs_chaotic", "non-chaotic at t₀ vs chaotic", "#8c510a"),
)
# the edge subspace (chaotic and neutral) equals the chaotic one where no exponent is neutral:
# drawn first, wide and light, so that the chaotic lines stay visible on top of it
SUBSPACE_WIDE = {"edge": dict(linewidth=2.4, alpha=0.45)}
# what each pair's columns hold, and how it is drawn: (prefix, series suffix, line style)
SUBSPACE_LINES = (
    ("similarity", "", "-"),
    ("baseline", ": baseline", "--"),
    ("random", ": random", ":"),
)
SUBSPACE_T0 = ("t0", "step") + tuple(
    f"{prefix}_{pair}"
    for pair, _, _ in SUBSPACE_SAME + SUBSPACE_CROSS
    for prefix in ("dim0", "dim", "similarity", "baseline", "random")
)


def _read_subspaces(run: Run) -> tuple[pd.DataFrame, bool]:
    """The run's subspaces table and whether it measures against fixed t₀ (App. C.2 as
    :func:`chaosgd.exponents.stability_row` writes it); tables of older runs compare each
    readout with the previous one, without baselines."""
    path = run.path("subspaces", "lyapunov")
    if "t0" not in parquet_columns(path):
        return run.table("subspaces", stage="lyapunov"), False
    finite = [c for c in SUBSPACE_T0 if c in ("t0", "step") or c.startswith("dim")]
    df = read_parquet(path, require=SUBSPACE_T0, finite=finite, numeric=SUBSPACE_T0, nonempty=True)
    return df, True


def plot_subspaces(runs: list[Run], name: str):
    """Stability of the Lyapunov subspaces (App. C.2): one row of panels per run and t₀.

    Against a basis fixed at t₀, for each later readout: (a) the similarity ‖VᵀW‖²_F / min(dim)
    of the chaotic, edge (λ ≥ 0) and non-chaotic subspaces (solid), with the random baseline
    max(dim)/N (dashed) and the similarity of random index sets of the same dimensions
    (dotted), (b) the same for the cross terms, (c) the subspaces' dimensions at the readout
    (solid) and at t₀ (dashed). Older tables (similarity to the previous readout, no baselines)
    give one row per run, as the title says. Data: panels "t0=<t0>: same", "t0=<t0>: cross",
    "t0=<t0>: dims" ("previous readout: ..." for older tables; "<run>, " before them when the
    figure has several runs), series "<pair>", "<pair>: baseline", "<pair>: random" (pairs as
    the table's column suffixes: chaotic, edge, nonchaotic, chaotic_vs_nonchaotic,
    nonchaotic_vs_chaotic), "dim <pair>", "dim0 <pair>".
    """
    tables = [(run, *_read_subspaces(run)) for run in runs]
    rows: list[tuple[Run, int | None, pd.DataFrame]] = []
    for run, df, fixed in tables:
        if fixed:
            rows += [(run, int(t0), g) for t0, g in df.groupby("t0", sort=True)]
        else:
            rows.append((run, None, df))
    cross = any(f"similarity_{p}" in df for _, _, df in rows for p, _, _ in SUBSPACE_CROSS)
    cols = 3 if cross else 2
    fig, axes = plotting.figure(cols * len(rows), height=2.2, rows=len(rows))
    data = plotting.FigureData()
    # panel tags a, b, ..., z, then numbers: several runs with several t₀ each run past z
    tags = (chr(ord("a") + i) if i < 26 else str(i + 1) for i in itertools.count())
    for r, (run, t0, df) in enumerate(rows):
        df = df.sort_values("step")
        prefix = f"{_run_label(run, runs)}, " if len(runs) > 1 else ""
        where = f"t0={t0}" if t0 is not None else "previous readout"
        ax_same, ax_cross, ax_dim = (
            axes[r * cols : (r + 1) * cols] if cross else (axes[r * cols], None, axes[r * cols + 1])
        )
        for ax, pairs in ((ax_same, SUBSPACE_SAME), (ax_cross, SUBSPACE_CROSS)):
            if ax is None:
                continue
            panel = f"{prefix}{where}: {'same' if pairs is SUBSPACE_SAME else 'cross'}"
            for pair, label, colour in sorted(pairs, key=lambda p: p[0] not in SUBSPACE_WIDE):
                for what, suffix, style in SUBSPACE_LINES:
                    if f"{what}_{pair}" in df:
                        data.plot(
                            ax,
                            panel,
                            pair + suffix,
                            df["step"],
                            df[f"{what}_{pair}"],
                            color=colour,
                            linestyle=style,
                            marker="o" if what == "similarity" else None,
                            ms=3,
                            **SUBSPACE_WIDE.get(pair, {}),
                        )
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel("similarity\n‖VᵀW‖²_F / min(dim)")
            kind = "same subspace" if pairs is SUBSPACE_SAME else "cross terms"
            ax.set_title(f"({next(tags)}) {prefix}{kind}, {where}", loc="left")
        panel = f"{prefix}{where}: dims"
        for pair, label, colour in sorted(SUBSPACE_SAME, key=lambda p: p[0] not in SUBSPACE_WIDE):
            for what, style in (("dim", "-"), ("dim0", "--")):
                if f"{what}_{pair}" in df:
                    data.plot(
                        ax_dim,
                        panel,
                        f"{what} {pair}",
                        df["step"],
                        df[f"{what}_{pair}"],
                        color=colour,
                        linestyle=style,
                        marker="o" if what == "dim" else None,
                        ms=3,
                        **SUBSPACE_WIDE.get(pair, {}),
                    )
        ax_dim.set_ylabel("dimension")
        ax_dim.set_title(
            f"({next(tags)}) dimensions"
            + (" now (solid), at t₀ (dashed)" if t0 is not None else ""),
            loc="left",
        )
        for ax in (ax_same, ax_cross, ax_dim):
            if ax is not None:
                _step_axis(ax, df["step"])
                if t0 is not None:
                    ax.axvline(t0, color="#888888", linewidth=0.6, linestyle=":")
    what = (
        "against the basis at t₀ (dotted vertical line)"
        if all(t0 is not None for _, t0, _ in rows)
        else "older table: similarity to the previous readout, no baselines"
    )
    _suptitle(fig, title(runs, name) + f"\nstability of the Lyapunov subspaces, {what}")
    handles = [
        Line2D([], [], color=colour, marker="o", ms=3, label=label, **SUBSPACE_WIDE.get(pair, {}))
        for pair, label, colour in SUBSPACE_SAME + (SUBSPACE_CROSS if cross else ())
        if any(f"similarity_{pair}" in df for _, _, df in rows)
    ]
    if any(f"baseline_{p}" in df for _, _, df in rows for p, _, _ in SUBSPACE_SAME):
        handles += [
            Line2D([], [], color="#555555", linestyle="--", label="random baseline max(dim)/N"),
            Line2D([], [], color="#555555", linestyle=":", label="random index sets"),
        ]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)))
    return fig, data


# --- perturbed ensembles ---------------------------------------------------------------


def _main_dtype(run: Run, distances: pd.DataFrame) -> str:
    """The ensemble in the reference's own dtype (the paper's float32), else the first one."""
    dtypes = list(dict.fromkeys(distances["dtype"]))
    return run.settings["dtype"] if run.settings["dtype"] in dtypes else dtypes[0]


def _curve(df: pd.DataFrame, strategy: str, eps: float, dtype: str) -> pd.DataFrame:
    """The rows of one (strategy, ε, dtype): a distance curve, or a fit's single row.

    Raises ``ValueError`` naming the table when there are none (results of another ε or dtype
    than the figure's): an empty curve would be drawn as nothing, without a word.
    """
    sel = df[(df["strategy"] == strategy) & (df["eps"] == eps) & (df["dtype"] == dtype)]
    if sel.empty:
        raise ValueError(
            f"{df.attrs.get('path', 'table')}: no rows for strategy {strategy}, eps {eps:g}, "
            f"{dtype} (it has eps {sorted(set(df['eps']))}, dtypes {sorted(set(df['dtype']))})"
        )
    return sel.sort_values("step") if "step" in sel else sel


def _strategies(df: pd.DataFrame) -> list[str]:
    present = set(df["strategy"])
    return [s for s in plotting.strategy_order() if s in present]


def _ref_title(run: Run) -> str:
    s = run.settings
    return f"{_dataset_title(s)}, seed {s['seed']}"


INIT_DISTANCE_LABEL = "E‖θ₁−θ₂‖ of two default inits (App. A.8)"


def expected_init_distance(settings: dict) -> float:
    """√E‖θ₁ − θ₂‖² of two default initializations of the run's model (App. A.8): 4.515 for
    the paper's MLP 256-20-10 (the paper's 6.38 is √2 times that, a variance counted twice)."""
    model = build_model(settings["model"], settings["activation"], settings["hidden"])
    return init_distance(model)


def plot_divergence(runs: list[Run], name: str, eps: float):
    """Distance of each perturbed copy to its reference over training, per strategy, ε = ``eps``
    (Fig. 3a); one panel per reference run, in the reference's dtype, with the expected distance
    of two default initializations of its model (App. A.8) as a horizontal line, the scale
    against which the paper reads the distances.

    Data: a panel per reference (its run id), series the strategies and ``init_distance``.
    """
    data = plotting.FigureData()
    fig, axes = plotting.figure(len(runs), height=2.6)
    for tag, (ax, run) in zip("abcdefgh", zip(axes, runs)):
        df = run.table("distances", stage="ensembles")
        dtype = _main_dtype(run, df)
        for strategy in _strategies(df):
            label, colour = STRATEGIES[strategy].label, STRATEGIES[strategy].colour
            c = _curve(df, strategy, eps, dtype)
            label = label if ax is axes[0] else None
            data.plot(ax, run.run_id, strategy, c["step"], c["distance"], color=colour, label=label)
        data.hline(
            ax,
            run.run_id,
            "init_distance",
            expected_init_distance(run.settings),
            color="#888888",
            linestyle="--",
            linewidth=0.8,
            label=INIT_DISTANCE_LABEL if ax is axes[0] else None,
        )
        ax.set_xlabel("step")
        ax.set_ylabel("‖θ_B(t) − θ_A(t)‖")
        ax.set_title(f"({tag}) {_ref_title(run)}, {dtype}", loc="left")
    _suptitle(
        fig,
        f"{name}: divergence of models perturbed at initialization by ε = {eps:g} along "
        "Lyapunov directions\n" + title(runs[:1], runs[0].run_id).split(": ", 1)[1],
    )
    plotting.legend_below(fig, 3)  # 6 entries in 2 rows: 4 columns outgrow the figure
    return fig, data


def plot_fit(runs: list[Run], name: str, eps: float):
    """The distances of the first run with their √(αt² + βt + ε²) fits, and between the Lyapunov
    bounds e^{λN t}ε and e^{λ1 t}ε on a log scale (Fig. 3b).

    Data: panel ``fit`` (series "<strategy>", "<strategy>: fit"), panel ``bounds`` (series
    "<strategy>", "upper", "lower").
    """
    run = runs[0]
    df = run.table("distances", stage="ensembles")
    fits = run.table("fits", stage="fits")
    bounds = run.table("bounds", stage="fits")
    dtype = _main_dtype(run, df)
    data = plotting.FigureData()
    fig, (ax_fit, ax_b) = plotting.figure(2)
    for strategy in _strategies(df):
        label, colour = STRATEGIES[strategy].label, STRATEGIES[strategy].colour
        c = _curve(df, strategy, eps, dtype)
        f = _curve(fits, strategy, eps, dtype).iloc[0]
        t = c["step"].to_numpy(dtype=float)
        model = np.sqrt(f["alpha"] * t**2 + f["beta"] * t + eps**2)
        data.plot(
            ax_fit,
            "fit",
            strategy,
            t,
            c["distance"],
            color=colour,
            label=f"{label}; fit R² = {f['r2']:.3f}",
        )
        data.plot(
            ax_fit,
            "fit",
            f"{strategy}: fit",
            t,
            model,
            color="#d7301f",
            linestyle="--",
            linewidth=0.8,
        )
        data.plot(ax_b, "bounds", strategy, t, c["distance"], color=colour)
    b = bounds[(bounds["eps"] == eps) & (bounds["dtype"] == dtype)].drop_duplicates("step")
    data.plot(
        ax_b,
        "bounds",
        "upper",
        b["step"],
        b["upper"],
        color=plotting.BOUND_COLOUR,
        marker="^",
        ms=3,
        label="bounds e^{λ1 t}ε, e^{λN t}ε",
    )
    data.plot(
        ax_b,
        "bounds",
        "lower",
        b["step"],
        b["lower"],
        color=plotting.BOUND_COLOUR,
        marker="v",
        ms=3,
    )
    ax_b.fill_between(
        b["step"], b["lower"], b["upper"], color=plotting.BOUND_COLOUR, alpha=0.1, linewidth=0
    )
    ax_b.set_yscale("log")
    # the lower bound goes to 0 (e^{λN t} with λN < 0): show it only down to well below the data
    data_min = df[(df["eps"] == eps) & (df["dtype"] == dtype)]["distance"].min()
    top = max(float(b["upper"].max()) if len(b) else 0.0, float(df["distance"].max()))
    ax_b.set_ylim(data_min / 1e3, top * 3)
    ax_fit.set_title("(a) data and fit √(αt² + βt + ε²) (red, dashed)", loc="left")
    ax_b.set_title("(b) data between the Lyapunov bounds (log scale)", loc="left")
    for ax in (ax_fit, ax_b):
        ax.set_xlabel("step")
        ax.set_ylabel("‖θ_B(t) − θ_A(t)‖")
    _suptitle(fig, title(runs, name) + f"\nε = {eps:g}, {dtype}")
    handles = [h for ax in (ax_fit, ax_b) for h in ax.get_legend_handles_labels()[0]]
    fig.legend(handles=handles, loc="outside lower center", ncol=2)
    return fig, data


def plot_sweep(runs: list[Run], name: str):
    """The ε sweep of the first run (App. C.3): distance curves per strategy, one line per ε,
    and the final training and validation accuracy of the perturbed copies against ε.

    Data: a panel per strategy (series "eps=<ε>"), panel ``final accuracy`` (x = ε; series
    "<strategy>: train", "<strategy>: val", and the unperturbed reference's "reference: train",
    "reference: val").
    """
    run = runs[0]
    df = run.table("distances", stage="ensembles")
    members = run.table("members", stage="ensembles")
    dtype = _main_dtype(run, df)
    strategies = _strategies(df)
    colours = plotting.eps_colours(sorted(set(df["eps"])))
    data = plotting.FigureData()
    fig, axes = plotting.figure(len(strategies) + 1, height=2.2, rows=2)
    for tag, (ax, strategy) in zip("abcdef", zip(axes, strategies)):
        for eps, colour in colours.items():
            c = _curve(df, strategy, eps, dtype)
            data.plot(
                ax,
                strategy,
                f"eps={eps:g}",
                c["step"],
                c["distance"],
                color=colour,
                label=f"ε = {eps:g}" if ax is axes[0] else None,
            )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("distance")
        ax.set_title(f"({tag}) {STRATEGIES[strategy].label}", loc="left")
    ax = axes[-1]
    m = members[members["dtype"] == dtype]
    if not (m["strategy"] == "reference").any():
        raise ValueError(f"{members.attrs.get('path', 'members')}: no {dtype} reference member")
    ref = m[m["strategy"] == "reference"].iloc[0]
    panel = "final accuracy"
    for strategy in strategies:
        colour = STRATEGIES[strategy].colour
        rows = m[m["strategy"] == strategy].sort_values("eps")
        data.plot(
            ax,
            panel,
            f"{strategy}: train",
            rows["eps"],
            rows["train_acc"],
            color=colour,
            marker="o",
            ms=3,
        )
        data.plot(
            ax,
            panel,
            f"{strategy}: val",
            rows["eps"],
            rows["val_acc"],
            color=colour,
            marker="s",
            ms=3,
            linestyle="--",
        )
    data.hline(ax, panel, "reference: train", ref["train_acc"], color="#888888", linewidth=0.7)
    data.hline(
        ax, panel, "reference: val", ref["val_acc"], color="#888888", linewidth=0.7, linestyle="--"
    )
    ax.set_xscale("log")
    ax.set_xlabel("ε")
    ax.set_ylabel("final accuracy")
    ax.set_title(f"({'abcdef'[len(strategies)]}) train (○), validation (□); grey: A", loc="left")
    _suptitle(fig, title(runs, name) + f"\nthe ε sweep, {dtype}")
    plotting.legend_below(fig, len(colours))
    return fig, data


def plot_precision(runs: list[Run], name: str):
    """Small perturbations (ε ≤ 0.1) in each dtype of the first run, d(t)/ε per strategy: float32
    against float64, each against its own reference (App. C.4).

    Data: a panel per strategy, series "eps=<ε> <dtype>", y = d(t)/ε.
    """
    run = runs[0]
    df = run.table("distances", stage="ensembles")
    strategies = _strategies(df)
    all_eps = sorted(set(df["eps"]))
    small = [e for e in all_eps if e <= 0.1] or all_eps[:1]
    colours = plotting.eps_colours(small)
    dtypes = list(dict.fromkeys(df["dtype"]))
    data = plotting.FigureData()
    fig, axes = plotting.figure(len(strategies), height=2.2, rows=2)
    for tag, (ax, strategy) in zip("abcde", zip(axes, strategies)):
        for eps, colour in colours.items():
            # the first dtype wide and light, the next ones thin and dashed on top of it, so
            # that coinciding curves stay visible
            for i, dtype in enumerate(dtypes):
                c = _curve(df, strategy, eps, dtype)
                label = f"ε = {eps:g}, {dtype}" if ax is axes[0] else None
                style = (
                    dict(linewidth=2.2, alpha=0.45)
                    if i == 0
                    else dict(linewidth=0.9, linestyle="--")
                )
                data.plot(
                    ax,
                    strategy,
                    f"eps={eps:g} {dtype}",
                    c["step"],
                    c["distance"] / eps,
                    color=colour,
                    label=label,
                    **style,
                )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("d(t) / ε")
        ax.set_title(f"({tag}) {STRATEGIES[strategy].label}", loc="left")
    _suptitle(
        fig,
        title(runs, name)
        + "\nsmall perturbations: "
        + " (wide) vs ".join(dtypes)
        + (" (dashed)" if len(dtypes) > 1 else "")
        + ", each against its own reference",
    )
    plotting.legend_below(fig, len(colours) * len(dtypes))
    return fig, data


def plot_bounds(runs: list[Run], name: str, eps: float):
    """Distances against the Lyapunov bounds e^{λN t}ε ≤ d(t) ≤ e^{λ1 t}ε at the readout steps, one
    panel per strategy, with the fraction of steps where each bound holds (App. C.5).

    Data: a panel per strategy, series ``distance``, ``upper``, ``lower``.
    """
    run = runs[0]
    bounds = run.table("bounds", stage="fits")
    fits = run.table("fits", stage="fits")
    dtype = (
        run.settings["dtype"]
        if run.settings["dtype"] in set(bounds["dtype"])
        else bounds["dtype"].iloc[0]
    )
    b = bounds[(bounds["eps"] == eps) & (bounds["dtype"] == dtype)]
    strategies = [s for s in plotting.strategy_order() if s in set(b["strategy"])]
    data = plotting.FigureData()
    fig, axes = plotting.figure(len(strategies), height=2.2, rows=2)
    for tag, (ax, strategy) in zip("abcde", zip(axes, strategies)):
        label, colour = STRATEGIES[strategy].label, STRATEGIES[strategy].colour
        c = b[b["strategy"] == strategy].sort_values("step")
        f = _curve(fits, strategy, eps, dtype).iloc[0]
        for col, col_colour, marker, style, legend in (
            ("distance", colour, "o", "-", "distance"),
            ("upper", plotting.BOUND_COLOUR, "^", "-", "e^{λ1(t) t} ε"),
            ("lower", plotting.BOUND_COLOUR, "v", "--", "e^{λN(t) t} ε"),
        ):
            data.plot(
                ax,
                strategy,
                col,
                c["step"],
                c[col],
                color=col_colour,
                marker=marker,
                ms=3,
                ls=style,
                label=legend if ax is axes[0] else None,
            )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("distance")
        ax.set_title(
            f"({tag}) {label}\nlower holds {f['lower_bound_holds']:.0%}, "
            f"upper {f['upper_bound_holds']:.0%}",
            loc="left",
        )
    _suptitle(
        fig, title(runs, name) + f"\nLyapunov bounds at the readout steps, ε = {eps:g}, {dtype}"
    )
    plotting.legend_below(fig, 3)
    return fig, data


def plt_colours(n: int) -> list[str]:
    """``n`` distinct colours (tab10, cycling)."""
    return [plotting.matplotlib.colormaps["tab10"](i % 10) for i in range(n)]


PLOTS = {
    "curves": plot_curves,
    "validation": plot_validation,
    "spectrum": plot_spectrum,
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
        plotting.save(fig, args.out, data, data_path)
    except (ValueError, KeyError, FileNotFoundError) as exc:  # UnreadableFile is a ValueError
        # a figure given up half drawn is never saved; called in-process, it would stay open
        plotting.plt.close("all")
        print(f"error: {args.name}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
