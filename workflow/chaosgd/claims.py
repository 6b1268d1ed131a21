"""Claims stage: the paper's claims, checked against this workflow's results.

For each claim of the paper, the measured quantity, its value with a 95 % confidence interval
over seeds (Student's t; none with a single seed), and a verdict: ``supported``, ``not
supported`` or ``not run`` (the config has no runs that could test it). The criteria are stated
with every row (``criterion``), so a verdict can be argued with:

1. Pruning the negative or the chaotic spectrum ends with far lower training accuracy (by at
   least ``FAR`` = 0.1) and higher loss than SGD; pruning the positive spectrum costs
   significantly less accuracy than pruning the negative one (Fig. 1, App. B.1). Final
   full-training-set accuracy and loss, paired by seed.
2. Later pruning onsets slow learning from the onset on (Fig. 2): identical to SGD before the
   onset, and a higher mean training loss than SGD from the onset to the end.
3. The number of positive-chaotic eigenvalues (λ > 2/η) is ≈ 0 through training (on average
   below 0.5 per step); the number of negative eigenvalues falls and of positive ones rises
   (mean over the last tenth of the steps against the first tenth) (App. B.2). SGD runs.
4. The gradient overlaps more with the positive than with the negative eigenspace (mean over
   steps of ‖P₊g‖² − ‖P₋g‖² over ‖g‖², > 0) (App. B.2). SGD runs.
5. The finite-time Lyapunov exponents start > 0 and approach 0 without going below it: λ1 > 0
   at every readout and λ1 at the last readout below λ1 at the first (App. C.1).
6. Perturbed models keep diverging after the training accuracy converges (the distance at the
   end exceeds the distance when the reference's training accuracy first came within 0.01 of
   its final value, for at least 4 of the 5 directions), and √(αt² + βt + ε²) fits the distance
   curves (median R² ≥ 0.9) (Fig. 3). The main ε, the reference's dtype.
7. The Lyapunov bounds e^{λN t}ε ≤ d(t) ≤ e^{λ1 t}ε hold for the main ε (App. C.5): at every
   exact readout step, for every direction.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import stats

from chaosgd.io import atomic_path, read_parquet, write_parquet

FAR = 0.1  # "far lower" training accuracy: at least this much below SGD
CHAOTIC_PER_STEP = 0.5  # "≈ 0" positive-chaotic eigenvalues per step, on average
R2_FIT = 0.9  # "fits": median R² of the divergence fits
DIVERGING_DIRECTIONS = 4  # of 5 directions still diverging after convergence
CONVERGED = 0.01  # training accuracy within this of its final value counts as converged

SUPPORTED, NOT_SUPPORTED, NOT_RUN = "supported", "not supported", "not run"


@dataclass
class Claim:
    """One row of the claims table: a claim of the paper, the quantity measured and the verdict.

    ``value`` / ``ci_low`` / ``ci_high`` are the mean and 95 % interval over ``n`` seeds;
    ``criterion`` states what the verdict required and ``detail`` adds the supporting numbers.
    """

    claim: int
    statement: str
    experiment: str
    quantity: str
    value: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    n: int = 0
    verdict: str = NOT_RUN
    criterion: str = ""
    detail: str = ""


@dataclass
class Stat:
    """A quantity over seeds: mean, 95 % Student-t interval, and the per-seed extremes."""

    mean: float
    ci_low: float
    ci_high: float
    n: int
    min: float
    max: float

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
    """Mean and 95 % Student-t interval over seeds (NaN bounds for fewer than 2 values)."""
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    n = len(x)
    if n == 0:
        return Stat(math.nan, math.nan, math.nan, 0, math.nan, math.nan)
    mean = float(x.mean())
    lo = hi = math.nan
    if n >= 2:
        half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
        lo, hi = mean - half, mean + half
    return Stat(mean, lo, hi, n, float(x.min()), float(x.max()))


def _claim(claim, statement, experiment, quantity, st: Stat, ok: bool, criterion, detail=""):
    return Claim(
        claim, statement, experiment, quantity, st.mean, st.ci_low, st.ci_high, st.n,
        SUPPORTED if ok else NOT_SUPPORTED, criterion, detail,
    )  # fmt: skip


def _fmt_stat(st: Stat) -> str:
    ci = f" [{st.ci_low:.3g}, {st.ci_high:.3g}]" if np.isfinite(st.ci_low) else ""
    return f"{st.mean:.3g}{ci}"


# below 3 seeds the bound a criterion refers to is the worst seed (see Stat.low)
BOUND = "the CI (below 3 seeds: every seed)"


class Results:
    """Reads a run's tables from ``results/<stage>/<run>/``."""

    def __init__(self, root: Path):
        self.root = root
        self._settings: dict[str, dict] = {}

    def settings(self, run: str) -> dict:
        """The settings a training run was made with (from its ``run.json``), cached per run."""
        if run not in self._settings:
            info = json.loads((self.root / "train" / run / "run.json").read_text())
            self._settings[run] = info["settings"]
        return self._settings[run]

    def table(self, stage: str, run: str, name: str, columns=None) -> pd.DataFrame:
        """Read table ``<stage>/<run>/<name>.parquet`` (only ``columns``, if given)."""
        return read_parquet(self.root / stage / run / f"{name}.parquet", columns=columns)

    def columns(self, stage: str, run: str, name: str) -> list[str]:
        """Column names of table ``<stage>/<run>/<name>.parquet``, read from its schema only."""
        return pq.read_schema(self.root / stage / run / f"{name}.parquet").names

    def final(self, run: str) -> pd.Series:
        """The last row of a training run's per-epoch table (final accuracy and loss)."""
        return self.table("train", run, "epochs").iloc[-1]


