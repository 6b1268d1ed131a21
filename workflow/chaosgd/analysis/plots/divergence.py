"""The perturbed ensembles (Sec. 4.2): the distances d(t) of copies perturbed at initialization
by ε along the Lyapunov directions to their reference, per strategy (Fig. 3a), with the fits
√(αt² + βt + ε²) of the fits stage and the Lyapunov bounds e^{λN t}ε ≤ d(t) ≤ e^{λ1 t}ε
(Fig. 3b, App. C.5), over the ε sweep (App. C.3), and in float32 against float64 (App. C.4)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from chaosgd.analysis.plots import style
from chaosgd.analysis.plots.figure_data import FigureData
from chaosgd.analysis.plots.loading import TABLES, Run, dataset_title, title
from chaosgd.engine.models import init_distance
from chaosgd.planning.vocab import STRATEGIES, TOPK_ABSENT
from chaosgd.runs.artifacts import read_parquet
from chaosgd.runs.data import recorded_model


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
    return [s for s in style.strategy_order() if s in present]


def _absent(df: pd.DataFrame) -> list[str]:
    """The strategies an ensembles table lacks (around a top-k Lyapunov run: those its k leading
    vectors do not give), in legend order."""
    present = set(df["strategy"])
    return [s for s in style.strategy_order() if s not in present]


def _topk(absent: list[str]) -> bool:
    """Whether the ensembles lacked just what a top-k Lyapunov run does not give: the figures
    read no exponents, and the strategies say it (:func:`chaosgd.planning.vocab.strategies_for`)."""
    return bool(absent) and not any(STRATEGIES[s].topk for s in absent)


def absent_note(absent: list[str]) -> str:
    """What a figure says of the strategies it leaves out ("" for none): their panels and series
    are not drawn, and around a top-k Lyapunov run why."""
    if not absent:
        return ""
    names = ", ".join(STRATEGIES[s].label for s in absent)
    why = f" (a top-k Lyapunov reference: {TOPK_ABSENT})" if _topk(absent) else ""
    return f"\nnot run, not drawn: {names}{why}"


# the Lyapunov bounds around a top-k reference: what the fit and bounds figures draw there
TOPK_BOUNDS = (
    "; top-k Lyapunov reference: e^{λ̂1 t}ε with λ̂1 ≤ λ1 is below the upper bound, no λN "
    "(no lower bound)"
)


def _bounds(run: Run) -> pd.DataFrame:
    """The fits stage's bounds at the exact readouts, checked as :meth:`Run.table` checks, but
    possibly without rows: around a top-k reference no readout gives λN, and there are none."""
    required, finite = TABLES["bounds"]
    numeric = [c for c in required if c not in ("dtype", "strategy")]
    path = run.path("bounds", "fits")
    return read_parquet(path, require=required, finite=finite, numeric=numeric)


def _ref_title(run: Run) -> str:
    s = run.settings
    return f"{dataset_title(s)}, seed {s['seed']}"


def _upper_per_step(run: Run, eps: float) -> pd.DataFrame | None:
    """The upper bound e^{λ1(t)t}ε wherever λ1(t) was computed (t ≥ 1) from the Lyapunov stage's per-step λ1
    (``lambda1.parquet``; columns step, upper), or None for results that predate it. Formed
    from λ1 t = ln σ1 in logs: past float range it is inf, and not drawn."""
    if not run.path("lambda1", "lyapunov").exists():
        return None
    lam = run.table("lambda1", stage="lyapunov")
    with np.errstate(over="ignore"):
        upper = eps * np.exp(lam["lambda_1"].to_numpy() * lam["step"].to_numpy(dtype=float))
    return pd.DataFrame({"step": lam["step"].to_numpy(), "upper": upper})


def _within(df: pd.DataFrame, last: float) -> pd.DataFrame:
    """The rows up to the distances' last step: λ1 is recorded for the whole run."""
    return df[df["step"] <= last]


INIT_DISTANCE_LABEL = "E‖θ₁−θ₂‖ of two default inits (App. A.8)"


def expected_init_distance(settings: dict) -> float:
    """√E‖θ₁ − θ₂‖² of two default initializations of the run's model (App. A.8): 4.515 for
    the paper's MLP 256-20-10 (the paper's 6.38 is √2 times that, a variance counted twice);
    the model of the run's width, depth and image side."""
    return init_distance(recorded_model(settings))


