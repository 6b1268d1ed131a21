"""Benchmarks of the engine: ``python -m chaosgd.tools.bench <subcommand> ...``.

``curvature``: dense vs low-rank Hessian eigenpairs on the same minibatches (MLP and CNN). For
each of ``--steps`` batches along a short SGD trajectory it times both methods (the low-rank one
with the previous step's rank as ``sketch_hint``, as training does), then compares the CGD
projected gradients (chaotic / negative / positive, all and top-k) and the nonzero eigenvalues.
It prints medians, the speed-up ratio, the worst disagreement and the ranks.

``tangent``: the per-step update of the tangent map Y ← (I − ηH) Y of the MLP (N = 5350 with
the default ``--hidden 20``, float64), low-rank (:meth:`TangentMap.step_sgd`, O(rN²)) against the
dense product the reference code did (form J = I − η V diag(λ) Vᵀ, then J·Y, O(N³)), on the same
eigenpairs: those of ``--steps`` real minibatch Hessians (batch 8, synthetic standard-normal
16×16 inputs, "auto" eigenpairs with the previous rank as hint, one SGD step between batches, as
training does). Also one re-orthonormalization (QR + fold, amortized over ``--reorth-every``
steps) and, unless ``--no-readout``, the exact Jacobi-SVD readout. It checks that Y agrees (low-rank ``matrix()`` vs
the dense product) and, with the readout, that ln σ(Y) agrees with a dense SVD of the dense
product.

``ensembles``: one MLP trained alone the ordinary way (``nn.Module`` + ``torch.optim.SGD``,
:func:`chaosgd.runs.lockstep.time_single_model`) against the lockstep ensemble of the ensembles stage
(:func:`chaosgd.runs.lockstep.run_ensemble`: 1 + 5·k members for k values of ε, distances recorded
every ``--record-every`` steps) on the same synthetic batches, the two timed alternately
``--repeats`` times; it prints the median seconds per step and their ratio. (That the ensemble
equals sequential training to rounding is a test, not a benchmark: ``tests/unit/runs/test_lockstep.py``.)

``costs``: the per-unit costs that the jobs' runtime requests are computed from
(:data:`chaosgd.planning.job_costs.COSTS`), measured side by side through the pipeline's own code on
synthetic data, one thread unless ``--threads`` says otherwise, and reported at the reference size
next to the table's values; it ends with them as a ``resources: costs:`` block for the config
(a site's own nodes, a GPU one with ``--device cuda``).

``topk``: the matrix-free top-k paths for networks beyond the paper's, from N ≈ 5k to about a
million parameters (MLPs and ResNets): one plain SGD step, batched Hessian-vector products,
top-k curvature cold and warm-started, and one step of the top-k tangent map, in seconds, in
plain steps and in Hessian-vector products (:mod:`chaosgd.tools.bench.topk`).

``gpu``: the curvature engine, the tangent map, the ensembles and a short Fig. 1 run on a CUDA
device and on the CPU side by side, their agreement on identical inputs, and the paper config's
projected cost on that device (:mod:`chaosgd.tools.bench.gpu`).
"""

from __future__ import annotations

import argparse
import sys

from chaosgd.engine.topk_curvature import WHICH
from chaosgd.planning.vocab import ARCHITECTURES
from chaosgd.runs.artifacts import ArtifactWriteError
from chaosgd.tools.bench import costs, curvature, ensembles, gpu, tangent, topk
from chaosgd.tools.bench.options import add_common_options
from chaosgd.tools.bench.tangent import DEFAULT_REORTH_EVERY

__all__ = ["build_parser", "main"]


