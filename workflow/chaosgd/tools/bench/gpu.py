"""``python -m chaosgd.tools.bench gpu``: the GPU path measured against the CPU, on the same inputs.

One command for a machine with a CUDA device. Every part runs on that device and on the CPU side
by side, on identical inputs (the same θ, batches, eigenpairs, initial ensembles and dataset):

1. **curvature**: the Hessian eigenpairs as training computes them (``method="auto"``, the
   previous step's rank as hint, :func:`chaosgd.engine.models.hessian_structure` built inside the call):
   the MLP's on its range basis (N = 5350 at batch 8) and the CNN's exact dense ones with its
   layers (N = 1158), on a few batches along a short SGD trajectory;
2. **tangent**: :meth:`TangentMap.step_sgd` at the MLP's size with the MLP eigenpairs of part 1,
   one re-orthonormalization, and one exact readout (its Jacobi SVD runs on the CPU on either
   side, as in the lyapunov stage) of a smaller MLP's map, reported also scaled by N³ to
   N = 5350: a readout at that size takes ≈ 15 min on one core, more than this command's budget;
3. **ensembles**: the lockstep ensemble (1 + 5·11 members) in float32 and float64;
4. **fig1**: SGD and CGD pruning the chaotic, negative and positive eigenspaces through
   :class:`chaosgd.runs.trainer.Trainer` for a few hundred steps on a synthetic USPS-shaped dataset
   (float32 training, curvature in float64, as the paper config).

Agreement is checked where the inputs are identical: the eigenvalues and the CGD projected
gradients of the three prune sets (≤ 1e-10 relative, float64), the tangent map after its steps and
its fold, the readout's ln σ, and the spectrum's extreme eigenvalues at the first Trainer step
(identical θ and batch on both sides). Whole trajectories are not compared: they diverge from
round-off as the paper's perturbed copies do from ε (Fig. 3); their distance at the end is
reported.

It prints each part's seconds per step on the device and on the CPU and their ratio, the projected
cost of the paper config (``config/config.yaml``, planned by :func:`chaosgd.planning.plan.plan_runs`) from
those per-step times, with its assumptions, and a pass/fail line; the exit status is 1 when an
agreement check fails, 2 when the device is unavailable. ``--device cpu`` runs both sides on the
CPU (the tests), ``--quick`` uses tiny sizes. The parts are in
:mod:`chaosgd.tools.bench.gpu_parts`, the checks in :mod:`chaosgd.tools.bench.agreement`, the
projection in :mod:`chaosgd.tools.bench.paper_cost`.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from chaosgd.planning.job_costs import n_params
from chaosgd.tools.bench.agreement import TOL
from chaosgd.tools.bench.gpu_parts import (
    Sizes,
    curvature_part,
    ensembles_part,
    fig1_part,
    tangent_part,
)
from chaosgd.tools.bench.options import write_json
from chaosgd.tools.bench.paper_cost import ASSUMPTIONS, project_paper_cost

__all__ = ["bench_gpu", "command"]


def bench_gpu(device: str = "cuda", sizes: Sizes | None = None, seed: int = 0) -> dict:
    """Run all four parts on ``device`` and on the CPU; returns rows, checks and the projected
    paper-config cost of each side (``device="cpu"`` runs both sides on the CPU)."""
    sz = sizes or Sizes()
    sides = {"device": torch.device(device), "cpu": torch.device("cpu")}
    rows, checks, measured = [], [], {}
    t0 = time.perf_counter()

    def progress(part: str) -> None:
        # on stderr as each part ends: a run stopped at its time limit still shows how far it got
        print(f"# {part} done after {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    m_rows, m_checks, mlp_eigs, m_med = curvature_part("mlp", sz, sides, seed)
    progress("curvature mlp")
    c_rows, c_checks, _, c_med = curvature_part("cnn", sz, sides, seed)
    progress("curvature cnn")
    rows += m_rows + c_rows
    checks += m_checks + c_checks
    measured["curvature"] = {"mlp": m_med, "cnn": c_med}
    t_rows, t_checks, t_med = tangent_part(sz, sides, mlp_eigs, n_params("mlp", sz.hidden), seed)
    progress("tangent")
    del mlp_eigs
    rows += t_rows
    checks += t_checks
    measured.update(t_med)
    e_rows, e_med = ensembles_part(sz, sides, seed)
    progress("ensembles")
    rows += e_rows
    measured.update(e_med)
    f_rows, f_checks, f_med = fig1_part(sz, sides, seed)
    progress("fig1")
    rows += f_rows
    checks += f_checks
    measured.update(f_med)
    projection = {side: project_paper_cost(measured, sz, side) for side in sides}
    return dict(
        rows=rows,
        checks=[dict(asdict(c), ok=c.ok) for c in checks],
        passed=all(c.ok for c in checks),
        measured=_jsonable(measured),
        projection=projection,
        assumptions=list(ASSUMPTIONS),
        sizes=asdict(sz),
    )


def _jsonable(obj):
    if isinstance(obj, dict):
        return {
            (k if isinstance(k, str) else ",".join(map(str, k))): _jsonable(v)
            for k, v in obj.items()
        }
    return obj


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _environment(dev: torch.device) -> dict:
    env = dict(
        device=str(dev),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        cpus=os.cpu_count(),
        cpu=_cpu_name(),
    )
    if dev.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(dev), cuda=torch.version.cuda)
    return env


def _print_report(out: dict, env: dict, file=None) -> None:
    f = sys.stdout if file is None else file
    dev = env["device"]
    where = env.get("gpu", dev)
    print(
        f"# chaosgd.tools.bench gpu: device {where} ({dev}; torch {env['torch']}, CUDA "
        f"{env.get('cuda')}) against the CPU ({env['cpu']}, {env['cpus']} cores, "
        f"{env['threads']} torch threads); curvature in float64",
        file=f,
    )
    head = f"{'part':<10} {'what':<44} {'N':>5} {'device s':>10} {'cpu s':>10} {'cpu/dev':>7}  note"
    print(head, file=f)
    print("-" * len(head), file=f)
    for r in out["rows"]:
        print(
            f"{r['part']:<10} {r['what'][:44]:<44} {r['n_params']:>5} {r['device_s']:>10.4g} "
            f"{r['cpu_s']:>10.4g} {r['ratio']:>7.2f}  {r['note']}",
            file=f,
        )
    print("# seconds: median per step (readout, reorthonormalize: one call)", file=f)
    print(f"\n# agreement on identical inputs (tolerance {TOL:g})", file=f)
    for c in out["checks"]:
        mark = "ok  " if c["ok"] else "FAIL"
        print(f"{mark} {c['part']:<15} {c['what']:<58} {c['value']:.2e}", file=f)
    proj = out["projection"]
    any_side = next(iter(proj.values()))
    counts = any_side["counts"]
    print(
        f"\n# projected cost of config/config.yaml: {counts['train']} training jobs, "
        f"{counts['lyapunov']} Lyapunov jobs, {counts['ensembles']} ensemble jobs, at the "
        "per-step times above",
        file=f,
    )
    head = f"{'jobs':<26} {'n':>3} {'steps':>9} {'device h':>9} {'cpu h':>9}"
    print(head, file=f)
    print("-" * len(head), file=f)
    cpu_groups = {g["key"]: g for g in proj["cpu"]["groups"]}
    for g in proj["device"]["groups"]:
        print(
            f"{g['key']:<26} {g['jobs']:>3} {g['steps']:>9} {g['seconds'] / 3600:>9.2f} "
            f"{cpu_groups[g['key']]['seconds'] / 3600:>9.2f}",
            file=f,
        )
    print(
        f"{'total':<26} {'':>3} {'':>9} {proj['device']['total_seconds'] / 3600:>9.2f} "
        f"{proj['cpu']['total_seconds'] / 3600:>9.2f}",
        file=f,
    )
    for side in ("device", "cpu"):
        lg = proj[side]["longest"]
        print(
            f"# longest job on the {side}: {lg['run']} ({lg['stage']}, "
            f"{lg['steps']} steps) {lg['seconds'] / 3600:.2f} h",
            file=f,
        )
    print("# assumptions: " + "; ".join(out["assumptions"]), file=f)
    if out.get("sizes", {}).get("hidden", 20) != 20:
        print("# --quick: tiny models scaled up to the paper's sizes, indicative only", file=f)
    bad = [c for c in out["checks"] if not c["ok"]]
    if bad:
        print(
            f"\nFAIL: {len(bad)} of {len(out['checks'])} agreement checks above {TOL:g} "
            f"({', '.join(c['part'] + ': ' + c['what'] for c in bad)})",
            file=f,
        )
    else:
        print(
            f"\nPASS: all {len(out['checks'])} agreement checks within {TOL:g} ({dev} vs cpu)",
            file=f,
        )


def command(args) -> int:
    """Run ``python -m chaosgd.tools.bench gpu``; the exit status (1: an agreement check failed)."""
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            f"chaosgd.tools.bench gpu: --device cuda, but PyTorch sees no CUDA device (torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda}); run it on a GPU machine, or "
            "with --device cpu to run both sides on the CPU",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = Sizes.quick() if args.quick else Sizes()
    out = bench_gpu(args.device, sizes, args.seed)
    env = _environment(torch.device(args.device))
    out["environment"] = env
    _print_report(out, env)
    write_json(args, out)
    return 0 if out["passed"] else 1
