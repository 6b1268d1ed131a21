"""Benchmarks of the engine: ``python -m chaosgd.bench <subcommand> ...``.

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
:func:`chaosgd.lockstep.time_single_model`) against the lockstep ensemble of the ensembles stage
(:func:`chaosgd.lockstep.run_ensemble`: 1 + 5·k members for k values of ε, distances recorded
every ``--record-every`` steps) on the same synthetic batches, the two timed alternately
``--repeats`` times; it prints the median seconds per step and their ratio. (That the ensemble
equals sequential training to rounding is a test, not a benchmark: ``tests/test_ensembles.py``.)

``costs``: the per-unit costs that the jobs' runtime requests are computed from
(:data:`chaosgd.resources.COSTS`), measured side by side through the pipeline's own code on
synthetic data, one thread unless ``--threads`` says otherwise, and reported at the reference size
next to the table's values; it ends with them as a ``resources: costs:`` block for the config
(a site's own nodes, a GPU one with ``--device cuda``).

``gpu``: the curvature engine, the tangent map, the ensembles and a short Fig. 1 run on a CUDA
device and on the CPU side by side, their agreement on identical inputs, and the paper config's
projected cost on that device (:mod:`chaosgd.bench_gpu`).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import statistics
import sys
import time

import torch

from chaosgd import bench_gpu
from chaosgd.cgd import project_gradient
from chaosgd.curvature import hessian_eigenpairs
from chaosgd.io import save_tensors
from chaosgd.lockstep import run_ensemble, time_single_model
from chaosgd.models import build_model, flat_params, hessian_structure, make_loss_fn
from chaosgd.resources import AUTO_CURVATURE, COSTS, growth, n_params
from chaosgd.settings import RunSettings
from chaosgd.tangent import TangentMap
from chaosgd.tangent_hook import advance
from chaosgd.training import Data, Trainer, epoch_order, initial_model, load_data
from chaosgd.vocab import ARCHITECTURES, DTYPES, PRUNE_SETS, STRATEGIES

__all__ = ["main", "bench_curvature", "bench_tangent", "bench_ensembles", "bench_costs"]

# what a TangentMap does when not told otherwise (the pipeline's own default is in the schema)
DEFAULT_REORTH_EVERY = inspect.signature(TangentMap).parameters["reorth_every"].default


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def _synthetic_batches(batch: int, seed: int, dev: torch.device):
    """Return ``next_batch() -> (x, y)``: minibatches (with replacement) from a fixed pool of
    64·batch synthetic standardised 16×16 images (standard normal pixels), random labels."""
    data_gen = torch.Generator().manual_seed(seed + 2)
    pool_x = torch.randn(64 * batch, 1, 16, 16, generator=data_gen).to(dev)
    pool_y = torch.randint(0, 10, (64 * batch,), generator=data_gen).to(dev)

    def next_batch():
        idx = torch.randint(0, pool_x.shape[0], (batch,), generator=data_gen).to(dev)
        return pool_x[idx], pool_y[idx]

    return next_batch


def _load1() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _setup(args) -> int | None:
    """Apply ``--threads``; return an exit status if ``--device`` cannot be used."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device available", file=sys.stderr)
        return 2
    return None


def _disagreement(grad, dense, low, lr, top_k):
    """Max over prune sets/selections of ‖g̃_dense − g̃_lowrank‖ / ‖g‖, and of eigenvalues."""
    worst = 0.0
    gnorm = float(grad.norm()) or 1.0
    for prune_set in PRUNE_SETS:
        for selection, k in (("all", None), ("top_k", top_k)):
            a = project_gradient(
                grad,
                dense.values,
                dense.vectors,
                lr,
                prune_set,
                selection,
                k,
                null_tol=dense.null_tol,
            )
            b = project_gradient(
                grad, low.values, low.vectors, lr, prune_set, selection, k, null_tol=low.null_tol
            )
            worst = max(worst, float((a - b).norm()) / gnorm)
    lam, other = dense.values[dense.nonzero_mask()], low.values[low.nonzero_mask()]
    if lam.numel() != other.numel():
        eig = float("inf")
    elif lam.numel() == 0:
        eig = 0.0
    else:
        eig = float((lam - other).abs().max() / lam.abs().max())
    return worst, eig


