"""Benchmarks of the engine: ``python -m chaosgd.bench <subcommand> ...``.

``curvature``: dense vs low-rank Hessian eigenpairs on the same minibatches (MLP and CNN). For
each of ``--steps`` batches along a short SGD trajectory it times both methods (the low-rank one
with the previous step's rank as ``sketch_hint``, as training does), then compares the CGD
projected gradients (chaotic / negative / positive, all and top-k) and the nonzero eigenvalues.
It prints medians, the speed-up ratio, the worst disagreement and the ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

from .cgd import PRUNE_SETS, project_gradient
from .curvature import hessian_eigenpairs
from .models import build_model, flat_params, make_loss_fn

__all__ = ["main", "bench_curvature"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


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
    lam = dense.values[dense.nonzero_mask()]
    if lam.numel() != low.values.numel():
        eig = float("inf")
    elif lam.numel() == 0:
        eig = 0.0
    else:
        eig = float((lam - low.values).abs().max() / lam.abs().max())
    return worst, eig


def bench_curvature(
    archs=("mlp", "cnn"),
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
        data_gen = torch.Generator().manual_seed(seed + 2)
        # synthetic standardised 16×16 images: the curvature cost depends only on the shapes
        pool_x = torch.randn(64 * batch, 1, 16, 16, generator=data_gen).to(dev)
        pool_y = torch.randint(0, 10, (64 * batch,), generator=data_gen).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=train_lr)

        def batch_at(t):
            idx = torch.randint(0, pool_x.shape[0], (batch,), generator=data_gen).to(dev)
            return pool_x[idx], pool_y[idx]

        # warm-up (first-call overheads) and the first hint, as step 0 of a training run gives
        x, y = batch_at(-1)
        hint = hessian_eigenpairs(
            make_loss_fn(model, x, y), flat_params(model), "lowrank", dtype=dtype, generator=gen
        ).rank
        t_dense, t_low, t_auto, worst, worst_eig = [], [], [], 0.0, 0.0
        ranks, sketch, hvps, auto_methods = [], [], [], set()
        for t in range(steps):
            x, y = batch_at(t)
            loss_fn = make_loss_fn(model, x, y)
            theta = flat_params(model).to(dtype)
            dense, dt = _timed(
                lambda: hessian_eigenpairs(loss_fn, theta, "dense", dtype=dtype), dev
            )
            t_dense.append(dt)
            for _ in range(max(1, lowrank_repeats)):
                low, dt = _timed(
                    lambda: hessian_eigenpairs(
                        loss_fn, theta, "lowrank", dtype=dtype, generator=gen, sketch_hint=hint
                    ),
                    dev,
                )
                t_low.append(dt)
            auto, dt = _timed(
                lambda: hessian_eigenpairs(
                    loss_fn, theta, "auto", dtype=dtype, generator=gen, sketch_hint=hint
                ),
                dev,
            )
            t_auto.append(dt)
            auto_methods.add(auto.method)
            hint = low.rank
            grad = torch.func.grad(loss_fn)(theta)
            w, e = _disagreement(grad, dense, low, lr, top_k)
            worst, worst_eig = max(worst, w), max(worst_eig, e)
            ranks.append((dense.rank, low.rank))
            sketch.append(low.diagnostics["sketch_size"])
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
        rows.append(
            dict(
                common,
                method="auto",
                median_s=statistics.median(t_auto),
                ratio=med_dense / statistics.median(t_auto),
                picked="/".join(sorted(auto_methods)),
            )
        )
    return rows


def _print_table(rows, out=sys.stdout):
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


def _cmd_curvature(args) -> int:
    dtype = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device available", file=sys.stderr)
        return 2
    rows = bench_curvature(
        archs=args.arch,
        steps=args.steps,
        device=args.device,
        activation=args.activation,
        hidden=args.hidden,
        batch=args.batch,
        lr=args.lr,
        train_lr=args.train_lr,
        seed=args.seed,
        top_k=args.top_k,
        lowrank_repeats=args.lowrank_repeats,
        dtype=dtype,
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# chaosgd.bench curvature: device={args.device} dtype={args.dtype} "
        f"threads={torch.get_num_threads()} batch={args.batch} steps={args.steps} "
        f"load1={load:.2f}"
    )
    print(
        "# dg/|g|: worst ‖g̃_dense − g̃_x‖/‖g‖ over prune sets chaotic/negative/positive, "
        f"all and top-{args.top_k}; dlam: worst |Δλ|/max|λ| over nonzero eigenvalues"
    )
    _print_table(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("curvature", help="dense vs low-rank Hessian eigenpairs (MLP, CNN)")
    p.add_argument("--steps", type=int, default=3, help="batches timed per model (default 3)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--arch", nargs="+", choices=["mlp", "cnn"], default=["mlp", "cnn"])
    p.add_argument("--activation", choices=["relu", "sigmoid"], default="relu")
    p.add_argument("--hidden", type=int, default=20, help="MLP hidden width (default 20)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3, help="η for the chaotic prune set")
    p.add_argument("--train-lr", type=float, default=1e-3, help="SGD step between batches")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--lowrank-repeats", type=int, default=3, help="low-rank timings per batch")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.set_defaults(func=_cmd_curvature)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
