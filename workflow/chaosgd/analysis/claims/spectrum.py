"""The claims on the Hessian spectrum along SGD's path (Sec. 4.1, Sec. 4.2, App. B.2).

3. App. B.2: positive-chaotic eigenvalues (λ > 2/η) ≈ 0: their mean count per step, upper end <
   ``CHAOTIC_PER_STEP`` (0.5). The number of negative eigenvalues falls and of positive ones
   rises: among the nonzero eigenvalues n₋ + n₊ is the rank, so this is one statement, on the
   share of negative ones n₋/(n₋ + n₊) per step: its mean over the last tenth of the steps
   minus the first tenth, upper end < 0 (the positive share rises by as much). The absolute
   counts' changes are reported beside, and the reference code's convention (all N, the null
   ones split by rounding, here evenly), in which the share is n₋/N, with the verdict it gives.
4. App. B.2: the gradient overlaps more with the positive than with the negative eigenspace:
   mean over steps of (‖P₊g‖² − ‖P₋g‖²)/‖g‖², lower end > 0; the reference code's mean |cos|
   per eigenvector is reported beside.
12. Sec. 4.1, conclusion 3 ("locally chaotic training dynamics are inevitable in SGD"; by
    Theorem 2.1 every λ < 0 is locally chaotic): the fewest nonzero negative eigenvalues at any
    step, lower end ≥ ``MIN_NEGATIVE`` (1).
13. Sec. 4.2, App. B.2 ("we do not observe a full convergence of the Hessian to zero"):
    ‖H‖₂ = max(|λmin|, λmax) per step, its mean over the last tenth of the steps over the
    largest mean over any tenth, lower end ≥ ``NOT_CONVERGED`` (0.1).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from chaosgd.analysis.claims.results import NORM_COLUMNS, SPECTRUM_COLUMNS, Results
from chaosgd.analysis.claims.verdicts import (
    HIGH,
    LOW,
    NOT_SUPPORTED,
    SUPPORTED,
    Claim,
    fmt_stat,
    fmt_values,
    mean_ci,
    measured_claim,
    not_run_claim,
)

CHAOTIC_PER_STEP = 0.5  # "≈ 0" positive-chaotic eigenvalues per step, on average
# "locally chaotic training dynamics are inevitable" (Sec. 4.1): at least this many negative,
# hence locally chaotic (Theorem 2.1), eigenvalues at every step
MIN_NEGATIVE = 1
# "no full convergence of the Hessian to zero" (Sec. 4.2): ‖H‖₂ at the end at least this share of
# its peak level, i.e. not fallen by an order of magnitude
NOT_CONVERGED = 0.1


def _spectrum_runs(res: Results, groups) -> dict[str, list[str]]:
    """SGD runs that recorded the Hessian spectrum, by experiment."""
    out = {}
    for exp, runs in groups.items():
        # by the settings, not by the columns: a steps table that should hold the spectrum and
        # does not is a damaged file to name, not a run to leave out
        chosen = [
            r for r in runs if res.settings(r)["variant"] == "sgd" and res.settings(r)["spectrum"]
        ]
        if chosen:
            # in seed order: the table lists the per-seed values so
            out[exp] = sorted(
                chosen, key=lambda r: (res.settings(r)["seed"], res.settings(r)["momentum"])
            )
    return out


def _measured_once(res: Results, groups) -> list[tuple[str, list[str]]]:
    """(experiment, its SGD spectrum runs), experiments that share their SGD baselines once."""
    out, seen = [], []
    for exp, runs in _spectrum_runs(res, groups).items():
        if set(runs) not in seen:
            seen.append(set(runs))
            out.append((exp, runs))
    return out


def _trend(series: pd.Series, k: int) -> float:
    """Mean of the last ``k`` values minus the mean of the first ``k`` (NaN ones skipped; NaN
    if one side has none)."""
    return float(series.iloc[-k:].mean() - series.iloc[:k].mean())


def _tenths(values: np.ndarray) -> list[float]:
    """Means over the ten consecutive tenths of ``values`` (over each value, with fewer)."""
    return [float(chunk.mean()) for chunk in np.array_split(values, min(10, len(values)))]


_NOT_RUN_WHY = "no SGD run records the Hessian spectrum (training.spectrum: false)"


def claim_spectrum(res: Results, groups) -> list[Claim]:
    """Claims 3 and 4 (App. B.2): the Hessian spectrum and gradient overlaps of SGD runs.

    Positive-chaotic eigenvalues (λ > 2/η) ≈ 0 per step, the share of negative eigenvalues
    among the nonzero ones falling (last tenth of the steps against the first), and the gradient
    overlapping more with the positive than with the negative eigenspace. The verdicts count
    nonzero eigenvalues and measure ‖g‖² fractions; the reference code's conventions are
    reported beside them. Experiments that share SGD runs are measured once.
    """
    rows = []
    keys = ("chaotic", "share", "neg", "pos", "ref_share", "ref_neg", "ref_pos", "frac", "cos")
    for exp, runs in _measured_once(res, groups):
        m = {k: [] for k in keys}
        for r in runs:
            s = res.table("train", r, "steps", finite=SPECTRUM_COLUMNS)
            k = max(1, len(s) // 10)
            m["chaotic"].append(float(s["n_positive_chaotic"].mean()))
            # a step without nonzero eigenvalues has no share (0/0 is NaN, left out of the mean)
            share = s["n_negative"] / (s["n_negative"] + s["n_positive"])
            m["share"].append(_trend(share, k))
            m["neg"].append(_trend(s["n_negative"], k))
            m["pos"].append(_trend(s["n_positive"], k))
            ref_share = s["ref_n_negative"] / (s["ref_n_negative"] + s["ref_n_positive"])
            m["ref_share"].append(_trend(ref_share, k))
            m["ref_neg"].append(_trend(s["ref_n_negative"], k))
            m["ref_pos"].append(_trend(s["ref_n_positive"], k))
            m["frac"].append(float((s["grad_frac_positive"] - s["grad_frac_negative"]).mean()))
            m["cos"].append(float((s["ref_cos_positive"] - s["ref_cos_negative"]).mean()))
        st = {key: mean_ci(v) for key, v in m.items()}
        rows.append(
            measured_claim(
                claim=3,
                statement=(
                    "the number of positive-chaotic eigenvalues (λ > 2/η) is ≈ 0 through "
                    "training (Sec. 4.1, App. B.2)"
                ),
                experiment=exp,
                quantity="positive-chaotic eigenvalues per step (mean)",
                stat=st["chaotic"],
                ok=st["chaotic"].high < CHAOTIC_PER_STEP,
                threshold=f"{HIGH} < {CHAOTIC_PER_STEP:g}",
                criterion=f"mean count per step, {HIGH} < {CHAOTIC_PER_STEP}",
                detail=(
                    "the same in both counting conventions (λ > 2/η is never a null eigenvalue)"
                ),
            )
        )
        share, ref_share = st["share"], st["ref_share"]
        neg, pos, ref_neg, ref_pos = st["neg"], st["pos"], st["ref_neg"], st["ref_pos"]
        rows.append(
            measured_claim(
                claim=3,
                statement=(
                    "the number of negative eigenvalues falls and of positive ones rises over "
                    "training: the share of negative ones among the nonzero eigenvalues falls, "
                    "the positive share rises by as much (Sec. 4.1, App. B.2)"
                ),
                experiment=exp,
                quantity=(
                    "share of negative eigenvalues n₋/(n₋ + n₊) among the nonzero ones, last "
                    "tenth of the steps minus the first tenth"
                ),
                stat=share,
                ok=share.high < 0,
                threshold=f"{HIGH} < 0",
                criterion=(
                    f"n₋ + n₊ is the rank, so one statement: the negative share's change, "
                    f"{HIGH} < 0"
                ),
                detail=(
                    f"absolute counts, last minus first tenth: negative {fmt_stat(neg)}, "
                    f"positive {fmt_stat(pos)}; the reference code's convention (all N "
                    f"eigenvalues, the null ones split evenly): negative {fmt_stat(ref_neg)}, "
                    f"positive {fmt_stat(ref_pos)}, negative share of N {fmt_stat(ref_share)}, "
                    f"which would be {SUPPORTED if ref_share.high < 0 else NOT_SUPPORTED}"
                ),
            )
        )
        frac, cos = st["frac"], st["cos"]
        rows.append(
            measured_claim(
                claim=4,
                statement=(
                    "the gradient overlaps more with the positive than with the negative "
                    "eigenspace (Sec. 4.1, App. B.2)"
                ),
                experiment=exp,
                quantity="mean over steps of (‖P₊g‖² − ‖P₋g‖²)/‖g‖²",
                stat=frac,
                ok=frac.low > 0,
                threshold=f"{LOW} > 0",
                criterion=(
                    f"share of ‖g‖² in the positive minus the negative eigenspace, {LOW} > 0"
                ),
                detail=(
                    f"the reference code's convention, mean over steps of the mean "
                    f"|cos(g, v)| over positive minus over negative eigenvectors (null ones split "
                    f"evenly): {fmt_stat(cos)}, which would be "
                    f"{SUPPORTED if cos.low > 0 else NOT_SUPPORTED}"
                ),
                also=(cos,),
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=3,
                statement=(
                    "positive-chaotic eigenvalues ≈ 0; the share of negative eigenvalues falls, "
                    "of positive ones rises (Sec. 4.1, App. B.2)"
                ),
                quantity="eigenvalue counts per step",
                threshold=f"{HIGH} < {CHAOTIC_PER_STEP:g}; negative share's change {HIGH} < 0",
                criterion="see claim 3 in the module docstring",
                why=_NOT_RUN_WHY,
            )
        )
        rows.append(
            not_run_claim(
                claim=4,
                statement="the gradient overlaps more with the positive eigenspace (App. B.2)",
                quantity="(‖P₊g‖² − ‖P₋g‖²)/‖g‖²",
                threshold=f"{LOW} > 0",
                criterion="mean over steps above 0",
                why=_NOT_RUN_WHY,
            )
        )
    return rows


def claim_negative_steps(res: Results, groups) -> list[Claim]:
    """Claim 12 (Sec. 4.1, conclusion 3): locally chaotic dynamics are inevitable in SGD.

    Every λ < 0 is locally chaotic (Theorem 2.1: |1 − ηλ| > 1), so per SGD run that records the
    spectrum, the fewest nonzero negative eigenvalues at any step; over seeds, lower end ≥
    ``MIN_NEGATIVE``. Experiments that share SGD runs are measured once.
    """
    statement = (
        "locally chaotic training dynamics are inevitable in SGD: the Hessian has negative "
        "(locally chaotic, Theorem 2.1) eigenvalues at every step (Sec. 4.1, conclusion 3)"
    )
    quantity = "fewest nonzero negative eigenvalues at any step"
    threshold = f"{LOW} ≥ {MIN_NEGATIVE}"
    criterion = f"per run the smallest count over all steps; over seeds, {LOW} ≥ {MIN_NEGATIVE}"
    rows = []
    for exp, runs in _measured_once(res, groups):
        fewest, without, steps = [], 0, 0
        for r in runs:
            n = res.table("train", r, "steps", ["step", "n_negative"])["n_negative"]
            fewest.append(float(n.min()))
            without += int((n < MIN_NEGATIVE).sum())
            steps += len(n)
        st = mean_ci(fewest)
        rows.append(
            measured_claim(
                claim=12,
                statement=statement,
                experiment=exp,
                quantity=quantity,
                stat=st,
                ok=st.low >= MIN_NEGATIVE,
                threshold=threshold,
                criterion=criterion,
                detail=f"steps with fewer than {MIN_NEGATIVE}: {without} of {steps}, all seeds",
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=12,
                statement=statement,
                quantity=quantity,
                threshold=threshold,
                criterion=criterion,
                why=_NOT_RUN_WHY,
            )
        )
    return rows


def claim_hessian_norm(res: Results, groups) -> list[Claim]:
    """Claim 13 (Sec. 4.2, App. B.2): the Hessian does not converge to zero.

    Per SGD run that records the spectrum, ‖H‖₂ = max(|λmin|, λmax) per step; the mean over the
    last tenth of the steps over the largest mean over any tenth (the run's peak level); over
    seeds, lower end ≥ ``NOT_CONVERGED``. Experiments that share SGD runs are measured once.
    """
    statement = (
        "the Hessian does not converge to zero: ‖H‖₂ at the end of training has not fallen by "
        "an order of magnitude from its peak (Sec. 4.2, App. B.2)"
    )
    quantity = "‖H‖₂ = max(|λmin|, λmax), mean over the last tenth of the steps / the peak tenth's"
    threshold = f"{LOW} ≥ {NOT_CONVERGED:g}"
    criterion = (
        f"per run the last tenth's mean ‖H‖₂ over the largest tenth's mean; {LOW} ≥ "
        f"{NOT_CONVERGED:g}"
    )
    rows = []
    for exp, runs in _measured_once(res, groups):
        ratios, last, peak = [], [], []
        for r in runs:
            s = res.table("train", r, "steps", NORM_COLUMNS)
            norm = np.maximum(s["lambda_min"].abs(), s["lambda_max"]).to_numpy(dtype=float)
            tenths = _tenths(norm)
            last.append(tenths[-1])
            peak.append(max(tenths))
            # a Hessian that is zero throughout has no level to keep: no ratio, no support
            ratios.append(tenths[-1] / peak[-1] if peak[-1] > 0 else math.nan)
        st = mean_ci(ratios)
        rows.append(
            measured_claim(
                claim=13,
                statement=statement,
                experiment=exp,
                quantity=quantity,
                stat=st,
                ok=st.low >= NOT_CONVERGED,
                threshold=threshold,
                criterion=criterion,
                detail=(
                    f"mean ‖H‖₂ over the last tenth: {fmt_values(last)}; the peak tenth's: "
                    f"{fmt_values(peak)} (per seed)"
                ),
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=13,
                statement=statement,
                quantity=quantity,
                threshold=threshold,
                criterion=criterion,
                why=_NOT_RUN_WHY,
            )
        )
    return rows
