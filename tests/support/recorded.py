"""Planned runs' ``run.json`` files (and references' ``ensemble.json``) as the stages write them, for the tests of what
they record against what the config plans (:mod:`chaosgd.planning.stale`). Torch-free."""

from __future__ import annotations

import json
from pathlib import Path

from chaosgd.planning import plan
from chaosgd.planning.config import validate_config
from chaosgd.planning.stale import ensemble_recorded, lyapunov_recorded

# two runs of plain SGD and CGD; the SGD one carries a tangent map
CONFIG = {
    "experiments": [
        {
            "name": "base",
            "dataset": "usps",
            "model": "mlp",
            "activation": "relu",
            "variants": ["sgd", "cgd-chaotic"],
            "seeds": [0],
        }
    ],
    "lyapunov": {"runs": [{"experiment": "base", "variants": ["sgd"], "seeds": [0]}]},
}
SGD = "usps_mlp-relu20_sgd_m0_s0"
CGD = "usps_mlp-relu20_cgd-chaotic_m0_s0"


def config(**training) -> dict:
    """CONFIG, validated, with these training settings."""
    return validate_config(json.loads(json.dumps({**CONFIG, "training": training})))


def run_info(cfg: dict, run: str, lyapunov: dict | None = None, **changes) -> dict:
    """What ``run``'s ``run.json`` holds when made under ``cfg``, its settings changed by
    ``changes`` and its Lyapunov block (a Lyapunov run's) by ``lyapunov``."""
    runs, _, lyap = plan.plan_runs(cfg)
    info = {
        "run_id": run,
        "settings": {**runs[run].as_dict(), **changes},
        "result": {"steps": 1},
        "environment": {"device": "cpu"},
    }
    if any(run in rs for rs in lyap.values()):
        info["result"]["lyapunov"] = {
            **lyapunov_recorded(cfg, runs[run]),
            "final_method": "dense",
            **(lyapunov or {}),
        }
    return info


def write_runs(results: Path, cfg: dict, changed: dict[str, dict] | None = None) -> None:
    """Every planned run's ``run.json`` (and a Parquet file beside it) under ``results``;
    ``changed``: per run, the settings it records otherwise (``lyapunov``: its block's)."""
    runs, _, _ = plan.plan_runs(cfg)
    for run in runs:
        folder = results / "train" / run
        folder.mkdir(parents=True, exist_ok=True)
        info = run_info(cfg, run, **(changed or {}).get(run, {}))
        (folder / "run.json").write_text(json.dumps(info))
        (folder / "steps.parquet").write_bytes(b"PAR1")


def write_ensembles(results: Path, cfg: dict, **changes) -> None:
    """Every planned reference's ``ensemble.json`` (and a Parquet file beside it, and its fits'
    folder) under ``results``, its ensemble settings changed by ``changes``."""
    runs, _, lyapunov = plan.plan_runs(cfg)
    for run in plan.ensemble_references(cfg, runs, lyapunov):
        folder = results / "ensembles" / run
        folder.mkdir(parents=True, exist_ok=True)
        info = {
            "run_id": run,
            **ensemble_recorded(cfg, runs[run]),
            **changes,
            "settings": runs[run].as_dict(),
            "ensembles": [],
        }
        (folder / "ensemble.json").write_text(json.dumps(info))
        (folder / "distances.parquet").write_bytes(b"PAR1")
        (results / "fits" / run).mkdir(parents=True, exist_ok=True)
        (results / "fits" / run / "fits.parquet").write_bytes(b"PAR1")
