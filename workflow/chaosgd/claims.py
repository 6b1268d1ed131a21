"""Claims stage: the paper's claims, checked against this workflow's results.

For each claim of the paper, the measured quantity, its value with a 95 % confidence interval
over seeds (Student's t; none with a single seed), the threshold the verdict compares it with,
and a verdict: ``supported``, ``not supported`` or ``not run`` (the config produces nothing
that could test it). Every criterion can fail, and a test in ``tests/test_claims.py`` puts
synthetic results on each side of it. "Lower end" / "upper end" is the end of the 95 % CI from
3 seeds on; below that the interval is uninformative and the smallest / largest seed stands in
(every seed must show the effect). A value that is not finite never supports a claim.

1. Fig. 1, Sec. 4.1: pruning the negative or the chaotic spectrum ends with far lower training
   accuracy: SGD minus CGD, paired by seed, lower end ≥ ``FAR`` (0.1), and a higher loss (lower
   end > 0). Pruning the positive spectrum costs little: SGD minus CGD-positive, upper end ≤
   ``LITTLE`` (0.05), and below the negative spectrum's gap (its upper end under that gap's
   lower end).
2. Fig. 2: a later pruning onset slows learning from the onset on: the training loss identical
   to SGD's up to the onset, and its mean from the onset on above SGD's (lower end > 0).
3. App. B.2: positive-chaotic eigenvalues (λ > 2/η) ≈ 0: their mean count per step, upper end <
   ``CHAOTIC_PER_STEP`` (0.5); the number of negative eigenvalues falls and of positive ones
   rises: mean over the last tenth of the steps minus the first tenth, negative upper end < 0,
   positive lower end > 0. Counted among the nonzero eigenvalues (this pipeline's convention);
   the reference code's (all N, the null ones split by rounding, here evenly) is reported beside.
4. App. B.2: the gradient overlaps more with the positive than with the negative eigenspace:
   mean over steps of (‖P₊g‖² − ‖P₋g‖²)/‖g‖², lower end > 0; the reference code's mean |cos|
   per eigenvector is reported beside.
5. Sec. 4.2, App. C.1: the finite-time exponents start above 0 and approach it. λ1 is ≥ 0 almost
   by construction (directions no Hessian touched keep σ = 1), so "above 0" means
   λ1(t)·t > ``POSITIVE_MARGIN`` × neutral_tol at every exact readout from the first (lower
   end); "approach 0": the slope of ln λ1 against ln t over the readouts after the first is
   below 0 with its 95 % interval, for every seed.
6. Sec. 4.2, Fig. 3: perturbed models keep diverging, linearly: in d² = αt² + βt + ε², α −
   ``SIGNIFICANT`` (2) standard errors > 0 (a random walk, α = 0, does not pass) for at least
   ``LINEAR_FRACTION`` (0.8) of the directions, and the distance at the end above the distance
   when the reference's training accuracy had converged, for as many. Main ε, reference dtype.
7. Sec. 4.2, App. C.5: the Lyapunov bounds e^{λN t}ε ≤ d(t) ≤ e^{λ1 t}ε hold (main ε): the
   upper bound's worst margin min ln(e^{λ1 t}ε / d) ≥ 0 over the exact readout steps and
   directions; the lower bound's likewise, and not vacuous: e^{λN t} ≥ ``VACUOUS`` (0.01) at one
   readout at least (a bound of a hundredth of ε or less says nothing about d).
8. App. B.1: validation follows training: claim 1's accuracy criteria on the final validation
   accuracy.
9. Sec. 4.2, App. C.2: the chaotic Lyapunov subspace stabilises: for the latest reference time
   t₀ with later readouts, the similarity of the chaotic subspaces at t₀ and later exceeds both
   of its baselines (random subspaces of its dimensions; random index sets of the same bases) by
   ``SUBSPACE_MARGIN`` (0.1) at every later readout (lower end).
10. Sec. 4.2, App. C.3: perturbations up to ε = 7.5 reach a similar performance: every member's
    final training accuracy at most ``SIMILAR`` (0.05) below the reference's; from ε = 10 on
    it drops: mean over those members more than ``SIMILAR`` below.
11. Sec. 4.2, App. A.8: the maximal divergence (main ε) stays below the expected distance of two
    default initializations, √E‖θ₁ − θ₂‖² (4.515 for the paper's MLP; the paper writes 6.38,
    √2 times that).

Claims whose inputs the config does not produce are ``not run``, never ``supported``.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from chaosgd.exponents import exact_readouts
from chaosgd.io import atomic_path, read_parquet, read_run_info, write_parquet
from chaosgd.models import build_model, init_distance

FAR = 0.1  # "far lower" accuracy: at least this much below SGD (Fig. 1)
LITTLE = 0.05  # "costs little" / "slightly lower": at most this much below SGD
CHAOTIC_PER_STEP = 0.5  # "≈ 0" positive-chaotic eigenvalues per step, on average
POSITIVE_MARGIN = 100.0  # λ1·t above this many neutral_tol: more than an untouched direction
NEUTRAL_TOL = 1e-8  # the Lyapunov stage's default neutral_tol (config lyapunov.neutral_tol)
SIGNIFICANT = 2.0  # standard errors of α: "linear divergence beyond its uncertainty"
LINEAR_FRACTION = 0.8  # of the perturbation directions diverging linearly (4 of 5)
CONVERGED = 0.01  # training accuracy within this of its final value counts as converged
VACUOUS = 0.01  # a lower bound e^{λN t}ε below this share of ε says nothing
SUBSPACE_MARGIN = 0.1  # chaotic-subspace similarity above both baselines by this much
SIMILAR_UP_TO, DROP_FROM = 7.5, 10.0  # the ε of App. C.3's "similar" and "drop"
SIMILAR = 0.05  # "similar performance": final accuracy at most this below the reference's

SUPPORTED, NOT_SUPPORTED, NOT_RUN = "supported", "not supported", "not run"


@dataclass
class Claim:
    """One row of the claims table: a claim of the paper, the quantity measured and the verdict.

    ``value`` / ``ci_low`` / ``ci_high`` are the mean and 95 % interval over ``n`` seeds (or
    ``n`` references); ``threshold`` is what the verdict compared them with, ``criterion``
    everything the verdict required, and ``detail`` the supporting numbers (or why not run).
    """

    claim: int
    statement: str
    experiment: str
    quantity: str
    value: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    n: int = 0
    threshold: str = ""
    verdict: str = NOT_RUN
    criterion: str = ""
    detail: str = ""


@dataclass
class Stat:
    """A quantity over seeds: mean, 95 % Student-t interval, and the per-seed extremes.

    ``dropped`` counts the non-finite values left out; a verdict never rests on the others
    alone (:func:`_claim`).
    """

    mean: float
    ci_low: float
    ci_high: float
    n: int
    min: float
    max: float
    dropped: int = 0

    @property
    def low(self) -> float:
        """What a verdict compares: the interval's lower end from 3 seeds on; below that the
        interval is uninformative (t = 12.7 for 2 seeds) and every seed must show the effect."""
        return self.ci_low if self.n >= 3 else self.min

    @property
    def high(self) -> float:
        """What a verdict compares from above: the interval's upper end from 3 seeds on, else the
        largest seed (see :attr:`low`)."""
        return self.ci_high if self.n >= 3 else self.max


def mean_ci(values) -> Stat:
    """Mean and 95 % Student-t interval over seeds (NaN bounds for fewer than 2 values), of the
    finite values; how many were not is ``dropped``."""
    values = [float(v) for v in values]
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    n, dropped = len(x), len(values) - len(x)
    if n == 0:
        return Stat(math.nan, math.nan, math.nan, 0, math.nan, math.nan, dropped)
    mean = float(x.mean())
    lo = hi = math.nan
    if n >= 2:
        half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
        lo, hi = mean - half, mean + half
    return Stat(mean, lo, hi, n, float(x.min()), float(x.max()), dropped)


def _claim(
    claim, statement, experiment, quantity, st: Stat, ok: bool, threshold, criterion, detail="",
    also=(),
):  # fmt: skip
    """A measured claim's row; never ``supported`` when ``st`` or a stat it also rests on
    (``also``) left out non-finite values: the seeds that remain are not the experiment."""
    dropped = sum(s.dropped for s in (st, *also))
    if dropped or st.n == 0:
        ok = False
        detail = _join(
            detail,
            f"{dropped} non-finite value(s) over seeds: no verdict of support from the others",
        )
    return Claim(
        claim, statement, experiment, quantity, st.mean, st.ci_low, st.ci_high, st.n, threshold,
        SUPPORTED if ok else NOT_SUPPORTED, criterion, detail,
    )  # fmt: skip


def _single(claim, statement, experiment, quantity, value, ok, threshold, criterion, detail=""):
    """A claim measured once (one reference run): supported only with a finite value."""
    value = float(value)
    if not np.isfinite(value):
        ok = False
        detail = _join(detail, "the value is not finite: no verdict of support")
    return Claim(
        claim, statement, experiment, quantity, value, math.nan, math.nan, 1, threshold,
        SUPPORTED if ok else NOT_SUPPORTED, criterion, detail,
    )  # fmt: skip


def _not_run(claim, statement, quantity, threshold, criterion, why, experiment="-") -> Claim:
    """A claim the config produced nothing to test with; its criterion is stated all the same."""
    return Claim(
        claim, statement, experiment, quantity, threshold=threshold, verdict=NOT_RUN,
        criterion=criterion, detail=why,
    )  # fmt: skip


def _join(detail: str, more: str) -> str:
    return f"{detail}; {more}" if detail else more


def _fmt_stat(st: Stat) -> str:
    ci = f" [{st.ci_low:.3g}, {st.ci_high:.3g}]" if np.isfinite(st.ci_low) else ""
    return f"{st.mean:.3g}{ci}"


def _values(values) -> str:
    return ", ".join(f"{v:.3g}" for v in values)


# below 3 seeds the bound a criterion refers to is the worst seed (see Stat.low)
LOW, HIGH = "lower end", "upper end"


# the settings the claims read from a run's run.json
SETTINGS = (
    "variant", "onset", "seed", "momentum", "dtype", "spectrum", "model", "activation", "hidden",
)  # fmt: skip
# the per-step spectrum columns of claims 3 and 4, in both counting conventions
SPECTRUM_COLUMNS = [
    "step", "n_positive_chaotic", "n_negative", "n_positive", "grad_frac_positive",
    "grad_frac_negative", "ref_n_negative", "ref_n_positive", "ref_cos_positive",
    "ref_cos_negative",
]  # fmt: skip
# App. C.2's subspace table (chaosgd.exponents.stability_row), the columns claim 9 reads
SUBSPACE_COLUMNS = ["t0", "step", "dim0_chaotic", "dim_chaotic"]
SUBSPACE_SIMILARITIES = ["similarity_chaotic", "baseline_chaotic", "random_chaotic"]


class Results:
    """Reads a run's tables from ``results/<stage>/<run>/``.

    Every file is checked as it is read (:mod:`chaosgd.io`): a missing, damaged or foreign file,
    or NaN / inf where a verdict needs a number, stops the stage with an error naming the file
    and the column; a verdict is never computed from such data.
    """

    def __init__(self, root: Path):
        self.root = root
        self._settings: dict[str, dict] = {}

    def settings(self, run: str) -> dict:
        """The settings a training run was made with (from its ``run.json``), cached per run."""
        if run not in self._settings:
            path = self.root / "train" / run / "run.json"
            self._settings[run] = read_run_info(path, run, SETTINGS)["settings"]
        return self._settings[run]

    def table(
        self, stage: str, run: str, name: str, columns=None, finite=None, numeric=(),
        nonempty=True,
    ) -> pd.DataFrame:  # fmt: skip
        """Read table ``<stage>/<run>/<name>.parquet`` (only ``columns``, if given); it must have
        rows (unless not ``nonempty``), and ``finite`` (default: ``columns``) finite numbers,
        ``numeric`` numbers."""
        finite = columns if finite is None else finite
        path = self.root / stage / run / f"{name}.parquet"
        return read_parquet(path, columns, finite=finite or (), numeric=numeric, nonempty=nonempty)

    def final(self, run: str) -> pd.Series:
        """The last row of a training run's per-epoch table: final training and validation
        accuracy and loss."""
        columns = ["step", "train_acc", "train_loss", "val_acc", "val_loss"]
        return self.table("train", run, "epochs", finite=columns).iloc[-1]


def _by_seed(res: Results, runs: list[str], variant: str, onset: int = 0) -> dict[tuple, str]:
    """(seed, momentum) -> run of this variant and onset."""
    out = {}
    for r in runs:
        s = res.settings(r)
        if s["variant"] == variant and s["onset"] == onset:
            out[(s["seed"], s["momentum"])] = r
    return out


# --- claims 1 and 8: pruning ----------------------------------------------------------------


def _pruning(
    res: Results, groups: dict[str, list[str]], claim: int, split: str, paper: str
) -> list[Claim]:
    """Claims 1 (``split`` "train") and 8 ("val"): final accuracy of each CGD prune set against
    SGD, paired by seed."""
    acc_col, loss_col = f"{split}_acc", f"{split}_loss"
    what = "training" if split == "train" else "validation"
    rows = []
    for exp, runs in groups.items():
        sgd = _by_seed(res, runs, "sgd")
        gaps = {}
        for prune in ("negative", "chaotic", "positive"):
            cgd = _by_seed(res, runs, f"cgd-{prune}")
            pairs = [k for k in cgd if k in sgd]
            if not pairs:
                continue
            a = [res.final(sgd[k])[acc_col] - res.final(cgd[k])[acc_col] for k in pairs]
            b = [res.final(cgd[k])[loss_col] - res.final(sgd[k])[loss_col] for k in pairs]
            gaps[prune] = (mean_ci(a), mean_ci(b))
        for prune in ("negative", "chaotic"):
            if prune not in gaps:
                continue
            acc, loss = gaps[prune]
            rows.append(
                _claim(
                    claim,
                    f"pruning the {prune} spectrum ends with far lower {what} accuracy and higher "
                    f"loss than SGD ({paper})",
                    exp,
                    f"final {what} accuracy, SGD minus CGD-{prune}",
                    acc,
                    acc.low >= FAR and loss.low > 0,
                    f"{LOW} ≥ {FAR:g}",
                    f"accuracy gap, {LOW} ≥ {FAR}; {what} loss CGD minus SGD, {LOW} > 0",
                    f"{what} loss CGD-{prune} minus SGD: {_fmt_stat(loss)}",
                    also=(loss,),
                )
            )
        if "positive" in gaps:
            pos = gaps["positive"][0]
            rows.append(
                _claim(
                    claim,
                    f"pruning the positive spectrum costs little {what} accuracy ({paper})",
                    exp,
                    f"final {what} accuracy, SGD minus CGD-positive",
                    pos,
                    pos.high <= LITTLE,
                    f"{HIGH} ≤ {LITTLE:g}",
                    f"accuracy gap to SGD, {HIGH} ≤ {LITTLE}",
                )
            )
            if "negative" in gaps:
                neg = gaps["negative"][0]
                rows.append(
                    _claim(
                        claim,
                        f"pruning the positive spectrum costs far less {what} accuracy than the "
                        f"negative ({paper})",
                        exp,
                        f"final {what} accuracy, SGD minus CGD-positive",
                        pos,
                        pos.high < neg.low,
                        f"{HIGH} < {LOW} of SGD minus CGD-negative ({_fmt_stat(neg)})",
                        f"the positive gap's {HIGH} below the negative gap's {LOW}",
                        f"SGD minus CGD-negative: {_fmt_stat(neg)}",
                        also=(neg,),
                    )
                )
    if not rows:
        rows.append(
            _not_run(
                claim,
                f"pruning the negative or chaotic spectrum cripples {what}; positive costs little "
                f"({paper})",
                f"final {what} accuracy gaps to SGD",
                f"{LOW} ≥ {FAR:g} (negative, chaotic); {HIGH} ≤ {LITTLE:g} (positive)",
                "paired SGD and CGD runs",
                "no experiment has SGD and CGD runs of the same seeds",
            )
        )
    return rows


def claim_pruning(res: Results, groups: dict[str, list[str]]) -> list[Claim]:
    """Claim 1 (Fig. 1, Sec. 4.1): pruning the negative / chaotic spectrum cripples learning, the
    positive one costs little.

    Per experiment, final training accuracy and loss of each CGD prune set against SGD, paired by
    seed: negative and chaotic at least ``FAR`` below SGD, positive at most ``LITTLE`` below SGD
    and below the negative gap.
    """
    return _pruning(res, groups, 1, "train", "Fig. 1")


def claim_validation(res: Results, groups: dict[str, list[str]]) -> list[Claim]:
    """Claim 8 (App. B.1): the validation accuracy follows the training accuracy: claim 1's
    criteria on the final validation accuracy and loss."""
    return _pruning(res, groups, 8, "val", "App. B.1")


# --- claim 2: onsets --------------------------------------------------------------------------


def claim_onsets(res: Results, groups: dict[str, list[str]]) -> list[Claim]:
    """Claim 2 (Fig. 2): later pruning onsets slow learning from the onset on.

    Per experiment, onset and variant: the training loss must equal SGD's up to the onset and its
    mean from the onset to the end must exceed SGD's, paired by seed.
    """
    rows = []
    for exp, runs in groups.items():
        sgd = _by_seed(res, runs, "sgd")
        onsets = sorted({res.settings(r)["onset"] for r in runs if res.settings(r)["onset"] > 0})
        for onset in onsets:
            for variant in sorted(
                {res.settings(r)["variant"] for r in runs if res.settings(r)["onset"] == onset}
            ):
                cgd = _by_seed(res, runs, variant, onset)
                pairs = [k for k in cgd if k in sgd]
                if not pairs:
                    continue
                diffs, identical = [], True
                for k in pairs:
                    a = res.table("train", sgd[k], "steps", ["step", "loss"])
                    b = res.table("train", cgd[k], "steps", ["step", "loss"])
                    identical &= bool(
                        np.array_equal(a["loss"][: onset + 1], b["loss"][: onset + 1])
                    )
                    diffs.append(float(b["loss"][onset:].mean() - a["loss"][onset:].mean()))
                st = mean_ci(diffs)
                rows.append(
                    _claim(
                        2,
                        f"{variant} from step {onset} slows learning from the onset on (Fig. 2)",
                        exp,
                        "mean training loss from the onset to the end, CGD minus SGD",
                        st,
                        identical and st.low > 0,
                        f"{LOW} > 0",
                        f"loss identical to SGD's up to the onset; the difference's {LOW} > 0",
                        f"identical before the onset: {identical}",
                    )
                )
    if not rows:
        rows.append(
            _not_run(
                2,
                "later pruning onsets slow learning from the onset on (Fig. 2)",
                "loss after the onset, CGD minus SGD",
                f"{LOW} > 0",
                "identical up to the onset; loss difference above 0",
                "no CGD runs with an onset > 0 beside SGD runs of the same seeds",
            )
        )
    return rows


# --- claims 3 and 4: the Hessian spectrum -----------------------------------------------------


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
            _claim(
                3,
                "the number of positive-chaotic eigenvalues (λ > 2/η) is ≈ 0 through training "
                "(Sec. 4.1, App. B.2)",
                exp,
                "positive-chaotic eigenvalues per step (mean)",
                st["chaotic"],
                st["chaotic"].high < CHAOTIC_PER_STEP,
                f"{HIGH} < {CHAOTIC_PER_STEP:g}",
                f"mean count per step, {HIGH} < {CHAOTIC_PER_STEP}",
                "the same in both counting conventions (λ > 2/η is never a null eigenvalue)",
            )
        )
        neg, pos, ref_neg, ref_pos = st["neg"], st["pos"], st["ref_neg"], st["ref_pos"]
        ref_ok = ref_neg.high < 0 and ref_pos.low > 0
        rows.append(
            _claim(
                3,
                "the number of negative eigenvalues falls and of positive ones rises over "
                "training (Sec. 4.1, App. B.2)",
                exp,
                "nonzero negative eigenvalues, last tenth of the steps minus the first tenth",
                neg,
                neg.high < 0 and pos.low > 0,
                f"{HIGH} < 0 (and positive: {LOW} > 0)",
                f"counted among the nonzero eigenvalues: negative change {HIGH} < 0, positive "
                f"change {LOW} > 0",
                f"positive eigenvalues, last minus first tenth: {_fmt_stat(pos)}; the reference "
                f"code's convention (all N eigenvalues, the null ones split evenly): negative "
                f"{_fmt_stat(ref_neg)}, positive {_fmt_stat(ref_pos)}, which would be "
                f"{SUPPORTED if ref_ok else NOT_SUPPORTED}",
                also=(pos, ref_neg, ref_pos),
            )
        )
        frac, cos = st["frac"], st["cos"]
        rows.append(
            _claim(
                4,
                "the gradient overlaps more with the positive than with the negative eigenspace "
                "(Sec. 4.1, App. B.2)",
                exp,
                "mean over steps of (‖P₊g‖² − ‖P₋g‖²)/‖g‖²",
                frac,
                frac.low > 0,
                f"{LOW} > 0",
                f"share of ‖g‖² in the positive minus the negative eigenspace, {LOW} > 0",
                f"the reference code's convention, mean over steps of the mean |cos(g, v)| over "
                f"positive minus over negative eigenvectors (null ones split evenly): "
                f"{_fmt_stat(cos)}, which would be "
                f"{SUPPORTED if cos.low > 0 else NOT_SUPPORTED}",
                also=(cos,),
            )
        )
    if not rows:
        why = "no SGD run records the Hessian spectrum (training.spectrum: false)"
        rows.append(
            _not_run(
                3,
                "positive-chaotic eigenvalues ≈ 0; negative ones fall, positive ones rise "
                "(App. B.2)",
                "eigenvalue counts per step",
                f"{HIGH} < {CHAOTIC_PER_STEP:g}; trends {HIGH} < 0 / {LOW} > 0",
                "see claims 3 in the module docstring",
                why,
            )
        )
        rows.append(
            _not_run(
                4,
                "the gradient overlaps more with the positive eigenspace (App. B.2)",
                "(‖P₊g‖² − ‖P₋g‖²)/‖g‖²",
                f"{LOW} > 0",
                "mean over steps above 0",
                why,
            )
        )
    return rows


# --- claim 5: the exponents over training -----------------------------------------------------


def loglog_slope(t, lam) -> tuple[float, float, int]:
    """Least-squares slope of ln λ against ln t, the upper end of its 95 % interval (Student t,
    n − 2 degrees of freedom) and the number of points; NaN where a λ is not > 0 or fewer than 3
    points leave no uncertainty to estimate."""
    t, lam = np.asarray(t, dtype=float), np.asarray(lam, dtype=float)
    n = int(t.size)
    if n < 3 or not (lam > 0).all() or np.unique(t).size < 2:
        return math.nan, math.nan, n
    fit = stats.linregress(np.log(t), np.log(lam))
    return float(fit.slope), float(fit.slope + stats.t.ppf(0.975, n - 2) * fit.stderr), n


def claim_exponents(
    res: Results, lyapunov: dict[str, list[str]], neutral_tol: float = NEUTRAL_TOL
) -> list[Claim]:
    """Claim 5 (Sec. 4.2, App. C.1): finite-time Lyapunov exponents start > 0 and approach 0.

    SGD runs of the Lyapunov stage, exact readouts. Above 0: λ1(t)·t > ``POSITIVE_MARGIN`` ×
    ``neutral_tol`` at every readout (lower end over seeds): λ1 ≥ 0 holds almost by
    construction, since the directions no Hessian touched keep σ = 1, so a bare λ1 > 0 would
    test nothing. Approaching 0: the slope of ln λ1 against ln t over the readouts after the
    first, below 0 with its 95 % interval, for every seed.
    """
    margin = POSITIVE_MARGIN * neutral_tol
    rows = []
    for exp, runs in lyapunov.items():
        runs = [r for r in runs if res.settings(r)["variant"] == "sgd"]
        if not runs:
            continue
        stretch, slopes, uppers, counts, ratios, firsts = [], [], [], [], [], []
        for r in runs:
            e = res.table(
                "lyapunov", r, "exponents", ["step", "method", "lambda_1", "lambda_N"],
                finite=["step", "lambda_1", "lambda_N"],
            )  # fmt: skip
            path = e.attrs["path"]
            e = exact_readouts(e)
            if e.empty:
                raise ValueError(f"{path}: no exact (SVD) readout; delete it and rerun")
            t = e["step"].to_numpy(dtype=float)
            lam = e["lambda_1"].to_numpy(dtype=float)
            stretch.append(float((lam * t).min()))
            firsts.append(f"step {int(t[0])}: λ1·t = {lam[0] * t[0]:.3g}")
            slope, upper, n = loglog_slope(t[1:], lam[1:])
            slopes.append(slope)
            uppers.append(upper)
            counts.append(n)
            ratios.append(float(lam[-1] / lam[1:].max()) if len(lam) > 1 else math.nan)
        st = mean_ci(stretch)
        rows.append(
            _claim(
                5,
                "the finite-time Lyapunov exponents start above 0 and stay above it "
                "(Sec. 4.2, App. C.1)",
                exp,
                "smallest λ1(t)·t = ln σ1 over the exact readouts",
                st,
                st.low > margin,
                f"{LOW} > {margin:.3g} ({POSITIVE_MARGIN:g} × neutral_tol)",
                f"λ1·t at every readout, {LOW} > {POSITIVE_MARGIN:g} × neutral_tol "
                f"({neutral_tol:g}): more than the untouched directions' 0",
                "first readout: " + "; ".join(firsts),
            )
        )
        statement = (
            "the finite-time Lyapunov exponents approach 0 over training (Sec. 4.2, App. C.1)"
        )
        quantity = "slope of ln λ1 against ln t, readouts after the first"
        threshold = "95 % interval of each seed's slope < 0"
        criterion = (
            "least-squares slope of ln λ1 on ln t over the exact readouts after the first; the "
            "upper end of its 95 % interval below 0 for every seed"
        )
        if min(counts) < 3:
            rows.append(
                _not_run(
                    5, statement, quantity, threshold, criterion,
                    f"{min(counts) + 1} exact readouts; the slope's uncertainty needs 4 or more "
                    "(lyapunov.readouts, lyapunov.early_readouts)",
                    exp,
                )  # fmt: skip
            )
            continue
        st = mean_ci(slopes)
        rows.append(
            _claim(
                5,
                statement,
                exp,
                quantity,
                st,
                all(np.isfinite(u) and u < 0 for u in uppers),
                threshold,
                criterion,
                f"upper ends of the slopes' intervals: {_values(uppers)}; λ1 at the last readout "
                f"over its largest after the first: {_values(ratios)}",
            )
        )
    if not rows:
        rows.append(
            _not_run(
                5,
                "finite-time exponents start > 0 and approach 0 (App. C.1)",
                "λ1 over training",
                f"{LOW} > {POSITIVE_MARGIN:g} × neutral_tol; slope < 0",
                "see claim 5 in the module docstring",
                "no SGD run has a tangent map (lyapunov.runs)",
            )
        )
    return rows


# --- claim 9: stability of the Lyapunov subspaces -----------------------------------------------


def claim_subspaces(res: Results, lyapunov: dict[str, list[str]]) -> list[Claim]:
    """Claim 9 (Sec. 4.2, App. C.2): the chaotic Lyapunov subspace stabilises.

    SGD runs of the Lyapunov stage. For the latest reference time t₀ with later readouts, the
    chaotic–chaotic similarity minus the larger of its two baselines (random subspaces of the
    same dimensions, max(d₀, d)/N; random index sets of the same two bases), at its smallest
    over the later readouts: above ``SUBSPACE_MARGIN`` (lower end over seeds). An empty chaotic
    subspace has no similarity (NaN) and supports nothing.
    """
    statement = "the chaotic Lyapunov subspace stabilises towards the end (Sec. 4.2, App. C.2)"
    quantity = "similarity of the chaotic subspaces at t₀ and later, minus the larger baseline"
    threshold = f"{LOW} ≥ {SUBSPACE_MARGIN:g}"
    criterion = (
        "latest t₀ with later readouts: the smallest excess over them of ‖V₀ᵀV‖²/min(dim) above "
        f"max(baseline, random index sets), {LOW} ≥ {SUBSPACE_MARGIN}"
    )
    rows = []
    for exp, runs in lyapunov.items():
        runs = [r for r in runs if res.settings(r)["variant"] == "sgd"]
        if not runs:
            continue
        excess, details = [], []
        for r in runs:
            s = res.table(
                "lyapunov", r, "subspaces", SUBSPACE_COLUMNS + SUBSPACE_SIMILARITIES,
                finite=SUBSPACE_COLUMNS, numeric=SUBSPACE_SIMILARITIES, nonempty=False,
            )  # fmt: skip
            s = s[s["step"] > s["t0"]]
            if s.empty:
                excess = []
                break
            t0 = int(s["t0"].max())
            late = s[s["t0"] == t0].sort_values("step")
            base = np.maximum(late["baseline_chaotic"], late["random_chaotic"])
            # numpy, not pandas: an empty subspace's NaN must fail, not be skipped
            gap = (late["similarity_chaotic"] - base).to_numpy(dtype=float)
            excess.append(float(gap.min()) if np.isfinite(gap).all() else math.nan)
            details.append(
                f"t₀ = {t0}: steps {late['step'].iloc[0]}–{late['step'].iloc[-1]}, similarity "
                f"{_values(late['similarity_chaotic'])} against baselines {_values(base)} "
                f"(chaotic dimension {int(late['dim0_chaotic'].iloc[0])} at t₀)"
            )
        if not excess:
            rows.append(
                _not_run(
                    9, statement, quantity, threshold, criterion,
                    "no exact readout after a reference time t₀ (lyapunov.anchors, readouts)", exp,
                )  # fmt: skip
            )
            continue
        st = mean_ci(excess)
        rows.append(
            _claim(
                9, statement, exp, quantity, st, st.low >= SUBSPACE_MARGIN, threshold, criterion,
                "; ".join(details),
            )  # fmt: skip
        )
    if not rows:
        rows.append(
            _not_run(
                9, statement, quantity, threshold, criterion,
                "no SGD run has a tangent map (lyapunov.runs)",
            )  # fmt: skip
        )
    return rows


# --- claims 6, 7, 10, 11: the perturbed ensembles ----------------------------------------------


def _converged_step(res: Results, run: str) -> int:
    ep = res.table("train", run, "epochs", finite=["step", "train_acc"])
    final = ep["train_acc"].iloc[-1]
    return int(ep.loc[ep["train_acc"] >= final - CONVERGED, "step"].iloc[0])


def _reference_dtype(res: Results, ref: str, table: pd.DataFrame) -> str:
    """The reference's own training dtype if its ensemble ran in it, else the first one run."""
    dtype = res.settings(ref)["dtype"]
    return dtype if dtype in set(table["dtype"]) else str(table["dtype"].iloc[0])