def grad_of(loss_fn, theta: torch.Tensor) -> torch.Tensor:
    """The loss gradient at ``theta`` (the CGD projections compare on it)."""
    return torch.func.grad(loss_fn)(theta)


def bench_curvature(
    archs=tuple(ARCHITECTURES),
    steps: int = 3,
    device: str = "cpu",
    activation: str = "relu",
    hidden: int = 20,
    batch: int = 8,
    lr: float = 1e-3,
    train_lr: float = 1e-3,
    seed: int = 0,
    top_k: int = 10,
    lowrank_repeats: int = 3,
    dtype: torch.dtype = torch.float64,
) -> list[dict]:
    """Run the curvature benchmark; returns one row per (arch, method)."""
    dev = torch.device(device)
    rows = []
    for arch in archs:
        torch.manual_seed(seed)
        model = build_model(arch, activation, hidden=hidden).to(dev)
        gen = torch.Generator(device=dev).manual_seed(seed + 1)
        # synthetic standardised 16×16 images: the curvature cost depends only on the shapes
        next_batch = _synthetic_batches(batch, seed, dev)
        opt = torch.optim.SGD(model.parameters(), lr=train_lr)

        # warm-up (first-call overheads) and the first hint, as step 0 of a training run gives
        x, y = next_batch()
        hint = hessian_eigenpairs(
            make_loss_fn(model, x, y), flat_params(model), "lowrank", dtype=dtype, generator=gen
        ).rank
        t_dense, t_low, t_sketch, t_auto, worst, worst_eig = [], [], [], [], 0.0, 0.0
        ranks, sketch, hvps, auto_methods = [], [], [], set()
        worst_sketch, worst_block, t_block = 0.0, 0.0, []
        worst_auto, worst_auto_eig = 0.0, 0.0
        for t in range(steps):
            x, y = next_batch()
            loss_fn = make_loss_fn(model, x, y)
            theta = flat_params(model).to(dtype)
            dense, dt = _timed(
                lambda: hessian_eigenpairs(loss_fn, theta, "dense", dtype=dtype), dev
            )
            t_dense.append(dt)
            # the same exact Hessian formed layer by layer (a ReLU network's largest layer from
            # its Gauss-Newton part), still decomposed in full: what the layers save in forming
            fast, dt = _timed(
                lambda: hessian_eigenpairs(
                    loss_fn, theta, "dense", dtype=dtype, **hessian_structure(model, x, y)
                ),
                dev,
            )
            t_block.append(dt)
            worst_block = max(
                worst_block, _disagreement(grad_of(loss_fn, theta), dense, fast, lr, top_k)[0]
            )

            # as training calls it: the model's range basis (the MLP's) where it has one, built
            # inside the timed call; "sketch" is the generic randomized path on the same batch
            def lowrank(basis: bool, method: str = "lowrank"):
                return hessian_eigenpairs(
                    loss_fn,
                    theta,
                    method,
                    dtype=dtype,
                    generator=gen,
                    sketch_hint=hint,
                    **(hessian_structure(model, x, y) if basis else {}),
                )

            for _ in range(max(1, lowrank_repeats)):
                low, dt = _timed(lambda: lowrank(True), dev)
                t_low.append(dt)
                generic, dt = _timed(lambda: lowrank(False), dev)
                t_sketch.append(dt)
            auto, dt = _timed(lambda: lowrank(True, "auto"), dev)
            t_auto.append(dt)
            auto_methods.add(auto.method)
            a_proj, a_eig = _disagreement(grad_of(loss_fn, theta), dense, auto, lr, top_k)
            worst_auto, worst_auto_eig = max(worst_auto, a_proj), max(worst_auto_eig, a_eig)
            hint = low.rank
            grad = torch.func.grad(loss_fn)(theta)
            w, e = _disagreement(grad, dense, low, lr, top_k)
            worst, worst_eig = max(worst, w), max(worst_eig, e)
            worst_sketch = max(worst_sketch, _disagreement(grad, dense, generic, lr, top_k)[0])
            ranks.append((dense.rank, low.rank))
            sketch.append(low.diagnostics.get("sketch_size", low.diagnostics.get("basis_size")))
            hvps.append(low.diagnostics["hvps"])
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        n = theta.numel()
        med_dense, med_low = statistics.median(t_dense), statistics.median(t_low)
        common = dict(arch=arch, n_params=n, steps=steps, device=str(dev), dtype=str(dtype))
        rows.append(
            dict(common, method="dense", median_s=med_dense, ratio=1.0, ranks=[r[0] for r in ranks])
        )
        rows.append(
            dict(
                common,
                method="lowrank",
                median_s=med_low,
                ratio=med_dense / med_low,
                max_rel_proj_diff=worst,
                max_rel_eig_diff=worst_eig,
                ranks=[r[1] for r in ranks],
                sketch=sketch,
                hvps=hvps,
            )
        )
        med_block = statistics.median(t_block)
        rows.append(
            dict(
                common,
                method="dense*",
                median_s=med_block,
                ratio=med_dense / med_block,
                max_rel_proj_diff=worst_block,
            )
        )
        med_sketch = statistics.median(t_sketch)
        rows.append(
            dict(
                common,
                method="sketch",
                median_s=med_sketch,
                ratio=med_dense / med_sketch,
                max_rel_proj_diff=worst_sketch,
            )
        )
        rows.append(
            dict(
                common,
                method="auto",
                median_s=statistics.median(t_auto),
                ratio=med_dense / statistics.median(t_auto),
                max_rel_proj_diff=worst_auto,
                max_rel_eig_diff=worst_auto_eig,
                picked="/".join(sorted(auto_methods)),
            )
        )
    return rows


