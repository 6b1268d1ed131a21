"""Training curves of the runs of an experiment (Sec. 4.1), mean ± std over seeds per
condition: training accuracy and loss per step (Fig. 1, Fig. 2, App. B.1), validation and full
training-set values per epoch (App. B.1), and the Hessian spectrum per step with the gradient's
share of its positive and negative eigenspaces (App. B.2)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from chaosgd.analysis.plots import style
from chaosgd.analysis.plots.figure_data import FigureData
from chaosgd.analysis.plots.loading import Run, title
from chaosgd.runs.artifacts import parquet_columns


def conditions(runs: list[Run]) -> dict[tuple, list[Run]]:
    """Runs grouped by (variant, onset, momentum), SGD first, in a stable order."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.condition, []).append(run)

    def order(key):
        variant, onset, momentum = key
        return (variant != "sgd", variant, onset, momentum)

    return {k: groups[k] for k in sorted(groups, key=order)}


def _seed_stats(frames: list[pd.DataFrame], x: str, y: str, window: int):
    """Mean and std over seeds of a smoothed column, aligned on ``x``."""
    wide = pd.concat(
        [style.smooth(f.set_index(x)[y], window).rename(i) for i, f in enumerate(frames)],
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
        return style.variant_label(variant, onset, momentum, show)

    def draw(
        self,
        ax,
        data: FigureData,
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
            xs, mean, *rest = style.thin(xs, mean, *([std] if std is not None else []))
            colour = style.variant_colour(variant, onset, self.onsets)
            dash = linestyle or style.variant_linestyle(variant)
            label = self.label(key) if legend else None
            spread = rest[0] if rest else None
            data.band(ax, panel, self.label(key) + suffix, xs, mean, spread, colour, label, dash)

    def onset_lines(self, ax) -> None:
        """Dotted vertical lines at the pruning onsets."""
        for onset in (o for o in self.onsets if o):
            ax.axvline(onset, color="#888888", linewidth=0.6, linestyle=":")


def plot_curves(runs: list[Run], name: str, window: int = 50):
    """Training accuracy and loss per step, mean ± std over seeds (Fig. 1, Fig. 2, App. B.1).

    Batch values smoothed with a moving average of ``window`` steps, as in the paper; pruning
    onsets are marked by dotted vertical lines. Data: panels ``accuracy`` and ``loss``, one
    series per condition (its legend label), the band mean ± std over seeds.
    """
    cond = Conditions.of(runs)
    data = FigureData()
    fig, (ax_acc, ax_loss) = style.figure(2)
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
    style.suptitle(
        fig, title(runs, name) + f"\nmoving average of {window} steps; mean ± std over seeds"
    )
    style.legend_below(fig, len(cond.groups))
    return fig, data


def plot_validation(runs: list[Run], name: str):
    """Validation and full training-set accuracy and loss per epoch, mean ± std (App. B.1).

    Data: panels ``accuracy`` and ``loss``, series "<condition>: validation" and
    "<condition>: training set" over the epoch.
    """
    cond = Conditions.of(runs)
    data = FigureData()
    fig, (ax_acc, ax_loss) = style.figure(2)
    for ax, panel, column, dash, suffix in (
        (ax_acc, "accuracy", "val_acc", "-", ": validation"),
        (ax_acc, "accuracy", "train_acc", "--", ": training set"),
        (ax_loss, "loss", "val_loss", "-", ": validation"),
        (ax_loss, "loss", "train_loss", "--", ": training set"),
    ):
        legend = ax is ax_acc and column == "val_acc"
        cond.draw(ax, data, panel, "epochs", "epoch", column, 1, dash, legend, suffix)
    for ax, ylabel in ((ax_acc, "accuracy"), (ax_loss, "loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
    ax_acc.set_title("(a) validation (solid), full training set (dashed)", loc="left")
    ax_loss.set_title("(b)", loc="left")
    ax_loss.set_yscale("log")
    style.suptitle(fig, title(runs, name) + "\nper epoch; mean ± std over seeds")
    style.legend_below(fig, len(cond.groups))
    return fig, data


# App. B.2 in two conventions. Ours counts the nonzero eigenvalues (|λ| above the curvature
# engine's null tolerance) and measures the gradient's energy ‖P g‖²/‖g‖² in each eigenspace.
# The reference code counted the signs of all N eigenvalues of a dense float32 Hessian, the
# numerically null ones falling to either side (split evenly here), and averaged |cos(g, v)|
# over the eigenvectors of each sign (chaosgd.engine.cgd.spectrum_diagnostics).
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
    data = FigureData()
    singles = SPECTRUM_OURS + (SPECTRUM_REF if has_ref else ())
    pairs = ["grad_frac"] + (["ref_cos", "cos_extreme"] if has_ref else [])
    rows = 2 if has_ref else 1
    fig, axes = style.figure(len(singles) + len(pairs), height=2.3, rows=rows)
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
    style.suptitle(
        fig,
        title(runs, name)
        + f"\nHessian spectrum per step, moving average of {window} steps\n"
        + conventions,
    )
    style.legend_below(fig, len(cond.groups))
    return fig, data
