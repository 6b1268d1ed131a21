"""Lockstep training of many copies of one model: the perturbed ensembles' engine (Fig. 3a).

All members of one dtype train as one batched computation (:class:`LockstepSGD`), its step done
by one of two interchangeable backends (:mod:`chaosgd.runs.ensemble_backends`: ``func`` for any
model, ``mlp`` for the paper's MLP by hand).

:func:`run_ensemble` trains the reference and its perturbed copies (``chaosgd.runs.perturbations``)
with the reference's seed and batch order and records the distances ``‖θ_B(t) − θ_A(t)‖`` to
member 0 in float64, per parameter tensor, and the component along the initial direction;
:func:`time_single_model` times one model trained alone the ordinary way, for the cost ratio.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from chaosgd.engine.models import unflatten
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.schedule import record_steps, run_steps
from chaosgd.runs import recovery
from chaosgd.runs.data import Data, batches, initial_model
from chaosgd.runs.ensemble_backends import make_backend
from chaosgd.runs.perturbations import Member, initial_parameters, plan_members
from chaosgd.runs.trainer import TrainingError

# steps between checks for non-finite losses: each check synchronizes with the device
_FINITE_CHECK_EVERY = 256


# -- the batched trainer ------------------------------------------------------------------------


class LockstepSGD:
    """M copies of one model trained by SGD / momentum in lockstep on the same batches.

    ``thetas`` (M×N, in ``models.flat_params`` order) gives the initial parameters; they are
    cast to ``model``'s dtype and device. The update is PyTorch's (``torch.optim.SGD`` with
    dampening 0, no weight decay): v ← μv + g (v = g on the first step), θ ← θ − ηv, as
    ``training.Trainer`` does; the same in-place kernels, applied to all members at once.
    """

    def __init__(
        self,
        model: nn.Module,
        thetas: Tensor,
        lr: float,
        momentum: float = 0.0,
        backend: str = "auto",
    ):
        p0 = next(model.parameters())
        self.dtype, self.device = p0.dtype, p0.device
        self.backend = make_backend(model, backend)
        self.lr, self.momentum = float(lr), float(momentum)
        if thetas.dim() != 2:
            raise ValueError(f"thetas must be M×N, got shape {tuple(thetas.shape)}")
        thetas = thetas.to(device=self.device, dtype=self.dtype)
        self.members = thetas.shape[0]
        self.params = {n: v.contiguous() for n, v in unflatten(model, thetas).items()}
        self.names = list(self.params)
        self.buffers: dict[str, Tensor] | None = None  # momentum buffers, after the first step

    def step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One update of every member on batch (x, y); returns the members' loss and accuracy
        on that batch *before* the update (M-vectors on the device, loss in the training dtype)."""
        loss, correct, self.buffers = self.backend.sgd_step(
            self.params, x, y, self.lr, self.momentum, self.buffers
        )
        return loss, correct.to(torch.float64) / x.shape[0]

    def flat(self) -> Tensor:
        """The members' parameters as one M×N tensor."""
        return torch.cat([self.params[n].reshape(self.members, -1) for n in self.names], dim=1)

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Mean cross-entropy and accuracy of every member over a whole split (float64 M-vectors)."""
        loss = torch.zeros(self.members, dtype=torch.float64, device=self.device)
        correct = torch.zeros(self.members, dtype=torch.float64, device=self.device)
        # bound the batched activations (members × chunk images) for the CNN's feature maps
        chunk = max(1, 16_384 // self.members)
        for start in range(0, len(y), chunk):
            logits = self.backend.logits(self.params, x[start : start + chunk])
            target = y[start : start + chunk]
            ce = F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), target.repeat(self.members), reduction="none"
            )
            loss += ce.view(self.members, -1).to(torch.float64).sum(1)
            correct += (logits.argmax(-1) == target).sum(1).to(torch.float64)
        return loss / len(y), correct / len(y)


class _DistanceRecorder:
    """Distances of members 1..M−1 to member 0, per parameter tensor, into preallocated buffers.

    Exact float64 arithmetic: float32 members are first cast into reused float64 buffers (exact);
    ``torch.cdist`` in its direct mode then forms ‖θ_B − θ_A‖ per parameter tensor without
    materializing the differences. The component along each member's initial direction is
    ⟨θ_B, d⟩ − ⟨θ_A, d⟩, one GEMM of all members against the few distinct directions (members
    of one strategy share theirs) instead of M−1 row-wise dot products; in float64 its
    cancellation error is ~1e-16·‖θ‖, far below any recorded ε. Everything stays on the device
    until the end, and the hot loop allocates nothing large.
    """

    def __init__(self, names: list[str], sizes: list[int], dirs: Tensor, records: int, device):
        self.names = names
        k = dirs.shape[0]
        distinct, which = torch.unique(dirs, dim=0, return_inverse=True)
        self.dirs_t = [c.T.contiguous().to(device) for c in torch.split(distinct, sizes, dim=1)]
        self.which = which.to(device).view(k, 1)
        self.buffers: dict[str, Tensor] = {}
        self.dist = torch.zeros(records, k, len(names), dtype=torch.float64, device=device)
        self.along = torch.zeros(records, k, dtype=torch.float64, device=device)
        self.loss = torch.full((records, k + 1), float("nan"), dtype=torch.float64, device=device)
        self.acc = torch.full((records, k + 1), float("nan"), dtype=torch.float64, device=device)

    def _float64(self, name: str, p: Tensor) -> Tensor:
        if p.dtype == torch.float64:
            return p
        buf = self.buffers.get(name)
        if buf is None:
            buf = self.buffers[name] = torch.empty(p.shape, dtype=torch.float64, device=p.device)
        return buf.copy_(p)

    def record(self, r: int, params: dict[str, Tensor]) -> None:
        proj = None
        for j, name in enumerate(self.names):
            p = params[name]
            p = self._float64(name, p.reshape(p.shape[0], -1))
            dist = torch.cdist(p[1:], p[:1], compute_mode="donot_use_mm_for_euclid_dist")
            self.dist[r, :, j] = dist.view(-1)
            proj = p @ self.dirs_t[j] if proj is None else proj.addmm_(p, self.dirs_t[j])
        self.along[r] = (proj[1:] - proj[0]).gather(1, self.which).view(-1)

    def batch(self, r: int, loss: Tensor, acc: Tensor) -> None:
        self.loss[r] = loss
        self.acc[r] = acc


@dataclass
class EnsembleResult:
    """What :func:`run_ensemble` returns for one dtype.

    ``distances``: one row per perturbed member × recorded step; ``members``: one row per member,
    reference first, with final training / validation loss and accuracy and final distance;
    ``final``: M×N final parameters (float64, CPU); ``info``: sizes, backend and timings.
    """

    distances: pd.DataFrame  # long: one row per perturbed member × recorded step
    members: pd.DataFrame  # one row per member, reference first
    final: Tensor  # M×N final parameters (float64, CPU)
    info: dict


def run_ensemble(
    settings: RunSettings,
    data: Data,
    theta0: Tensor,
    dirs: dict[str, Tensor],
    eps: list[float],
    dtype: str,
    device: torch.device,
    record_every: int = 1,
    backend: str = "auto",
    progress: bool = False,
    extra_steps=(),
    checkpoint=None,
    checkpoint_every: int = 0,
    stop: recovery.StopFlag | None = None,
    resume: dict | None = None,
) -> EnsembleResult:
    """Train the reference and its perturbed copies, one per direction of ``dirs`` (five, or
    three around a top-k Lyapunov run) × ε, in ``dtype`` as one lockstep ensemble.

    ``data`` must already be in ``dtype`` on ``device`` (``training.load_data``). States are
    recorded as :func:`record_steps` says.

    ``checkpoint(state)`` (if given) receives the ensemble's state (:func:`_state`) every
    ``checkpoint_every`` steps, at the end, and at the step boundary after ``stop`` rises,
    whereupon :class:`chaosgd.runs.recovery.Interrupted` is raised. ``resume`` (such a state)
    continues from it to the same results as an uninterrupted run; one that does not fit this
    ensemble raises :class:`chaosgd.runs.recovery.UnusableCheckpoint`.
    """
    members = plan_members(eps, strategies=tuple(dirs))
    thetas, dmat = initial_parameters(theta0, dirs, members)
    model = initial_model(settings, dtype, device)
    ens = LockstepSGD(model, thetas, settings.lr, settings.momentum, backend)
    n = len(data.train_y)
    total = run_steps(n, settings.batch_size, settings.epochs)
    steps = record_steps(total, record_every, extra_steps)
    slot = {s: r for r, s in enumerate(steps)}
    sizes = [p.numel() for p in model.parameters()]
    rec = _DistanceRecorder(ens.names, sizes, dmat, len(steps), device)
    start, seconds_before = 0, 0.0
    if resume is not None:
        start, seconds_before = _restore(resume, ens, rec, total, f"{settings.run_id} {dtype}")
    bar = tqdm(
        total=total,
        initial=start,
        desc=f"{settings.run_id} {dtype} x{len(members)}",
        file=sys.stderr,
        mininterval=10,
        ascii=True,
        disable=not progress,
    )
    t0 = time.perf_counter()

    def elapsed() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return seconds_before + time.perf_counter() - t0

    with torch.no_grad():
        for step, idx in batches(n, settings, start):
            idx = idx.to(device)
            r = slot.get(step)
            if r is not None:
                rec.record(r, ens.params)
            loss, acc = ens.step(data.train_x[idx], data.train_y[idx])
            if r is not None:
                rec.batch(r, loss, acc)
            if (step + 1) % _FINITE_CHECK_EVERY == 0 or step + 1 == total:
                # a non-finite parameter keeps every later loss of its member non-finite, so
                # checking now and then (each check waits for the device) misses nothing
                _check_finite(loss, members, dtype, step, settings.run_id)
            bar.update(1)
            done = step + 1
            if done == total:
                continue
            # a stop after the last step just lets the ensemble finish
            if checkpoint is not None and (stop or done % checkpoint_every == 0):
                checkpoint(_state(done, total, ens, rec, elapsed()))
            if stop:
                bar.close()
                raise recovery.Interrupted(
                    stop.signum,
                    f"the {dtype} ensemble of {settings.run_id} after step {done} of {total}",
                )
        rec.record(slot[total], ens.params)
    seconds = elapsed()
    bar.close()
    if checkpoint is not None and start < total:
        # the finished ensemble too: a stop in the next dtype's then does not redo this one
        checkpoint(_state(total, total, ens, rec, seconds))
    final = ens.flat()
    if not bool(torch.isfinite(final).all()):
        raise TrainingError(
            f"run {settings.run_id}: non-finite parameters at the end ({dtype} ensemble)"
        )
    train_loss, train_acc = ens.evaluate(data.train_x, data.train_y)
    val_loss, val_acc = ens.evaluate(data.test_x, data.test_y)
    distances = _distance_table(rec, members, steps, dtype, ens.names)
    last = distances[distances["step"] == total].set_index(["strategy", "eps"])["distance"]
    final_distance = [0.0] + [float(last[(m.strategy, m.eps)]) for m in members[1:]]
    member_table = pd.DataFrame(
        {
            "dtype": dtype,
            "strategy": [m.strategy for m in members],
            "eps": np.array([m.eps for m in members], dtype=np.float64),
            "train_loss": train_loss.cpu().numpy(),
            "train_acc": train_acc.cpu().numpy(),
            "val_loss": val_loss.cpu().numpy(),
            "val_acc": val_acc.cpu().numpy(),
            "final_distance": np.array(final_distance, dtype=np.float64),
        }
    )
    info = {
        "dtype": dtype,
        "members": len(members),
        "parameters": int(thetas.shape[1]),
        "steps": total,
        "recorded_states": len(steps),
        "backend": ens.backend.name,
        "seconds": seconds,
        "seconds_per_step": seconds / total,
        "resumed_from_step": start if resume is not None else None,
    }
    return EnsembleResult(distances, member_table, final.to(torch.float64).cpu(), info)


def _state(step: int, total: int, ens: LockstepSGD, rec: _DistanceRecorder, seconds: float):
    """A lockstep ensemble's state after ``step`` steps: everything :func:`_restore` needs to
    continue it bit for bit (parameters, momentum buffers, the records so far)."""
    return {
        "step": step,
        "total": total,
        "params": dict(ens.params),
        "buffers": None if ens.buffers is None else dict(ens.buffers),
        "dist": rec.dist,
        "along": rec.along,
        "loss": rec.loss,
        "acc": rec.acc,
        "seconds": seconds,
    }


def _restore(
    state: dict, ens: LockstepSGD, rec: _DistanceRecorder, total: int, what: str
) -> tuple[int, float]:
    """Load a :func:`_state` into a freshly built ensemble; returns (steps done, seconds so far).

    Everything is checked before anything is assigned, so that a state that does not fit leaves
    the ensemble as built and raises :class:`chaosgd.runs.recovery.UnusableCheckpoint`."""

    def fits(got, like: Tensor) -> bool:
        return torch.is_tensor(got) and got.shape == like.shape and got.dtype == like.dtype

    try:
        step, params, buffers = int(state["step"]), state["params"], state["buffers"]
        ok = int(state["total"]) == total and 0 <= step <= total
        ok = ok and set(params) == set(ens.params)
        ok = ok and all(fits(params[k], v) for k, v in ens.params.items())
        ok = ok and (buffers is None) == (not (ens.momentum and step > 0))
        ok = ok and (buffers is None or all(fits(buffers.get(k), v) for k, v in ens.params.items()))
        ok = ok and all(fits(state[k], getattr(rec, k)) for k in ("dist", "along", "loss", "acc"))
        seconds = float(state["seconds"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise recovery.UnusableCheckpoint(f"{what}: {type(exc).__name__}: {exc}") from None
    if not ok:
        raise recovery.UnusableCheckpoint(f"{what}: the saved state does not fit this ensemble")
    device = rec.dist.device
    # contiguous copies on the device: the backends update the parameters in place via views
    ens.params = {k: params[k].to(device).contiguous() for k in ens.names}
    ens.buffers = None if buffers is None else {k: buffers[k].to(device) for k in ens.names}
    for k in ("dist", "along", "loss", "acc"):
        getattr(rec, k).copy_(state[k])
    return step, seconds


def _check_finite(loss: Tensor, members: list[Member], dtype: str, step: int, run: str) -> None:
    finite = torch.isfinite(loss)
    if bool(finite.all()):
        return
    which = [m for m, ok in zip(members, finite.tolist()) if not ok]
    named = ", ".join(f"{m.strategy} eps={m.eps:g}" for m in which)
    raise TrainingError(
        f"run {run}: non-finite loss in the {dtype} ensemble at or before step {step} ({named})"
    )


def _distance_table(
    rec: _DistanceRecorder, members: list[Member], steps: list[int], dtype: str, names: list[str]
) -> pd.DataFrame:
    dist = rec.dist.cpu().numpy()  # R × K × L
    r, k, _ = dist.shape
    # member-major rows: each (strategy, eps) curve is contiguous and ordered by step
    cols: dict[str, np.ndarray] = {
        "dtype": np.full(r * k, dtype, dtype=object),
        "strategy": np.repeat(np.array([m.strategy for m in members[1:]], dtype=object), r),
        "eps": np.repeat(np.array([m.eps for m in members[1:]], dtype=np.float64), r),
        "step": np.tile(np.asarray(steps, dtype=np.int64), k),
        "distance": np.sqrt(np.square(dist).sum(2)).T.reshape(-1),
        "distance_along": rec.along.cpu().numpy().T.reshape(-1),
    }
    for j, name in enumerate(names):
        cols["dist_" + name.replace(".", "_")] = dist[:, :, j].T.reshape(-1)
    cols["loss"] = rec.loss[:, 1:].cpu().numpy().T.reshape(-1)
    cols["acc"] = rec.acc[:, 1:].cpu().numpy().T.reshape(-1)
    df = pd.DataFrame(cols)
    df["dtype"] = df["dtype"].astype(str)
    df["strategy"] = df["strategy"].astype(str)
    return df


# -- the single-model baseline ------------------------------------------------------------------


def time_single_model(
    settings: RunSettings, data: Data, dtype: str, device: torch.device, steps: int
) -> tuple[float | None, int]:
    """(seconds per step, steps timed) of one model trained alone the ordinary way
    (``nn.Module``, cross-entropy, ``loss.backward()``, ``torch.optim.SGD``) on the reference's
    first batches: up to ``steps`` steps after a few untimed warm-up steps (allocator, caches).

    Seconds are ``None`` when the run is too short to time anything.
    """
    model = initial_model(settings, dtype, device)
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum)
    total = run_steps(len(data.train_y), settings.batch_size, settings.epochs)
    warmup = min(10, total // 2)
    timed = min(steps, total - warmup)
    if timed < 1:
        return None, 0
    t0 = 0.0
    for step, idx in batches(len(data.train_y), settings):
        idx = idx.to(device)
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        if step == warmup + timed:
            break
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / timed, timed