def bench_ensembles(
    eps_counts=(1, 5, 11),
    dtypes=("float32", "float64"),
    steps: int = 912,
    device: str = "cpu",
    activation: str = "relu",
    hidden: int = 20,
    batch: int = 8,
    lr: float = 1e-3,
    record_every: int = 10,
    repeats: int = 3,
    seed: int = 0,
) -> list[dict]:
    """Run the ensembles benchmark; one row per (dtype, members), the single model first.

    The data are ``steps · batch`` synthetic N(0,1) 16×16 images with random labels, one epoch:
    the cost depends only on the shapes. The directions are random unit vectors (the stage's come
    from a Lyapunov spectrum; the cost does not depend on them).
    """
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed + 2)
    n = steps * batch
    rows = []
    for dtype in dtypes:
        settings = RunSettings(
            run_id="bench", dataset="synthetic", model="mlp", activation=activation,
            hidden=hidden, variant="sgd", onset=0, momentum=0.0, seed=seed, lr=lr,
            batch_size=batch, epochs=1, dtype=dtype, train_size=0, test_size=0, subset_seed=0,
            evals_per_epoch=1, spectrum=False, curvature="auto", noise_scale=0.0,
            checkpoint_every=steps, device=device,
        )  # fmt: skip
        as_dtype = getattr(torch, dtype)
        data = Data(
            train_x=torch.randn(n, 1, 16, 16, generator=gen).to(dev, as_dtype),
            train_y=torch.randint(0, 10, (n,), generator=gen).to(dev),
            test_x=torch.randn(256, 1, 16, 16, generator=gen).to(dev, as_dtype),
            test_y=torch.randint(0, 10, (256,), generator=gen).to(dev),
        )
        theta0 = flat_params(initial_model(settings, "float32", torch.device("cpu")))
        dirs = {
            s: torch.nn.functional.normalize(
                torch.randn(theta0.numel(), generator=gen, dtype=torch.float64), dim=0
            )
            for s in STRATEGIES
        }
        single: list[float] = []
        ens: dict[int, list[float]] = {k: [] for k in eps_counts}
        for _ in range(max(1, repeats)):
            sec, timed = time_single_model(settings, data, dtype, dev, steps)
            single.append(sec)
            for k in eps_counts:
                eps = [float(e) for e in torch.logspace(-3, 1, k, dtype=torch.float64)]
                res = run_ensemble(
                    settings, data, theta0, dirs, eps, dtype, dev, record_every=record_every
                )
                ens[k].append(res.info["seconds_per_step"])
                backend = res.info["backend"]
        one = statistics.median(single)
        common = dict(dtype=dtype, device=str(dev), steps=steps, n_params=theta0.numel())
        rows.append(dict(common, what="one model", members=1, median_s=one, ratio=1.0))
        for k in eps_counts:
            med = statistics.median(ens[k])
            rows.append(
                dict(
                    common,
                    what=f"ensemble ({backend})",
                    members=1 + len(STRATEGIES) * k,
                    median_s=med,
                    ratio=med / one,
                    spread=[min(ens[k]) / one, max(ens[k]) / one],
                )
            )
    return rows


