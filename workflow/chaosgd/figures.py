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

Runs are named by their run ids and read from ``<results>/<stage>/<run>/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from chaosgd import plotting
from chaosgd.io import read_parquet
from chaosgd.vocab import ARCHITECTURES, DATASETS, FIGURE_KINDS, STRATEGIES


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

    def table(
        self, name: str, columns: list[str] | None = None, stage: str = "train"
    ) -> pd.DataFrame:
        """Read the run's table ``<stage>/<run_id>/<name>.parquet`` (only ``columns``, if given)."""
        return read_parquet(self.results / stage / self.run_id / f"{name}.parquet", columns=columns)


def load_runs(results: str | Path, run_ids: list[str]) -> list[Run]:
    """The runs ``run_ids`` with their settings read from ``<results>/train/<run>/run.json``."""
    if not run_ids:
        raise ValueError("no runs given")
    results = Path(results)
    return [
        Run(json.loads((results / "train" / rid / "run.json").read_text())["settings"], results)
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
    return f"{name}: {_dataset_title(s)}, {arch}, lr {s['lr']:g}, batch {s['batch_size']}, {len(seeds)} seed(s)"


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


def _draw(ax, groups, table, x, y, window, onsets, show_momentum, linestyle=None, label=True):
    """One mean ± std line per condition; ``linestyle=None`` styles lines by variant."""
    for (variant, onset, momentum), members in sorted(groups.items(), key=_draw_order):
        frames = [m.table(table, [x, y]) for m in members]
        xs, mean, std = _seed_stats(frames, x, y, window)
        xs, mean, *rest = plotting.thin(xs, mean, *([std] if std is not None else []))
        colour = plotting.variant_colour(variant, onset, onsets)
        name = plotting.variant_label(variant, onset, momentum, show_momentum) if label else None
        style = linestyle or plotting.variant_linestyle(variant)
        plotting.band(ax, xs, mean, rest[0] if rest else None, colour, name, style)


def _onset_lines(ax, onsets):
    for onset in sorted(o for o in onsets if o):
        ax.axvline(onset, color="#888888", linewidth=0.6, linestyle=":")


def plot_curves(runs: list[Run], name: str, outputs: list[str], window: int = 50) -> None:
    """Training accuracy and loss per step, mean ± std over seeds (Fig. 1, Fig. 2, App. B.1).

    Batch values smoothed with a moving average of ``window`` steps, as in the paper; pruning onsets
    are marked by dotted vertical lines.
    """
    groups = conditions(runs)
    onsets = sorted({k[1] for k in groups})
    show_m = len({k[2] for k in groups}) > 1
    fig, (ax_acc, ax_loss) = plotting.figure(2)
    _draw(ax_acc, groups, "steps", "step", "acc", window, onsets, show_m)
    _draw(ax_loss, groups, "steps", "step", "loss", window, onsets, show_m, label=False)
    for ax, ylabel, tag in (
        (ax_acc, "training accuracy (batch)", "(a)"),
        (ax_loss, "training loss (batch)", "(b)"),
    ):
        _onset_lines(ax, onsets)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(tag, loc="left")
    ax_loss.set_yscale("log")
    fig.suptitle(
        title(runs, name) + f"\nmoving average of {window} steps; mean ± std over seeds",
        x=0.01,
        ha="left",
        fontsize=8,
    )
    plotting.legend_below(fig, len(groups))
    plotting.save(fig, outputs)


def plot_validation(runs: list[Run], name: str, outputs: list[str]) -> None:
    """Validation and full training-set accuracy and loss per epoch, mean ± std (App. B.1)."""
    groups = conditions(runs)
    show_m = len({k[2] for k in groups}) > 1
    fig, (ax_acc, ax_loss) = plotting.figure(2)
    for ax, split_col, style, lab in (
        (ax_acc, "val_acc", "-", True),
        (ax_acc, "train_acc", "--", False),
        (ax_loss, "val_loss", "-", False),
        (ax_loss, "train_loss", "--", False),
    ):
        _draw(ax, groups, "epochs", "epoch", split_col, 1, [], show_m, style, lab)
    for ax, ylabel in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
    ax_acc.set_title("(a) validation (solid), full training set (dashed)", loc="left")
    ax_loss.set_title("(b)", loc="left")
    ax_loss.set_yscale("log")
    fig.suptitle(
        title(runs, name) + "\nper epoch; mean ± std over seeds", x=0.01, ha="left", fontsize=8
    )
    plotting.legend_below(fig, len(groups))
    plotting.save(fig, outputs)


SPECTRUM_PANELS = (
    ("n_negative", "negative eigenvalues (count)"),
    ("n_positive", "positive eigenvalues (count)"),
    ("n_positive_chaotic", "positive-chaotic eigenvalues\n(λ > 2/η, count)"),
)


def plot_spectrum(runs: list[Run], name: str, outputs: list[str], window: int = 50) -> None:
    """Hessian spectrum per step (App. B.2): counts of negative, positive and positive-chaotic
    (λ > 2/η) eigenvalues, and the gradient's overlap with the positive and negative eigenspaces.

    Only runs that recorded the spectrum are drawn; raises ``ValueError`` when none did.
    """
    runs = [r for r in runs if "n_negative" in r.table("steps").columns]
    if not runs:
        raise ValueError(f"{name}: no run recorded the Hessian spectrum (training.spectrum)")
    groups = conditions(runs)
    onsets = sorted({k[1] for k in groups})
    show_m = len({k[2] for k in groups}) > 1
    fig, axes = plotting.figure(4, height=2.3)
    for i, (ax, (col, ylabel)) in enumerate(zip(axes, SPECTRUM_PANELS)):
        _draw(ax, groups, "steps", "step", col, window, onsets, show_m, label=i == 0)
        ax.set_ylabel(ylabel)
    ax = axes[3]
    _draw(ax, groups, "steps", "step", "grad_frac_positive", window, onsets, show_m, "-", False)
    _draw(ax, groups, "steps", "step", "grad_frac_negative", window, onsets, show_m, "--", False)
    ax.set_ylabel("gradient overlap ‖P g‖²/‖g‖²\npositive (solid), negative (dashed)")
    ax.set_ylim(-0.02, 1.02)
    for tag, ax in zip("abcd", axes):
        ax.set_xlabel("step")
        ax.set_title(f"({tag})", loc="left")
        _onset_lines(ax, onsets)
    fig.suptitle(
        title(runs, name) + f"\nHessian spectrum per step, moving average of {window} steps",
        x=0.01,
        ha="left",
        fontsize=8,
    )
    plotting.legend_below(fig, len(groups))
    plotting.save(fig, outputs)


def _run_label(run: Run, runs: list[Run]) -> str:
    s = run.settings
    label = plotting.variant_label(s["variant"], s["onset"], s["momentum"], s["momentum"] != 0)
    return label + f", seed {s['seed']}" if len(runs) > 1 else label


def plot_exponents(runs: list[Run], name: str, outputs: list[str]) -> None:
    """Finite-time Lyapunov exponents over training, one line per run (App. C.1).

    Panels: λ1 and λN; the median with the outermost recorded quantiles; the numbers of chaotic
    (λ > 0) and non-chaotic (λ < 0) exponents.
    """
    fig, (ax_ext, ax_q, ax_n) = plotting.figure(3)
    colours = plt_colours(len(runs))
    for run, colour in zip(runs, colours):
        exact = run.table("exponents", stage="lyapunov")
        label = _run_label(run, runs)
        for col, marker in (("lambda_1", "o"), ("lambda_N", "s")):
            ax_ext.plot(
                exact["step"],
                exact[col],
                marker=marker,
                ms=3,
                color=colour,
                label=f"{label}: {'λ1' if col == 'lambda_1' else 'λN'}",
            )
        qcols = sorted((c for c in exact.columns if c.startswith("q")), key=lambda c: float(c[1:]))
        if qcols:
            lo, hi = qcols[0], qcols[-1]
            ax_q.fill_between(
                exact["step"], exact[lo], exact[hi], color=colour, alpha=0.2, linewidth=0
            )
            mid = min(qcols, key=lambda c: abs(float(c[1:]) - 0.5))
            ax_q.plot(exact["step"], exact[mid], color=colour, marker="o", ms=3)
            ax_q.set_title(f"(b) median, {lo[1:]}–{hi[1:]} quantiles", loc="left")
        ax_n.plot(exact["step"], exact["n_positive"], color=colour, marker="o", ms=3)
        ax_n.plot(
            exact["step"], exact["n_negative"], color=colour, marker="s", ms=3, linestyle="--"
        )
    for ax in (ax_ext, ax_q):
        ax.axhline(0, color="#888888", linewidth=0.6)
        ax.set_ylabel("exponent (per step)")
    ax_ext.set_title("(a) λ1 (○), λN (□)", loc="left")
    ax_n.set_title("(c) λ>0 (○), λ<0 (□)", loc="left")
    ax_n.set_ylabel("number of exponents")
    for ax in (ax_ext, ax_q, ax_n):
        ax.set_xlabel("step")
    fig.suptitle(
        title(runs, name) + "\nfinite-time Lyapunov exponents ln σ_i(Y(t))/t of the tangent map",
        x=0.01,
        ha="left",
        fontsize=8,
    )
    plotting.legend_below(fig, 2 * len(runs))
    plotting.save(fig, outputs)


def plot_subspaces(runs: list[Run], name: str, outputs: list[str]) -> None:
    """Similarity of the chaotic and non-chaotic Lyapunov subspaces to the previous readout's,
    and their dimensions, per run (App. C.2).
    """
    fig, (ax_sim, ax_dim) = plotting.figure(2)
    for run, colour in zip(runs, plt_colours(len(runs))):
        df = run.table("subspaces", stage="lyapunov")
        label = _run_label(run, runs)
        ax_sim.plot(
            df["step"],
            df["similarity_chaotic"],
            color=colour,
            marker="o",
            ms=3,
            label=f"{label}: chaotic",
        )
        ax_sim.plot(
            df["step"],
            df["similarity_nonchaotic"],
            color=colour,
            marker="s",
            ms=3,
            linestyle="--",
            label=f"{label}: non-chaotic",
        )
        ax_dim.plot(df["step"], df["dim_chaotic"], color=colour, marker="o", ms=3)
        ax_dim.plot(
            df["step"], df["dim_nonchaotic"], color=colour, marker="s", ms=3, linestyle="--"
        )
    ax_sim.set_ylim(-0.02, 1.02)
    ax_sim.set_ylabel("similarity to the previous readout\n‖V_prevᵀ V‖²_F / min(dim)")
    ax_sim.set_title("(a) chaotic (solid), non-chaotic (dashed) subspace", loc="left")
    ax_dim.set_ylabel("subspace dimension")
    ax_dim.set_title("(b)", loc="left")
    for ax in (ax_sim, ax_dim):
        ax.set_xlabel("step")
    fig.suptitle(
        title(runs, name) + "\nstability of the Lyapunov subspaces between readouts",
        x=0.01,
        ha="left",
        fontsize=8,
    )
    plotting.legend_below(fig, 2 * len(runs))
    plotting.save(fig, outputs)


# --- perturbed ensembles ---------------------------------------------------------------


def _main_dtype(run: Run, distances: pd.DataFrame) -> str:
    """The ensemble in the reference's own dtype (the paper's float32), else the first one."""
    dtypes = list(dict.fromkeys(distances["dtype"]))
    return run.settings["dtype"] if run.settings["dtype"] in dtypes else dtypes[0]


def _curve(df: pd.DataFrame, strategy: str, eps: float, dtype: str) -> pd.DataFrame:
    """The rows of one (strategy, ε, dtype): a distance curve, or a fit's single row."""
    sel = df[(df["strategy"] == strategy) & (df["eps"] == eps) & (df["dtype"] == dtype)]
    return sel.sort_values("step") if "step" in sel else sel


def _strategies(df: pd.DataFrame) -> list[str]:
    present = set(df["strategy"])
    return [s for s in plotting.strategy_order() if s in present]


def _ref_title(run: Run) -> str:
    s = run.settings
    return f"{_dataset_title(s)}, seed {s['seed']}"


def plot_divergence(runs: list[Run], name: str, outputs: list[str], eps: float) -> None:
    """Distance of each perturbed copy to its reference over training, per strategy, ε = ``eps``
    (Fig. 3a); one panel per reference run, in the reference's dtype.
    """
    fig, axes = plotting.figure(len(runs), height=2.6)
    for tag, (ax, run) in zip("abcdefgh", zip(axes, runs)):
        df = run.table("distances", stage="ensembles")
        dtype = _main_dtype(run, df)
        for strategy in _strategies(df):
            label, colour = STRATEGIES[strategy].label, STRATEGIES[strategy].colour
            c = _curve(df, strategy, eps, dtype)
            ax.plot(c["step"], c["distance"], color=colour, label=label if ax is axes[0] else None)
        ax.set_xlabel("step")
        ax.set_ylabel("‖θ_B(t) − θ_A(t)‖")
        ax.set_title(f"({tag}) {_ref_title(run)}, {dtype}", loc="left")
    fig.suptitle(
        f"{name}: divergence of models perturbed at initialization by ε = {eps:g} along "
        "Lyapunov directions\n" + title(runs[:1], runs[0].run_id).split(": ", 1)[1],
        x=0.01,
        ha="left",
        fontsize=8,
    )
    plotting.legend_below(fig, 5)
    plotting.save(fig, outputs)


def plot_fit(runs: list[Run], name: str, outputs: list[str], eps: float) -> None:
    """The distances of the first run with their √(αt² + βt + ε²) fits, and between the Lyapunov
    bounds e^{λN t}ε and e^{λ1 t}ε on a log scale (Fig. 3b).
    """
    run = runs[0]
    df = run.table("distances", stage="ensembles")
    fits = run.table("fits", stage="fits")
    bounds = run.table("bounds", stage="fits")
    dtype = _main_dtype(run, df)
    fig, (ax_fit, ax_b) = plotting.figure(2)
    for strategy in _strategies(df):
        label, colour = STRATEGIES[strategy].label, STRATEGIES[strategy].colour
        c = _curve(df, strategy, eps, dtype)
        f = _curve(fits, strategy, eps, dtype).iloc[0]
        t = c["step"].to_numpy(dtype=float)
        model = np.sqrt(f["alpha"] * t**2 + f["beta"] * t + eps**2)
        ax_fit.plot(t, c["distance"], color=colour, label=f"{label}; fit R² = {f['r2']:.3f}")
        ax_fit.plot(t, model, color="#d7301f", linestyle="--", linewidth=0.8)
        ax_b.plot(t, c["distance"], color=colour)
    b = bounds[(bounds["eps"] == eps) & (bounds["dtype"] == dtype)].drop_duplicates("step")
    ax_b.plot(
        b["step"],
        b["upper"],
        color=plotting.BOUND_COLOUR,
        marker="^",
        ms=3,
        label="bounds e^{λ1 t}ε, e^{λN t}ε",
    )
    ax_b.plot(b["step"], b["lower"], color=plotting.BOUND_COLOUR, marker="v", ms=3)
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
    fig.suptitle(title(runs, name) + f"\nε = {eps:g}, {dtype}", x=0.01, ha="left", fontsize=8)
    handles = [h for ax in (ax_fit, ax_b) for h in ax.get_legend_handles_labels()[0]]
    fig.legend(handles=handles, loc="outside lower center", ncol=2)
    plotting.save(fig, outputs)


def plot_sweep(runs: list[Run], name: str, outputs: list[str]) -> None:
    """The ε sweep of the first run (App. C.3): distance curves per strategy, one line per ε,
    and the final training and validation accuracy of the perturbed copies against ε.
    """
    run = runs[0]
    df = run.table("distances", stage="ensembles")
    members = run.table("members", stage="ensembles")
    dtype = _main_dtype(run, df)
    strategies = _strategies(df)
    colours = plotting.eps_colours(sorted(set(df["eps"])))
    fig, axes = plotting.figure(len(strategies) + 1, height=2.2, rows=2)
    for tag, (ax, strategy) in zip("abcdef", zip(axes, strategies)):
        for eps, colour in colours.items():
            c = _curve(df, strategy, eps, dtype)
            ax.plot(
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
    ref = m[m["strategy"] == "reference"].iloc[0]
    for strategy in strategies:
        colour = STRATEGIES[strategy].colour
        rows = m[m["strategy"] == strategy].sort_values("eps")
        ax.plot(rows["eps"], rows["train_acc"], color=colour, marker="o", ms=3)
        ax.plot(rows["eps"], rows["val_acc"], color=colour, marker="s", ms=3, linestyle="--")
    ax.axhline(ref["train_acc"], color="#888888", linewidth=0.7)
    ax.axhline(ref["val_acc"], color="#888888", linewidth=0.7, linestyle="--")
    ax.set_xscale("log")
    ax.set_xlabel("ε")
    ax.set_ylabel("final accuracy")
    ax.set_title(f"({'abcdef'[len(strategies)]}) train (○), validation (□); grey: A", loc="left")
    fig.suptitle(title(runs, name) + f"\nthe ε sweep, {dtype}", x=0.01, ha="left", fontsize=8)
    plotting.legend_below(fig, len(colours))
    plotting.save(fig, outputs)


def plot_precision(runs: list[Run], name: str, outputs: list[str]) -> None:
    """Small perturbations (ε ≤ 0.1) in each dtype of the first run, d(t)/ε per strategy: float32
    against float64, each against its own reference (App. C.4).
    """
    run = runs[0]
    df = run.table("distances", stage="ensembles")
    strategies = _strategies(df)
    all_eps = sorted(set(df["eps"]))
    small = [e for e in all_eps if e <= 0.1] or all_eps[:1]
    colours = plotting.eps_colours(small)
    dtypes = list(dict.fromkeys(df["dtype"]))
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
                ax.plot(c["step"], c["distance"] / eps, color=colour, label=label, **style)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("d(t) / ε")
        ax.set_title(f"({tag}) {STRATEGIES[strategy].label}", loc="left")
    fig.suptitle(
        title(runs, name)
        + "\nsmall perturbations: "
        + " (wide) vs ".join(dtypes)
        + (" (dashed)" if len(dtypes) > 1 else "")
        + ", each against its own reference",
        x=0.01,
        ha="left",
        fontsize=8,
    )
    plotting.legend_below(fig, len(colours) * len(dtypes))
    plotting.save(fig, outputs)


def plot_bounds(runs: list[Run], name: str, outputs: list[str], eps: float) -> None:
    """Distances against the Lyapunov bounds e^{λN t}ε ≤ d(t) ≤ e^{λ1 t}ε at the readout steps, one
    panel per strategy, with the fraction of steps where each bound holds (App. C.5).
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
    fig, axes = plotting.figure(len(strategies), height=2.2, rows=2)
    for tag, (ax, strategy) in zip("abcde", zip(axes, strategies)):
        label, colour = STRATEGIES[strategy].label, STRATEGIES[strategy].colour
        c = b[b["strategy"] == strategy].sort_values("step")
        f = _curve(fits, strategy, eps, dtype).iloc[0]
        for col, col_colour, marker, style, name in (
            ("distance", colour, "o", "-", "distance"),
            ("upper", plotting.BOUND_COLOUR, "^", "-", "e^{λ1(t) t} ε"),
            ("lower", plotting.BOUND_COLOUR, "v", "--", "e^{λN(t) t} ε"),
        ):
            label = name if ax is axes[0] else None
            ax.plot(c["step"], c[col], color=col_colour, marker=marker, ms=3, ls=style, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("distance")
        ax.set_title(
            f"({tag}) {label}\nlower holds {f['lower_bound_holds']:.0%}, upper {f['upper_bound_holds']:.0%}",
            loc="left",
        )
    fig.suptitle(
        title(runs, name) + f"\nLyapunov bounds at the readout steps, ε = {eps:g}, {dtype}",
        x=0.01,
        ha="left",
        fontsize=8,
    )
    plotting.legend_below(fig, 3)
    plotting.save(fig, outputs)


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
    args = parser.parse_args(argv)
    try:
        extra = {}
        if FIGURE_KINDS[args.kind].main_eps:
            if args.eps is None:
                raise ValueError(f"{args.kind} needs --eps")
            extra["eps"] = args.eps
        PLOTS[args.kind](load_runs(args.results, args.runs), args.name, args.out, **extra)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {args.name}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