def _by_seed(res: Results, runs: list[str], variant: str, onset: int = 0) -> dict[tuple, str]:
    """(seed, momentum) -> run of this variant and onset."""
    out = {}
    for r in runs:
        s = res.settings(r)
        if s["variant"] == variant and s["onset"] == onset:
            out[(s["seed"], s["momentum"])] = r
    return out


def claim_pruning(res: Results, groups: dict[str, list[str]]) -> list[Claim]:
    """Claim 1 (Fig. 1, App. B.1): pruning the negative / chaotic spectrum cripples learning.

    Per experiment, final training accuracy and loss of each CGD prune set against SGD, paired by
    seed; also whether pruning the positive spectrum costs less accuracy than the negative one.
    """
    rows = []
    for exp, runs in groups.items():
        sgd = _by_seed(res, runs, "sgd")
        gaps = {}
        for prune in ("negative", "chaotic", "positive"):
            cgd = _by_seed(res, runs, f"cgd-{prune}")
            pairs = [k for k in cgd if k in sgd]
            if not pairs:
                continue
            acc = [res.final(sgd[k])["train_acc"] - res.final(cgd[k])["train_acc"] for k in pairs]
            loss = [
                res.final(cgd[k])["train_loss"] - res.final(sgd[k])["train_loss"] for k in pairs
            ]
            gaps[prune] = (acc, loss)
        for prune in ("negative", "chaotic"):
            if prune not in gaps:
                continue
            acc, loss = mean_ci(gaps[prune][0]), mean_ci(gaps[prune][1])
            rows.append(
                _claim(
                    1,
                    f"pruning the {prune} spectrum ends with far lower training accuracy and "
                    "higher loss than SGD",
                    exp,
                    f"final training accuracy, SGD minus CGD-{prune}",
                    acc,
                    acc.mean >= FAR and acc.low > 0 and loss.low > 0,
                    f"mean accuracy gap >= {FAR}; accuracy and loss gaps above 0 for {BOUND}",
                    f"training loss CGD-{prune} minus SGD: {_fmt_stat(loss)}",
                )
            )
        if "positive" in gaps and "negative" in gaps:
            pos, neg = mean_ci(gaps["positive"][0]), mean_ci(gaps["negative"][0])
            rows.append(
                _claim(
                    1,
                    "pruning the positive spectrum costs little (far less than the negative)",
                    exp,
                    "final training accuracy, SGD minus CGD-positive",
                    pos,
                    pos.high < neg.low,
                    f"below the SGD minus CGD-negative gap, for {BOUND} of both",
                    f"SGD minus CGD-negative: {_fmt_stat(neg)}",
                )
            )
    if not rows:
        rows.append(
            Claim(
                1,
                "pruning the negative or chaotic spectrum cripples learning; positive "
                "costs little",
                "-",
                "final training accuracy gaps",
            )
        )
    return rows


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
                        f"{variant} from step {onset} slows learning from the onset on",
                        exp,
                        "mean training loss from the onset to the end, CGD minus SGD",
                        st,
                        identical and st.low > 0,
                        f"identical to SGD up to the onset; loss difference above 0 for {BOUND}",
                        f"identical before the onset: {identical}",
                    )
                )
    if not rows:
        rows.append(
            Claim(
                2,
                "later pruning onsets slow learning from the onset on",
                "-",
                "loss after the onset, CGD minus SGD",
            )
        )
    return rows


