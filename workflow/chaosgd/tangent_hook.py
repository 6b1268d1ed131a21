"""The tangent map following a training run step by step (App. C.1, C.2).

:class:`TangentHook` is a :class:`chaosgd.training.StepHook`: after every step it advances a
:class:`chaosgd.tangent.TangentMap` with that step's Hessian eigenpairs (restricted to the kept
ones while CGD prunes), Y ← (I − ηH)Y or the momentum recursion (the paper's Eq. 8), and at
the readout steps reads it out exactly (a Jacobi SVD): the exponents' summary and the
similarity of the chaotic / non-chaotic Lyapunov subspaces to the previous readout's.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
import torch

from chaosgd.curvature import Eigenpairs
from chaosgd.exponents import classify, readout_steps, subspace_similarity, summary
from chaosgd.settings import RunSettings
from chaosgd.tangent import LyapunovReadout, TangentMap


class TangentHook:
    """Follows a :class:`chaosgd.training.Trainer` with a tangent map and reads it out."""

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
        """Advance the tangent map by one step with its Hessian eigenpairs; read it out if due.

        The eigenpairs CGD ``pruned`` and the null ones are left out: the map follows the update
        that was actually taken (SGD, or the momentum recursion with momentum).
        """
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
        """The hook's state for a checkpoint: the tangent map, the rows so far and the last
        readout's subspaces, all as tensors and plain lists.
        """
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
        """Restore the state written by :meth:`state_dict`."""
        self.tangent.load_state_dict(state["tangent"])
        self.rows = state["rows"]
        self.subspace_rows = state["subspace_rows"]
        prev = state["previous"]
        self.previous = None if prev is None else {k: v.numpy() for k, v in prev.items()}
        self.previous_step = int(state["previous_step"])
        self.seconds = state["seconds"]

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The ``exponents`` and ``subspaces`` tables of the readouts so far (counts as int32)."""
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
