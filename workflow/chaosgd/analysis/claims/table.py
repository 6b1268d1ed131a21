"""The claims table: every claim checked, one row per claim and experiment, where it comes from,
and its Markdown and HTML (the report's) renderings."""

from __future__ import annotations

import html as _html
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from chaosgd.analysis.claims.divergence import claim_divergence, claim_fit_shape, claim_growth
from chaosgd.analysis.claims.lyapunov import (
    NEUTRAL_TOL,
    claim_exponents,
    claim_nonchaotic_subspaces,
    claim_pruned_chaos,
    claim_subspaces,
)
from chaosgd.analysis.claims.results import Results
from chaosgd.analysis.claims.scale import claim_scale, claim_sweep
from chaosgd.analysis.claims.spectrum import (
    claim_hessian_norm,
    claim_negative_steps,
    claim_spectrum,
)
from chaosgd.analysis.claims.training import (
    claim_coincide,
    claim_onsets,
    claim_pruning,
    claim_selections,
    claim_validation,
)
from chaosgd.analysis.claims.verdicts import NOT_SUPPORTED, SUPPORTED
from chaosgd.runs.artifacts import read_run_info

LEGEND = (
    "Interval: the one the verdict compared with the threshold. From 3 seeds on the 95 % "
    "Student-t confidence interval over seeds (95% CI); with fewer, where that interval says "
    "nothing (t = 12.7 for 2 seeds), the smallest and largest seed (seed range: every seed must "
    "show the effect); none for a single measurement. Lower / upper end: of that interval. "
    "Seed values: one per seed, in seed order. The Student-t interval for any number of seeds "
    "from 2 is in claims.parquet (ci_low, ci_high)."
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
        + claim_negative_steps(res, groups)
        + claim_hessian_norm(res, groups)
        + claim_coincide(res, groups)
        + claim_selections(res, groups)
        + claim_nonchaotic_subspaces(res, lyapunov)
        + claim_growth(res, references, main_eps)
        + claim_fit_shape(res, references, main_eps)
        + claim_pruned_chaos(res, lyapunov, neutral_tol)
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


def _interval(r) -> str:
    """The verdict's interval with its kind: "[low, high] (95% CI)" or "(seed range)"."""
    return f"[{_fmt(r.low)}, {_fmt(r.high)}] ({r.interval})" if r.interval else ""


def _shown(df: pd.DataFrame) -> pd.DataFrame:
    """The rows as the table shows them: text cells, blank where there is nothing to show."""
    return pd.DataFrame(
        {
            "#": df["claim"],
            "claim": df["statement"],
            "experiment": df["experiment"],
            "quantity": df["quantity"],
            "value": [_fmt(v) for v in df["value"]],
            "interval": [_interval(r) for r in df.itertuples()],
            "seed values": df["seed_values"],
            "n": [str(n) if n else "" for n in df["n"]],
            "threshold": df["threshold"],
            "verdict": df["verdict"],
        }
    )


def markdown(df: pd.DataFrame, context: str = "") -> str:
    """The claims table as Markdown after ``context``, then each verdict's criterion and details."""
    shown = _shown(df)
    lines = ["| " + " | ".join(shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    for r in shown.itertuples(index=False):
        cells = list(r)
        cells[-1] = {SUPPORTED: "**supported**", NOT_SUPPORTED: "**not supported**"}.get(
            cells[-1], cells[-1]
        )
        # a norm's bars (|λmin|) would end the cell
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
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
    verdict's criterion and details in a table of their own (too long for the first).

    Every text is escaped: statements and details quote the paper's symbols and could hold
    markup; pandas' ``to_html`` escapes cells by default, and the paragraphs here likewise."""
    return (
        f"<p>{_html.escape(context)}</p>\n"
        + _shown(df).to_html(index=False, escape=True)
        + f"\n<p>{_html.escape(LEGEND)}</p>\n<h3>Criteria and details</h3>\n"
        + df[["claim", "experiment", "criterion", "detail"]].to_html(index=False, escape=True)
    )