def _rows_for(table: pd.DataFrame, eps: float, dtype: str) -> pd.DataFrame:
    chosen = table[(table["eps"] == eps) & (table["dtype"] == dtype)]
    if chosen.empty:
        raise ValueError(
            f"{table.attrs['path']}: no rows for eps {eps:g} in {dtype} (it has eps "
            f"{sorted(set(table['eps']))}); the ensembles ran with other settings"
        )
    return chosen


FIT_COLUMNS = ["dtype", "strategy", "eps", "alpha", "alpha_se", "bound_steps"]
# NaN where it means something (no variance: no R²; no exact readout step: no bound margins),
# never skipped: a NaN fails its criterion
FIT_NUMBERS = ["r2", "upper_margin", "lower_margin", "lower_log_max"]


def claim_divergence(res: Results, references: dict[str, str], eps: float) -> list[Claim]:
    """Claims 6 and 7 (Sec. 4.2, Fig. 3, App. C.5): linear divergence, and the Lyapunov bounds.

    For each reference run (labelled by ``references``) and ε = ``eps`` in the reference's
    dtype. Claim 6: α − ``SIGNIFICANT`` se(α) > 0 in d² = αt² + βt + ε² (the fits stage's
    standard error treats the residuals as a random walk, so diffusion alone does not pass) for
    at least ``LINEAR_FRACTION`` of the directions, and for as many the distance at the end above
    the distance when the reference's training accuracy had converged. Claim 7: the upper
    bound's worst log margin ≥ 0; the lower bound's too, and e^{λN t} ≥ ``VACUOUS`` at one
    readout at least.
    """
    rows = []
    for ref, label in references.items():
        dist = res.table(
            "ensembles", ref, "distances", ["dtype", "strategy", "eps", "step", "distance"],
            finite=["eps", "step", "distance"],
        )  # fmt: skip
        fits = res.table(
            "fits", ref, "fits", FIT_COLUMNS + FIT_NUMBERS, finite=FIT_COLUMNS[2:],
            numeric=FIT_NUMBERS,
        )  # fmt: skip
        dtype = _reference_dtype(res, ref, dist)
        d, f = _rows_for(dist, eps, dtype), _rows_for(fits, eps, dtype)
        t_conv = _converged_step(res, ref)
        growing = {}
        for strategy, curve in d.groupby("strategy"):
            curve = curve.sort_values("step")
            after = curve.loc[curve["step"] >= t_conv, "distance"]
            if after.empty:
                raise ValueError(
                    f"{dist.attrs['path']}: the {strategy} curve ends at step "
                    f"{int(curve['step'].iloc[-1])}, before the reference converged (step "
                    f"{t_conv}); the ensembles ran with other settings"
                )
            growing[strategy] = bool(curve["distance"].iloc[-1] > after.iloc[0])
        f = f.sort_values("strategy")
        alpha, se = f["alpha"].to_numpy(dtype=float), f["alpha_se"].to_numpy(dtype=float)
        linear = alpha - SIGNIFICANT * se > 0
        need = math.ceil(LINEAR_FRACTION * len(f) - 1e-9)
        share = float(linear.mean())
        rows.append(
            _single(
                6,
                "perturbed models keep diverging linearly after the training accuracy "
                "converged (Sec. 4.2, Fig. 3)",
                label,
                f"share of the directions with α − {SIGNIFICANT:g} se(α) > 0 "
                f"(ε = {eps:g}, {dtype})",
                share,
                linear.sum() >= need and sum(growing.values()) >= need,
                f"≥ {LINEAR_FRACTION:g}",
                f"d² = αt² + βt + ε²: α more than {SIGNIFICANT:g} standard errors above 0 (its "
                "error treats the residuals as a random walk: diffusion alone, α = 0, does not "
                f"pass) for ≥ {LINEAR_FRACTION:.0%} of the directions, and the distance at the "
                "end above the distance at convergence for as many; R² is reported, not used",
                f"converged at step {t_conv}; "
                + "; ".join(
                    f"{s}: α/se {a / e if e > 0 else math.inf:.3g}, growing after convergence "
                    f"{growing.get(s)}, R² {r2:.3f}"
                    for s, a, e, r2 in zip(f["strategy"], alpha, se, f["r2"])
                ),
            )
        )
        # numpy, not pandas: a NaN margin (no exact readout step) must fail, not be skipped
        upper = float(np.min(f["upper_margin"].to_numpy(dtype=float)))
        lower = float(np.min(f["lower_margin"].to_numpy(dtype=float)))
        informative = float(np.max(f["lower_log_max"].to_numpy(dtype=float)))
        steps = int(f["bound_steps"].min())
        rows.append(
            _single(
                7,
                f"the upper Lyapunov bound d(t) ≤ e^{{λ1 t}}ε holds for ε = {eps:g} "
                "(Sec. 4.2, App. C.5)",
                label,
                "worst ln(e^{λ1 t}ε / d(t)) over exact readout steps and directions",
                upper,
                upper >= 0,
                "≥ 0",
                "the bound at every exact readout step, for every direction (log margin ≥ 0)",
                f"{steps} exact readout steps per direction; a margin of m means the bound is "
                f"e^m = {math.exp(min(upper, 700.0)) if np.isfinite(upper) else math.nan:.3g} "
                "times the distance where it is tightest",
            )
        )
        useful = np.isfinite(informative) and informative >= math.log(VACUOUS)
        rows.append(
            _single(
                7,
                f"the lower Lyapunov bound e^{{λN t}}ε ≤ d(t) holds for ε = {eps:g} and says "
                "something (Sec. 4.2, App. C.5)",
                label,
                "worst ln(d(t) / e^{λN t}ε) over exact readout steps and directions",
                lower,
                lower >= 0 and useful,
                f"≥ 0, with e^{{λN t}} ≥ {VACUOUS:g} at one readout",
                "the bound at every exact readout step, for every direction (log margin ≥ 0); "
                f"and not vacuous: where e^{{λN t}} < {VACUOUS:g} the bound is below a hundredth "
                "of ε and holds whatever d does, which is no evidence",
                f"largest lower bound e^{{λN t}} = {math.exp(informative) if useful else 0:.3g}"
                f"·ε (max λN t = {informative:.3g})"
                + ("" if useful else f": vacuous at every readout (λN t < ln {VACUOUS:g})"),
            )
        )
    if not rows:
        why = "no ensembles (ensembles.enabled, or no Lyapunov run of plain SGD)"
        rows.append(
            _not_run(
                6, "perturbed models keep diverging linearly (Fig. 3)", "α against se(α)",
                f"≥ {LINEAR_FRACTION:g}", "α − 2 se(α) > 0 for ≥ 80 % of the directions", why,
            )  # fmt: skip
        )
        rows.append(
            _not_run(
                7, "the Lyapunov bounds hold (App. C.5)", "log margins of the bounds", "≥ 0",
                "both bounds at every exact readout step, the lower one not vacuous", why,
            )  # fmt: skip
        )
    return rows


