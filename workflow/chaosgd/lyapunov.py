"""Lyapunov stage: finite-time Lyapunov spectra of a training run from its tangent map.

The run is trained exactly as by the training stage (same settings, same outputs in
``results/train/<run>/``), with a :class:`chaosgd.tangent.TangentMap` following every step:
Y ← (I − ηH) Y with H the step's minibatch Hessian from the curvature engine (restricted to the
kept eigenvectors while CGD prunes), or the momentum recursion. The Hessian eigenpairs of a step
serve both the optimizer / diagnostics and the tangent map, so nothing is computed twice.

Writes, into ``results/lyapunov/<run>/``:

- ``exponents.parquet``: at each readout step: λ1, λN, the counts of positive / negative /
  neutral exponents, quantiles, and the method (``svd``, or ``svd_deflated`` when the factor's
  range exceeds one float64 window). Readouts are exact Jacobi SVDs of the accumulated factor.
  Cheaper QR-diagonal (Benettin) estimates exist but are not recorded: started from the
  identity frame they converge as O(1/t) with large constants and even had the wrong sign of
  λ1 over the first hundreds of steps of real runs.
- ``subspaces.parquet``: similarity of the chaotic (λ > 0) and non-chaotic (λ < 0) Lyapunov
  subspaces between consecutive exact readouts (App. C.2): ‖V_aᵀ V_b‖²_F / min(dim), the mean
  squared cosine of their principal angles (1 = one contains the other).
- ``spectrum_final.pt``: all exponents and Lyapunov vectors at the final step, the initial
  parameters θ(0) and what the ensembles stage needs to perturb them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from chaosgd import train
from chaosgd.curvature import Eigenpairs
from chaosgd.io import save_tensors, write_parquet
from chaosgd.models import flat_params
from chaosgd.settings import RunSettings
from chaosgd.tangent import LyapunovReadout, TangentMap


def readout_steps(total: int, readouts: int) -> list[int]:
    """``readouts`` steps evenly spaced over ``total``, the last one at ``total``."""
    return sorted({max(1, round(k * total / readouts)) for k in range(1, readouts + 1)})


def classify(exponents: np.ndarray, t: int, neutral_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the chaotic (λ t > tol) and non-chaotic (λ t < −tol) exponents."""
    growth = exponents * t
    return growth > neutral_tol, growth < -neutral_tol


def summary(exponents: np.ndarray, t: int, neutral_tol: float, quantiles: list[float]) -> dict:
    pos, neg = classify(exponents, t, neutral_tol)
    row = {
        "lambda_1": float(exponents.max()),
        "lambda_N": float(exponents.min()),
        "n_positive": int(pos.sum()),
        "n_negative": int(neg.sum()),
        "n_neutral": int(len(exponents) - pos.sum() - neg.sum()),
    }
    for q, v in zip(quantiles, np.quantile(exponents, quantiles)):
        row[f"q{q:g}"] = float(v)
    return row


