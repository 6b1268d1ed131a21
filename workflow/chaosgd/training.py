"""Training one run of SGD or CGD step by step: the library the train and lyapunov stages share.

:class:`Trainer` runs one configured run (:class:`chaosgd.settings.RunSettings`): the seed fixes
the initialization (:func:`initial_model`) and the batch order (:func:`epoch_order`), so the
variants of one seed differ only by their optimizer. Every step records the batch loss and
accuracy before the update, the gradient and update norms and, when the run needs the Hessian
spectrum, the curvature diagnostics (eigenvalue counts, extreme eigenvalues, gradient overlap
with the positive / negative eigenspaces, what CGD pruned). :class:`StepHook` objects (the
Lyapunov tangent map) follow the run step by step and share its eigenpairs.

A checkpoint is written every ``checkpoint_every`` steps and, on SIGTERM or SIGINT, at the next
step boundary before the job exits (:mod:`chaosgd.recovery`); a restarted job resumes from it
and ends with results identical to an uninterrupted run. A checkpoint of other settings, data or
code is not resumed, and an unreadable one is set aside. :func:`write_outputs` writes a run's
training outputs (:data:`OUTPUT_FILES`): ``steps.parquet``, ``epochs.parquet`` (full training-set
and validation loss / accuracy, at the start and ``evals_per_epoch`` times per epoch),
``final.pt`` (the final state dict) and ``run.json`` (settings, versions, device, timings).
Timings live in ``run.json`` only, so that the Parquet files of a rerun are identical.
"""

from __future__ import annotations

import argparse
import math
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from chaosgd import __version__, recovery
from chaosgd.cgd import CGD, spectrum_diagnostics
from chaosgd.curvature import Eigenpairs, hessian_eigenpairs
from chaosgd.io import UnreadableFile, load_tensors, save_tensors, write_json, write_parquet
from chaosgd.models import (
    INPUT_SIDE,
    build_model,
    flat_params,
    hessian_structure,
    make_loss_fn,
)
from chaosgd.settings import RunSettings

# seeds of the per-run random streams, offset from the run's seed so that they never coincide
_SKETCH_STREAM = 7_919
_SELECTION_STREAM = 104_729


class TrainingError(RuntimeError):
    """A run cannot go on (non-finite values, no CUDA where demanded); the message says which."""


class StepHook(Protocol):
    """Something that follows the training step by step (e.g. the Lyapunov tangent map).

    A hook whose own settings shape outputs also defines ``checkpoint_settings() -> dict``
    (plain values): they join the checkpoint's fingerprint, so that a checkpoint written with
    other hook settings is not resumed.
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


@dataclass
class Data:
    """A prepared dataset on the run's device: images (training dtype) and int64 labels of the
    training and test splits; sample and per-class counts in ``info``.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    info: dict = field(default_factory=dict)


def _subset(n: int, size: int, generator: torch.Generator) -> torch.Tensor | None:
    if size == 0 or size >= n:
        return None
    return torch.randperm(n, generator=generator)[:size].sort().values


# a damaged prepared dataset is remade by the datasets stage from its verified sources
_REPREPARE = "delete it and rerun to prepare it again"
_SPLITS = ("train_x", "train_y", "test_x", "test_y")


def _check_data(blob: dict, path: str | Path) -> None:
    """Raise :class:`chaosgd.io.UnreadableFile` unless ``blob`` holds what the datasets stage
    writes: N×1×16×16 finite float images and N int64 labels in 0..9 per split."""
    side = INPUT_SIDE
    for split in ("train", "test"):
        x, y = blob[f"{split}_x"], blob[f"{split}_y"]
        if not (torch.is_tensor(x) and torch.is_tensor(y)):
            problem = f"{split}_x and {split}_y must be tensors"
        elif not x.is_floating_point() or tuple(x.shape[1:]) != (1, side, side):
            problem = f"{split}_x is {x.dtype} {tuple(x.shape)}, expected float N×1×{side}×{side}"
        elif y.dtype != torch.int64 or y.dim() != 1 or len(y) != len(x) or len(y) == 0:
            problem = (
                f"{split}_y is {y.dtype} {tuple(y.shape)}, expected {len(x)} int64 labels "
                f"(one per image of {split}_x)"
            )
        elif int(y.min()) < 0 or int(y.max()) > 9:
            problem = f"{split}_y holds labels outside 0..9 ({int(y.min())}..{int(y.max())})"
        elif not bool(torch.isfinite(x).all()):
            problem = f"{split}_x holds non-finite pixels"
        else:
            continue
        raise UnreadableFile(path, problem, _REPREPARE)