def claim_sweep(res: Results, references: dict[str, str]) -> list[Claim]:
    """Claim 10 (Sec. 4.2, App. C.3): perturbed members reach a similar final accuracy up to
    ε = ``SIMILAR_UP_TO`` (at most ``SIMILAR`` below the reference, every member) and drop from
    ε = ``DROP_FROM`` on (on average more than ``SIMILAR`` below); each part is ``not run``
    where the config has no such ε. The reference's dtype, final training accuracy."""
    similar_text = (
        f"perturbations up to ε = {SIMILAR_UP_TO:g} reach a similar final accuracy "
        "(Sec. 4.2, App. C.3)"
    )
    drop_text = f"from ε = {DROP_FROM:g} on the final accuracy drops (Sec. 4.2, App. C.3)"
    rows = []
    for ref, label in references.items():
        cols = ["dtype", "strategy", "eps", "train_acc", "val_acc"]
        members = res.table("ensembles", ref, "members", cols, finite=cols[2:])
        dtype = _reference_dtype(res, ref, members)
        m = members[members["dtype"] == dtype]
        base = m[m["eps"] == 0.0]
        if len(base) != 1:
            raise ValueError(
                f"{members.attrs['path']}: {len(base)} unperturbed (ε = 0) members in {dtype}, "
                "expected the reference alone"
            )
        acc, val = float(base["train_acc"].iloc[0]), float(base["val_acc"].iloc[0])
        m = m.assign(drop=acc - m["train_acc"], val_drop=val - m["val_acc"])
        small = m[(m["eps"] > 0) & (m["eps"] <= SIMILAR_UP_TO)]
        large = m[m["eps"] >= DROP_FROM]
        quantity = "reference's final training accuracy minus the members'"
        if small.empty:
            rows.append(
                _not_run(
                    10, similar_text, quantity, f"≤ {SIMILAR:g}",
                    f"every member with ε ≤ {SIMILAR_UP_TO:g} at most {SIMILAR} below",
                    f"the config has no ε ≤ {SIMILAR_UP_TO:g} (ensembles.eps)", label,
                )  # fmt: skip
            )
        else:
            worst = float(small["drop"].max())
            rows.append(
                _single(
                    10,
                    similar_text,
                    label,
                    f"largest drop, ε ≤ {SIMILAR_UP_TO:g} (tested up to {small['eps'].max():g})",
                    worst,
                    worst <= SIMILAR,
                    f"≤ {SIMILAR:g}",
                    f"every member with ε ≤ {SIMILAR_UP_TO:g} at most {SIMILAR} below the "
                    "reference's final training accuracy",
                    f"reference accuracy {acc:.3g}; largest validation drop "
                    f"{float(small['val_drop'].max()):.3g}; ε tested "
                    + _values(sorted(set(small["eps"]))),
                )
            )
        if large.empty:
            rows.append(
                _not_run(
                    10, drop_text, quantity, f"> {SIMILAR:g}",
                    f"mean over the members with ε ≥ {DROP_FROM:g} more than {SIMILAR} below",
                    f"the config has no ε ≥ {DROP_FROM:g} (ensembles.eps)", label,
                )  # fmt: skip
            )
        else:
            mean = float(large["drop"].mean())
            rows.append(
                _single(
                    10,
                    drop_text,
                    label,
                    f"mean drop, ε ≥ {DROP_FROM:g}",
                    mean,
                    mean > SIMILAR,
                    f"> {SIMILAR:g}",
                    f"mean over the members with ε ≥ {DROP_FROM:g} more than {SIMILAR} below the "
                    "reference's final training accuracy",
                    f"reference accuracy {acc:.3g}; per member {_values(large['drop'])}; mean "
                    f"validation drop {float(large['val_drop'].mean()):.3g}",
                )
            )
    if not rows:
        why = "no ensembles (ensembles.enabled, or no Lyapunov run of plain SGD)"
        rows.append(_not_run(10, similar_text, "final accuracy drop", f"≤ {SIMILAR:g}", "", why))
        rows.append(_not_run(10, drop_text, "final accuracy drop", f"> {SIMILAR:g}", "", why))
    return rows


