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

DATASET_TITLES = {"usps": "USPS", "fmnist": "FashionMNIST"}


@dataclass
class Run:
    settings: dict
    results: Path

    @property
    def run_id(self) -> str:
        return self.settings["run_id"]

    @property
    def condition(self) -> tuple[str, int, float]:
        s = self.settings
        return (s["variant"], s["onset"], s["momentum"])

    def table(self, name: str, columns: list[str] | None = None, stage: str = "train") -> pd.DataFrame:
        return read_parquet(self.results / stage / self.run_id / f"{name}.parquet", columns=columns)


def load_runs(results: str | Path, run_ids: list[str]) -> list[Run]:
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


def title(runs: list[Run], name: str) -> str:
    s = runs[0].settings
    arch = (
        f"MLP-{s['activation']} (h={s['hidden']})" if s["model"] == "mlp" else f"CNN-{s['activation']}"
    )
    seeds = sorted({r.settings["seed"] for r in runs})
    return f"{name}: {DATASET_TITLES.get(s['dataset'], s['dataset'])}, {arch}, lr {s['lr']:g}, batch {s['batch_size']}, {len(seeds)} seed(s)"


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
        xs, mean, *rest = plotting.thin(xs, mean, *( [std] if std is not None else []))
        colour = plotting.variant_colour(variant, onset, onsets)
        name = plotting.variant_label(variant, onset, momentum, show_momentum) if label else None
        style = linestyle or plotting.variant_linestyle(variant)
        plotting.band(ax, xs, mean, rest[0] if rest else None, colour, name, style)


def _onset_lines(ax, onsets):
    for onset in sorted(o for o in onsets if o):
        ax.axvline(onset, color="#888888", linewidth=0.6, linestyle=":")


def plot_curves(runs: list[Run], name: str, outputs: list[str], window: int = 50) -> None:
    groups = conditions(runs)
    onsets = sorted({k[1] for k in groups})
    show_m = len({k[2] for k in groups}) > 1
    fig, (ax_acc, ax_loss) = plotting.figure(2)
    _draw(ax_acc, groups, "steps", "step", "acc", window, onsets, show_m)
    _draw(ax_loss, groups, "steps", "step", "loss", window, onsets, show_m, label=False)
    for ax, ylabel, tag in ((ax_acc, "training accuracy (batch)", "(a)"), (ax_loss, "training loss (batch)", "(b)")):
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
    groups = conditions(runs)
    onsets = sorted({k[1] for k in groups})
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
    fig.suptitle(title(runs, name) + "\nper epoch; mean ± std over seeds", x=0.01, ha="left", fontsize=8)
    plotting.legend_below(fig, len(groups))
    plotting.save(fig, outputs)


SPECTRUM_PANELS = (
    ("n_negative", "negative eigenvalues (count)"),
    ("n_positive", "positive eigenvalues (count)"),
    ("n_positive_chaotic", "positive-chaotic eigenvalues\n(λ > 2/η, count)"),
)