def _spectrum_runs(res: Results, groups) -> dict[str, list[str]]:
    """SGD runs that recorded the Hessian spectrum, by experiment."""
    out = {}
    for exp, runs in groups.items():
        chosen = [
            r for r in runs
            if res.settings(r)["variant"] == "sgd" and "n_negative" in res.columns("train", r, "steps")
        ]  # fmt: skip
        if chosen:
            out[exp] = chosen
    return out


def claim_spectrum(res: Results, groups) -> list[Claim]:
    """Claims 3 and 4 (App. B.2): the Hessian spectrum and gradient overlaps of SGD runs.

    Positive-chaotic eigenvalues (λ > 2/η) ≈ 0 per step, negative counts falling and positive ones
    rising (last tenth of the steps against the first), and the gradient overlapping more with the
    positive than with the negative eigenspace. Experiments that share SGD runs are measured once.
    """
    rows, seen = [], []
    for exp, runs in _spectrum_runs(res, groups).items():
        if set(runs) in seen:  # experiments sharing their SGD baselines: measured once
            continue
        seen.append(set(runs))
        chaotic, neg_trend, pos_trend, overlap = [], [], [], []
        for r in runs:
            s = res.table("train", r, "steps")
            k = max(1, len(s) // 10)
            chaotic.append(float(s["n_positive_chaotic"].mean()))
            neg_trend.append(float(s["n_negative"][-k:].mean() - s["n_negative"][:k].mean()))
            pos_trend.append(float(s["n_positive"][-k:].mean() - s["n_positive"][:k].mean()))
            overlap.append(float((s["grad_frac_positive"] - s["grad_frac_negative"]).mean()))
        st = mean_ci(chaotic)
        rows.append(
            _claim(
                3,
                "the number of positive-chaotic eigenvalues (λ > 2/η) is ≈ 0 through training",
                exp,
                "positive-chaotic eigenvalues per step (mean)",
                st,
                st.high < CHAOTIC_PER_STEP,
                f"below {CHAOTIC_PER_STEP} per step for {BOUND}",
            )
        )
        neg, pos = mean_ci(neg_trend), mean_ci(pos_trend)
        rows.append(
            _claim(
                3,
                "the number of negative eigenvalues falls and of positive ones rises over training",
                exp,
                "negative eigenvalues, last tenth of steps minus first tenth",
                neg,
                neg.high < 0 and pos.low > 0,
                f"negative change below 0 and positive change above 0, for {BOUND}",
                f"positive eigenvalues, last minus first tenth: {_fmt_stat(pos)}",
            )
        )
        st = mean_ci(overlap)
        rows.append(
            _claim(
                4,
                "the gradient overlaps more with the positive than with the negative eigenspace",
                exp,
                "mean over steps of (‖P₊g‖² − ‖P₋g‖²)/‖g‖²",
                st,
                st.low > 0,
                f"above 0 for {BOUND}",
            )
        )
    if not rows:
        for c, text in (
            (3, "positive-chaotic eigenvalues ≈ 0; negative fall, positive rise"),
            (4, "the gradient overlaps more with the positive eigenspace"),
        ):
            rows.append(Claim(c, text, "-", "SGD runs with the Hessian spectrum"))
    return rows


def claim_exponents(res: Results, lyapunov: dict[str, list[str]]) -> list[Claim]:
    """Claim 5 (App. C.1): finite-time Lyapunov exponents start > 0 and approach 0 from above.

    Uses the SGD runs of the Lyapunov stage: λ1 must be > 0 at every readout and lower at the last
    readout than at the first, for every seed.
    """
    rows = []
    for exp, runs in lyapunov.items():
        runs = [r for r in runs if res.settings(r)["variant"] == "sgd"]
        if not runs:
            continue
        start, end, above = [], [], []
        for r in runs:
            e = res.table("lyapunov", r, "exponents").sort_values("step")
            start.append(float(e["lambda_1"].iloc[0]))
            end.append(float(e["lambda_1"].iloc[-1]))
            above.append(bool((e["lambda_1"] > 0).all()))
        ok = all(above) and all(b < a for a, b in zip(start, end))
        rows.append(
            _claim(
                5,
                "finite-time Lyapunov exponents start > 0 and approach 0 without going below it",
                exp,
                "λ1 at the last readout (per step)",
                mean_ci(end),
                ok,
                "λ1 > 0 at every readout, and λ1 at the last readout below λ1 at the first",
                f"λ1 at the first readout: {', '.join(f'{v:.3g}' for v in start)}; "
                f"above 0 throughout: {above}",
            )
        )
    if not rows:
        rows.append(
            Claim(
                5,
                "finite-time exponents start > 0 and approach 0 from above",
                "-",
                "λ1 over training",
            )
        )
    return rows


def _converged_step(res: Results, run: str) -> int:
    ep = res.table("train", run, "epochs")
    final = ep["train_acc"].iloc[-1]
    return int(ep.loc[ep["train_acc"] >= final - CONVERGED, "step"].iloc[0])


def claim_divergence(res: Results, references: dict[str, str], eps: float) -> list[Claim]:
    """Claims 6 and 7 (Fig. 3, App. C.5): divergence after convergence, its fit, and the bounds.

    For each reference run (labelled by ``references``) and ε = ``eps`` in the reference's dtype:
    whether the distances keep growing after the training accuracy converged, the median R² of the
    √(αt² + βt + ε²) fits, and whether e^{λN t}ε ≤ d(t) ≤ e^{λ1 t}ε holds at every readout step.
    """
    rows = []
    for ref, label in references.items():
        dist = res.table(
            "ensembles", ref, "distances", ["dtype", "strategy", "eps", "step", "distance"]
        )
        fits = res.table("fits", ref, "fits")
        dtype = res.settings(ref)["dtype"]
        if dtype not in set(dist["dtype"]):
            dtype = dist["dtype"].iloc[0]
        d = dist[(dist["eps"] == eps) & (dist["dtype"] == dtype)]
        f = fits[(fits["eps"] == eps) & (fits["dtype"] == dtype)]
        t_conv = _converged_step(res, ref)
        growing = []
        for strategy, curve in d.groupby("strategy"):
            curve = curve.sort_values("step")
            at_conv = curve.loc[curve["step"] >= t_conv, "distance"].iloc[0]
            growing.append(bool(curve["distance"].iloc[-1] > at_conv))
        r2 = float(f["r2"].median())
        ok = sum(growing) >= DIVERGING_DIRECTIONS and r2 >= R2_FIT
        rows.append(
            Claim(
                6,
                "perturbed models keep diverging after training accuracy converges; "
                "√(αt² + βt + ε²) fits the distances",
                label,
                f"median R² of the fits (ε = {eps:g}, {dtype})",
                r2,
                math.nan,
                math.nan,
                1,
                SUPPORTED if ok else NOT_SUPPORTED,
                f"distance grows after convergence for >= {DIVERGING_DIRECTIONS} of 5 directions, "
                f"median R² >= {R2_FIT}",
                f"converged at step {t_conv}; still diverging for {sum(growing)} of {len(growing)} "
                f"directions; R² per direction: "
                + ", ".join(f"{s} {v:.3f}" for s, v in zip(f["strategy"], f["r2"])),
            )
        )
        lower = float(f["lower_bound_holds"].min())
        upper = float(f["upper_bound_holds"].min())
        rows.append(
            Claim(
                7,
                f"the Lyapunov bounds hold for ε = {eps:g}",
                label,
                "fraction of readout steps where both bounds hold (worst direction)",
                min(lower, upper),
                math.nan,
                math.nan,
                1,
                SUPPORTED if lower == 1.0 and upper == 1.0 else NOT_SUPPORTED,
                "both bounds hold at every exact readout step for every direction",
                f"lower bound holds {lower:.0%}, upper {upper:.0%} (worst direction; "
                f"{int(f['bound_steps'].min())} readout steps)",
            )
        )
    if not rows:
        rows.append(Claim(6, "perturbed models keep diverging; the fit holds", "-", "distances"))
        rows.append(Claim(7, "the Lyapunov bounds hold", "-", "distances against the bounds"))
    return rows


def check_claims(
    results: Path,
    groups: dict[str, list[str]],
    lyapunov: dict[str, list[str]],
    references: dict[str, str],
    main_eps: float,
) -> pd.DataFrame:
    """Check every claim against the results under ``results``; one row per claim and experiment.

    ``groups`` maps experiments to their training runs, ``lyapunov`` experiments to their Lyapunov
    runs, ``references`` ensemble reference runs to labels; ``main_eps`` is the ε of claims 6–7.
    Rows are sorted by claim number.
    """
    res = Results(results)
    rows = (
        claim_pruning(res, groups)
        + claim_onsets(res, groups)
        + claim_spectrum(res, groups)
        + claim_exponents(res, lyapunov)
        + claim_divergence(res, references, main_eps)
    )
    df = pd.DataFrame([asdict(r) for r in rows])
    df["n"] = df["n"].astype(np.int64)
    df["claim"] = df["claim"].astype(np.int64)
    return df.sort_values(["claim"], kind="stable").reset_index(drop=True)


def provenance(results: Path, runs: list[str], config: str) -> str:
    """Which settings produced the table: config, devices, runs and their wall time."""
    devices, seconds = set(), 0.0
    for r in runs:
        info = json.loads((results / "train" / r / "run.json").read_text())
        env = info["environment"]
        devices.add(f"{env['device']} ({env['device_name']})")
        seconds += info["result"]["wall_seconds"]
    return (
        f"Produced by config {config}: {len(runs)} training runs on {', '.join(sorted(devices))}, "
        f"{seconds / 3600:.2f} h of training wall time in all (Lyapunov runs included)."
    )


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.3g}"


