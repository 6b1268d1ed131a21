"""The tangent map following a training run step by step (App. C.1, C.2).

:class:`TangentHook` is a :class:`chaosgd.runs.trainer.StepHook`: after every step it advances a
:class:`chaosgd.engine.tangent_map.TangentMap` with that step's Hessian eigenpairs (restricted to the kept
ones while CGD prunes), Y ← (I − ηH)Y or the momentum recursion (the paper's Eq. 8), and at
the readout steps reads it out exactly: the exponents' summary (App. C.1; log-spaced early
readouts resolve the start) and, as the reference code measured App. C.2, the similarity of the
chaotic, edge and non-chaotic Lyapunov subspaces of every later readout to those fixed at the
reference times t₀, with random baselines (:func:`chaosgd.engine.exponents.stability_row`).
Between the readouts it records λ1(t) = ln σ1(Y(t))/t at every step, the way the paper plots
the exponents (App. C.1, Fig. 3b's bound): :meth:`chaosgd.engine.tangent_map.TangentMap.top_singular`,
warm-started from the previous step's vector, O(N²) a product and exact to ~1e-10. λN per step
would need solves with Q (O(N³)): it stays at the readouts.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd
import torch

from chaosgd.engine.eigenpairs import Eigenpairs
from chaosgd.engine.exponents import stability_row, summary
from chaosgd.engine.graded_svd import LyapunovReadout
from chaosgd.engine.tangent_map import TangentMap
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.schedule import anchor_steps, readout_steps
from chaosgd.planning.tables import LAMBDA1, SUBSPACES


def advance(
    tangent: TangentMap, eig: Eigenpairs, pruned: torch.Tensor | None, lr: float, momentum: float
) -> None:
    """One step of ``tangent`` with the step's eigenpairs less the null ones and those CGD
    ``pruned`` (SGD, or the momentum recursion), through the eigenpairs' basis where they
    have one (the MLP's range basis: a cheaper update, the same map)."""
    keep = eig.nonzero_mask()
    if pruned is not None and pruned.numel():
        keep[pruned.to(keep.device)] = False
    values, vectors = eig.values[keep], eig.vectors[:, keep]
    structure = {}
    if eig.basis is not None and eig.coords is not None:
        structure = {"basis": eig.basis, "coords": eig.coords[:, keep]}
    if momentum:
        tangent.step_momentum(lr, momentum, values, vectors, **structure)
    else:
        tangent.step_sgd(lr, values, vectors, **structure)


class TangentHook:
    """Follows a :class:`chaosgd.runs.trainer.Trainer` with a tangent map and reads it out."""

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
        early_readouts: int = 0,
        anchors: tuple[int, ...] = (),
        lambda1_every: int = 1,
    ):
        if not isinstance(lambda1_every, int) or lambda1_every < 1:
            raise ValueError(f"lambda1_every must be a positive int, got {lambda1_every!r}")
        self.s = settings
        # the hook's settings that shape its outputs, for the checkpoint's fingerprint
        self._settings = {
            "readouts": int(readouts),
            "quantiles": [float(q) for q in quantiles],
            "neutral_tol": float(neutral_tol),
            "reorth_every": int(reorth_every),
            "early_readouts": int(early_readouts),
            "anchors": [int(a) for a in anchors],
            "lambda1_every": int(lambda1_every),
        }
        self.lambda1_every = int(lambda1_every)
        self.tangent = self._make_tangent(n, reorth_every, device)
        self.anchors = anchor_steps(anchors, total_steps) if anchors else []
        self.exact_steps = set(readout_steps(total_steps, readouts, early_readouts, self.anchors))
        self.quantiles = list(quantiles)
        self.neutral_tol = neutral_tol
        self.rows: list[dict] = []
        self.subspace_rows: list[dict] = []
        # the Lyapunov bases (vectors, exponents) fixed at the anchors t₀ so far
        self.references: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.last: LyapunovReadout | None = None
        self.seconds = {"tangent": 0.0, "readout": 0.0, "lambda1": 0.0}
        # λ1 at every step (LAMBDA1's columns), and the vector that warm-starts the next step's
        # Krylov iteration: both checkpointed, so a resumed run's table is the same bytes
        self.lambda1: dict[str, list] = {"step": [], "lambda_1": [], "iterations": []}
        self.top_vector: torch.Tensor | None = None
        # each readout's seconds: timings stay out of the tables, so a resumed run's are identical
        self.readout_seconds: list[float] = []

    # the exponents table's method of a readout: the readout's own ("svd", "svd_deflated")
    METHOD_PREFIX = ""

    def _make_tangent(self, n: int, reorth_every: int, device: torch.device):
        return TangentMap(n, torch.float64, device, reorth_every=reorth_every)

    def checkpoint_settings(self) -> dict:
        """The Lyapunov settings that shape the outputs (readouts, quantiles, neutral_tol,
        reorth_every, early readouts, anchors), for the trainer's checkpoint fingerprint."""
        return dict(self._settings)

    def after_step(self, step: int, eig: Eigenpairs | None, pruned: torch.Tensor | None) -> None:
        """Advance the tangent map by one step with its Hessian eigenpairs; read it out if due.

        The eigenpairs CGD ``pruned`` and the null ones are left out: the map follows the update
        that was actually taken (SGD, or the momentum recursion with momentum).
        """
        if eig is None:
            raise RuntimeError("the tangent map needs the Hessian eigenpairs of every step")
        t0 = time.perf_counter()
        advance(self.tangent, eig, pruned, self.s.lr, self.s.momentum)
        t1 = time.perf_counter()
        self.seconds["tangent"] += t1 - t0
        t = self.tangent.t
        # every lambda1_every-th step and at the exact readouts, which check it; each costs
        # ~10-30 passes over the N×N factors, several times the step's own update
        if t % self.lambda1_every == 0 or t in self.exact_steps:
            top = self.tangent.top_singular(self.top_vector)
            self.top_vector = top.vector
            self.lambda1["step"].append(t)
            self.lambda1["lambda_1"].append(top.log_sigma / t)
            self.lambda1["iterations"].append(top.iterations)
            self.seconds["lambda1"] += time.perf_counter() - t1
        if t in self.exact_steps:
            self._exact(t)

    def _exact(self, t: int) -> None:
        t0 = time.perf_counter()
        out = self.tangent.readout()
        if out.vectors is None:
            raise RuntimeError(f"step {t}: the exact readout failed ({out.method})")
        for anchor, (ref_vectors, ref_exponents) in sorted(self.references.items()):
            # one stream per (run, t₀, t): a resumed run draws the same random index sets
            rng = np.random.default_rng([self.s.seed, anchor, t])
            self.subspace_rows.append(
                stability_row(
                    ref_vectors,
                    ref_exponents,
                    anchor,
                    out.vectors,
                    out.exponents,
                    t,
                    self.neutral_tol,
                    rng,
                )
            )
        if t in self.anchors:
            self.references[t] = (np.ascontiguousarray(out.vectors), out.exponents.copy())
        self.last = out
        seconds = time.perf_counter() - t0
        self.seconds["readout"] += seconds
        self.readout_seconds.append(seconds)
        self.rows.append(
            {
                "step": t,
                "method": self.METHOD_PREFIX + out.method,
                **summary(out.exponents, t, self.neutral_tol, self.quantiles),
                "log_range": out.log_range,
            }
        )
        print(
            f"step {t}: readout ({self.METHOD_PREFIX}{out.method}) in {seconds:.1f} s: "
            f"lambda_1 {out.exponents[0]:.3e}, lambda_N {out.exponents[-1]:.3e}",
            file=sys.stderr,
        )

    # checkpoints: everything as tensors and plain lists
    def state_dict(self) -> dict:
        """The hook's state for a checkpoint: the tangent map, the rows so far and the last
        readout's subspaces, all as tensors and plain lists.
        """
        references = {
            str(t0): {"vectors": torch.from_numpy(v), "exponents": torch.from_numpy(e)}
            for t0, (v, e) in self.references.items()
        }
        return {
            "tangent": self.tangent.state_dict(),
            "rows": self.rows,
            "subspace_rows": self.subspace_rows,
            "references": references,
            "seconds": self.seconds,
            "readout_seconds": self.readout_seconds,
            "lambda1": {
                "step": torch.tensor(self.lambda1["step"], dtype=torch.int64),
                "lambda_1": torch.tensor(self.lambda1["lambda_1"], dtype=torch.float64),
                "iterations": torch.tensor(self.lambda1["iterations"], dtype=torch.int64),
            },
            "top_vector": (
                torch.empty(0, dtype=torch.float64)
                if self.top_vector is None
                else self.top_vector.clone()
            ),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore the state written by :meth:`state_dict`."""
        self.tangent.load_state_dict(state["tangent"])
        self.rows = state["rows"]
        self.subspace_rows = state["subspace_rows"]
        # the checkpoint is loaded onto the run's device; the reference bases live on the CPU
        self.references = {
            int(t0): (ref["vectors"].cpu().numpy(), ref["exponents"].cpu().numpy())
            for t0, ref in state["references"].items()
        }
        self.seconds = state["seconds"]
        self.readout_seconds = list(state["readout_seconds"])
        self.lambda1 = {k: v.tolist() for k, v in state["lambda1"].items()}
        vector = state["top_vector"]
        self.top_vector = vector.to(self.tangent.device) if vector.numel() else None
        self.seconds.setdefault("lambda1", 0.0)

    def lambda1_table(self) -> pd.DataFrame:
        """The ``lambda1`` table: λ1 and the Krylov products it took, at every step so far."""
        return pd.DataFrame(
            {
                LAMBDA1.step: np.asarray(self.lambda1["step"], dtype=np.int64),
                LAMBDA1.lambda_1: np.asarray(self.lambda1["lambda_1"], dtype=np.float64),
                LAMBDA1.iterations: np.asarray(self.lambda1["iterations"], dtype=np.int32),
            }
        )

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The ``exponents`` and ``subspaces`` tables of the readouts so far (counts as int32)."""
        exps = pd.DataFrame(self.rows)
        subs = pd.DataFrame(self.subspace_rows, columns=list(SUBSPACES.columns))
        for df in (exps, subs):
            for col in df.columns:
                if col.startswith(("n_", "dim")):
                    df[col] = df[col].astype(np.int32)
                if col in ("step", "t0"):
                    df[col] = df[col].astype(np.int64)
        return exps, subs
