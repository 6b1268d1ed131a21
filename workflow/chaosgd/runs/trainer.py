"""Training one run of SGD or CGD step by step: the library the train and lyapunov stages share.

:class:`Trainer` runs one configured run (:class:`chaosgd.planning.run_settings.RunSettings`): the seed fixes
the initialization and the batch order (:mod:`chaosgd.runs.data`), so the variants of one seed
differ only by their optimizer. Every step records the batch loss and
accuracy before the update, the gradient and update norms and, when the run needs the Hessian
spectrum, the curvature diagnostics (eigenvalue counts, extreme eigenvalues, gradient overlap
with the positive / negative eigenspaces, what CGD pruned), and at the evaluation steps the
nonzero eigenvalues themselves (App. B.2's distributions). :class:`StepHook` objects (the
Lyapunov tangent map) follow the run step by step and share its eigenpairs.

A checkpoint is written every ``checkpoint_every`` steps and, on SIGTERM or SIGINT, at the next
step boundary before the job exits (:mod:`chaosgd.runs.recovery`); a restarted job resumes from it
and ends with results identical to an uninterrupted run. A checkpoint of other settings, data or
code is not resumed, and an unreadable one is set aside. The job's outputs are written by
:mod:`chaosgd.runs.run_outputs`.
"""

from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from chaosgd.engine.cgd import CGD, spectrum_diagnostics, topk_diagnostics
from chaosgd.engine.curvature import hessian_eigenpairs, make_hvp
from chaosgd.engine.eigenpairs import Eigenpairs
from chaosgd.engine.models import (
    flat_params,
    hessian_structure,
    make_loss_fn,
)
from chaosgd.engine.topk_curvature import TopKCheckError, hessian_topk
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.schedule import eval_steps, run_steps, spectrum_steps, steps_per_epoch
from chaosgd.planning.tables import SPECTRA
from chaosgd.runs import recovery
from chaosgd.runs.data import batches, initial_model, load_data

# seeds of the per-run random streams, offset from the run's seed so that they never coincide
_SKETCH_STREAM = 7_919
_SELECTION_STREAM = 104_729


class TrainingError(RuntimeError):
    """A run cannot go on (non-finite values, no CUDA where demanded); the message says which."""


class StepHook(Protocol):
    """Something that follows the training step by step (e.g. the Lyapunov tangent map).

    A hook whose own settings shape outputs also defines ``checkpoint_settings() -> dict``
    (plain values): they join the checkpoint's fingerprint, so that a checkpoint written with
    other hook settings is not resumed. A hook with a true ``needs_hvp`` attribute is called
    with ``hvp=``: the batched Hessian-vector products of the step's minibatch loss at the
    step's parameters before the update (:func:`chaosgd.engine.curvature.make_hvp`), what a
    matrix-free tangent map advances by.
    """

    def after_step(self, step: int, eig: Eigenpairs | None, pruned: torch.Tensor | None) -> None:
        """Called after the update of ``step``; ``pruned`` indexes the eigenpairs CGD removed
        (``None`` while CGD is not pruning)."""

    def state_dict(self) -> dict:
        """The hook's state, saved in the trainer's checkpoint."""

    def load_state_dict(self, state: dict) -> None:
        """Restore the state returned by :meth:`state_dict` when a run resumes."""


