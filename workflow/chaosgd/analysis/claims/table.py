"""The claims table: every claim checked, one row per claim and experiment, where it comes from,
and its Markdown and HTML (the report's) renderings."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from chaosgd.analysis.claims.divergence import claim_divergence, claim_scale, claim_sweep
from chaosgd.analysis.claims.lyapunov import NEUTRAL_TOL, claim_exponents, claim_subspaces
from chaosgd.analysis.claims.results import Results
from chaosgd.analysis.claims.spectrum import claim_spectrum
from chaosgd.analysis.claims.training import claim_onsets, claim_pruning, claim_validation
from chaosgd.analysis.claims.verdicts import NOT_SUPPORTED, SUPPORTED
from chaosgd.runs.artifacts import read_run_info

LEGEND = (
    "Lower / upper end: of the 95 % confidence interval over seeds from 3 seeds on; with fewer "
    "the smallest / largest seed (every seed must show the effect)."
)


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
    # the order within a claim number is this one (the sort is stable)
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


def markdown(df: pd.DataFrame, context: str = "") -> str:
    """The claims table as Markdown after ``context``, then each verdict's criterion and details."""
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


def html(df: pd.DataFrame, context: str) -> str:
    """The claims table as HTML for the report: ``context``, the table, the legend, then each
    verdict's criterion and details in a table of their own (too long for the first)."""
    shown = df.drop(columns=["criterion", "detail"]).copy()
    return (
        f"<p>{context}</p>\n"
        + shown.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="")
        + f"\n<p>{LEGEND}</p>\n<h3>Criteria and details</h3>\n"
        + df[["claim", "experiment", "criterion", "detail"]].to_html(index=False)
    )