# the benchmarks of the exact curvature paths take the architectures that have them
EXACT = [name for name, arch in ARCHITECTURES.items() if arch.exact_curvature]


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per benchmark, each set to run its module's ``command``."""
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.tools.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("curvature", help="dense vs low-rank Hessian eigenpairs (MLP, CNN)")
    p.add_argument("--steps", type=int, default=3, help="batches timed per model (default 3)")
    p.add_argument("--arch", nargs="+", choices=EXACT, default=EXACT)
    p.add_argument("--lr", type=float, default=1e-3, help="η for the chaotic prune set")
    p.add_argument("--train-lr", type=float, default=1e-3, help="SGD step between batches")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--lowrank-repeats", type=int, default=3, help="low-rank timings per batch")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    add_common_options(p)
    p.set_defaults(func=curvature.command)

    p = sub.add_parser("tangent", help="low-rank vs dense tangent-map update (MLP)")
    p.add_argument("--steps", type=int, default=5, help="SGD steps / updates timed (default 5)")
    p.add_argument("--lr", type=float, default=1e-3, help="η of the SGD steps and tangent map")
    p.add_argument(
        "--reorth-every",
        type=int,
        default=DEFAULT_REORTH_EVERY,
        help=f"steps one re-orthonormalization is amortized over (default {DEFAULT_REORTH_EVERY})",
    )
    p.add_argument(
        "--readout",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the exact readout (default on)",
    )
    p.add_argument(
        "--readout-reference",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also time the Jacobi readout side by side (~15 min at N = 5350 on one core)",
    )
    p.add_argument(
        "--curvature",
        choices=["auto", "lowrank", "dense"],
        default="auto",
        help="Hessian eigenpair method (default auto, as training)",
    )
    add_common_options(p)
    p.set_defaults(func=tangent.command)

    p = sub.add_parser("ensembles", help="lockstep ensemble vs one model trained alone (MLP)")
    p.add_argument("--steps", type=int, default=912, help="steps per timing (default 912)")
    p.add_argument(
        "--eps-counts",
        type=int,
        nargs="+",
        default=[1, 5, 11],
        help="numbers of ε values: 1 + 5·k members (default 1 5 11; the paper config has 11)",
    )
    p.add_argument(
        "--dtype", nargs="+", choices=["float32", "float64"], default=["float32", "float64"]
    )
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--record-every", type=int, default=10, help="as ensembles.record_every")
    p.add_argument("--repeats", type=int, default=3, help="alternating timings (default 3)")
    add_common_options(p)
    p.set_defaults(func=ensembles.command)

    p = sub.add_parser("costs", help="the per-unit costs the job resources are estimated from")
    p.add_argument("--arch", nargs="+", choices=EXACT, default=EXACT)
    p.add_argument("--steps", type=int, default=300, help="plain training steps (default 300)")
    p.add_argument(
        "--spectrum-steps", type=int, default=8, help="steps timed with the spectrum (default 8)"
    )
    p.add_argument(
        "--readout-hidden",
        type=int,
        default=6,
        help="hidden units of the MLP whose readout is timed, then scaled by N³ (default 6)",
    )
    p.add_argument("--ensemble-steps", type=int, default=100, help="lockstep steps (default 100)")
    p.add_argument("--eps-count", type=int, default=11, help="ε values: 1 + 5·k members")
    p.add_argument(
        "--dense-mlp", action="store_true", help="also time the MLP's dense eigenpairs (≈ 25 s)"
    )
    add_common_options(p)
    # the jobs run single-threaded unless the config says otherwise
    p.set_defaults(func=costs.command, threads=1)

    p = sub.add_parser("topk", help="matrix-free top-k curvature and tangent map, N 5k to 1M")
    p.add_argument(
        "--models", nargs="+", choices=list(topk.SIZES), help="default: all (N 5k to about 1M)"
    )
    p.add_argument("--quick", action="store_true", help="the two smallest models (the tests)")
    p.add_argument("--k", type=int, default=20, help="eigenpairs and tangent vectors (default 20)")
    p.add_argument("--which", choices=list(WHICH), default="chaotic", help="the prune set")
    p.add_argument("--lr", type=float, default=1e-3, help="η of the prune set and the steps")
    p.add_argument("--repeats", type=int, default=3, help="timings per median (default 3)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.set_defaults(func=topk.command)

    p = sub.add_parser("gpu", help="the GPU path against the CPU on the same inputs, and the cost")
    p.add_argument(
        "--device",
        choices=["cuda", "cpu"],
        default="cuda",
        help="the side measured against the CPU (default cuda; cpu runs both sides on the CPU)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (the tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: as the pipeline's jobs, training.threads)",
    )
    p.add_argument("--json", help="also write rows, checks and projection to this JSON file")
    p.set_defaults(func=gpu.command)
    return parser


def main(argv=None) -> int:
    """Run the ``curvature``, ``tangent``, ``ensembles``, ``costs``, ``topk`` or ``gpu``
    benchmark from the command line (see this module's docstring).

    Returns the exit status.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ArtifactWriteError as exc:  # the --json file: the numbers are printed already
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
