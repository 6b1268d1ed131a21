"""Lyapunov stage: finite-time Lyapunov spectra of a training run from its tangent map.

The run is trained exactly as by the training stage (same settings, same outputs in
``results/train/<run>/``), with a :class:`chaosgd.engine.tangent_map.TangentMap` following every step:
Y ← (I − ηH) Y with H the step's minibatch Hessian from the curvature engine (restricted to the
kept eigenvectors while CGD prunes), or the momentum recursion. The Hessian eigenpairs of a step
serve both the optimizer / diagnostics and the tangent map, so nothing is computed twice.

Writes, into ``results/lyapunov/<run>/``:

- ``exponents.parquet``: at each readout step: λ1, λN, the counts of positive / negative /
  neutral exponents, quantiles, and the method (``svd``, or ``svd_deflated`` when the factor's
  range exceeds one float64 window). Readouts are exact SVDs of the accumulated factor
  (divide-and-conquer, checked, the Jacobi SVD where a check fails).
  Cheaper QR-diagonal (Benettin) estimates exist but are not recorded: started from the
  identity frame they converge as O(1/t) with large constants and even had the wrong sign of
  λ1 over the first hundreds of steps of real runs. Each readout's time is in ``run.json``
  (``readout_seconds_each``), not here, so that a resumed run's table is identical.
- ``lambda1.parquet``: λ1(t) = ln σ1(Y(t))/t every ``--lambda1-every`` steps and at the exact
  readouts (1: at every step, as the paper plots it; App. C.1,
  Fig. 3b's upper bound), from a Krylov (Lanczos) iteration on YᵀY warm-started at the previous
  step's vector (:meth:`chaosgd.engine.tangent_map.TangentMap.top_singular`: O(N²) a product,
  stopped at an error bound of 1e-10 relative in σ1²), with the number of products it took. λN
  and the quantiles stay at the readouts: σ_N per step would need O(N³) solves with Q.
- ``subspaces.parquet``: similarity of the chaotic (λ > 0) and non-chaotic (λ < 0) Lyapunov
  subspaces between consecutive exact readouts (App. C.2): ‖V_aᵀ V_b‖²_F / min(dim), the mean
  squared cosine of their principal angles (1 = one contains the other).
- ``spectrum_final.pt``: all exponents and Lyapunov vectors at the final step, the initial
  parameters θ(0) and what the ensembles stage needs to perturb them.

With ``--topk k`` (config ``lyapunov.topk``) the run carries k tangent vectors instead
(:class:`chaosgd.runs.topk_tracker.TopKTangentHook`): the k leading exponents, lower bounds of the
exact ones, and their vectors, matrix-free, on any network; the same files, readouts marked
``topk_svd``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from chaosgd.engine.exponents import classify
from chaosgd.engine.graded_svd import LyapunovReadout
from chaosgd.engine.models import flat_params
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.tables import EXPONENTS, LAMBDA1, SUBSPACES
from chaosgd.runs import recovery
from chaosgd.runs.artifacts import explain, save_tensors, write_parquet
from chaosgd.runs.run_outputs import OUTPUTS, add_io_arguments, write_outputs
from chaosgd.runs.tangent_tracker import TangentHook
from chaosgd.runs.topk_tracker import TopKTangentHook
from chaosgd.runs.trainer import Trainer, TrainingError

LYAP_OUTPUTS = {
    "exponents": EXPONENTS.filename,
    "lambda1": LAMBDA1.filename,
    "subspaces": SUBSPACES.filename,
    "spectrum": "spectrum_final.pt",
}


def add_lyapunov_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the Lyapunov options (readouts, quantiles, neutral tolerance, QR folding) to a parser."""
    lyap = parser.add_argument_group("Lyapunov spectra")
    lyap.add_argument("--readouts", type=int, required=True, help="exact (SVD) readouts")
    lyap.add_argument("--quantiles", type=float, nargs="+", required=True, help="quantiles")
    lyap.add_argument(
        "--neutral-tol", type=float, required=True, help="|lambda t| below this counts as 0"
    )
    lyap.add_argument(
        "--reorth-every", type=int, required=True, help="most steps between QR foldings"
    )
    lyap.add_argument(
        "--lambda1-every",
        type=int,
        required=True,
        help="steps between values of lambda_1(t) (1: every step; exact readouts always)",
    )
    lyap.add_argument(
        "--early-readouts",
        type=int,
        default=0,
        help="more readouts, log-spaced from step 1 to the first even one (App. C.1's start)",
    )
    lyap.add_argument(
        "--anchors",
        type=int,
        nargs="*",
        default=[],
        help="steps t0 whose Lyapunov subspaces later readouts are compared to (App. C.2; "
        "clipped to the run)",
    )
    lyap.add_argument(
        "--topk",
        type=int,
        default=0,
        help="follow only the k leading exponents and vectors, matrix-free (0: all N, exactly)",
    )


