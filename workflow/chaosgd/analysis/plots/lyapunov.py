"""The Lyapunov stage's results over training (Sec. 4.2): the finite-time Lyapunov exponents
of the tangent map, λ1, λN, their quantiles and the numbers of chaotic and non-chaotic
directions (App. C.1), and the stability of the chaotic and non-chaotic subspaces against a
basis fixed at t₀ (App. C.2)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from chaosgd.analysis.plots import style
from chaosgd.analysis.plots.figure_data import FigureData
from chaosgd.analysis.plots.loading import Run, title
from chaosgd.engine.exponents import TOPK_METHODS
from chaosgd.runs.artifacts import parquet_columns, read_parquet


def _run_label(run: Run, runs: list[Run]) -> str:
    s = run.settings
    label = style.variant_label(s["variant"], s["onset"], s["momentum"], s["momentum"] != 0)
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


def _lambda1(run: Run) -> pd.DataFrame | None:
    """The run's per-step λ1 (``lambda1.parquet``), or None for results that predate it."""
    path = run.path("lambda1", "lyapunov")
    if not path.exists():
        return None
    return run.table("lambda1", stage="lyapunov")


def _variants(runs: list[Run]) -> list[tuple[str, list[Run]]]:
    """The runs by condition (variant, onset, momentum), SGD first, as column titles."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.condition, []).append(run)
    show_mu = len({c[2] for c in groups}) > 1
    order = sorted(groups, key=lambda c: (c[0] != "sgd", list(groups).index(c)))
    return [(style.variant_label(c[0], c[1], c[2], show_mu), groups[c]) for c in order]


def _share_y(axes) -> None:
    lo = min(ax.get_ylim()[0] for ax in axes)
    hi = max(ax.get_ylim()[1] for ax in axes)
    for ax in axes:
        ax.set_ylim(lo, hi)


def plot_exponents(runs: list[Run], name: str):
    """Finite-time Lyapunov exponents over training (App. C.1) on a log step axis, one column of
    panels per variant (SGD beside e.g. CGD pruning the chaotic eigenspace, Theorem 2.2), the
    rows on the same y-limits, one colour per run.

    Rows: λ1(t) every ``lambda1_every`` steps (line, ``lambda1.parquet``) with λ1 and λN at the exact readouts
    (○, □); the median and the outermost recorded quantiles at the readouts; the numbers of
    chaotic (λ > 0) and non-chaotic (λ < 0) exponents at the readouts. λN and the quantiles
    exist only at the readouts: σ_N per step would need O(N³) solves. Data: panels
    ``extremes`` (series "<run>: λ1 per step", "<run>: λ1", "<run>: λN"), ``quantiles``
    ("<run>: median", band the outermost quantiles), ``counts`` ("<run>: λ>0", "<run>: λ<0");
    with several variants "<variant>: " before each panel's name.
    """
    data = FigureData()
    columns = _variants(runs)
    ncol = len(columns)
    fig, axes = style.figure(3 * ncol, rows=3, width=style.FULL_WIDTH * max(1.0, 0.6 * ncol))
    colours = dict(zip((r.run_id for r in runs), style.run_colours(len(runs))))
    steps, missing, topk = [], [], set()
    tags = iter("abcdefghijklmnopqrstuvwxyz")
    for col, (variant, group) in enumerate(columns):
        ax_ext, ax_q, ax_n = axes[col], axes[ncol + col], axes[2 * ncol + col]
        where = f"{variant}: " if ncol > 1 else ""
        quantiles = "quantiles"
        for run in group:
            colour = colours[run.run_id]
            exact = run.table("exponents", stage="lyapunov")
            steps.extend(exact["step"])
            if "method" in exact and exact["method"].isin(TOPK_METHODS).any():
                # counted among the k: each readout's counts sum to k
                counts = [c for c in ("n_positive", "n_negative", "n_neutral") if c in exact]
                topk.add(int(exact[counts].iloc[-1].sum()))
            label = _run_label(run, runs)
            per_step = _lambda1(run)
            if per_step is None:
                missing.append(run.run_id)
            else:
                data.plot(
                    ax_ext,
                    f"{where}extremes",
                    f"{label}: λ1 per step",
                    per_step["step"],
                    per_step["lambda_1"],
                    color=colour,
                    linewidth=0.8,
                    label=f"{label}: λ1 between readouts",
                )
            for column, marker, sym in (("lambda_1", "o", "λ1"), ("lambda_N", "s", "λN")):
                data.plot(
                    ax_ext,
                    f"{where}extremes",
                    f"{label}: {sym}",
                    exact["step"],
                    exact[column],
                    marker=marker,
                    ms=3,
                    linestyle="none" if per_step is not None or sym == "λ1" else ":",
                    color=colour,
                    label=f"{label}: {sym} at readouts",
                )
            qcols = sorted(
                (c for c in exact.columns if c.startswith("q")), key=lambda c: float(c[1:])
            )
            if qcols:
                lo, hi = qcols[0], qcols[-1]
                mid = min(qcols, key=lambda c: abs(float(c[1:]) - 0.5))
                data.add(
                    f"{where}quantiles",
                    f"{label}: median",
                    exact["step"],
                    exact[mid],
                    exact[lo],
                    exact[hi],
                )
                ax_q.fill_between(
                    exact["step"], exact[lo], exact[hi], color=colour, alpha=0.2, linewidth=0
                )
                ax_q.plot(exact["step"], exact[mid], color=colour, marker="o", ms=3)
                quantiles = f"median, {lo[1:]}–{hi[1:]} quantiles"
            for sym, column, marker, dash in (
                ("λ>0", "n_positive", "o", "-"),
                ("λ<0", "n_negative", "s", "--"),
            ):
                data.plot(
                    ax_n,
                    f"{where}counts",
                    f"{label}: {sym}",
                    exact["step"],
                    exact[column],
                    color=colour,
                    marker=marker,
                    ms=3,
                    linestyle=dash,
                )
        ax_ext.set_title(f"({next(tags)}) {where}λ1 (line); readouts: λ1 (○), λN (□)", loc="left")
        ax_q.set_title(f"({next(tags)}) {where}{quantiles} at readouts", loc="left")
        ax_n.set_title(f"({next(tags)}) {where}λ>0 (○), λ<0 (□) at readouts", loc="left")
        for ax in (ax_ext, ax_q):
            ax.axhline(0, color="#888888", linewidth=0.6)
            ax.set_ylabel("exponent (per step)")
        ax_n.set_ylabel("number of exponents")
    for row in range(3):
        _share_y(axes[row * ncol : (row + 1) * ncol])
    for ax in axes:
        _step_axis(ax, steps)
    note = ""
    if topk:
        ks = ", ".join(map(str, sorted(topk)))
        # the suptitle's second line: short enough for the figure's width
        note += f"; lyapunov.topk: the {ks} leading ones (lower bounds; λN is the last of them)"
    if missing:
        note += f"; no per-step λ1 for {', '.join(missing)} (older results): readouts only"
    style.suptitle(
        fig,
        title(runs, name)
        + "\nfinite-time Lyapunov exponents ln σ_i(Y(t))/t of the tangent map (log step axis)"
        + note,
    )
    style.legend_below(fig, 3 * len(runs))
    return fig, data


# App. C.2's subspace pairs (chaosgd.engine.exponents.stability_row): (column suffix, label, colour)
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
    :func:`chaosgd.engine.exponents.stability_row` writes it); tables of older runs compare each
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

    Where SGD runs are among CGD ones only the SGD runs are drawn, as the title says: CGD pruning
    the chaotic eigenspace leaves no chaotic subspace (Theorem 2.2), whose similarities are NaN.
    """
    left_out = []
    if any(r.settings["variant"] == "sgd" for r in runs):
        left_out = [r.run_id for r in runs if r.settings["variant"] != "sgd"]
        runs = [r for r in runs if r.settings["variant"] == "sgd"]
    tables = [(run, *_read_subspaces(run)) for run in runs]
    rows: list[tuple[Run, int | None, pd.DataFrame]] = []
    for run, df, fixed in tables:
        if fixed:
            rows += [(run, int(t0), g) for t0, g in df.groupby("t0", sort=True)]
        else:
            rows.append((run, None, df))
    cross = any(f"similarity_{p}" in df for _, _, df in rows for p, _, _ in SUBSPACE_CROSS)
    cols = 3 if cross else 2
    fig, axes = style.figure(cols * len(rows), height=2.2, rows=len(rows))
    data = FigureData()
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
                for what, suffix, dash in SUBSPACE_LINES:
                    if f"{what}_{pair}" in df:
                        data.plot(
                            ax,
                            panel,
                            pair + suffix,
                            df["step"],
                            df[f"{what}_{pair}"],
                            color=colour,
                            linestyle=dash,
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
            for what, dash in (("dim", "-"), ("dim0", "--")):
                if f"{what}_{pair}" in df:
                    data.plot(
                        ax_dim,
                        panel,
                        f"{what} {pair}",
                        df["step"],
                        df[f"{what}_{pair}"],
                        color=colour,
                        linestyle=dash,
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
    if left_out:
        what += f"; SGD runs only (left out: {', '.join(left_out)})"
    style.suptitle(fig, title(runs, name) + f"\nstability of the Lyapunov subspaces, {what}")
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
