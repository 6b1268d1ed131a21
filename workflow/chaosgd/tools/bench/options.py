"""The options the ``curvature``, ``tangent``, ``ensembles`` and ``costs`` benchmarks share:
declared on their parsers, applied before they run, passed on to their ``bench_*`` functions,
and their ``--json`` output."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from chaosgd.runs.artifacts import atomic_path

__all__ = ["add_common_options", "setup", "model_arguments", "write_json"]

# the options of add_common_options that every bench_* function takes as keyword arguments
MODEL_KEYS = ("device", "activation", "hidden", "batch", "seed")


def add_common_options(p: argparse.ArgumentParser) -> None:
    """Add the shared options (device, model, seed, threads, JSON output) to ``p``."""
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--activation", choices=["relu", "sigmoid"], default="relu")
    p.add_argument("--hidden", type=int, default=20, help="MLP hidden width (default 20)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", help="also write the rows to this JSON file")


def setup(args) -> int | None:
    """Apply ``--threads``; return an exit status if ``--device`` cannot be used."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device available", file=sys.stderr)
        return 2
    return None


def model_arguments(args) -> dict:
    """The keyword arguments every ``bench_*`` function takes from :func:`add_common_options`."""
    return {k: getattr(args, k) for k in MODEL_KEYS}


def write_json(args, rows) -> None:
    """Write ``rows`` to the ``--json`` file, if one was given: whole or not at all (a full or
    read-only disk raises :class:`chaosgd.runs.artifacts.ArtifactWriteError`, naming the file)."""
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(rows, indent=1))