def plot_divergence(runs: list[Run], name: str, eps: float):
    """Distance of each perturbed copy to its reference over training, per strategy, ε = ``eps``
    (Fig. 3a); one panel per reference run, in the reference's dtype, with the expected distance
    of two default initializations of its model (App. A.8) as a horizontal line, the scale
    against which the paper reads the distances.

    Data: a panel per reference (its run id), series the strategies and ``init_distance``.
    """
    data = FigureData()
    fig, axes = style.figure(len(runs), height=2.6)
    absent: list[str] = []
    for tag, (ax, run) in zip("abcdefgh", zip(axes, runs)):
        df = run.table("distances", stage="ensembles")
        dtype = _main_dtype(run, df)
        absent += [s for s in _absent(df) if s not in absent]
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
    style.suptitle(
        fig,
        f"{name}: divergence of models perturbed at initialization by ε = {eps:g} along "
        "Lyapunov directions\n"
        + title(runs[:1], runs[0].run_id).split(": ", 1)[1]
        + absent_note([s for s in style.strategy_order() if s in absent]),
    )
    style.legend_below(fig, 3)  # 6 entries in 2 rows: 4 columns outgrow the figure
    return fig, data


def plot_fit(runs: list[Run], name: str, eps: float):
    """The distances of the first run with their √(αt² + βt + ε²) fits, and between the Lyapunov
    bounds on a log scale (Fig. 3b): the upper bound e^{λ1(t)t}ε wherever λ1(t) was computed (line, λ1 from
    ``lambda1.parquet``; ▲ at the exact readouts), the lower bound e^{λN(t)t}ε at the exact
    readouts only (▼: λN per step would need O(N³) solves).

    Data: panel ``fit`` (series "<strategy>", "<strategy>: fit"), panel ``bounds`` (series
    "<strategy>", "upper" where λ1(t) was computed, "upper: readouts", "lower" at the readouts).
    """
    run = runs[0]
    df = run.table("distances", stage="ensembles")
    fits = run.table("fits", stage="fits")
    bounds = _bounds(run)
    dtype = _main_dtype(run, df)
    data = FigureData()
    fig, (ax_fit, ax_b) = style.figure(2)
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
    sel = df[(df["eps"] == eps) & (df["dtype"] == dtype)]
    per_step = _upper_per_step(run, eps)
    upper_top = float(b["upper"].max()) if len(b) else 0.0
    if per_step is not None:
        per_step = _within(per_step, float(sel["step"].max()))
        data.plot(
            ax_b,
            "bounds",
            "upper",
            per_step["step"],
            per_step["upper"],
            color=style.BOUND_COLOUR,
            linewidth=1.0,
            label="upper bound e^{λ1(t) t}ε where λ1(t) was computed",
        )
        finite = per_step["upper"][np.isfinite(per_step["upper"])]
        upper_top = max(upper_top, float(finite.max()) if len(finite) else 0.0)
    data.plot(
        ax_b,
        "bounds",
        "upper: readouts" if per_step is not None else "upper",
        b["step"],
        b["upper"],
        color=style.BOUND_COLOUR,
        marker="^",
        ms=3,
        linestyle="none" if per_step is not None else "-",
        label="e^{λ1 t}ε at the exact readouts",
    )
    data.plot(
        ax_b,
        "bounds",
        "lower",
        b["step"],
        b["lower"],
        color=style.BOUND_COLOUR,
        marker="v",
        ms=3,
        linestyle="none",
        label="lower bound e^{λN t}ε, exact readouts only",
    )
    ax_b.set_yscale("log")
    # the lower bound goes to 0 (e^{λN t} with λN < 0): show it only down to well below the data
    data_min = sel["distance"].min()
    ax_b.set_ylim(data_min / 1e3, max(upper_top, float(df["distance"].max())) * 3)
    ax_fit.set_title("(a) data and fit √(αt² + βt + ε²) (red, dashed)", loc="left")
    ax_b.set_title("(b) data between the Lyapunov bounds (log scale)", loc="left")
    for ax in (ax_fit, ax_b):
        ax.set_xlabel("step")
        ax.set_ylabel("‖θ_B(t) − θ_A(t)‖")
    note = "" if per_step is not None else "; no per-step λ1 (older results): bounds at readouts"
    absent = _absent(df)
    note += TOPK_BOUNDS if _topk(absent) else ""
    style.suptitle(fig, title(runs, name) + f"\nε = {eps:g}, {dtype}{note}" + absent_note(absent))
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
    colours = style.eps_colours(sorted(set(df["eps"])))
    data = FigureData()
    fig, axes = style.figure(len(strategies) + 1, height=2.2, rows=2)
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
    style.suptitle(fig, title(runs, name) + f"\nthe ε sweep, {dtype}" + absent_note(_absent(df)))
    style.legend_below(fig, len(colours))
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
    colours = style.eps_colours(small)
    dtypes = list(dict.fromkeys(df["dtype"]))
    data = FigureData()
    fig, axes = style.figure(len(strategies), height=2.2, rows=2)
    for tag, (ax, strategy) in zip("abcde", zip(axes, strategies)):
        for eps, colour in colours.items():
            # the first dtype wide and light, the next ones thin and dashed on top of it, so
            # that coinciding curves stay visible
            for i, dtype in enumerate(dtypes):
                c = _curve(df, strategy, eps, dtype)
                label = f"ε = {eps:g}, {dtype}" if ax is axes[0] else None
                dash = (
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
                    **dash,
                )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("d(t) / ε")
        ax.set_title(f"({tag}) {STRATEGIES[strategy].label}", loc="left")
    style.suptitle(
        fig,
        title(runs, name)
        + "\nsmall perturbations: "
        + " (wide) vs ".join(dtypes)
        + (" (dashed)" if len(dtypes) > 1 else "")
        + ", each against its own reference"
        + absent_note(_absent(df)),
    )
    style.legend_below(fig, len(colours) * len(dtypes))
    return fig, data