def load_data(path: str | Path, settings: RunSettings, device: torch.device) -> Data:
    """The prepared dataset, subsampled as configured, on ``device`` in the training dtype.

    Raises :class:`chaosgd.io.UnreadableFile` naming the file when it is missing, damaged or
    not a prepared dataset.
    """
    blob = load_tensors(path, keys=_SPLITS, remedy=_REPREPARE)
    _check_data(blob, path)
    gen = torch.Generator().manual_seed(settings.subset_seed)
    parts = {}
    for split, size in (("train", settings.train_size), ("test", settings.test_size)):
        x, y = blob[f"{split}_x"], blob[f"{split}_y"]
        idx = _subset(len(y), size, gen)
        if idx is not None:
            x, y = x[idx], y[idx]
        parts[f"{split}_x"] = x.to(device=device, dtype=getattr(torch, settings.dtype))
        parts[f"{split}_y"] = y.to(device)
    info = {
        "train_samples": int(len(parts["train_y"])),
        "test_samples": int(len(parts["test_y"])),
        "train_per_class": torch.bincount(parts["train_y"].cpu(), minlength=10).tolist(),
    }
    return Data(**parts, info=info)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The batch order of one epoch: a permutation fixed by (seed, epoch), on the CPU."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def initial_model(settings: RunSettings, dtype: str, device: torch.device) -> torch.nn.Module:
    """The run's model at initialization: PyTorch's default initialization under its seed."""
    torch.manual_seed(settings.seed)
    model = build_model(settings.model, settings.activation, settings.hidden)
    return model.to(device=device, dtype=getattr(torch, dtype))


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


def _eval_steps(steps_per_epoch: int, epochs: int, per_epoch: int) -> set[int]:
    """Steps after which the model is evaluated: 0 and per_epoch times per epoch."""
    points = {0}
    for e in range(epochs):
        for k in range(1, per_epoch + 1):
            points.add(e * steps_per_epoch + round(k * steps_per_epoch / per_epoch))
    return points


@dataclass
class Result:
    """A finished run: the per-step and per-epoch tables, the final state dict (CPU) and ``info``
    (steps, timings, sample counts) for ``run.json``.
    """

    steps: pd.DataFrame
    epochs: pd.DataFrame
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
        self.steps_per_epoch = math.ceil(n / settings.batch_size)
        self.total_steps = self.steps_per_epoch * settings.epochs
        self.eval_points = _eval_steps(
            self.steps_per_epoch, settings.epochs, settings.evals_per_epoch
        )
        self.step = 0
        self.rows: dict[str, list] = {}
        self.evals: dict[str, list] = {}
        self.sketch_hint: int | None = None
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
        dataset's digest, and the code's (:func:`chaosgd.recovery.fingerprint`). Computed once,
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
            "sketch_hint": -1 if self.sketch_hint is None else self.sketch_hint,
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
        self.sketch_hint = None if state["sketch_hint"] < 0 else int(state["sketch_hint"])
        self.curvature_seconds = float(state["curvature_seconds"])
        self.elapsed = float(state["elapsed"])
        for name, hook in self.hooks.items():
            hook.load_state_dict(state["hooks"][name])

    def save_checkpoint(self) -> None:
        """Write the state to the checkpoint file atomically (no-op without a checkpoint path)."""
        if self.checkpoint is not None:
            save_tensors(self.state_dict(), self.checkpoint)

    def try_resume(self) -> bool:
        """Continue from the checkpoint if there is one of this very run (same settings, data
        and code); else start over, saying why in the log (:func:`chaosgd.recovery.load_checkpoint`:
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
            diag = spectrum_diagnostics(grad.to(torch.float64), eig, s.lr)
            row.update(diag)
            row["curvature_method"] = eig.method
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
            hook.after_step(self.step, eig, pruned)
        self._append(self.rows, row)
        self.step += 1

    def run(self) -> Result:
        """Train to the end (resuming if possible) and return the results.

        While it runs, SIGTERM and SIGINT stop it at the next step boundary: the checkpoint is
        written and :class:`chaosgd.recovery.Interrupted` raised (the job's exit status and
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
            n = len(self.data.train_y)
            while self.step < self.total_steps:
                epoch, within = divmod(self.step, self.steps_per_epoch)
                order = epoch_order(n, self.s.seed, epoch)
                idx = order[within * self.s.batch_size : (within + 1) * self.s.batch_size]
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


def environment(device: torch.device) -> dict:
    """Versions, device, host and thread count the run used, for ``run.json``."""
    import matplotlib
    import scipy
    import snakemake

    return {
        "chaosgd": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
        "snakemake": snakemake.__version__,
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "host": socket.gethostname(),
        "threads": torch.get_num_threads(),
    }


def write_outputs(result: Result, settings: RunSettings, device: torch.device, out: dict) -> None:
    """Write the run's four outputs, run.json last (its presence marks a complete run)."""
    write_parquet(result.steps, out["steps"])
    write_parquet(result.epochs, out["epochs"])
    save_tensors(result.state_dict, out["final"])
    write_json(
        {
            "run_id": settings.run_id,
            "settings": settings.as_dict(),
            "result": result.info,
            "environment": environment(device),
        },
        out["info"],
    )


def add_io_arguments(parser: argparse.ArgumentParser, outputs: tuple[str, ...]) -> None:
    """Add the file options to ``parser``: the dataset, one ``--out-<name>`` per output, the
    checkpoint, torch threads and the progress bar.
    """
    io = parser.add_argument_group("files")
    io.add_argument("--data", required=True, help="prepared dataset (results/datasets/<name>.pt)")
    for name in outputs:
        io.add_argument(f"--out-{name}", required=True, help=f"output: {name}")
    io.add_argument("--checkpoint", default=None, help="resumable checkpoint file")
    io.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    io.add_argument("--no-progress", action="store_true", help="no progress bar")


OUTPUT_FILES = {
    "steps": "steps.parquet",
    "epochs": "epochs.parquet",
    "final": "final.pt",
    "info": "run.json",
}
OUTPUTS = tuple(OUTPUT_FILES)