def claim_scale(res: Results, references: dict[str, str], eps: float) -> list[Claim]:
    """Claim 11 (Sec. 4.2, App. A.8): the maximal divergence at ε = ``eps`` (reference dtype,
    every direction and recorded step) stays below √E‖θ₁ − θ₂‖², the distance of two default
    initializations of the reference's model (:func:`chaosgd.models.init_distance`)."""
    statement = (
        "the maximal divergence stays below the expected distance of two default "
        "initializations (Sec. 4.2, App. A.8; the paper's 6.38 for its MLP is √2 times "
        "√E‖θ₁ − θ₂‖² = 4.515)"
    )
    rows = []
    for ref, label in references.items():
        dist = res.table(
            "ensembles", ref, "distances", ["dtype", "strategy", "eps", "step", "distance"],
            finite=["eps", "step", "distance"],
        )  # fmt: skip
        dtype = _reference_dtype(res, ref, dist)
        d = _rows_for(dist, eps, dtype)
        s = res.settings(ref)
        scale = init_distance(build_model(s["model"], s["activation"], int(s["hidden"])))
        worst = d.loc[d["distance"].idxmax()]
        rows.append(
            _single(
                11,
                statement,
                label,
                f"largest distance to the reference (ε = {eps:g}, {dtype})",
                float(worst["distance"]),
                float(worst["distance"]) < scale,
                f"< {scale:.4g}",
                f"below √E‖θ₁ − θ₂‖² = {scale:.4g} for two default initializations of "
                f"{s['model']} ({s['activation']}, hidden {s['hidden']})",
                f"at step {int(worst['step'])}, direction {worst['strategy']}; the paper's "
                f"figure would be {math.sqrt(2) * scale:.4g} (√2 times)",
            )
        )
    if not rows:
        rows.append(
            _not_run(
                11, statement, "largest distance", "< √E‖θ₁ − θ₂‖²", "",
                "no ensembles (ensembles.enabled, or no Lyapunov run of plain SGD)",
            )  # fmt: skip
        )
    return rows