def plot_bounds(runs: list[Run], name: str, eps: float):
    """Distances against the Lyapunov bounds e^{λN t}ε ≤ d(t) ≤ e^{λ1 t}ε, one panel per strategy
    (App. C.5): the distance at every recorded step (line), the upper bound wherever λ1(t) was computed (line,
    λ1 from ``lambda1.parquet``; ▲ at the exact readouts), the lower bound at the exact readouts
    only (▼: λN per step would need O(N³) solves), with the fraction of readouts where each
    bound holds and the upper bound's worst margin between readouts (the fits stage's
    ``upper_margin_steps``).

    Data: a panel per strategy, series ``distance`` (every recorded step), ``upper`` (every
    step), ``upper: readouts``, ``lower`` (readouts).
    """
    run = runs[0]
    bounds = _bounds(run)
    fits = run.table("fits", stage="fits")
    distances = run.table("distances", stage="ensembles")
    dtype = _main_dtype(run, distances)  # bounds has no rows around a top-k reference
    b = bounds[(bounds["eps"] == eps) & (bounds["dtype"] == dtype)]
    # a panel per direction of the ensembles: around a top-k reference no exact readout gives
    # bounds, and its panels show the distance and e^{λ̂1 t}ε alone
    strategies = _strategies(distances)
    absent = _absent(distances)
    per_step = _upper_per_step(run, eps)
    data = FigureData()
    fig, axes = style.figure(len(strategies), height=2.2, rows=2)
    for tag, (ax, strategy) in zip("abcde", zip(axes, strategies)):
        label, colour = STRATEGIES[strategy].label, STRATEGIES[strategy].colour
        c = b[b["strategy"] == strategy].sort_values("step")
        d = _curve(distances, strategy, eps, dtype)
        f = _curve(fits, strategy, eps, dtype).iloc[0]
        first = ax is axes[0]
        data.plot(
            ax,
            strategy,
            "distance",
            d["step"],
            d["distance"],
            color=colour,
            label="distance" if first else None,
        )
        if per_step is not None:
            line = _within(per_step, float(d["step"].max()))
            data.plot(
                ax,
                strategy,
                "upper",
                line["step"],
                line["upper"],
                color=style.BOUND_COLOUR,
                linewidth=1.0,
                label="e^{λ1(t) t} ε where λ1(t) was computed" if first else None,
            )
        for col, series, marker, legend in (
            ("upper", "upper: readouts" if per_step is not None else "upper", "^", "e^{λ1 t} ε"),
            ("lower", "lower", "v", "e^{λN t} ε"),
        ):
            data.plot(
                ax,
                strategy,
                series,
                c["step"],
                c[col],
                color=style.BOUND_COLOUR,
                marker=marker,
                ms=3,
                ls="none",
                label=f"{legend} at the exact readouts" if first else None,
            )
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("distance")
        every = ""
        if "upper_margin_steps" in f and int(f.get("upper_steps", 0)) > 0:
            every = f"; between readouts: worst ln(upper/d) {f['upper_margin_steps']:.2f}"
        held = (
            f"at readouts lower holds {f['lower_bound_holds']:.0%}, "
            f"upper {f['upper_bound_holds']:.0%}"
            if int(f.get("bound_steps", 1)) > 0
            else "no exact readout"
        )
        ax.set_title(f"({tag}) {label}\n{held}{every}", loc="left")
    note = "" if per_step is not None else "; no per-step λ1 (older results): readouts only"
    note += TOPK_BOUNDS if _topk(absent) else ""
    style.suptitle(
        fig,
        title(runs, name)
        + f"\nLyapunov bounds: upper where λ1(t) was computed, lower at the readouts, ε = {eps:g}, {dtype}"
        + note
        + absent_note(absent),
    )
    style.legend_below(fig, 4)
    return fig, data