def markdown(df: pd.DataFrame, context: str = "") -> str:
    """The claims table as Markdown, after ``context``, then each verdict's criterion and details."""
    lines = [
        "| # | claim | experiment | quantity | value | 95% CI | seeds | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in df.itertuples():
        ci = f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]" if np.isfinite(r.ci_low) else ""
        verdict = {SUPPORTED: "**supported**", NOT_SUPPORTED: "**not supported**"}.get(
            r.verdict, r.verdict
        )
        lines.append(
            f"| {r.claim} | {r.statement} | {r.experiment} | {r.quantity} | {_fmt(r.value)} | "
            f"{ci} | {r.n or ''} | {verdict} |"
        )
    text = "\n".join(lines) + "\n"
    if context:
        text = context + "\n\n" + text
    details = [
        f"- claim {r.claim}, {r.experiment}: {r.criterion}" + (f"; {r.detail}" if r.detail else "")
        for r in df.itertuples()
        if r.verdict != NOT_RUN
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
    parser.add_argument("--config-name", default="?", help="the config the workflow ran with")
    parser.add_argument("--out-table", required=True, help="claims.parquet")
    parser.add_argument("--out-markdown", required=True, help="claims.md")
    parser.add_argument("--out-html", required=True, help="claims.html (for the report)")
    args = parser.parse_args(argv)
    try:
        groups = {k: v.split(",") for k, v in _pairs(args.group, "--group").items()}
        lyap = {k: v.split(",") for k, v in _pairs(args.lyapunov, "--lyapunov").items()}
        refs = _pairs(args.reference, "--reference")
        df = check_claims(args.results, groups, lyap, refs, args.main_eps)
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
            + "\n<h3>Criteria and details</h3>\n"
            + df[["claim", "experiment", "criterion", "detail"]].to_html(index=False)
        )
    counts = df["verdict"].value_counts().to_dict()
    print(f"claims: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
