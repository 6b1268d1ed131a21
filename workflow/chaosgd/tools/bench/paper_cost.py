"""The paper config's projected cost on one machine: its jobs as :func:`chaosgd.planning.plan.plan_runs`
plans them, each costed from the per-step seconds the ``gpu`` benchmark measured on one side (the
device or the CPU), scaled to the job's model size as :mod:`chaosgd.planning.job_costs` scales
its costs; :data:`ASSUMPTIONS` says what the projection leaves out."""

from __future__ import annotations

from pathlib import Path

import yaml

from chaosgd.planning.config import SCHEMA, validate_config
from chaosgd.planning.job_costs import AUTO_CURVATURE, growth, hessian_rank, n_params, train_steps
from chaosgd.planning.plan import ensemble_references, plan_runs
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.vocab import STRATEGIES
from chaosgd.tools.bench.gpu_parts import Sizes

__all__ = ["PAPER_CONFIG", "ASSUMPTIONS", "project_paper_cost"]

PAPER_CONFIG = Path(SCHEMA).resolve().parents[2] / "config" / "config.yaml"


def _load_paper_config(path: Path = PAPER_CONFIG) -> dict:
    raw = yaml.safe_load(path.read_text()) if path.is_file() else {}
    # without the file the schema's defaults are the paper's settings
    return validate_config(raw or {})


def project_paper_cost(measured: dict, sz: Sizes, side: str, config: dict | None = None) -> dict:
    """The paper config's jobs (train, lyapunov, ensembles) with their steps and the seconds each
    takes at ``side``'s measured per-step times; see :data:`ASSUMPTIONS`."""
    config = _load_paper_config() if config is None else config
    runs, _groups, lyapunov = plan_runs(config)
    lyap = {r for rs in lyapunov.values() for r in rs}
    refs = ensemble_references(config, runs, lyapunov)
    m = measured
    n_mlp, b0 = n_params("mlp", sz.hidden), sz.batch

    def step_seconds(s: RunSettings) -> float:
        n, b = n_params(s.model, s.hidden), s.batch_size
        variant = s.parsed_variant
        key = variant.name if variant.optimizer == "sgd" else f"cgd-{variant.prune_set}"
        total = m["train"][key if key in m["train"] else "sgd"][side]
        base = max(0.0, total - m["curvature"]["mlp"][side])
        base *= growth("step", s.model, n, b) / growth("step", "mlp", n_mlp, b0)
        if not s.needs_spectrum:
            return base
        kind = AUTO_CURVATURE[s.model]
        n0 = n_mlp if s.model == "mlp" else n_params(s.model, sz.hidden)
        scale = growth(kind, s.model, n, b) / growth(kind, s.model, n0, b0)
        return base + m["curvature"][s.model][side] * scale

    jobs = []
    steps_of = {rid: train_steps(s) for rid, s in runs.items()}
    for rid, s in runs.items():
        steps, n = steps_of[rid], n_params(s.model, s.hidden)
        seconds = steps * step_seconds(s)
        stage = "lyapunov" if rid in lyap else "train"
        if stage == "lyapunov":
            r0, r = hessian_rank("mlp", n_mlp, b0), hessian_rank(s.model, n, s.batch_size)
            per = m["tangent"][side] * (n / n_mlp) ** 2 * r / r0 * (2 if s.momentum else 1)
            per += m["reorth"][side] * (n / n_mlp) ** 3 / config["lyapunov"]["reorth_every"]
            readouts = min(config["lyapunov"]["readouts"], steps)
            read = m["readout"][side] * (n / m["readout_n"]) ** 3
            seconds += steps * per + readouts * read
        jobs.append(
            dict(
                stage=stage,
                run=rid,
                key=f"{stage} {s.dataset} {s.model}",
                steps=steps,
                seconds=seconds,
            )
        )
    ens = config["ensembles"]
    members = 1 + len(STRATEGIES) * len(ens["eps"])
    for rid in refs:
        s = runs[rid]
        n = n_params(s.model, s.hidden)
        per = sum(m["ensemble"][d][side] for d in ens["dtypes"]) * members / m["members"]
        per *= max(1.0, n / n_mlp)
        jobs.append(
            dict(
                stage="ensembles",
                run=rid,
                key=f"ensembles {s.dataset} {s.model}",
                steps=steps_of[rid],
                seconds=steps_of[rid] * per,
            )
        )
    groups: dict[str, dict] = {}
    for j in jobs:
        g = groups.setdefault(j["key"], dict(key=j["key"], jobs=0, steps=0, seconds=0.0))
        g["jobs"] += 1
        g["steps"] += j["steps"]
        g["seconds"] += j["seconds"]
    longest = max(jobs, key=lambda j: j["seconds"])
    return dict(
        side=side,
        groups=list(groups.values()),
        total_seconds=sum(j["seconds"] for j in jobs),
        longest=dict(longest),
        counts={
            st: sum(j["stage"] == st for j in jobs) for st in ("train", "lyapunov", "ensembles")
        },
    )


ASSUMPTIONS = (
    "one job at a time on the device (the gain from several sharing it is not measured)",
    "per-step costs do not depend on the data (measured on synthetic batches) or the activation "
    "(sigmoid runs cost what ReLU runs do); CGD top-k / random-k cost what their prune set does",
    "a CNN step is the MLP's Trainer step with the MLP's eigenpairs replaced by the CNN's",
    "every readout costs what part 2's did, scaled by N³ to the run's N (the Jacobi SVD needs "
    "more sweeps at the pipeline's t of thousands of steps: ≈ 2× from t = 5 to 200 on the CPU)",
    "job start-up, dataset preparation, fits, figures, report and claims are left out "
    "(seconds to a minute each)",
)
