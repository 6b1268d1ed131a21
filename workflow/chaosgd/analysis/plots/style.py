"""Shared figure style: column-width figures, labels and colours of runs, smoothing, bands.

What a figure draws is recorded and saved by :mod:`chaosgd.analysis.plots.figure_data`."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on clusters and CI; set before pyplot is imported

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from chaosgd.planning.run_settings import Variant  # noqa: E402
from chaosgd.planning.vocab import PRUNE_SETS, STRATEGIES  # noqa: E402

FULL_WIDTH = 7.0  # inches: a two-column paper's text width
COLUMN_WIDTH = 3.4

STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "lines.linewidth": 1.1,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # embed TrueType, so the text stays editable and searchable
}

SGD_COLOUR = "#222222"


def figure(n_panels: int, width: float = FULL_WIDTH, height: float = 2.6, rows: int = 1, **kwargs):
    """Panels in ``rows`` rows (``height`` per row); constrained layout keeps titles, legends
    and labels apart. Unused trailing panels are hidden."""
    plt.rcParams.update(STYLE)
    cols = -(-n_panels // rows)
    fig, axes = plt.subplots(
        rows, cols, figsize=(width, height * rows), squeeze=False, layout="constrained", **kwargs
    )
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def suptitle(fig, text: str) -> None:
    """The figure's title, flush left and small: it names the runs and settings drawn, which
    take several lines."""
    fig.suptitle(text, x=0.01, ha="left", fontsize=8)


def legend_below(fig, n_entries: int) -> None:
    """One legend for the whole figure, under the panels."""
    fig.legend(loc="outside lower center", ncol=min(4, max(1, n_entries)))


def variant_linestyle(variant: str) -> str:
    """Chaotic pruning is dashed: it often equals negative pruning (no λ > 2/η) and would hide
    it."""
    v = Variant.parse(variant)
    return "--" if v.optimizer == "cgd" and v.prune_set == "chaotic" else "-"


def variant_label(variant: str, onset: int = 0, momentum: float = 0.0, show_momentum=False) -> str:
    """A variant's legend label, e.g. "SGD" or "CGD chaotic top-10 from step 500" (μ if asked)."""
    v = Variant.parse(variant)
    if v.optimizer == "sgd":
        label = "SGD"
    else:
        sel = {"all": "", "top_k": f" top-{v.k}", "random_k": f" random-{v.k}"}[v.selection]
        label = f"CGD {v.prune_set}{sel}" + (" +noise" if v.noise else "")
        if onset:
            label += f" from step {onset}"
    if show_momentum:
        label += f" (μ={momentum:g})"
    return label


def variant_colour(variant: str, onset: int, onsets: list[int]) -> str:
    """A variant's line colour: SGD dark grey, CGD its prune set's colour, lighter for top-k /
    random-k selections and for later ones of several pruning ``onsets``.
    """
    v = Variant.parse(variant)
    if v.optimizer == "sgd":
        return SGD_COLOUR
    base = PRUNE_SETS[v.prune_set].colour
    if v.selection != "all":
        # top-k / random-k of one set share its colour family, lighter
        return matplotlib.colors.to_hex(
            _mix(base, "#ffffff", 0.35 if v.selection == "top_k" else 0.6)
        )
    positive = sorted(o for o in onsets if o)
    if onset and len(positive) > 1:
        return matplotlib.colors.to_hex(
            _mix(base, "#ffffff", 0.55 * positive.index(onset) / (len(positive) - 1))
        )
    return base


def _mix(a: str, b: str, t: float):
    ca, cb = np.array(matplotlib.colors.to_rgb(a)), np.array(matplotlib.colors.to_rgb(b))
    return tuple((1 - t) * ca + t * cb)


def smooth(values: pd.Series, window: int) -> pd.Series:
    """Centred moving average (the paper's 'local averaging', window 50)."""
    if window <= 1:
        return values
    return values.rolling(window, center=True, min_periods=1).mean()


def thin(x: np.ndarray, *ys: np.ndarray, max_points: int = 2000):
    """Every k-th point, so long runs stay light in vector formats (after smoothing)."""
    step = max(1, len(x) // max_points)
    return (x[::step], *(y[::step] for y in ys))


def band(ax, x, mean, spread, colour, label, linestyle="-"):
    """A mean line with a shaded ± spread band."""
    ax.plot(x, mean, color=colour, label=label, linestyle=linestyle)
    if spread is not None and np.any(spread > 0):
        ax.fill_between(x, mean - spread, mean + spread, color=colour, alpha=0.2, linewidth=0)


def strategy_order() -> list[str]:
    """The perturbation strategies in legend order, the most divergent first."""
    return sorted(STRATEGIES, key=lambda s: STRATEGIES[s].rank)


BOUND_COLOUR = "#762a83"


def eps_colours(values) -> dict[float, tuple]:
    """A colour per ε on a sequential scale (small ε light, large ε dark)."""
    values = sorted(values)
    cmap = matplotlib.colormaps["viridis_r"]
    n = max(1, len(values) - 1)
    return {v: cmap(0.1 + 0.8 * i / n) for i, v in enumerate(values)}


def run_colours(n: int) -> list[tuple]:
    """``n`` distinct colours (tab10, cycling), one per run where runs are drawn one by one."""
    return [matplotlib.colormaps["tab10"](i % 10) for i in range(n)]