def check_claims(
    results: Path,
    groups: dict[str, list[str]],
    lyapunov: dict[str, list[str]],
    references: dict[str, str],
    main_eps: float,
    neutral_tol: float = NEUTRAL_TOL,
) -> pd.DataFrame:
    """Check every claim against the results under ``results``; one row per claim and experiment.

    ``groups`` maps experiments to their training runs, ``lyapunov`` experiments to their Lyapunov
    runs, ``references`` ensemble reference runs to labels; ``main_eps`` is the ε of claims 6, 7
    and 11, ``neutral_tol`` the Lyapunov stage's (claim 5). Rows are sorted by claim number.
    """
    res = Results(results)
    rows = (
        claim_pruning(res, groups)
        + claim_onsets(res, groups)
        + claim_spectrum(res, groups)
        + claim_exponents(res, lyapunov, neutral_tol)
        + claim_divergence(res, references, main_eps)
        + claim_validation(res, groups)
        + claim_subspaces(res, lyapunov)
        + claim_sweep(res, references)
        + claim_scale(res, references, main_eps)
    )
    df = pd.DataFrame([asdict(r) for r in rows])
    df["n"] = df["n"].astype(np.int64)
    df["claim"] = df["claim"].astype(np.int64)
    return df.sort_values(["claim"], kind="stable").reset_index(drop=True)


