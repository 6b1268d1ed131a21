"""The paper config's planner, for the tests of job requests."""

from __future__ import annotations

import copy

import yaml

from chaosgd.planning import plan
from chaosgd.planning.config import validate_config
from chaosgd.planning.job_costs import JobResources

from support.workflow import REPO

PAPER = yaml.safe_load((REPO / "config/config.yaml").read_text())
USPS_CGD = "usps_mlp-relu20_cgd-chaotic_m0_s0"
USPS_REF = "usps_mlp-relu20_sgd_m0_s0"  # the USPS Lyapunov run and ensemble reference
FMNIST_CGD = "fmnist_mlp-relu20_cgd-chaotic_m0_s0"
FMNIST_REF = "fmnist_mlp-relu20_sgd_m0_s0"
CNN_CGD = "usps_cnn-relu_cgd-chaotic_m0_s0"


def planner(config: dict | None = None, **res) -> JobResources:
    """The planner of the paper config (or ``config``) with ``res`` set under ``resources``."""
    cfg = copy.deepcopy(PAPER if config is None else config)
    cfg.setdefault("resources", {}).update(res)
    cfg = validate_config(cfg)
    runs, groups, lyapunov = plan.plan_runs(cfg)
    refs = plan.ensemble_references(cfg, runs, lyapunov)
    figures = plan.figures(runs, groups, lyapunov, refs, cfg["ensembles"])
    return plan.job_resources(cfg, runs, lyapunov, refs, figures)
