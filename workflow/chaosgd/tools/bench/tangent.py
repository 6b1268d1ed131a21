"""``python -m chaosgd.tools.bench tangent``: the MLP's per-step tangent-map update, low-rank
(:meth:`TangentMap.step_sgd`) against the dense product of the reference code, one
re-orthonormalization, and the exact readout, with their agreement."""

from __future__ import annotations

import inspect
import math
import statistics
import sys

import torch

from chaosgd.engine.curvature import hessian_eigenpairs
from chaosgd.engine.models import build_model, flat_params, hessian_structure, make_loss_fn
from chaosgd.engine.tangent_map import TangentMap
from chaosgd.tools.bench.agreement import max_rel_diff
from chaosgd.tools.bench.options import model_arguments, setup, write_json
from chaosgd.tools.bench.timing import load1, synthetic_batches, timed

__all__ = ["DEFAULT_REORTH_EVERY", "bench_tangent", "command"]

# what a TangentMap does when not told otherwise (the pipeline's own default is in the schema)
DEFAULT_REORTH_EVERY = inspect.signature(TangentMap).parameters["reorth_every"].default


def bench_tangent(
    steps: int = 5,
    device: str = "cpu",
    activation: str = "relu",
    hidden: int = 20,
    batch: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    reorth_every: int = DEFAULT_REORTH_EVERY,
    readout: bool = True,
    curvature: str = "auto",
    readout_reference: bool = False,
) -> list[dict]:
    """Run the tangent-map benchmark on the MLP; returns one row per timed operation.

    The eigenpairs of ``steps`` minibatch Hessians along a short SGD trajectory (lr ``lr``) are
    computed first (untimed). Then, step by step on the same eigenpairs, the low-rank update
    (``TangentMap.step_sgd``) and the dense one (J = I − η V diag(λ) Vᵀ formed, then J·Y) are
    timed. The low-rank map is not re-orthonormalized during these steps (so the step timings are
    the update alone); one re-orthonormalization of the accumulated steps is timed at the end
    (its O(N³) cost does not depend on how many steps are pending) and amortized over
    ``reorth_every``. Y is compared before and after that fold.
    """
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps!r}")
    if reorth_every < 1:
        raise ValueError(f"reorth_every must be positive, got {reorth_every!r}")
    dev = torch.device(device)
    dtype = torch.float64
    torch.manual_seed(seed)
    model = build_model("mlp", activation, hidden=hidden).to(dev)
    gen = torch.Generator(device=dev).manual_seed(seed + 1)
    next_batch = synthetic_batches(batch, seed, dev)
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    # eigenpairs of real training steps, as TangentHook gets them (nonzero pairs, previous rank
    # as the sketch hint); this also warms up torch
    eigs, ranks, picked, hint = [], [], set(), None
    for _ in range(steps):
        x, y = next_batch()
        theta = flat_params(model).to(dtype)
        eig = hessian_eigenpairs(
            make_loss_fn(model, x, y),
            theta,
            curvature,
            dtype=dtype,
            generator=gen,
            sketch_hint=hint,
            **hessian_structure(model, x, y),
        )
        hint = eig.rank
        picked.add(eig.method)
        eig = eig.nonzero()
        eigs.append((eig.values.to(dtype), eig.vectors.to(dtype), eig.basis, eig.coords))
        ranks.append(eig.rank)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    n = theta.numel()

    # no automatic fold while stepping: the timed reorthonormalize() below is the only one
    low = TangentMap(n, dtype, dev, reorth_every=steps + 1, max_log_growth=math.inf)
    # as training steps it: through the eigenpairs' basis where it has one (the MLP's)
    fast = TangentMap(n, dtype, dev, reorth_every=steps + 1, max_log_growth=math.inf)
    Yd = torch.eye(n, dtype=dtype, device=dev)
    t_low, t_fast, t_form, t_mul = [], [], [], []
    for lam, V, basis, coords in eigs:
        _, dt = timed(lambda: low.step_sgd(lr, lam, V), dev)
        t_low.append(dt)
        _, dt = timed(lambda: fast.step_sgd(lr, lam, V, basis, coords), dev)
        t_fast.append(dt)
        J, dt = timed(
            lambda: torch.eye(n, dtype=dtype, device=dev).addmm_(V * lam, V.T, alpha=-lr), dev
        )
        t_form.append(dt)
        Yd, dt = timed(lambda: J @ Yd, dev)  # noqa: F821 - J is bound just above
        t_mul.append(dt)
        del J
    del eigs
    t_dense = [a + b for a, b in zip(t_form, t_mul)]
    diff_steps = max_rel_diff(low.matrix(), Yd)
    diff_fast = max_rel_diff(fast.matrix(), Yd)
    del fast

    _, t_reorth = timed(low.reorthonormalize, dev)
    diff_folded = max_rel_diff(low.matrix(), Yd)

    med_low, med_dense = statistics.median(t_low), statistics.median(t_dense)
    med_fast = statistics.median(t_fast)
    amortized = t_reorth / reorth_every
    common = dict(
        arch="mlp",
        n_params=n,
        hidden=hidden,
        steps=steps,
        device=str(dev),
        dtype=str(dtype),
        lr=lr,
        reorth_every=reorth_every,
    )
    rows = [
        dict(
            common,
            op="step_sgd (low-rank)",
            timings=len(t_low),
            median_s=med_low,
            ratio=med_dense / med_low,
            agreement=diff_steps,
            ranks=ranks,
            curvature="/".join(sorted(picked)),
            note=f"r = {min(ranks)}..{max(ranks)}",
        ),
        dict(
            common,
            op="step_sgd (basis)",
            timings=len(t_fast),
            median_s=med_fast,
            ratio=med_dense / med_fast,
            agreement=diff_fast,
            note=f"H = S K Sᵀ, {med_low / med_fast:.1f}x the low-rank step",
        ),
        dict(
            common,
            op="J·Y (dense)",
            timings=len(t_dense),
            median_s=med_dense,
            ratio=1.0,
            form_j_s=statistics.median(t_form),
            matmul_s=statistics.median(t_mul),
            note=f"form J {statistics.median(t_form):.3f} + J·Y {statistics.median(t_mul):.3f}",
        ),
        dict(
            common,
            op=f"reorth / {reorth_every}",
            timings=1,
            median_s=amortized,
            ratio=med_dense / amortized,
            reorth_s=t_reorth,
            note=f"one QR + fold {t_reorth:.2f} s",
        ),
        dict(
            common,
            op="step_sgd + reorth",
            timings=len(t_fast),
            median_s=med_fast + amortized,
            ratio=med_dense / (med_fast + amortized),
            agreement=diff_folded,
            note="per step, all in",
        ),
    ]
    if readout:
        sig, t_svd = timed(lambda: torch.linalg.svdvals(Yd), dev)
        ref = torch.sort(torch.log(sig.cpu()), descending=True).values
        # the default (divide-and-conquer) readout, and with readout_reference today's Jacobi one
        kinds = ["auto", "jacobi"] if readout_reference else ["auto"]
        outs = {k: timed(lambda: low.readout(method=k), dev) for k in kinds}
        for k, (out, t_read) in outs.items():
            logsig = torch.as_tensor(out.exponents, dtype=torch.float64) * out.t
            note = f"{out.method}, |VᵀV−I| {out.orthogonality_loss:.0e}"
            if k == "jacobi":
                fast, t_fast = outs["auto"]
                dlog = float(abs(out.exponents - fast.exponents).max()) * out.t
                note += f", {t_read / t_fast:.1f}x the dc time, max|Δ ln σ| to dc {dlog:.0e}"
            rows.append(
                dict(
                    common,
                    op=f"readout ({'Jacobi' if out.solver == 'jacobi' else 'dc'} SVD)",
                    timings=1,
                    median_s=t_read,
                    agreement=float((logsig - ref).abs().max()),
                    method=out.method,
                    solver=out.solver,
                    windows=out.windows,
                    orthogonality_loss=out.orthogonality_loss,
                    note=note,
                )
            )
        rows.append(
            dict(
                common,
                op="svdvals(Y) (dense)",
                timings=1,
                median_s=t_svd,
                note="reference for ln σ",
            )
        )
    return rows