def make_trainer(
    settings: RunSettings,
    data: str | Path,
    args: argparse.Namespace,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> tuple[Trainer, TangentHook, torch.Tensor]:
    """A training run with a tangent map attached (``args.topk`` > 0: its k leading vectors,
    matrix-free), and the run's initial parameters."""
    topk = getattr(args, "topk", 0)
    if not topk and not settings.spectrum:
        raise ValueError(f"run {settings.run_id}: the tangent map needs spectrum: true")
    trainer = Trainer(settings, data, checkpoint=checkpoint, progress=progress, stage="lyapunov")
    theta0 = flat_params(trainer.model).to(torch.float64).cpu()
    n = theta0.numel()
    if topk > n:
        raise ValueError(f"run {settings.run_id}: --topk {topk} exceeds its {n} parameters")
    hook_class, extra = (TopKTangentHook, {"k": topk}) if topk else (TangentHook, {})
    hook = hook_class(
        n=n,
        **extra,
        settings=settings,
        total_steps=trainer.total_steps,
        readouts=args.readouts,
        quantiles=args.quantiles,
        neutral_tol=args.neutral_tol,
        reorth_every=args.reorth_every,
        early_readouts=args.early_readouts,
        anchors=tuple(args.anchors),
        device=trainer.device,
        lambda1_every=args.lambda1_every,
    )
    trainer.hooks["tangent"] = hook
    return trainer, hook, theta0


def write_spectrum(
    path, final: LyapunovReadout, neutral_tol: float, theta0, run_id: str, topk: int = 0
) -> None:
    """Write ``spectrum_final.pt``: the final readout's exponents and Lyapunov vectors, the
    numbers of chaotic and non-chaotic exponents, and the run's initial parameters θ(0) (what
    the ensembles stage needs to perturb them). After a top-k map: the k leading exponents and
    vectors (N×k), the counts among them, and ``topk`` = k (0: all N).
    """
    pos, neg = classify(final.exponents, final.t, neutral_tol)
    save_tensors(
        {
            "exponents": torch.from_numpy(final.exponents.copy()),
            "vectors": torch.from_numpy(np.ascontiguousarray(final.vectors)),
            "t": final.t,
            "method": final.method,
            "neutral_tol": neutral_tol,
            "n_chaotic": int(pos.sum()),
            "n_nonchaotic": int(neg.sum()),
            "theta0": theta0,
            "run_id": run_id,
            "topk": int(topk),
        },
        path,
    )


def main(argv: list[str] | None = None) -> int:
    """Train one run with its tangent map from the command line; returns the exit status.

    Writes the training outputs and the finite-time Lyapunov spectra. Exit status 0 on success,
    1 with a one-line error, 128 + the signal's number when SIGTERM / SIGINT stopped it after
    writing its checkpoint (:meth:`chaosgd.runs.trainer.Trainer.run`).
    """
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.lyapunov",
        description="Train one run with its tangent map; write the training outputs and the "
        "finite-time Lyapunov spectra.",
    )
    RunSettings.add_arguments(parser)
    add_lyapunov_arguments(parser)
    add_io_arguments(parser, OUTPUTS + tuple(LYAP_OUTPUTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        settings = RunSettings.from_namespace(args)
        trainer, hook, theta0 = make_trainer(
            settings, args.data, args, args.checkpoint, not args.no_progress
        )
        result = trainer.run()
    except recovery.Interrupted as exc:
        print(exc.report(trainer.checkpoint), file=sys.stderr)
        return exc.exit_status
    except (TrainingError, ValueError, OSError) as exc:  # a checkpoint write: ArtifactWriteError
        print(f"error: {explain(exc)}", file=sys.stderr)
        return 1
    final = hook.last
    exps, subs = hook.tables()
    try:
        write_parquet(exps, args.out_exponents, EXPONENTS)
        write_parquet(hook.lambda1_table(), args.out_lambda1, LAMBDA1)
        write_parquet(subs, args.out_subspaces, SUBSPACES)
        write_spectrum(
            args.out_spectrum, final, args.neutral_tol, theta0, settings.run_id, args.topk
        )
    except OSError as exc:  # ArtifactWriteError
        print(f"error: {explain(exc, 'writing')}", file=sys.stderr)
        return 1
    result.info["lyapunov"] = {
        "readout_steps": sorted(hook.exact_steps),
        "tangent_seconds": hook.seconds["tangent"],
        "readout_seconds": hook.seconds["readout"],
        "readout_seconds_each": hook.readout_seconds,
        "lambda1_seconds": hook.seconds["lambda1"],
        "final_method": final.method,
        "reorth_every": args.reorth_every,
        "lambda1_every": args.lambda1_every,
        "topk": args.topk,
    }
    outputs = {k: getattr(args, f"out_{k}") for k in OUTPUTS}
    try:
        write_outputs(result, settings, trainer.device, outputs)
        if trainer.checkpoint is not None:
            trainer.checkpoint.unlink(missing_ok=True)
    except OSError as exc:  # the writers' ArtifactWriteError; a plain one is the unlink's
        print(f"error: {explain(exc, 'removing')}", file=sys.stderr)
        return 1
    pos, neg = classify(final.exponents, final.t, args.neutral_tol)
    last = f"lambda_{args.topk}" if args.topk else "lambda_N"
    print(
        f"{settings.run_id}: lambda_1 {final.exponents[0]:.4e}, {last} "
        f"{final.exponents[-1]:.4e} at t={final.t} ({final.method}); {int(pos.sum())} chaotic, "
        f"{int(neg.sum())} non-chaotic",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