def _max_rel_diff(a: torch.Tensor, ref: torch.Tensor) -> float:
    """max |a − ref| / max |ref|."""
    scale = float(ref.abs().max()) or 1.0
    return float((a - ref).abs().max()) / scale


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
    next_batch = _synthetic_batches(batch, seed, dev)
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
        _, dt = _timed(lambda: low.step_sgd(lr, lam, V), dev)
        t_low.append(dt)
        _, dt = _timed(lambda: fast.step_sgd(lr, lam, V, basis, coords), dev)
        t_fast.append(dt)
        J, dt = _timed(
            lambda: torch.eye(n, dtype=dtype, device=dev).addmm_(V * lam, V.T, alpha=-lr), dev
        )
        t_form.append(dt)
        Yd, dt = _timed(lambda: J @ Yd, dev)  # noqa: F821 - J is bound just above
        t_mul.append(dt)
        del J
    del eigs
    t_dense = [a + b for a, b in zip(t_form, t_mul)]
    diff_steps = _max_rel_diff(low.matrix(), Yd)
    diff_fast = _max_rel_diff(fast.matrix(), Yd)
    del fast

    _, t_reorth = _timed(low.reorthonormalize, dev)
    diff_folded = _max_rel_diff(low.matrix(), Yd)

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
        sig, t_svd = _timed(lambda: torch.linalg.svdvals(Yd), dev)
        ref = torch.sort(torch.log(sig.cpu()), descending=True).values
        # the default (divide-and-conquer) readout, and with readout_reference today's Jacobi one
        kinds = ["auto", "jacobi"] if readout_reference else ["auto"]
        outs = {k: _timed(lambda: low.readout(method=k), dev) for k in kinds}
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


class _TangentTimer:
    """A training step hook: follows the run with a tangent map that never folds (the folds are
    timed apart) and times each of its updates."""

    def __init__(self, n: int, lr: float, device: torch.device):
        self.tangent = TangentMap(
            n, torch.float64, device, reorth_every=2**62, max_log_growth=math.inf
        )
        self.lr, self.device, self.seconds = lr, device, []

    def after_step(self, step, eig, pruned) -> None:
        """Advance the map with the step's nonzero eigenpairs, timed."""
        _, dt = _timed(lambda: advance(self.tangent, eig, pruned, self.lr, 0.0), self.device)
        self.seconds.append(dt)

    def state_dict(self) -> dict:
        """Nothing to checkpoint: the bench never resumes."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore."""


def _costs_settings(model: str, hidden: int, batch: int, device: str, **kw) -> RunSettings:
    values = dict(
        run_id="bench", dataset="synthetic", model=model, activation="relu", hidden=hidden,
        variant="sgd", onset=0, momentum=0.0, seed=0, lr=1e-3, batch_size=batch, epochs=1,
        dtype="float32", train_size=0, test_size=0, subset_seed=0, evals_per_epoch=1,
        spectrum=False, curvature="auto", noise_scale=0.0, checkpoint_every=2**62, device=device,
    )  # fmt: skip
    values.update(kw)
    return RunSettings(**values)


