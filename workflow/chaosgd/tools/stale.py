"""List, and with ``--move`` move away, the outputs that the config no longer makes.

``python -m chaosgd.tools.stale [--configfile FILE ...] [--move]`` plans the config as the
Snakefile does (the same files, merged in order onto the schema's defaults; without
``--configfile``, ``config/config.yaml``) and prints every entry under ``results/`` and ``logs/``
that none of its runs, ensemble references, figures or datasets makes
(:mod:`chaosgd.planning.stale`), one path a line after ``#`` comment lines, and the folders of
the planned runs whose ``run.json`` records other settings than the config's (an imported archive,
a copied ``results/``), each after a line naming the settings. ``--move`` moves them all
to ``results/stale/<UTC time>/``: a result at its path under ``results/``, a log under
``logs/`` there; nothing is deleted, and ``results/report/stale.txt`` (the report's listing),
where it exists, is rewritten to say what is left. Torch-free: imports planning only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import yaml

from chaosgd.planning.config import validate_config
from chaosgd.planning.stale import (
    LISTING,
    LOGS,
    STALE,
    described,
    listing,
    shown,
    survey,
)
from chaosgd.planning.tables import RESULTS

REPO = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = "config/config.yaml"


def _merged(base: dict, update: dict) -> dict:
    # Snakemake's update_config: nested mappings merge, anything else replaces
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merged(base[key], value)
        else:
            base[key] = value
    return base


def load_config(configfiles: list[str] | None) -> dict:
    """The validated config of ``configfiles`` as the Snakefile reads it: merged in order onto
    the schema's defaults, or ``config/config.yaml`` of this checkout when none is given."""
    config: dict = {}
    for f in configfiles or [REPO / DEFAULT_CONFIG]:
        loaded = yaml.safe_load(Path(f).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{f}: not a mapping of config keys")
        _merged(config, loaded)
    return validate_config(config)


def destination(entry: Path, results: Path, logs: Path, folder: Path) -> Path:
    """Where ``entry`` (under ``results`` or ``logs``) goes in the stale ``folder``."""
    try:
        return folder / entry.relative_to(results)
    except ValueError:
        return folder / LOGS / entry.relative_to(logs)


def move(stale: list[Path], results: Path, logs: Path) -> tuple[Path, list[tuple[Path, Path]]]:
    """Move the ``stale`` entries into a new ``results/stale/<UTC time>/``; that folder and the
    moves made."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder, n = results / STALE / stamp, 1
    while folder.exists():  # a second move within the same second
        folder, n = results / STALE / f"{stamp}-{n}", n + 1
    moves = []
    for entry in stale:
        target = destination(entry, results, logs, folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        # a rename within one file system; links (the output cache's) stay links
        shutil.move(str(entry), str(target))
        moves.append((entry, target))
    return folder, moves


def main(argv: list[str] | None = None) -> int:
    """List (and with ``--move`` move) the stale outputs; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.tools.stale",
        description="List the outputs under results/ and logs/ that the config no longer makes; "
        "--move moves them to results/stale/<UTC time>/.",
    )
    parser.add_argument(
        "--configfile",
        nargs="+",
        action="extend",
        metavar="FILE",
        help=f"the config files the workflow runs with, in order (default: {DEFAULT_CONFIG})",
    )
    parser.add_argument("--results", type=Path, default=Path(RESULTS))
    parser.add_argument("--logs", type=Path, default=Path(LOGS))
    parser.add_argument("--move", action="store_true", help="move them (nothing is deleted)")
    args = parser.parse_args(argv)
    name = " ".join(args.configfile or [DEFAULT_CONFIG])
    try:
        config = load_config(args.configfile)
        stale, differing, entries = survey(config, args.results, args.logs)
    except (OSError, ValueError, yaml.YAMLError) as exc:  # ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.move or not entries:
        sys.stdout.write(listing(stale, name, args.results, differing, entries))
        return 0
    shown_before = [shown(p) for p in entries]
    for line in described(differing):
        print(f"made with other settings: {line}", file=sys.stderr)
    try:
        folder, moves = move(entries, args.results, args.logs)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for before, (_, target) in zip(shown_before, moves):
        print(f"{before} -> {target}")
    report = args.results / LISTING
    if report.is_file():
        # the report's listing would go on naming what is gone until its rule reruns
        left, differing, entries = survey(config, args.results, args.logs)
        report.write_text(listing(left, name, args.results, differing, entries))
    print(f"moved {len(moves)} entries to {folder}/ (nothing deleted)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
