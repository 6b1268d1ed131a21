"""``python -m chaosgd.tools.bench topk``: what the matrix-free top-k paths cost per training
step, from the paper's networks (N ≈ 5k) to networks of about a million parameters.

For each model it times, on the same synthetic minibatches and one after the other:

* one plain SGD step of the module (float32, forward + backward + update: what training pays
  without any curvature), the unit every other cost is given in;
* one batched Hessian-vector product of k vectors (float64, ``vmap`` of forward-over-reverse,
  :func:`chaosgd.engine.curvature.make_hvp`), and one of a single vector;
* top-k curvature (:func:`chaosgd.engine.topk_curvature.topk_eigenpairs`, the prune set
  ``--which``): cold (a random start block) and warm (after one SGD step, started from the
  previous step's eigenvectors, as a training run would), with its certificate and completeness
  check, in seconds, plain steps and Hessian-vector products;
* one step of the top-k tangent map (:class:`chaosgd.engine.topk_tangent.TopKTangent`, k
  tangent vectors: one batched product of k vectors and the update), in the same units.

The models: the MLP side²-h-10 at growing widths and the ResNet-(6n+2) (BatchNorm, skip
connections) at growing widths (:data:`SIZES`; ``--models`` picks some). Numbers are medians
over ``--repeats``; the load average is printed beside them, as a shared machine is slower.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from chaosgd.engine.curvature import make_hvp
from chaosgd.engine.models import build_model, flat_params, make_loss_fn, num_params
from chaosgd.engine.topk_curvature import TopKCheckError, topk_eigenpairs
from chaosgd.engine.topk_tangent import TopKTangent
from chaosgd.tools.bench.options import setup, write_json
from chaosgd.tools.bench.timing import load1, median, synthetic_batches, timed

__all__ = ["SIZES", "Size", "bench_topk", "command"]


@dataclass(frozen=True)
class Size:
    """A model of the table: its architecture, width (``hidden``) and depth (ResNet)."""

    name: str
    arch: str
    hidden: int
    depth: int | None = None


# N from the paper MLP's 5,350 to about a million, for both families
SIZES = {
    s.name: s
    for s in (
        Size("mlp-20", "mlp", 20),  # N = 5,350: the paper's MLP
        Size("mlp-200", "mlp", 200),  # 53,410
        Size("mlp-1000", "mlp", 1000),  # 267,010
        Size("mlp-4000", "mlp", 4000),  # 1,068,010
        Size("resnet8-4", "resnet", 4, 8),  # 5,142
        Size("resnet20-8", "resnet", 8, 20),  # 68,642
        Size("resnet20-16", "resnet", 16, 20),  # 272,186: ResNet-20
        Size("resnet20-32", "resnet", 32, 20),  # ≈ 1.09M
    )
}
QUICK = ("mlp-20", "resnet8-4")


def bench_topk(
    size: Size,
    k: int = 20,
    which: str = "chaotic",
    lr: float = 1e-3,
    batch: int = 8,
    repeats: int = 3,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """One row of the table for ``size`` (see the module doc); seconds, and the same costs as
    multiples of a plain SGD step (``*_steps``) and in Hessian-vector products (``*_hvps``)."""
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = build_model(size.arch, hidden=size.hidden, depth=size.depth).to(dev)
    n = num_params(model)
    next_batch = synthetic_batches(batch, seed, dev)
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def sgd_step(x, y):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    x, y = next_batch()
    sgd_step(x, y)  # warm-up: the first call pays for allocations
    plain = [timed(lambda: sgd_step(*next_batch()), dev)[1] for _ in range(repeats)]
    step_s = median(plain)

    x, y = next_batch()
    theta = flat_params(model).to(torch.float64)
    hvp = make_hvp(make_loss_fn(model, x, y), theta)
    gen = torch.Generator(device=dev).manual_seed(seed + 1)
    block = torch.randn(k, n, generator=gen, device=dev, dtype=torch.float64)
    hvp(block[:1])  # warm-up
    block_s = median([timed(lambda: hvp(block), dev)[1] for _ in range(repeats)])
    single_s = median([timed(lambda: hvp(block[:1]), dev)[1] for _ in range(repeats)])

    def curvature(h, warm=None):
        try:
            eig, seconds = timed(
                lambda: topk_eigenpairs(h, theta, k, which, lr=lr, warm_start=warm, generator=gen),
                dev,
            )
        except TopKCheckError as exc:  # a failed check is a result of the benchmark too
            return exc.result, float("nan"), str(exc)
        return eig, seconds, ""

    cold, cold_s, cold_error = curvature(hvp)
    # one SGD step later, from the previous step's eigenvectors: what training pays per step
    sgd_step(x, y)
    x2, y2 = next_batch()
    theta = flat_params(model).to(torch.float64)
    hvp2 = make_hvp(make_loss_fn(model, x2, y2), theta)
    warm_start = cold.vectors if cold.vectors.shape[1] else None  # N×m
    warm, warm_s, warm_error = curvature(hvp2, warm_start)

    tangent = TopKTangent(n, k, device=dev, generator=torch.Generator().manual_seed(seed + 2))
    tangent.step_sgd(lr, hvp2)  # warm-up
    tangent_s = median([timed(lambda: tangent.step_sgd(lr, hvp2), dev)[1] for _ in range(repeats)])

    def hvps(eig):
        return int(eig.diagnostics.get("hvps", 0))

    return {
        "model": size.name,
        "arch": size.arch,
        "n_params": n,
        "k": k,
        "which": which,
        "batch": batch,
        "device": str(dev),
        "plain_step_s": step_s,
        "hvp_block_s": block_s,
        "hvp_single_s": single_s,
        "curvature_cold_s": cold_s,
        "curvature_cold_steps": cold_s / step_s,
        "curvature_cold_hvps": hvps(cold),
        "curvature_warm_s": warm_s,
        "curvature_warm_steps": warm_s / step_s,
        "curvature_warm_hvps": hvps(warm),
        "returned": int(warm.values.numel()),
        "residual_max": float(warm.diagnostics.get("residual_max", float("nan"))),
        "check_error": cold_error or warm_error,
        "tangent_step_s": tangent_s,
        "tangent_step_steps": tangent_s / step_s,
        "tangent_step_hvps": k,
    }


def _print(rows: list[dict], threads: int) -> None:
    print(
        f"top-k per training step (k = {rows[0]['k']}, {rows[0]['which']}, batch "
        f"{rows[0]['batch']}, {rows[0]['device']}, {threads} thread(s), load {load1():.1f}); "
        "cost in seconds, in plain SGD steps (x) and in Hessian-vector products"
    )
    head = (
        f"{'model':<12} {'N':>9} {'SGD step':>9} {'HVP x k':>9} {'curv. cold':>22} "
        f"{'curv. warm':>22} {'tangent step':>20}"
    )
    print(head)
    for r in rows:

        def cell(prefix, width):
            s, steps, h = r[f"{prefix}_s"], r[f"{prefix}_steps"], r[f"{prefix}_hvps"]
            return f"{s:7.3f}s {steps:6.0f}x {h:5d}".rjust(width)

        print(
            f"{r['model']:<12} {r['n_params']:>9,} {r['plain_step_s']:8.4f}s "
            f"{r['hvp_block_s']:8.4f}s {cell('curvature_cold', 22)} "
            f"{cell('curvature_warm', 22)} {cell('tangent_step', 20)}"
        )
        if r["check_error"]:
            print(f"  check failed: {r['check_error']}")


def command(args) -> int:
    """The ``topk`` subcommand."""
    status = setup(args)
    if status is not None:
        return status
    names = list(QUICK) if args.quick else (args.models or list(SIZES))
    rows = []
    for name in names:
        rows.append(
            bench_topk(
                SIZES[name],
                k=args.k,
                which=args.which,
                lr=args.lr,
                batch=args.batch,
                repeats=args.repeats,
                seed=args.seed,
                device=args.device,
            )
        )
        print(f"timed {name}", file=sys.stderr)
    _print(rows, torch.get_num_threads())
    write_json(args, rows)
    return 0 if not any(r["check_error"] for r in rows) else 1