def _synthetic_dataset(path: str, images: int, seed: int) -> None:
    """A prepared-dataset file of standard-normal 16×16 images with random labels: the costs
    depend only on the shapes."""
    gen = torch.Generator().manual_seed(seed)
    blob = {}
    for split, n in (("train", images), ("test", 256)):
        blob[f"{split}_x"] = torch.randn(n, 1, 16, 16, generator=gen)
        blob[f"{split}_y"] = torch.randint(0, 10, (n,), generator=gen)
    save_tensors(blob, path)


def _spectral_steps(settings: RunSettings, data: str, steps: int):
    """Time ``steps`` training steps with the spectrum and a tangent map (after one untimed step,
    which has no rank hint yet); returns the trainer, the hook and the per-step seconds."""
    trainer = Trainer(settings, data, progress=False)
    n = sum(p.numel() for p in trainer.model.parameters())
    hook = trainer.hooks["tangent"] = _TangentTimer(n, settings.lr, trainer.device)
    x, y = trainer.data.train_x, trainer.data.train_y
    b, total = settings.batch_size, []
    for i in range(steps + 1):
        j = (i * b) % (len(y) - b + 1)
        _, dt = _timed(lambda: trainer.train_step(x[j : j + b], y[j : j + b]), trainer.device)
        total.append(dt)
    hook.seconds, total = hook.seconds[1:], total[1:]
    return trainer, hook, total