def subspace_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared cosine of the principal angles between span(a) and span(b) (orthonormal
    columns), normalized by the smaller dimension; NaN when either is empty."""
    k = min(a.shape[1], b.shape[1])
    if k == 0:
        return float("nan")
    return float(np.linalg.norm(a.T @ b) ** 2 / k)


class TangentHook:
    """Follows a :class:`chaosgd.train.Trainer` with a tangent map and reads it out."""

    def __init__(
        self,
        n: int,
        settings: RunSettings,
        total_steps: int,
        readouts: int,
        quantiles: list[float],
        neutral_tol: float,
        reorth_every: int,
        device: torch.device,
    ):
        self.s = settings
        self.tangent = TangentMap(n, torch.float64, device, reorth_every=reorth_every)
        self.exact_steps = set(readout_steps(total_steps, readouts))
        self.quantiles = list(quantiles)
        self.neutral_tol = neutral_tol
        self.rows: list[dict] = []
        self.subspace_rows: list[dict] = []
        # chaotic / non-chaotic subspaces of the last exact readout, and its step
        self.previous: dict[str, np.ndarray] | None = None
        self.previous_step = -1
        self.last: LyapunovReadout | None = None
        self.seconds = {"tangent": 0.0, "readout": 0.0}

    def after_step(self, step: int, eig: Eigenpairs | None, pruned: torch.Tensor | None) -> None:
        if eig is None:
            raise RuntimeError("the tangent map needs the Hessian eigenpairs of every step")
        keep = eig.nonzero_mask()
        if pruned is not None and pruned.numel():
            keep[pruned.to(keep.device)] = False
        values, vectors = eig.values[keep], eig.vectors[:, keep]
        t0 = time.perf_counter()
        if self.s.momentum:
            self.tangent.step_momentum(self.s.lr, self.s.momentum, values, vectors)
        else:
            self.tangent.step_sgd(self.s.lr, values, vectors)
        self.seconds["tangent"] += time.perf_counter() - t0
        t = self.tangent.t
        if t in self.exact_steps:
            self._exact(t)

    def _exact(self, t: int) -> None:
        t0 = time.perf_counter()
        out = self.tangent.readout()
        if out.vectors is None:
            raise RuntimeError(f"step {t}: the exact readout failed ({out.method})")
        pos, neg = classify(out.exponents, t, self.neutral_tol)
        current = {"chaotic": out.vectors[:, pos], "nonchaotic": out.vectors[:, neg]}
        if self.previous is not None:
            row = {"step": t, "previous_step": self.previous_step}
            for name in ("chaotic", "nonchaotic"):
                row[f"dim_{name}"] = int(current[name].shape[1])
                row[f"similarity_{name}"] = subspace_similarity(self.previous[name], current[name])
            self.subspace_rows.append(row)
        self.previous, self.previous_step = current, t
        self.last = out
        seconds = time.perf_counter() - t0
        self.seconds["readout"] += seconds
        self.rows.append(
            {
                "step": t,
                "method": out.method,
                **summary(out.exponents, t, self.neutral_tol, self.quantiles),
                "log_range": out.log_range,
                "seconds": seconds,
            }
        )
        print(
            f"step {t}: exact readout ({out.method}) in {seconds:.1f} s: "
            f"lambda_1 {out.exponents[0]:.3e}, lambda_N {out.exponents[-1]:.3e}",
            file=sys.stderr,
        )

    # checkpoints: everything as tensors and plain lists
    def state_dict(self) -> dict:
        prev = None
        if self.previous is not None:
            prev = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.previous.items()}
        return {
            "tangent": self.tangent.state_dict(),
            "rows": self.rows,
            "subspace_rows": self.subspace_rows,
            "previous": prev,
            "previous_step": self.previous_step,
            "seconds": self.seconds,
        }

    def load_state_dict(self, state: dict) -> None:
        self.tangent.load_state_dict(state["tangent"])
        self.rows = state["rows"]
        self.subspace_rows = state["subspace_rows"]
        prev = state["previous"]
        self.previous = None if prev is None else {k: v.numpy() for k, v in prev.items()}
        self.previous_step = int(state["previous_step"])
        self.seconds = state["seconds"]

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        exps = pd.DataFrame(self.rows)
        subs = pd.DataFrame(
            self.subspace_rows,
            columns=[
                "step",
                "previous_step",
                "dim_chaotic",
                "similarity_chaotic",
                "dim_nonchaotic",
                "similarity_nonchaotic",
            ],
        )
        for df in (exps, subs):
            for col in df.columns:
                if col.startswith(("n_", "dim_")) or col == "previous_step":
                    df[col] = df[col].astype(np.int32)
                if col == "step":
                    df[col] = df[col].astype(np.int64)
        return exps, subs


LYAP_OUTPUTS = {
    "exponents": "exponents.parquet",
    "subspaces": "subspaces.parquet",
    "spectrum": "spectrum_final.pt",
}


def add_lyapunov_arguments(parser: argparse.ArgumentParser) -> None:
    lyap = parser.add_argument_group("Lyapunov spectra")
    lyap.add_argument("--readouts", type=int, required=True, help="exact (SVD) readouts")
    lyap.add_argument("--quantiles", type=float, nargs="+", required=True, help="quantiles")
    lyap.add_argument(
        "--neutral-tol", type=float, required=True, help="|lambda t| below this counts as 0"
    )
    lyap.add_argument(
        "--reorth-every", type=int, required=True, help="most steps between QR foldings"
    )


def make_trainer(
    settings: RunSettings,
    data: str | Path,
    args: argparse.Namespace,
    checkpoint: str | Path | None = None,
    progress: bool = True,
) -> tuple[train.Trainer, TangentHook, torch.Tensor]:
    """A training run with a tangent map attached, and the run's initial parameters."""
    if not settings.spectrum:
        raise ValueError(f"run {settings.run_id}: the tangent map needs spectrum: true")
    trainer = train.Trainer(settings, data, checkpoint=checkpoint, progress=progress)
    theta0 = flat_params(trainer.model).to(torch.float64).cpu()
    hook = TangentHook(
        n=theta0.numel(),
        settings=settings,
        total_steps=trainer.total_steps,
        readouts=args.readouts,
        quantiles=args.quantiles,
        neutral_tol=args.neutral_tol,
        reorth_every=args.reorth_every,
        device=trainer.device,
    )
    trainer.hooks["tangent"] = hook
    return trainer, hook, theta0


def write_spectrum(path, final: LyapunovReadout, neutral_tol: float, theta0, run_id: str) -> None:
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
        },
        path,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.lyapunov",
        description="Train one run with its tangent map; write the training outputs and the "
        "finite-time Lyapunov spectra.",
    )
    RunSettings.add_arguments(parser)
    add_lyapunov_arguments(parser)
    train.add_io_arguments(parser, train.OUTPUTS + tuple(LYAP_OUTPUTS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        settings = RunSettings.from_namespace(args)
        trainer, hook, theta0 = make_trainer(
            settings, args.data, args, args.checkpoint, not args.no_progress
        )
        result = trainer.run()
    except (train.TrainingError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    final = hook.last
    exps, subs = hook.tables()
    write_parquet(exps, args.out_exponents)
    write_parquet(subs, args.out_subspaces)
    write_spectrum(args.out_spectrum, final, args.neutral_tol, theta0, settings.run_id)
    result.info["lyapunov"] = {
        "readout_steps": sorted(hook.exact_steps),
        "tangent_seconds": hook.seconds["tangent"],
        "readout_seconds": hook.seconds["readout"],
        "final_method": final.method,
        "reorth_every": args.reorth_every,
    }
    outputs = {k: getattr(args, f"out_{k}") for k in train.OUTPUTS}
    train.write_outputs(result, settings, trainer.device, outputs)
    if trainer.checkpoint is not None:
        trainer.checkpoint.unlink(missing_ok=True)
    pos, neg = classify(final.exponents, final.t, args.neutral_tol)
    print(
        f"{settings.run_id}: lambda_1 {final.exponents[0]:.4e}, lambda_N "
        f"{final.exponents[-1]:.4e} at t={final.t} ({final.method}); {int(pos.sum())} chaotic, "
        f"{int(neg.sum())} non-chaotic",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