def plot_spectrum(runs: list[Run], name: str, outputs: list[str], window: int = 50) -> None:
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
    fig, (ax_ext, ax_q, ax_n) = plotting.figure(3)
    colours = plt_colours(len(runs))
    for run, colour in zip(runs, colours):
        df = run.table("exponents", stage="lyapunov")
        exact = df[df["method"] != "benettin"]
        ben = df[df["method"] == "benettin"]
        label = _run_label(run, runs)
        for col, marker in (("lambda_1", "o"), ("lambda_N", "s")):
            ax_ext.plot(exact["step"], exact[col], marker=marker, ms=3, color=colour,
                        label=f"{label}: {'λ1' if col == 'lambda_1' else 'λN'}")
            if len(ben):
                ax_ext.plot(ben["step"], ben[col], color=colour, alpha=0.5, linewidth=0.7, linestyle=":")
        qcols = sorted((c for c in df.columns if c.startswith("q")), key=lambda c: float(c[1:]))
        if qcols:
            lo, hi = qcols[0], qcols[-1]
            ax_q.fill_between(exact["step"], exact[lo], exact[hi], color=colour, alpha=0.2, linewidth=0)
            mid = min(qcols, key=lambda c: abs(float(c[1:]) - 0.5))
            ax_q.plot(exact["step"], exact[mid], color=colour, marker="o", ms=3)
            ax_q.set_title(f"(b) median, {lo[1:]}–{hi[1:]} quantiles", loc="left")
        ax_n.plot(exact["step"], exact["n_positive"], color=colour, marker="o", ms=3)
        ax_n.plot(exact["step"], exact["n_negative"], color=colour, marker="s", ms=3, linestyle="--")
    for ax in (ax_ext, ax_q):
        ax.axhline(0, color="#888888", linewidth=0.6)
        ax.set_ylabel("exponent (per step)")
    ax_ext.set_title("(a) λ1 (○), λN (□)", loc="left")
    ax_n.set_title("(c) λ>0 (○), λ<0 (□)", loc="left")
    ax_n.set_ylabel("number of exponents")
    for ax in (ax_ext, ax_q, ax_n):
        ax.set_xlabel("step")
    fig.suptitle(
        title(runs, name) + "\nfinite-time Lyapunov exponents ln σ_i(Y(t))/t of the tangent map"
        " (exact readouts; dotted: Benettin QR-diagonal estimate)",
        x=0.01,
        ha="left",
        fontsize=8,
    )
    plotting.legend_below(fig, 2 * len(runs))
    plotting.save(fig, outputs)


def plot_subspaces(runs: list[Run], name: str, outputs: list[str]) -> None:
    fig, (ax_sim, ax_dim) = plotting.figure(2)
    for run, colour in zip(runs, plt_colours(len(runs))):
        df = run.table("subspaces", stage="lyapunov")
        label = _run_label(run, runs)
        ax_sim.plot(df["step"], df["similarity_chaotic"], color=colour, marker="o", ms=3, label=f"{label}: chaotic")
        ax_sim.plot(df["step"], df["similarity_nonchaotic"], color=colour, marker="s", ms=3, linestyle="--", label=f"{label}: non-chaotic")
        ax_dim.plot(df["step"], df["dim_chaotic"], color=colour, marker="o", ms=3)
        ax_dim.plot(df["step"], df["dim_nonchaotic"], color=colour, marker="s", ms=3, linestyle="--")
    ax_sim.set_ylim(-0.02, 1.02)
    ax_sim.set_ylabel("similarity to the previous readout\n‖V_prevᵀ V‖²_F / min(dim)")
    ax_sim.set_title("(a) chaotic (solid), non-chaotic (dashed) subspace", loc="left")
    ax_dim.set_ylabel("subspace dimension")
    ax_dim.set_title("(b)", loc="left")
    for ax in (ax_sim, ax_dim):
        ax.set_xlabel("step")
    fig.suptitle(title(runs, name) + "\nstability of the Lyapunov subspaces between readouts", x=0.01, ha="left", fontsize=8)
    plotting.legend_below(fig, 2 * len(runs))
    plotting.save(fig, outputs)


def plt_colours(n: int) -> list[str]:
    return [plotting.matplotlib.colormaps["tab10"](i % 10) for i in range(n)]


PLOTS = {
    "curves": plot_curves,
    "validation": plot_validation,
    "spectrum": plot_spectrum,
    "exponents": plot_exponents,
    "subspaces": plot_subspaces,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.figures", description="Draw a figure from training results."
    )
    parser.add_argument("kind", choices=sorted(PLOTS), help="which figure")
    parser.add_argument("--name", required=True, help="figure name (shown in its title)")
    parser.add_argument("--results", default="results", help="the results folder")
    parser.add_argument("--runs", nargs="+", required=True, help="run ids")
    parser.add_argument("--out", nargs="+", required=True, help="output files (.pdf, .png)")
    args = parser.parse_args(argv)
    try:
        PLOTS[args.kind](load_runs(args.results, args.runs), args.name, args.out)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {args.name}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