def select_device(request: str) -> torch.device:
    """The torch device for a run's ``device`` setting (``auto``: CUDA when visible)."""
    if request == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if request == "cuda" and not available:
        raise TrainingError(
            f"the config demands CUDA (device: cuda) but no GPU is visible to PyTorch on "
            f"{socket.gethostname()} (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda}); use device: auto or cpu, or run on a GPU node"
        )
    return torch.device("cuda" if available else "cpu")


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split (in chunks)."""
    total_loss, correct = 0.0, 0
    for start in range(0, len(y), 4096):
        logits = model(x[start : start + 4096])
        target = y[start : start + 4096]
        total_loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(1) == target).sum())
    return total_loss / len(y), correct / len(y)


def _flat_grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


@dataclass
class Result:
    """A finished run: the per-step and per-epoch tables, the Hessian's nonzero eigenvalues at
    the evaluation steps (no rows without the spectrum), the final state dict (CPU) and ``info``
    (steps, timings, sample counts) for ``run.json``.
    """

    steps: pd.DataFrame
    epochs: pd.DataFrame
    spectra: pd.DataFrame
    state_dict: dict
    info: dict


class Trainer:
    """One run, step by step; resumable from its checkpoint."""

    def __init__(
        self,
        settings: RunSettings,
        data_path: str | Path,
        hooks: dict[str, StepHook] | None = None,
        checkpoint: str | Path | None = None,
        progress: bool = True,
        stage: str = "train",
    ):
        self.s = settings
        # the stage whose code the checkpoint's fingerprint digests, and the input it digests
        self.stage = stage
        self.data_path = Path(data_path)
        self._fingerprint_cache: dict | None = None
        self.variant = settings.parsed_variant
        self.device = select_device(settings.device)
        self.data = load_data(data_path, settings, self.device)
        self.hooks = hooks or {}
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.progress = progress

        self.model = initial_model(settings, settings.dtype, self.device)
        opt_kwargs = dict(lr=settings.lr, momentum=settings.momentum)
        if self.variant.optimizer == "sgd":
            self.optimizer = CGD(self.model.parameters(), prune_set=None, **opt_kwargs)
        else:
            self.selection_gen = torch.Generator(self.device).manual_seed(
                settings.seed + _SELECTION_STREAM
            )
            self.optimizer = CGD(
                self.model.parameters(),
                prune_set=self.variant.prune_set,
                selection=self.variant.selection,
                k=self.variant.k,
                prune_start=settings.onset,
                noise=self.variant.noise,
                noise_scale=settings.noise_scale or None,
                generator=self.selection_gen,
                **opt_kwargs,
            )
        self.sketch_gen = torch.Generator(self.device).manual_seed(settings.seed + _SKETCH_STREAM)

        n = len(self.data.train_y)
        self.steps_per_epoch = steps_per_epoch(n, settings.batch_size)
        self.total_steps = run_steps(n, settings.batch_size, settings.epochs)
        schedule = (self.steps_per_epoch, settings.epochs, settings.evals_per_epoch)
        self.eval_points = set(eval_steps(*schedule))
        self.spectrum_points = set(spectrum_steps(*schedule))
        self.step = 0
        self.rows: dict[str, list] = {}
        self.evals: dict[str, list] = {}
        # the kept eigenvalues, step by step; in the checkpoint, so a resumed run keeps them all
        self.spectra: dict[str, list] = {SPECTRA.step: [], SPECTRA.eigenvalue: []}
        self.sketch_hint: int | None = None
        # curvature "topk": the previous step's eigenvectors (N×m), the next step's start
        self.topk_start: torch.Tensor | None = None
        self.curvature_seconds = 0.0
        self.elapsed = 0.0
        self.resumed_from = None

    # -- records ------------------------------------------------------------------------

    @staticmethod
    def _append(table: dict[str, list], row: dict[str, Any]) -> None:
        if not table:
            table.update({k: [] for k in row})
        for k, v in row.items():
            table[k].append(v)

    def _evaluate(self) -> None:
        self.model.eval()
        train_loss, train_acc = evaluate(self.model, self.data.train_x, self.data.train_y)
        val_loss, val_acc = evaluate(self.model, self.data.test_x, self.data.test_y)
        self.model.train()
        # finite parameters can still overflow the loss of some image (the batch losses only
        # see 8 of them): an infinite loss in epochs.parquet would pass for a result downstream
        self._fail_if_not_finite("training-set loss (evaluation)", torch.tensor(train_loss))
        self._fail_if_not_finite("validation loss (evaluation)", torch.tensor(val_loss))
        self._append(
            self.evals,
            {
                "step": self.step,
                "epoch": self.step / self.steps_per_epoch,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
            },
        )

    # -- checkpoints --------------------------------------------------------------------

    def _fingerprint(self) -> dict:
        """What a checkpoint must match to continue this run: the settings that shape its
        outputs (``checkpoint_every`` does not), the hooks' own (``checkpoint_settings``), the
        dataset's digest, and the code's (:func:`chaosgd.runs.recovery.fingerprint`). Computed once,
        when first needed, so that hooks attached after construction count."""
        if self._fingerprint_cache is None:
            run = {k: v for k, v in self.s.as_dict().items() if k != "checkpoint_every"}
            hooks = {
                name: hook.checkpoint_settings()
                for name, hook in sorted(self.hooks.items())
                if hasattr(hook, "checkpoint_settings")
            }
            settings = {"run": run, "hooks": hooks, "data": recovery.input_digest(self.data_path)}
            self._fingerprint_cache = recovery.fingerprint(settings, self.stage)
        return self._fingerprint_cache

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue identically: model, optimizer, random streams,
        tables so far, timings, the hooks' states, and the fingerprint (:meth:`_fingerprint`).
        """
        state = {
            "fingerprint": self._fingerprint(),
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sketch_gen": self.sketch_gen.get_state(),
            "rows": self.rows,
            "evals": self.evals,
            "spectra": self.spectra,
            "sketch_hint": -1 if self.sketch_hint is None else self.sketch_hint,
            # the warm start shapes the next result's rounding: a resumed run restarts from it
            "topk_start": torch.zeros(0) if self.topk_start is None else self.topk_start,
            "curvature_seconds": self.curvature_seconds,
            "elapsed": self.elapsed,
            "hooks": {name: hook.state_dict() for name, hook in self.hooks.items()},
        }
        if self.variant.optimizer == "cgd":
            state["selection_gen"] = self.selection_gen.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore the state written by :meth:`state_dict` (:meth:`try_resume` checks settings)."""
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        # generator states are CPU byte tensors even for CUDA generators, and the checkpoint is
        # loaded onto the run's device
        self.sketch_gen.set_state(state["sketch_gen"].cpu())
        if self.variant.optimizer == "cgd":
            self.selection_gen.set_state(state["selection_gen"].cpu())
        self.rows = state["rows"]
        self.evals = state["evals"]
        self.spectra = state["spectra"]
        self.sketch_hint = None if state["sketch_hint"] < 0 else int(state["sketch_hint"])
        start = state["topk_start"]
        self.topk_start = start.to(self.device) if start.numel() else None
        self.curvature_seconds = float(state["curvature_seconds"])
        self.elapsed = float(state["elapsed"])
        for name, hook in self.hooks.items():
            hook.load_state_dict(state["hooks"][name])

    def save_checkpoint(self) -> None:
        """Write the state to the checkpoint file atomically (no-op without a checkpoint path)."""
        if self.checkpoint is not None:
            recovery.save_checkpoint(self.state_dict(), self.checkpoint)

    def try_resume(self) -> bool:
        """Continue from the checkpoint if there is one of this very run (same settings, data
        and code); else start over, saying why in the log (:func:`chaosgd.runs.recovery.load_checkpoint`:
        an unreadable file is set aside). A checkpoint of this run whose content does not fit
        it is set aside too, and the job fails with :class:`TrainingError` (its state may be
        half restored): the rerun starts over."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return False
        state = recovery.load_checkpoint(self.checkpoint, self._fingerprint(), self.device)
        if state is None:
            return False
        try:
            self.load_state_dict(state)
        except Exception as exc:  # a state of the right fingerprint but the wrong shape
            moved = recovery.set_aside(self.checkpoint)
            raise TrainingError(
                f"checkpoint {self.checkpoint} of run {self.s.run_id} does not fit it "
                f"({type(exc).__name__}: {exc}); set aside as {moved}, a rerun starts over"
            ) from None
        self.resumed_from = self.step
        print(f"resuming {self.s.run_id} from step {self.step}", file=sys.stderr)
        return True

    # -- the step -----------------------------------------------------------------------

    def _fail_if_not_finite(self, what: str, value: torch.Tensor | float) -> None:
        """Raise :class:`TrainingError` if ``value`` holds NaN or inf: the run diverged.

        The message names the run, the step and the setting to change, so that a diverged run
        fails its job instead of writing NaN or inf that the figures and claims would read.
        """
        value = torch.as_tensor(value)
        if bool(torch.isfinite(value).all()):
            return
        epoch = self.step // self.steps_per_epoch
        shown = f" ({value.item():g})" if value.numel() == 1 else ""
        momentum = f", or momentum (now {self.s.momentum:g})" if self.s.momentum else ""
        raise TrainingError(
            f"run {self.s.run_id}: non-finite {what}{shown} at step {self.step} (epoch {epoch}): "
            f"training diverged; lower training.lr (now {self.s.lr:g}; an experiment's own lr "
            f"overrides it){momentum}"
        )

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Take one training step on batch (``x``, ``y``) and record its row.

        Records the batch loss and accuracy before the update, the gradient and update norms and,
        when the run needs the spectrum, the Hessian diagnostics; the optimizer (SGD or CGD) uses
        the same eigenpairs, and the hooks follow with them. Raises :class:`TrainingError` on
        non-finite values.
        """
        model, s = self.model, self.s
        self.optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        self._fail_if_not_finite("loss", loss.detach())
        loss.backward()
        row: dict[str, Any] = {
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "loss": loss.item(),
            "acc": (logits.argmax(1) == y).float().mean().item(),
        }
        grad = _flat_grad(model)
        self._fail_if_not_finite("gradient", grad)
        row["grad_norm"] = grad.norm().item()
        eig = None
        if s.needs_spectrum:
            t0 = time.perf_counter()
            theta = flat_params(model).to(torch.float64)
            if s.curvature == "topk":
                eig = self._topk(make_loss_fn(model, x, y), theta)
            else:
                eig = hessian_eigenpairs(
                    make_loss_fn(model, x, y),
                    theta,
                    method=s.curvature,
                    generator=self.sketch_gen,
                    sketch_hint=self.sketch_hint,
                    **hessian_structure(model, x, y),
                )
                self.sketch_hint = eig.rank
            self.curvature_seconds += time.perf_counter() - t0
            self._fail_if_not_finite("Hessian eigenvalue", eig.values)
            if s.curvature == "topk":
                row.update(topk_diagnostics(grad.to(torch.float64), eig, s.lr))
            else:
                row.update(spectrum_diagnostics(grad.to(torch.float64), eig, s.lr))
            row["curvature_method"] = eig.method
            # top-k holds k eigenvalues of the set, not the spectrum App. B.2 draws
            if self.step in self.spectrum_points and s.curvature != "topk":
                kept = eig.values[eig.nonzero_mask()].tolist()
                self.spectra[SPECTRA.step] += [self.step] * len(kept)
                self.spectra[SPECTRA.eigenvalue] += kept
        hvp = None
        if any(getattr(hook, "needs_hvp", False) for hook in self.hooks.values()):
            # at the parameters before the update: the Jacobian of this step's map
            at = theta if s.needs_spectrum else flat_params(model).to(torch.float64)
            hvp = make_hvp(make_loss_fn(model, x, y), at)
        before = flat_params(model)
        self.optimizer.step(eigenpairs=eig)
        pruned = self.optimizer.last_pruned
        row["n_pruned"] = int(pruned.numel()) if pruned is not None else 0
        after = flat_params(model)
        self._fail_if_not_finite("parameter", after)
        row["update_norm"] = (after - before).norm().item()
        # finite gradients and parameters can still give an infinite norm (it overflows in the
        # training dtype) or eigenvalue diagnostic: every number written must be finite
        for key, value in row.items():
            if isinstance(value, float):
                self._fail_if_not_finite(key, value)
        for hook in self.hooks.values():
            if getattr(hook, "needs_hvp", False):
                hook.after_step(self.step, eig, pruned, hvp=hvp)
            else:
                hook.after_step(self.step, eig, pruned)
        self._append(self.rows, row)
        self.step += 1

    def _topk(self, loss_fn, theta: torch.Tensor) -> Eigenpairs:
        """The k eigenpairs of the prune set that a ``top_k`` CGD variant prunes (curvature
        ``topk``; the planner allows no other run to use it), certified, warm-started from the
        previous step's; a failed certificate stops the run, naming the step."""
        variant = self.variant
        try:
            eig = hessian_topk(
                loss_fn,
                theta,
                variant.k,
                variant.prune_set,
                lr=self.s.lr,
                warm_start=self.topk_start,
                generator=self.sketch_gen,
            )
        except TopKCheckError as exc:
            raise TrainingError(
                f"run {self.s.run_id}, step {self.step}: the top-{variant.k} eigenpairs of the "
                f"{variant.prune_set} set could not be certified ({exc}); the prune set of this "
                "step is not known to the stated tolerance"
            ) from None
        self.topk_start = eig.vectors if eig.vectors.shape[1] else None
        return eig

    def run(self) -> Result:
        """Train to the end (resuming if possible) and return the results.

        While it runs, SIGTERM and SIGINT stop it at the next step boundary: the checkpoint is
        written and :class:`chaosgd.runs.recovery.Interrupted` raised (the job's exit status and
        last log line say which signal). The previous signal handlers are restored on return.
        """
        with recovery.stop_on_signals() as stop:
            self.try_resume()
            if self.step == 0 and not self.evals:
                self._evaluate()
            start_step, t_start = self.step, time.perf_counter()
            bar = tqdm(
                total=self.total_steps,
                initial=self.step,
                desc=self.s.run_id,
                file=sys.stderr,
                mininterval=10,
                ascii=True,
                disable=not self.progress,
            )
            for _, idx in batches(len(self.data.train_y), self.s, start=self.step):
                idx = idx.to(self.device)
                self.train_step(self.data.train_x[idx], self.data.train_y[idx])
                if self.step in self.eval_points:
                    self._evaluate()
                bar.update(1)
                if self.step % 100 == 0:
                    bar.set_postfix(loss=f"{self.rows['loss'][-1]:.3f}", refresh=False)
                # a stop after the last step just lets the run finish: nothing is left to resume
                due = self.step % self.s.checkpoint_every == 0 or stop
                if due and self.step < self.total_steps:
                    self.elapsed += time.perf_counter() - t_start
                    t_start = time.perf_counter()
                    self.save_checkpoint()
                    if stop:
                        bar.close()
                        raise recovery.Interrupted(
                            stop.signum,
                            f"run {self.s.run_id} after step {self.step} of {self.total_steps}",
                        )
            bar.close()
            self.elapsed += time.perf_counter() - t_start
        done = self.step - start_step
        return Result(
            steps=self._frame(self.rows),
            epochs=self._frame(self.evals),
            spectra=pd.DataFrame(
                {
                    SPECTRA.step: np.asarray(self.spectra[SPECTRA.step], dtype=np.int64),
                    SPECTRA.eigenvalue: np.asarray(
                        self.spectra[SPECTRA.eigenvalue], dtype=np.float64
                    ),
                }
            ),
            state_dict={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            info={
                "steps": self.total_steps,
                "steps_this_job": done,
                "resumed_from_step": self.resumed_from,
                "wall_seconds": self.elapsed,
                "steps_per_second": self.total_steps / self.elapsed if self.elapsed else None,
                "curvature_seconds": self.curvature_seconds,
                "steps_per_epoch": self.steps_per_epoch,
                **self.data.info,
            },
        )

    @staticmethod
    def _frame(table: dict[str, list]) -> pd.DataFrame:
        df = pd.DataFrame(table)
        for col in df.columns:
            if df[col].dtype == np.int64 and col not in ("step",):
                df[col] = df[col].astype(np.int32)
        return df
