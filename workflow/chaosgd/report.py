"""Report stage: the table of every run's settings and outcome, for ``snakemake --report``.

One row per run, from its ``run.json``: what defines it (dataset, model, variant, onset,
momentum, seed, learning rate, batch size, epochs, subset, dtype), where and how fast it ran
(device, wall time, steps/s) and how it ended (final full training-set and validation accuracy).
The table is TSV, which the report shows as text, never as markup.

Beside it, the outputs under ``results/`` and ``logs/`` that the config no longer makes, and the
runs made with other settings than it asks for, one path a line (:mod:`chaosgd.planning.stale`;
``python -m chaosgd.tools.stale --move`` moves them away).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from chaosgd.planning.config import validate_config
from chaosgd.planning.stale import LOGS, listing, survey
from chaosgd.planning.tables import EPOCHS
from chaosgd.runs.artifacts import atomic_path, explain, read_parquet, read_run_info

SETTINGS = [
    "run_id", "dataset", "model", "activation", "hidden", "variant", "onset", "momentum", "seed",
    "lr", "batch_size", "epochs", "train_size", "dtype", "spectrum", "curvature",
]  # fmt: skip


def _rounded(value, digits: int):
    return None if value is None else round(float(value), digits)


def runs_table(results: Path, run_ids: list[str]) -> pd.DataFrame:
    """One row per run from its ``run.json`` and last ``epochs.parquet`` row: the settings that
    define it, device and speed, and its final full training-set and validation accuracy.
    """
    rows = []
    for rid in run_ids:
        folder = results / "train" / rid
        info = read_run_info(
            folder / "run.json",
            rid,
            settings=SETTINGS,
            result=("steps", "wall_seconds", "steps_per_second"),
            environment=("device",),
        )
        last = read_parquet(
            folder / EPOCHS.filename, finite=[EPOCHS.train_acc, EPOCHS.val_acc], nonempty=True
        ).iloc[-1]
        row = {k: info["settings"][k] for k in SETTINGS}
        row.update(
            device=info["environment"]["device"],
            steps=info["result"]["steps"],
            wall_seconds=_rounded(info["result"]["wall_seconds"], 1),
            # None when a run took no measurable time (see chaosgd.runs.trainer.Trainer.run)
            steps_per_second=_rounded(info["result"]["steps_per_second"], 2),
            tangent_map="lyapunov" in info["result"],
            final_train_acc=round(float(last[EPOCHS.train_acc]), 4),
            final_val_acc=round(float(last[EPOCHS.val_acc]), 4),
        )
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """Write a report table (``runs``) as TSV, and with ``--out-stale`` the stale outputs' list,
    from the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.report", description="Tables for the Snakemake report."
    )
    parser.add_argument("table", choices=["runs"], help="which table")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--runs", nargs="+", required=True, help="run ids")
    parser.add_argument("--out", required=True, help="output .tsv")
    parser.add_argument("--logs", type=Path, default=Path(LOGS))
    parser.add_argument(
        "--config-json", help="the workflow's config (JSON), to list what it no longer makes"
    )
    parser.add_argument("--config-name", default="?", help="the config the workflow ran with")
    parser.add_argument("--out-stale", help="the list of stale outputs (.txt), with --config-json")
    args = parser.parse_args(argv)
    if args.out_stale and not args.config_json:
        parser.error("--out-stale needs --config-json")
    try:
        table = runs_table(args.results, args.runs)
        if args.out_stale:
            found, differing, entries = survey(
                validate_config(json.loads(args.config_json)), args.results, args.logs
            )
            stale = listing(found, args.config_name, args.results, differing, entries)
    except (OSError, KeyError, ValueError) as exc:  # UnreadableFile is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, sep="\t", index=False)
        if args.out_stale:
            with atomic_path(args.out_stale) as tmp:
                tmp.write_text(stale)
    except OSError as exc:  # a full disk, a read-only folder: named, with what to do
        print(f"error: {explain(exc, 'writing')}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