def provenance(results: Path, runs: list[str], config: str) -> str:
    """Which settings produced the table: config, devices, runs and their wall time."""
    devices, seconds = set(), 0.0
    for r in runs:
        info = read_run_info(
            results / "train" / r / "run.json",
            r,
            result=("wall_seconds",),
            environment=("device", "device_name"),
        )
        env = info["environment"]
        devices.add(f"{env['device']} ({env['device_name']})")
        seconds += info["result"]["wall_seconds"]
    return (
        f"Produced by config {config}: {len(runs)} training runs on {', '.join(sorted(devices))}, "
        f"{seconds / 3600:.2f} h of training wall time in all (Lyapunov runs included)."
    )


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.3g}"


LEGEND = (
    "Lower / upper end: of the 95 % confidence interval over seeds from 3 seeds on; with fewer "
    "the smallest / largest seed (every seed must show the effect)."
)


def markdown(df: pd.DataFrame, context: str = "") -> str:
    """The claims table as Markdown, after ``context``, then each verdict's criterion and details."""
    lines = [
        "| # | claim | experiment | quantity | value | 95% CI | seeds | threshold | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in df.itertuples():
        ci = f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if np.isfinite(r.ci_low) else ""
        verdict = {SUPPORTED: "**supported**", NOT_SUPPORTED: "**not supported**"}.get(
            r.verdict, r.verdict
        )
        lines.append(
            f"| {r.claim} | {r.statement} | {r.experiment} | {r.quantity} | {_fmt(r.value)} | "
            f"{ci} | {r.n or ''} | {r.threshold} | {verdict} |"
        )
    text = "\n".join(lines) + "\n\n" + LEGEND + "\n"
    if context:
        text = context + "\n\n" + text
    details = [
        f"- claim {r.claim}, {r.experiment}: {r.criterion}" + (f"; {r.detail}" if r.detail else "")
        for r in df.itertuples()
    ]
    return text + "\nCriteria and details:\n\n" + "\n".join(details) + "\n"


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{what}: expected NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    """Check the paper's claims from the command line; returns the exit status.

    Writes the claims table as Parquet, Markdown and HTML (for the report).
    """
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.claims", description="Check the paper's claims against the results."
    )
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--group", action="append", default=[], metavar="EXPERIMENT=RUN,RUN,...")
    parser.add_argument("--lyapunov", action="append", default=[], metavar="EXPERIMENT=RUN,...")
    parser.add_argument("--reference", action="append", default=[], metavar="RUN=LABEL")
    parser.add_argument("--main-eps", type=float, required=True)
    parser.add_argument(
        "--neutral-tol",
        type=float,
        default=NEUTRAL_TOL,
        help="the Lyapunov stage's neutral_tol (config lyapunov.neutral_tol), for claim 5",
    )
    parser.add_argument("--config-name", default="?", help="the config the workflow ran with")
    parser.add_argument("--out-table", required=True, help="claims.parquet")
    parser.add_argument("--out-markdown", required=True, help="claims.md")
    parser.add_argument("--out-html", required=True, help="claims.html (for the report)")
    args = parser.parse_args(argv)
    try:
        groups = {k: v.split(",") for k, v in _pairs(args.group, "--group").items()}
        lyap = {k: v.split(",") for k, v in _pairs(args.lyapunov, "--lyapunov").items()}
        refs = _pairs(args.reference, "--reference")
        df = check_claims(args.results, groups, lyap, refs, args.main_eps, args.neutral_tol)
        every = sorted({r for runs in groups.values() for r in runs})
        context = provenance(args.results, every, args.config_name)
    except (OSError, KeyError, ValueError, IndexError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_parquet(df, args.out_table)
    with atomic_path(args.out_markdown) as tmp:
        tmp.write_text(markdown(df, context))
    with atomic_path(args.out_html) as tmp:
        shown = df.drop(columns=["criterion", "detail"]).copy()
        tmp.write_text(
            f"<p>{context}</p>\n"
            + shown.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="")
            + f"\n<p>{LEGEND}</p>\n<h3>Criteria and details</h3>\n"
            + df[["claim", "experiment", "criterion", "detail"]].to_html(index=False)
        )
    counts = df["verdict"].value_counts().to_dict()
    print(f"claims: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
