"""Claims stage: the paper's claims, checked against this workflow's results.

Reads the training, Lyapunov, ensemble and fit results the config produced, checks each claim of
the paper against them (:mod:`chaosgd.analysis.claims`: the claims, their criteria and the
verdict rules), and writes the claims table as Parquet, Markdown and HTML (for the report).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chaosgd.analysis.claims.lyapunov import NEUTRAL_TOL
from chaosgd.analysis.claims.table import check_claims, html, markdown, provenance
from chaosgd.runs.artifacts import atomic_path, explain, write_parquet


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
        print(f"error: {explain(exc)}", file=sys.stderr)
        return 1
    try:
        write_parquet(df, args.out_table)
        with atomic_path(args.out_markdown) as tmp:
            tmp.write_text(markdown(df, context))
        with atomic_path(args.out_html) as tmp:
            tmp.write_text(html(df, context))
    except OSError as exc:  # ArtifactWriteError
        print(f"error: {explain(exc, 'writing')}", file=sys.stderr)
        return 1
    counts = df["verdict"].value_counts().to_dict()
    print(f"claims: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
