"""The claims on the Hessian spectrum along SGD's path (Sec. 4.1, App. B.2).

3. App. B.2: positive-chaotic eigenvalues (λ > 2/η) ≈ 0: their mean count per step, upper end <
   ``CHAOTIC_PER_STEP`` (0.5); the number of negative eigenvalues falls and of positive ones
   rises: mean over the last tenth of the steps minus the first tenth, negative upper end < 0,
   positive lower end > 0. Counted among the nonzero eigenvalues (this pipeline's convention);
   the reference code's (all N, the null ones split by rounding, here evenly) is reported beside.
4. App. B.2: the gradient overlaps more with the positive than with the negative eigenspace:
   mean over steps of (‖P₊g‖² − ‖P₋g‖²)/‖g‖², lower end > 0; the reference code's mean |cos|
   per eigenvector is reported beside.
"""

from __future__ import annotations

import pandas as pd

from chaosgd.analysis.claims.results import SPECTRUM_COLUMNS, Results
from chaosgd.analysis.claims.verdicts import (
    HIGH,
    LOW,
    NOT_SUPPORTED,
    SUPPORTED,
    Claim,
    fmt_stat,
    mean_ci,
    measured_claim,
    not_run_claim,
)

CHAOTIC_PER_STEP = 0.5  # "≈ 0" positive-chaotic eigenvalues per step, on average


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
            out[exp] = chosen
    return out


def _trend(series: pd.Series, k: int) -> float:
    """Mean of the last ``k`` values minus the mean of the first ``k``."""
    return float(series.iloc[-k:].mean() - series.iloc[:k].mean())


def claim_spectrum(res: Results, groups) -> list[Claim]:
    """Claims 3 and 4 (App. B.2): the Hessian spectrum and gradient overlaps of SGD runs.

    Positive-chaotic eigenvalues (λ > 2/η) ≈ 0 per step, negative counts falling and positive ones
    rising (last tenth of the steps against the first), and the gradient overlapping more with the
    positive than with the negative eigenspace. The verdicts count nonzero eigenvalues and
    measure ‖g‖² fractions; the reference code's conventions are reported beside them.
    Experiments that share SGD runs are measured once.
    """
    rows, seen = [], []
    for exp, runs in _spectrum_runs(res, groups).items():
        if set(runs) in seen:  # experiments sharing their SGD baselines: measured once
            continue
        seen.append(set(runs))
        m = {k: [] for k in ("chaotic", "neg", "pos", "ref_neg", "ref_pos", "frac", "cos")}
        for r in runs:
            s = res.table("train", r, "steps", finite=SPECTRUM_COLUMNS)
            k = max(1, len(s) // 10)
            m["chaotic"].append(float(s["n_positive_chaotic"].mean()))
            m["neg"].append(_trend(s["n_negative"], k))
            m["pos"].append(_trend(s["n_positive"], k))
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
        neg, pos, ref_neg, ref_pos = st["neg"], st["pos"], st["ref_neg"], st["ref_pos"]
        ref_ok = ref_neg.high < 0 and ref_pos.low > 0
        rows.append(
            measured_claim(
                claim=3,
                statement=(
                    "the number of negative eigenvalues falls and of positive ones rises "
                    "over training (Sec. 4.1, App. B.2)"
                ),
                experiment=exp,
                quantity=(
                    "nonzero negative eigenvalues, last tenth of the steps minus the first tenth"
                ),
                stat=neg,
                ok=neg.high < 0 and pos.low > 0,
                threshold=f"{HIGH} < 0 (and positive: {LOW} > 0)",
                criterion=(
                    f"counted among the nonzero eigenvalues: negative change {HIGH} < 0, "
                    f"positive change {LOW} > 0"
                ),
                detail=(
                    f"positive eigenvalues, last minus first tenth: {fmt_stat(pos)}; the "
                    f"reference code's convention (all N eigenvalues, the null ones split evenly): "
                    f"negative {fmt_stat(ref_neg)}, positive {fmt_stat(ref_pos)}, which would be "
                    f"{SUPPORTED if ref_ok else NOT_SUPPORTED}"
                ),
                also=(pos, ref_neg, ref_pos),
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
        why = "no SGD run records the Hessian spectrum (training.spectrum: false)"
        rows.append(
            not_run_claim(
                claim=3,
                statement=(
                    "positive-chaotic eigenvalues ≈ 0; negative ones fall, positive ones "
                    "rise (App. B.2)"
                ),
                quantity="eigenvalue counts per step",
                threshold=f"{HIGH} < {CHAOTIC_PER_STEP:g}; trends {HIGH} < 0 / {LOW} > 0",
                criterion="see claims 3 in the module docstring",
                why=why,
            )
        )
        rows.append(
            not_run_claim(
                claim=4,
                statement="the gradient overlaps more with the positive eigenspace (App. B.2)",
                quantity="(‖P₊g‖² − ‖P₋g‖²)/‖g‖²",
                threshold=f"{LOW} > 0",
                criterion="mean over steps above 0",
                why=why,
            )
        )
    return rows
