"""``python -m chaosgd.tools.bench curvature``: dense vs low-rank Hessian eigenpairs on the same
minibatches (MLP and CNN), their speed and their disagreement in the CGD projected gradients."""

from __future__ import annotations

import statistics
import sys

import torch

from chaosgd.engine.cgd import project_gradient
from chaosgd.engine.curvature import hessian_eigenpairs
from chaosgd.engine.models import build_model, flat_params, hessian_structure, make_loss_fn
from chaosgd.planning.vocab import ARCHITECTURES, PRUNE_SETS
from chaosgd.tools.bench.options import model_arguments, setup, write_json
from chaosgd.tools.bench.timing import load1, synthetic_batches, timed

__all__ = ["grad_of", "bench_curvature", "command"]


def _disagreement(grad, dense, low, lr, top_k):
    """Max over prune sets/selections of ‖g̃_dense − g̃_lowrank‖ / ‖g‖, and of eigenvalues."""
    worst = 0.0
    gnorm = float(grad.norm()) or 1.0
    for prune_set in PRUNE_SETS:
        for selection, k in (("all", None), ("top_k", top_k)):
            a = project_gradient(
                grad,
                dense.values,
                dense.vectors,
                lr,
                prune_set,
                selection,
                k,
                null_tol=dense.null_tol,
            )
            b = project_gradient(
                grad, low.values, low.vectors, lr, prune_set, selection, k, null_tol=low.null_tol
            )
            worst = max(worst, float((a - b).norm()) / gnorm)
    lam, other = dense.values[dense.nonzero_mask()], low.values[low.nonzero_mask()]
    if lam.numel() != other.numel():
        eig = float("inf")
    elif lam.numel() == 0:
        eig = 0.0
    else:
        eig = float((lam - other).abs().max() / lam.abs().max())
    return worst, eig


def grad_of(loss_fn, theta: torch.Tensor) -> torch.Tensor:
    """The loss gradient at ``theta`` (the CGD projections compare on it)."""
    return torch.func.grad(loss_fn)(theta)


def bench_curvature(
    archs=tuple(ARCHITECTURES),
    steps: int = 3,
    device: str = "cpu",
    activation: str = "relu",
    hidden: int = 20,
    batch: int = 8,
    lr: float = 1e-3,
    train_lr: float = 1e-3,
    seed: int = 0,
    top_k: int = 10,
    lowrank_repeats: int = 3,
    dtype: torch.dtype = torch.float64,
) -> list[dict]:
    """Run the curvature benchmark; returns one row per (arch, method)."""
    dev = torch.device(device)
    rows = []
    for arch in archs:
        torch.manual_seed(seed)
        model = build_model(arch, activation, hidden=hidden).to(dev)
        gen = torch.Generator(device=dev).manual_seed(seed + 1)
        # synthetic standardised 16×16 images: the curvature cost depends only on the shapes
        next_batch = synthetic_batches(batch, seed, dev)
        opt = torch.optim.SGD(model.parameters(), lr=train_lr)

        # warm-up (first-call overheads) and the first hint, as step 0 of a training run gives
        x, y = next_batch()
        hint = hessian_eigenpairs(
            make_loss_fn(model, x, y), flat_params(model), "lowrank", dtype=dtype, generator=gen
        ).rank
        t_dense, t_low, t_sketch, t_auto, worst, worst_eig = [], [], [], [], 0.0, 0.0
        ranks, sketch, hvps, auto_methods = [], [], [], set()
        worst_sketch, worst_block, t_block = 0.0, 0.0, []
        worst_auto, worst_auto_eig = 0.0, 0.0
        for t in range(steps):
            x, y = next_batch()
            loss_fn = make_loss_fn(model, x, y)
            theta = flat_params(model).to(dtype)
            dense, dt = timed(lambda: hessian_eigenpairs(loss_fn, theta, "dense", dtype=dtype), dev)
            t_dense.append(dt)
            # the same exact Hessian formed layer by layer (a ReLU network's largest layer from
            # its Gauss-Newton part), still decomposed in full: what the layers save in forming
            fast, dt = timed(
                lambda: hessian_eigenpairs(
                    loss_fn, theta, "dense", dtype=dtype, **hessian_structure(model, x, y)
                ),
                dev,
            )
            t_block.append(dt)
            worst_block = max(
                worst_block, _disagreement(grad_of(loss_fn, theta), dense, fast, lr, top_k)[0]
            )

            # as training calls it: the model's range basis (the MLP's) where it has one, built
            # inside the timed call; "sketch" is the generic randomized path on the same batch
            def lowrank(basis: bool, method: str = "lowrank"):
                return hessian_eigenpairs(
                    loss_fn,
                    theta,
                    method,
                    dtype=dtype,
                    generator=gen,
                    sketch_hint=hint,
                    **(hessian_structure(model, x, y) if basis else {}),
                )

            for _ in range(max(1, lowrank_repeats)):
                low, dt = timed(lambda: lowrank(True), dev)
                t_low.append(dt)
                generic, dt = timed(lambda: lowrank(False), dev)
                t_sketch.append(dt)
            auto, dt = timed(lambda: lowrank(True, "auto"), dev)
            t_auto.append(dt)
            auto_methods.add(auto.method)
            a_proj, a_eig = _disagreement(grad_of(loss_fn, theta), dense, auto, lr, top_k)
            worst_auto, worst_auto_eig = max(worst_auto, a_proj), max(worst_auto_eig, a_eig)
            hint = low.rank
            grad = torch.func.grad(loss_fn)(theta)
            w, e = _disagreement(grad, dense, low, lr, top_k)
            worst, worst_eig = max(worst, w), max(worst_eig, e)
            worst_sketch = max(worst_sketch, _disagreement(grad, dense, generic, lr, top_k)[0])
            ranks.append((dense.rank, low.rank))
            sketch.append(low.diagnostics.get("sketch_size", low.diagnostics.get("basis_size")))
            hvps.append(low.diagnostics["hvps"])
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        n = theta.numel()
        med_dense, med_low = statistics.median(t_dense), statistics.median(t_low)
        common = dict(arch=arch, n_params=n, steps=steps, device=str(dev), dtype=str(dtype))
        rows.append(
            dict(common, method="dense", median_s=med_dense, ratio=1.0, ranks=[r[0] for r in ranks])
        )
        rows.append(
            dict(
                common,
                method="lowrank",
                median_s=med_low,
                ratio=med_dense / med_low,
                max_rel_proj_diff=worst,
                max_rel_eig_diff=worst_eig,
                ranks=[r[1] for r in ranks],
                sketch=sketch,
                hvps=hvps,
            )
        )
        med_block = statistics.median(t_block)
        rows.append(
            dict(
                common,
                method="dense*",
                median_s=med_block,
                ratio=med_dense / med_block,
                max_rel_proj_diff=worst_block,
            )
        )
        med_sketch = statistics.median(t_sketch)
        rows.append(
            dict(
                common,
                method="sketch",
                median_s=med_sketch,
                ratio=med_dense / med_sketch,
                max_rel_proj_diff=worst_sketch,
            )
        )
        rows.append(
            dict(
                common,
                method="auto",
                median_s=statistics.median(t_auto),
                ratio=med_dense / statistics.median(t_auto),
                max_rel_proj_diff=worst_auto,
                max_rel_eig_diff=worst_auto_eig,
                picked="/".join(sorted(auto_methods)),
            )
        )
    return rows


