"""The minibatch Hessian's eigenvalue distribution over training (App. B.2): histograms at a few
recorded steps and the density of step against eigenvalue, from the nonzero eigenvalues that
runs with the spectrum keep at their evaluation steps (``spectra.parquet``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.scale import SymmetricalLogTransform
from matplotlib.ticker import FixedLocator

from chaosgd.analysis.plots import style
from chaosgd.analysis.plots.figure_data import FigureData
from chaosgd.analysis.plots.loading import Run, title
from chaosgd.analysis.plots.training import conditions
from chaosgd.planning.tables import SPECTRA

HISTOGRAM_STEPS = 6  # histograms drawn: the first recorded step, the last, and between
BINS = 80  # over the symmetric-log axis, of equal width there
LINSCALE = 1.0  # the linear part's width on the axis, in decades (matplotlib's symlog)


def pooled(runs: list[Run]) -> tuple[tuple, list[Run]]:
    """The condition drawn and its runs: SGD's seeds, or where SGD did not record the spectrum
    the first condition that did (CGD always does); ``ValueError`` when no run did."""
    # by the settings, not by the file: a run that should have eigenvalues and has none is a
    # damaged file to name, not a run to leave out
    recorded = [r for r in runs if r.settings["spectrum"] or r.settings["variant"] != "sgd"]
    if not recorded:
        raise ValueError("no run recorded the Hessian spectrum (training.spectrum)")
    key, members = next(iter(conditions(recorded).items()))  # SGD first
    return key, members


def symlog_bins(values: np.ndarray, mark: float, bins: int = BINS):
    """``bins`` (even) bins of equal width on a symmetric-log axis that covers ``values`` and
    ``mark`` (2/η): (edges, centres, linthresh). The linear part ends at the decade below the
    1 % quantile of |λ|, so that nearly every eigenvalue falls where the axis is logarithmic."""
    magnitude = np.abs(values[values != 0])
    if magnitude.size == 0:
        raise ValueError("no nonzero eigenvalue to draw")
    linthresh = 10.0 ** np.floor(np.log10(np.quantile(magnitude, 0.01)))
    top = 10.0 ** np.ceil(np.log10(max(magnitude.max(), abs(mark))))
    top = max(top, 10 * linthresh)
    transform = SymmetricalLogTransform(10, linthresh, LINSCALE)
    inverse = transform.inverted()
    # the positive half, mirrored: both signs alike and 0 an edge
    half = np.linspace(0.0, transform.transform(np.array([top]))[0], bins // 2 + 1)
    positive = inverse.transform(half)
    positive[0], positive[-1] = 0.0, top  # no round-off at the ends: every value is binned
    middles = inverse.transform((half[:-1] + half[1:]) / 2)
    edges = np.concatenate([-positive[:0:-1], positive])
    centres = np.concatenate([-middles[::-1], middles])
    return edges, centres, float(linthresh)


def _decade_ticks(linthresh: float, top: float) -> FixedLocator:
    """0 and every k-th decade of a symmetric-log axis down from ``top``, k such that each sign
    gets about 3, none at ±``linthresh`` (its label would run into 0's)."""
    high, low = round(np.log10(top)), round(np.log10(linthresh))
    every = max(1, -(-(high - low) // 3))
    powers = 10.0 ** np.arange(high, low, -every)
    return FixedLocator(np.concatenate([-powers, [0.0], powers[::-1]]))


def _step_edges(steps: np.ndarray) -> np.ndarray:
    """Cell edges around the recorded steps: half way between neighbours, the ends as far out
    as their neighbour's half gap."""
    if len(steps) == 1:
        return np.array([steps[0] - 0.5, steps[0] + 0.5])
    mid = (steps[:-1] + steps[1:]) / 2
    return np.concatenate([[2 * steps[0] - mid[0]], mid, [2 * steps[-1] - mid[-1]]])


def plot_spectra(runs: list[Run], name: str):
    """The eigenvalue distribution of the minibatch Hessian over training (App. B.2).

    Pooled over the seeds of SGD (else of the first condition that recorded the spectrum), as
    mean counts per run of the nonzero eigenvalues kept at the evaluation steps: (a) histograms
    at up to :data:`HISTOGRAM_STEPS` recorded steps spread over training (the first, the last
    and between) on a symmetric-log eigenvalue axis, 2/η dashed (above it, and below 0, the
    step is chaotic: |1 − ηλ| > 1); (b) the density, step against eigenvalue (symmetric log),
    its counts on a log colour scale.

    Data: panel ``histogram``, series ``step <s>`` (x the bin's centre eigenvalue, y the mean
    count per run, every bin) and ``2/eta`` (x = 2/η at both ends of the counts drawn); panel
    ``density``, series ``step <s>`` for every recorded step (x the bin's centre eigenvalue, y
    the mean count per run, the nonzero bins: the cells drawn). Raises ``ValueError`` when no
    run recorded the spectrum, and :class:`chaosgd.runs.artifacts.UnreadableFile` naming a run's
    ``spectra.parquet`` that is missing or has no eigenvalues.
    """
    key, members = pooled(runs)
    tables = [m.table(SPECTRA.name) for m in members]
    spectra = pd.concat(tables, ignore_index=True)
    lr = float(members[0].settings["lr"])
    chaotic = 2.0 / lr
    values = spectra[SPECTRA.eigenvalue].to_numpy(dtype=float)
    edges, centres, linthresh = symlog_bins(values, chaotic)
    steps = np.sort(spectra[SPECTRA.step].unique())
    counts = np.stack(
        [np.histogram(values[spectra[SPECTRA.step].to_numpy() == s], edges)[0] for s in steps]
    ) / len(members)

    data = FigureData()
    fig, (ax_hist, ax_density) = style.figure(2, height=3.0)
    picks = np.unique(np.round(np.linspace(0, len(steps) - 1, min(HISTOGRAM_STEPS, len(steps)))))
    colours = style.plt.get_cmap("viridis")
    last = max(int(steps[-1]), 1)
    for i in picks.astype(int):
        step = int(steps[i])
        data.add("histogram", f"step {step}", centres, counts[i])
        ax_hist.stairs(
            counts[i], edges, color=colours(0.9 * step / last), label=f"step {step}", linewidth=1
        )
    drawn = counts[picks.astype(int)]
    low = drawn[drawn > 0].min()
    data.add("histogram", "2/eta", [chaotic, chaotic], [low, drawn.max()])
    ax_hist.axvline(chaotic, color="#d62728", linewidth=0.8, linestyle="--")
    ax_hist.set_xscale("symlog", linthresh=linthresh, linscale=LINSCALE)
    # a label every few decades: one per decade overlap across a dozen decades of both signs
    ax_hist.xaxis.set_major_locator(_decade_ticks(linthresh, edges[-1]))
    ax_hist.set_yscale("log")
    ax_hist.set_ylim(top=drawn.max() * 8)  # room for the legend above the histograms
    ax_hist.set_xlim(edges[0], edges[-1])
    ax_hist.set_xlabel("eigenvalue λ (symmetric log)")
    ax_hist.set_ylabel("eigenvalues per run (mean count per bin)")
    ax_hist.set_title("(a) at recorded steps; 2/η dashed", loc="left")
    ax_hist.legend(loc="upper left", fontsize=6, ncol=3)

    for step, row in zip(steps, counts):
        kept = row > 0
        data.add("density", f"step {int(step)}", centres[kept], row[kept])
    cells = np.ma.masked_equal(counts.T, 0)
    mesh = ax_density.pcolormesh(
        _step_edges(steps.astype(float)),
        edges,
        cells,
        norm=LogNorm(vmin=cells.min(), vmax=cells.max()),
        cmap="viridis",
        shading="flat",
    )
    ax_density.axhline(chaotic, color="#d62728", linewidth=0.8, linestyle="--")
    ax_density.set_yscale("symlog", linthresh=linthresh, linscale=LINSCALE)
    ax_density.yaxis.set_major_locator(_decade_ticks(linthresh, edges[-1]))
    ax_density.set_ylim(edges[0], edges[-1])
    ax_density.set_xlabel("step")
    ax_density.set_ylabel("eigenvalue λ (symmetric log)")
    ax_density.set_title("(b) over training; 2/η dashed", loc="left")
    fig.colorbar(mesh, ax=ax_density, label="eigenvalues per run")

    condition = style.variant_label(*key, show_momentum=bool(key[2]))
    style.suptitle(
        fig,
        title(members, name)
        + f"\nnonzero minibatch-Hessian eigenvalues at {len(steps)} evaluation steps, "
        + f"{condition}, mean over {len(members)} run(s); linear within ±{linthresh:.0e}, "
        + f"2/η = {chaotic:g}",
    )
    return fig, data