def bench_costs(
    archs=tuple(ARCHITECTURES),
    device: str = "cpu",
    hidden: int = 20,
    batch: int = 8,
    seed: int = 0,
    steps: int = 300,
    spectrum_steps: int = 8,
    readout_hidden: int = 6,
    ensemble_steps: int = 100,
    eps_count: int = 11,
    dense_mlp: bool = False,
    **_ignored,
) -> list[dict]:
    """Measure the per-unit costs of :data:`chaosgd.resources.COSTS` side by side; one row each.

    Through the pipeline's own code on synthetic data: the :class:`~chaosgd.training.Trainer`'s
    whole runs (plain steps) and single steps with the spectrum (its ``curvature`` method forced)
    and a tangent map; one re-orthonormalization of that map; one exact readout of a smaller
    MLP's (``readout_hidden``); the lockstep ensemble of 1 + 5·``eps_count`` members. Each cost is
    divided by :func:`chaosgd.resources.growth` to report it at the reference size, as the
    planner's table holds it. The dense MLP (≈ 25 s a step) only with ``dense_mlp``.
    """
    import tempfile

    dev = torch.device(device)
    rows: list[dict] = []

    def row(name, measured, n, what, b=batch):
        at_ref = measured / growth(name, name.split(".")[-1], n, b) if "." in name else measured
        if name in ("reorth", "readout"):
            at_ref = measured / growth(name, "mlp", n, b)
        table = COSTS[name].seconds
        rows.append(
            dict(
                name=name, seconds=at_ref, measured_s=measured, n_params=n, batch=b,
                table_s=table, ratio=at_ref / table, unit=COSTS[name].unit, how=what,
                device=str(dev), threads=torch.get_num_threads(),
            )
        )  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        small = f"{tmp}/steps.pt"
        _synthetic_dataset(small, steps * batch, seed)
        # the batch order is a permutation of the whole training set, drawn at every step
        order = [_timed(lambda: epoch_order(60000, seed, e), torch.device("cpu"))[1]
                 for e in range(20)]  # fmt: skip
        row("order_image", statistics.median(order) / 60000, 0, "epoch_order(60000), median of 20")
        for arch in archs:
            n = n_params(arch, hidden)
            plain = Trainer(_costs_settings(arch, hidden, batch, device), small, progress=False)
            info = plain.run().info
            row(
                f"step.{arch}",
                info["wall_seconds"] / info["steps"],
                n,
                f"Trainer.run, {steps} steps",
            )
            methods = ["lowrank", "dense"] if arch != "mlp" or dense_mlp else ["lowrank"]
            for method in methods:
                # the method `auto` settles on is timed as training runs it (`auto`: the CNN's
                # dense Hessian formed by layers and decomposed on their row ranges)
                curvature = "auto" if method == AUTO_CURVATURE[arch] else method
                settings = _costs_settings(
                    arch, hidden, batch, device, spectrum=True, curvature=curvature
                )
                k = spectrum_steps if method == "lowrank" or arch != "mlp" else 1
                trainer, hook, total = _spectral_steps(settings, small, k)
                plain_s = info["wall_seconds"] / info["steps"]
                spectrum = [t - h - plain_s for t, h in zip(total, hook.seconds)]
                row(f"{method}.{arch}", statistics.median(spectrum), n, f"train_step, {k} steps")
                if method == AUTO_CURVATURE[arch]:
                    tangent = statistics.median(hook.seconds)
                    row(f"tangent.{arch}", tangent, n, f"TangentMap.step_sgd, {k} steps")
                if arch == "mlp" and method == "lowrank":
                    _, dt = _timed(hook.tangent.reorthonormalize, dev)
                    row("reorth", dt, n, "one TangentMap.reorthonormalize")
                del trainer, hook
            members = 1 + len(STRATEGIES) * eps_count
            for dtype in DTYPES:
                settings = _costs_settings(arch, hidden, batch, device, dtype=dtype)
                data = load_data(small, settings, dev)
                theta0 = flat_params(initial_model(settings, "float32", torch.device("cpu")))
                gen = torch.Generator().manual_seed(seed + 3)
                dirs = {
                    s: torch.nn.functional.normalize(
                        torch.randn(theta0.numel(), generator=gen, dtype=torch.float64), dim=0
                    )
                    for s in STRATEGIES
                }
                eps = [float(e) for e in torch.logspace(-3, 1, eps_count, dtype=torch.float64)]
                sub = Data(
                    data.train_x[: ensemble_steps * batch], data.train_y[: ensemble_steps * batch],
                    data.test_x, data.test_y,
                )  # fmt: skip
                res = run_ensemble(settings, sub, theta0, dirs, eps, dtype, dev, record_every=10)
                per_member = res.info["seconds_per_step"] / res.info["members"]
                row(
                    f"member_{dtype}.{arch}", per_member, n,
                    f"run_ensemble, {members} members, {ensemble_steps} steps",
                )  # fmt: skip
        # the readout at a smaller N (≈ 15 min at the MLP's 5350 on one core), scaled by N³
        settings = _costs_settings("mlp", readout_hidden, batch, device, spectrum=True)
        trainer, hook, _ = _spectral_steps(settings, small, 5)
        _, dt = _timed(hook.tangent.readout, dev)
        row("readout", dt, n_params("mlp", readout_hidden), "one TangentMap.readout, 6 steps")
    return rows


def _print_costs_table(rows, out=None):
    out = sys.stdout if out is None else out
    head = f"{'cost':<19} {'seconds':>10} {'table':>10} {'x table':>7} {'N':>5}  per, measured by"
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        print(
            f"{r['name']:<19} {r['seconds']:>10.3g} {r['table_s']:>10.3g} {r['ratio']:>7.2f} "
            f"{r['n_params']:>5}  {r['unit']}, {r['how']}",
            file=out,
        )
    print("# this node's costs, for the config (resources.costs), in seconds:", file=out)
    print("resources:\n  costs:", file=out)
    for r in rows:
        print(f"    {r['name']}: {_yaml_float(r['seconds'])}", file=out)


def _yaml_float(x: float) -> str:
    """x to 3 significant digits as YAML reads a number: YAML 1.1 takes ``5e-05`` for text, so
    the mantissa always carries a dot (``5.0e-05``)."""
    text = f"{x:.3g}"
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