def _print_table(rows, out=None):
    out = sys.stdout if out is None else out
    head = (
        f"{'model':<6} {'N':>5} {'method':<8} {'median s':>9} {'dense/x':>8} "
        f"{'max dg/|g|':>10} {'max dlam':>9}  ranks (sketch)"
    )
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        diff = f"{r['max_rel_proj_diff']:.1e}" if "max_rel_proj_diff" in r else "-"
        eig = f"{r['max_rel_eig_diff']:.1e}" if "max_rel_eig_diff" in r else "-"
        extra = ""
        if "ranks" in r:
            extra = ",".join(map(str, r["ranks"]))
        if "sketch" in r:
            extra += " (" + ",".join(map(str, r["sketch"])) + ")"
        if "picked" in r:
            extra = f"picked {r['picked']}"
        print(
            f"{r['arch']:<6} {r['n_params']:>5} {r['method']:<8} {r['median_s']:>9.4f} "
            f"{r['ratio']:>8.1f} {diff:>10} {eig:>9}  {extra}",
            file=out,
        )


def command(args) -> int:
    """Run ``python -m chaosgd.tools.bench curvature``; print the table, return the exit status."""
    dtype = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    status = setup(args)
    if status is not None:
        return status
    rows = bench_curvature(
        **model_arguments(args),
        archs=args.arch,
        steps=args.steps,
        lr=args.lr,
        train_lr=args.train_lr,
        top_k=args.top_k,
        lowrank_repeats=args.lowrank_repeats,
        dtype=dtype,
    )
    load = load1()
    print(
        f"# chaosgd.tools.bench curvature: device={args.device} dtype={args.dtype} "
        f"threads={torch.get_num_threads()} batch={args.batch} steps={args.steps} "
        f"load1={load:.2f}"
    )
    print(
        "# dg/|g|: worst ‖g̃_dense − g̃_x‖/‖g‖ over prune sets chaotic/negative/positive, "
        f"all and top-{args.top_k}; dlam: worst |Δλ|/max|λ| over nonzero eigenvalues"
    )
    _print_table(rows)
    write_json(args, rows)
    return 0