def _print_table(rows, out=None):
    out = sys.stdout if out is None else out
    head = f"{'operation':<21} {'n':>2} {'median s':>9} {'dense/x':>8} {'agreement':>9}  note"
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        ratio = f"{r['ratio']:.1f}" if "ratio" in r else "-"
        agree = f"{r['agreement']:.1e}" if "agreement" in r else "-"
        if r["op"] == "J·Y (dense)":
            agree = "ref"
        print(
            f"{r['op']:<21} {r['timings']:>2} {r['median_s']:>9.4f} {ratio:>8} {agree:>9}  "
            f"{r.get('note', '')}",
            file=out,
        )


def command(args) -> int:
    """Run ``python -m chaosgd.tools.bench tangent``; print the table, return the exit status."""
    status = setup(args)
    if status is not None:
        return status
    rows = bench_tangent(
        **model_arguments(args),
        steps=args.steps,
        lr=args.lr,
        reorth_every=args.reorth_every,
        readout=args.readout,
        curvature=args.curvature,
        readout_reference=args.readout_reference,
    )
    r0 = rows[0]
    print(
        f"# chaosgd.tools.bench tangent: device={args.device} dtype=float64 "
        f"threads={torch.get_num_threads()} N={r0['n_params']} (MLP 256→{args.hidden}→10) "
        f"batch={args.batch} steps={args.steps} lr={args.lr:g} "
        f"reorth_every={args.reorth_every} load1={load1():.2f}"
    )
    print(
        f"# eigenpairs: {r0['curvature']} Hessians of {args.steps} SGD minibatches of synthetic "
        f"N(0,1) 16×16 inputs, ranks {','.join(map(str, r0['ranks']))}"
    )
    print(
        "# agreement: max|Y_lowrank − Y_dense|/max|Y_dense| after the steps (step_sgd) and "
        "after the fold (+ reorth); readout: max|ln σ_i − ln σ_i(Y_dense)|"
    )
    _print_table(rows)
    write_json(args, rows)
    return 0