def _cmd_costs(args) -> int:
    status = _setup(args)
    if status is not None:
        return status
    rows = bench_costs(
        **_model_arguments(args),
        archs=args.arch,
        steps=args.steps,
        spectrum_steps=args.spectrum_steps,
        readout_hidden=args.readout_hidden,
        ensemble_steps=args.ensemble_steps,
        eps_count=args.eps_count,
        dense_mlp=args.dense_mlp,
    )
    print(
        f"# chaosgd.bench costs: device={args.device} threads={torch.get_num_threads()} "
        f"hidden={args.hidden} batch={args.batch} load1={_load1():.2f}"
    )
    print(
        "# seconds: per unit at the reference size (MLP 256-20-10, batch 8; readout and "
        "reorth at N = 5350), as chaosgd.resources.COSTS; table: its value; x table: ratio"
    )
    _print_costs_table(rows)
    _write_json(args, rows)
    return 0


def _print_tangent_table(rows, out=None):
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


def _print_table(rows, out=None):
    out = sys.stdout if out is None else out
    head = (
        f"{'model':<6} {'N':>5} {'method':<8} {'median s':>9} {'dense/x':>8} "
        f"{'max dg/|g|':>10} {'max dlam':>9}  ranks (sketch)"
    )
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        diff = f"{r['max_rel_proj_diff']:.1e}" if "max_rel_proj_diff" in r else "-"
        eig = f"{r['max_rel_eig_diff']:.1e}" if "max_rel_eig_diff" in r else "-"
        extra = ""
        if "ranks" in r:
            extra = ",".join(map(str, r["ranks"]))
        if "sketch" in r:
            extra += " (" + ",".join(map(str, r["sketch"])) + ")"
        if "picked" in r:
            extra = f"picked {r['picked']}"
        print(
            f"{r['arch']:<6} {r['n_params']:>5} {r['method']:<8} {r['median_s']:>9.4f} "
            f"{r['ratio']:>8.1f} {diff:>10} {eig:>9}  {extra}",
            file=out,
        )


def _print_ensembles_table(rows, out=None):
    out = sys.stdout if out is None else out
    head = f"{'dtype':<8} {'what':<17} {'members':>7} {'ms/step':>8} {'x one':>6}  (min-max)"
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        spread = "-" if "spread" not in r else "{:.2f}-{:.2f}".format(*r["spread"])
        print(
            f"{r['dtype']:<8} {r['what']:<17} {r['members']:>7} {1e3 * r['median_s']:>8.3f} "
            f"{r['ratio']:>6.2f}  {spread}",
            file=out,
        )


def _cmd_curvature(args) -> int:
    dtype = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    status = _setup(args)
    if status is not None:
        return status
    rows = bench_curvature(
        **_model_arguments(args),
        archs=args.arch,
        steps=args.steps,
        lr=args.lr,
        train_lr=args.train_lr,
        top_k=args.top_k,
        lowrank_repeats=args.lowrank_repeats,
        dtype=dtype,
    )
    load = _load1()
    print(
        f"# chaosgd.bench curvature: device={args.device} dtype={args.dtype} "
        f"threads={torch.get_num_threads()} batch={args.batch} steps={args.steps} "
        f"load1={load:.2f}"
    )
    print(
        "# dg/|g|: worst ‖g̃_dense − g̃_x‖/‖g‖ over prune sets chaotic/negative/positive, "
        f"all and top-{args.top_k}; dlam: worst |Δλ|/max|λ| over nonzero eigenvalues"
    )
    _print_table(rows)
    _write_json(args, rows)
    return 0


def _cmd_tangent(args) -> int:
    status = _setup(args)
    if status is not None:
        return status
    rows = bench_tangent(
        **_model_arguments(args),
        steps=args.steps,
        lr=args.lr,
        reorth_every=args.reorth_every,
        readout=args.readout,
        curvature=args.curvature,
        readout_reference=args.readout_reference,
    )
    r0 = rows[0]
    print(
        f"# chaosgd.bench tangent: device={args.device} dtype=float64 "
        f"threads={torch.get_num_threads()} N={r0['n_params']} (MLP 256→{args.hidden}→10) "
        f"batch={args.batch} steps={args.steps} lr={args.lr:g} "
        f"reorth_every={args.reorth_every} load1={_load1():.2f}"
    )
    print(
        f"# eigenpairs: {r0['curvature']} Hessians of {args.steps} SGD minibatches of synthetic "
        f"N(0,1) 16×16 inputs, ranks {','.join(map(str, r0['ranks']))}"
    )
    print(
        "# agreement: max|Y_lowrank − Y_dense|/max|Y_dense| after the steps (step_sgd) and "
        "after the fold (+ reorth); readout: max|ln σ_i − ln σ_i(Y_dense)|"
    )
    _print_tangent_table(rows)
    _write_json(args, rows)
    return 0


def _cmd_ensembles(args) -> int:
    status = _setup(args)
    if status is not None:
        return status
    rows = bench_ensembles(
        **_model_arguments(args),
        eps_counts=args.eps_counts,
        dtypes=args.dtype,
        steps=args.steps,
        lr=args.lr,
        record_every=args.record_every,
        repeats=args.repeats,
    )
    print(
        f"# chaosgd.bench ensembles: device={args.device} threads={torch.get_num_threads()} "
        f"N={rows[0]['n_params']} (MLP 256→{args.hidden}→10) batch={args.batch} "
        f"steps={args.steps} record_every={args.record_every} repeats={args.repeats} "
        f"load1={_load1():.2f}"
    )
    print(
        "# one model: nn.Module + torch.optim.SGD; ensemble: 1 + 5·k members in lockstep, "
        "distances recorded; x one: median ensemble / median one model (min-max over repeats)"
    )
    _print_ensembles_table(rows)
    _write_json(args, rows)
    return 0


def _common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--activation", choices=["relu", "sigmoid"], default="relu")
    p.add_argument("--hidden", type=int, default=20, help="MLP hidden width (default 20)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", help="also write the rows to this JSON file")


def _model_arguments(args) -> dict:
    """The keyword arguments every ``bench_*`` function takes from :func:`_common_arguments`."""
    keys = ("device", "activation", "hidden", "batch", "seed")
    return {k: getattr(args, k) for k in keys}


def _write_json(args, rows) -> None:
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


def main(argv=None) -> int:
    """Run the ``curvature``, ``tangent`` or ``ensembles`` benchmark from the command line.

    Returns the exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("curvature", help="dense vs low-rank Hessian eigenpairs (MLP, CNN)")
    p.add_argument("--steps", type=int, default=3, help="batches timed per model (default 3)")
    p.add_argument("--arch", nargs="+", choices=list(ARCHITECTURES), default=list(ARCHITECTURES))
    p.add_argument("--lr", type=float, default=1e-3, help="η for the chaotic prune set")
    p.add_argument("--train-lr", type=float, default=1e-3, help="SGD step between batches")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--lowrank-repeats", type=int, default=3, help="low-rank timings per batch")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    _common_arguments(p)
    p.set_defaults(func=_cmd_curvature)

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
    _common_arguments(p)
    p.set_defaults(func=_cmd_tangent)

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
    _common_arguments(p)
    p.set_defaults(func=_cmd_ensembles)

    p = sub.add_parser("costs", help="the per-unit costs the job resources are estimated from")
    p.add_argument("--arch", nargs="+", choices=list(ARCHITECTURES), default=list(ARCHITECTURES))
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
    _common_arguments(p)
    # the jobs run single-threaded unless the config says otherwise
    p.set_defaults(func=_cmd_costs, threads=1)

    p = sub.add_parser("gpu", help="the GPU path against the CPU on the same inputs, and the cost")
    bench_gpu.add_arguments(p)
    p.set_defaults(func=bench_gpu.command)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
