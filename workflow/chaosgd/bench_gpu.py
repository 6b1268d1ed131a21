"""``python -m chaosgd.bench gpu``: the GPU path measured against the CPU, on the same inputs.

One command for a machine with a CUDA device. Every part runs on that device and on the CPU side
by side, on identical inputs (the same θ, batches, eigenpairs, initial ensembles and dataset):

1. **curvature**: the Hessian eigenpairs as training computes them (``method="auto"``, the
   previous step's rank as hint, :func:`chaosgd.models.hessian_structure` built inside the call):
   the MLP's on its range basis (N = 5350 at batch 8) and the CNN's exact dense ones with its
   layers (N = 1158), on a few batches along a short SGD trajectory;
2. **tangent**: :meth:`TangentMap.step_sgd` at the MLP's size with the MLP eigenpairs of part 1,
   one re-orthonormalization, and one exact readout (its Jacobi SVD runs on the CPU on either
   side, as in the lyapunov stage) of a smaller MLP's map, reported also scaled by N³ to
   N = 5350: a readout at that size takes ≈ 15 min on one core, more than this command's budget;
3. **ensembles**: the lockstep ensemble (1 + 5·11 members) in float32 and float64;
4. **fig1**: SGD and CGD pruning the chaotic, negative and positive eigenspaces through
   :class:`chaosgd.training.Trainer` for a few hundred steps on a synthetic USPS-shaped dataset
   (float32 training, curvature in float64, as the paper config).

Agreement is checked where the inputs are identical: the eigenvalues and the CGD projected
gradients of the three prune sets (≤ 1e-10 relative, float64), the tangent map after its steps and
its fold, the readout's ln σ, and the spectrum's extreme eigenvalues at the first Trainer step
(identical θ and batch on both sides). Whole trajectories are not compared: they diverge from
round-off as the paper's perturbed copies do from ε (Fig. 3); their distance at the end is
reported.

It prints each part's seconds per step on the device and on the CPU and their ratio, the projected
cost of the paper config (``config/config.yaml``, planned by :func:`chaosgd.plan.plan_runs`) from
those per-step times, with its assumptions, and a pass/fail line; the exit status is 1 when an
agreement check fails, 2 when the device is unavailable. ``--device cpu`` runs both sides on the
CPU (the tests), ``--quick`` uses tiny sizes.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml

from chaosgd import bench as _bench
from chaosgd.cgd import project_gradient
from chaosgd.config import SCHEMA, validate_config
from chaosgd.curvature import Eigenpairs, hessian_eigenpairs
from chaosgd.io import save_tensors
from chaosgd.lockstep import run_ensemble
from chaosgd.models import (
    build_model,
    flat_params,
    hessian_structure,
    make_loss_fn,
    num_params,
)
from chaosgd.plan import ensemble_references, plan_runs
from chaosgd.resources import (
    AUTO_CURVATURE,
    BATCH_REF,
    RANK_FRACTION,
    growth,
    n_params,
    train_steps,
)
from chaosgd.settings import RunSettings
from chaosgd.tangent import TangentMap
from chaosgd.training import Data, Trainer, initial_model
from chaosgd.vocab import DATASETS, DTYPES, PRUNE_SETS, STRATEGIES

__all__ = [
    "TOL",
    "Sizes",
    "Check",
    "full_spectrum",
    "compare_eigenpairs",
    "project_paper_cost",
    "bench_gpu",
    "add_arguments",
    "command",
]

# the agreement tolerance of the issue: float64 round-off on identical inputs is ~1e-15, and the
# engine's own null rule counts |λ| ≤ 1e-10·max|λ| as zero, so anything above is a real difference
TOL = 1e-10
FIG1_VARIANTS = ("sgd", "cgd-chaotic", "cgd-negative", "cgd-positive")
PAPER_CONFIG = Path(SCHEMA).resolve().parents[2] / "config" / "config.yaml"


@dataclass(frozen=True)
class Sizes:
    """How much each part runs; the defaults fit one H100/H200 in a few minutes."""

    hidden: int = 20  # the MLP of parts 1, 2 and 4: N = 5350, the paper's
    batch: int = 8
    curvature_batches: int = 3  # timed per model, after one untimed warm-up batch
    tangent_steps: int = 5
    readout_hidden: int = 6  # N = 1612: ≈ 15 s a readout on one core, scaled by N³ to 5350
    readout_steps: int = 5
    eps_count: int = 11  # 1 + 5·11 = 56 members, the paper config's
    ensemble_steps: int = 300
    fig1_steps: int = 300
    lr: float = 1e-3

    @classmethod
    def quick(cls) -> "Sizes":
        """Tiny sizes for the tests (the CNN keeps its fixed N = 1158)."""
        return cls(
            hidden=3,
            curvature_batches=1,
            tangent_steps=2,
            readout_hidden=2,
            readout_steps=2,
            eps_count=2,
            ensemble_steps=20,
            fig1_steps=8,
        )


@dataclass
class Check:
    """One agreement check: ``value`` (a relative or log difference) against ``tol``."""

    part: str
    what: str
    value: float
    tol: float = TOL

    def __post_init__(self) -> None:
        self.value, self.tol = float(self.value), float(self.tol)

    @property
    def ok(self) -> bool:
        """Within tolerance (NaN and inf fail)."""
        return bool(math.isfinite(self.value) and self.value <= self.tol)


# -- agreement ----------------------------------------------------------------------------------


def full_spectrum(eig: Eigenpairs) -> torch.Tensor:
    """All N eigenvalues, ascending, float64 on the CPU, with those the null rule calls zero set
    to 0: a dense and a low-rank result of one Hessian give the same vector."""
    values = eig.values.detach().to("cpu", torch.float64)
    kept = values[eig.nonzero_mask().cpu()]
    zeros = torch.zeros(eig.n_params - kept.numel(), dtype=torch.float64)
    return torch.sort(torch.cat([kept, zeros])).values


def compare_eigenpairs(
    ref: Eigenpairs,
    ref_grad: torch.Tensor,
    other: Eigenpairs,
    other_grad: torch.Tensor,
    lr: float,
    part: str,
    tol: float = TOL,
) -> list[Check]:
    """The eigenvalue check (max |Δλ| / max |λ| over the whole spectrum) and, for each prune set
    (chaotic, negative, positive, all of it), the CGD projected gradient check
    ‖g̃_other − g̃_ref‖ / ‖g_ref‖, each side projecting its own gradient with its own eigenpairs
    on its own device (as training does); ``other`` may live on another device than ``ref``."""
    a, b = full_spectrum(ref), full_spectrum(other)
    scale = float(a.abs().max()) or 1.0
    eig = float((a - b).abs().max()) / scale if a.shape == b.shape else math.inf
    rank = f"rank {ref.rank} / {other.rank}"
    checks = [Check(part, f"eigenvalues, max|dλ|/max|λ| ({rank})", eig, tol)]
    gnorm = float(ref_grad.norm()) or 1.0
    for prune_set in PRUNE_SETS:
        g_ref = project_gradient(
            ref_grad, ref.values, ref.vectors, lr, prune_set, null_tol=ref.null_tol
        )
        g_other = project_gradient(
            other_grad, other.values, other.vectors, lr, prune_set, null_tol=other.null_tol
        )
        diff = float((g_other.detach().cpu() - g_ref.detach().cpu()).norm()) / gnorm
        checks.append(Check(part, f"CGD-{prune_set} projected gradient, |dg|/|g|", diff, tol))
    return checks


def _max_rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().cpu(), ref.detach().cpu()
    return float((a - ref).abs().max()) / (float(ref.abs().max()) or 1.0)


# -- the two sides ------------------------------------------------------------------------------


def _median(xs) -> float:
    return statistics.median(xs) if xs else math.nan


def _row(part, what, n, dev_s, cpu_s, steps, note="") -> dict:
    ratio = cpu_s / dev_s if dev_s > 0 else math.nan
    return dict(
        part=part,
        what=what,
        n_params=n,
        device_s=dev_s,
        cpu_s=cpu_s,
        ratio=ratio,
        steps=steps,
        note=note,
    )


def _curvature(arch: str, sz: Sizes, sides, seed: int):
    """Part 1 for one architecture: rows, checks, and the CPU side's nonzero eigenpairs (for the
    tangent map) and per-step medians of both sides."""
    torch.manual_seed(seed)
    model = build_model(arch, "relu", hidden=sz.hidden)
    models = {name: copy.deepcopy(model).to(dev) for name, dev in sides.items()}
    gens = {name: torch.Generator(dev).manual_seed(seed + 7_919) for name, dev in sides.items()}
    hints: dict[str, int | None] = {name: None for name in sides}
    next_batch = _bench._synthetic_batches(sz.batch, seed, torch.device("cpu"))
    opt = torch.optim.SGD(model.parameters(), lr=sz.lr)
    times = {name: [] for name in sides}
    methods = {name: set() for name in sides}
    checks, eigs = [], []
    for t in range(sz.curvature_batches + 1):  # batch 0 is the warm-up: first-call overheads
        x, y = next_batch()
        got = {}
        for name, dev in sides.items():
            m = models[name]
            m.load_state_dict(model.state_dict())
            xd, yd = x.to(dev), y.to(dev)
            loss_fn = make_loss_fn(m, xd, yd)
            theta = flat_params(m).to(torch.float64)

            def call():
                return hessian_eigenpairs(
                    loss_fn,
                    theta,
                    "auto",
                    generator=gens[name],
                    sketch_hint=hints[name],
                    **hessian_structure(m, xd, yd),
                )

            eig, dt = _bench._timed(call, dev)
            hints[name] = eig.rank
            methods[name].add(eig.method)
            if t:
                times[name].append(dt)
            got[name] = (eig, torch.func.grad(loss_fn)(theta))
        (ref, g_ref), (other, g_other) = got["cpu"], got["device"]
        checks += compare_eigenpairs(ref, g_ref, other, g_other, sz.lr, f"curvature {arch}")
        nz = ref.nonzero()
        eigs.append((nz.values, nz.vectors))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    n = num_params(model)
    med = {name: _median(times[name]) for name in sides}
    how = "/".join(sorted(methods["device"] | methods["cpu"]))
    what = f"eigenpairs {arch} ({how})"
    row = _row(
        "curvature", what, n, med["device"], med["cpu"], sz.curvature_batches, f"rank {ref.rank}"
    )
    return [row], checks, eigs, med


def _tangent_side(n, eigs, steps, lr, dev):
    """Step a tangent map ``steps`` times on ``dev``; its per-step seconds."""
    tm = TangentMap(n, torch.float64, dev, reorth_every=2**62, max_log_growth=math.inf)
    secs = []
    for i in range(steps):
        lam, vec = eigs[i % len(eigs)]
        lam, vec = lam.to(dev), vec.to(dev)
        _, dt = _bench._timed(lambda: tm.step_sgd(lr, lam, vec), dev)
        secs.append(dt)
    return tm, secs


def _small_map_eigenpairs(sz: Sizes, seed: int):
    """Eigenpairs of ``readout_steps`` real minibatch Hessians of the readout's smaller MLP."""
    torch.manual_seed(seed)
    model = build_model("mlp", "relu", hidden=sz.readout_hidden)
    next_batch = _bench._synthetic_batches(sz.batch, seed + 1, torch.device("cpu"))
    opt = torch.optim.SGD(model.parameters(), lr=sz.lr)
    eigs = []
    for _ in range(sz.readout_steps):
        x, y = next_batch()
        theta = flat_params(model).to(torch.float64)
        eig = hessian_eigenpairs(
            make_loss_fn(model, x, y), theta, "auto", **hessian_structure(model, x, y)
        ).nonzero()
        eigs.append((eig.values, eig.vectors))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return num_params(model), eigs


def _tangent(sz: Sizes, sides, eigs, n: int, seed: int):
    """Part 2: step_sgd at the MLP's size with part 1's eigenpairs, one fold, one readout."""
    rows, checks, maps, med = [], [], {}, {}
    step_s, fold_s, read_s = {}, {}, {}
    for name, dev in sides.items():
        _tangent_side(n, eigs, 1, sz.lr, dev)  # warm-up: first-call overheads
        maps[name], secs = _tangent_side(n, eigs, sz.tangent_steps, sz.lr, dev)
        step_s[name] = _median(secs)
    checks.append(
        Check(
            "tangent",
            "Q after the steps, max|dQ|/max|Q|",
            _max_rel(maps["device"].Q, maps["cpu"].Q),
        )
    )
    for name, dev in sides.items():
        _, fold_s[name] = _bench._timed(maps[name].reorthonormalize, dev)
    # the fold's log scales do not depend on the QR's sign conventions (Q and B do)
    ds = float((maps["device"].s.cpu() - maps["cpu"].s.cpu()).abs().max())
    checks.append(Check("tangent", "log scales s after the fold, max|ds| (nats)", ds))
    del maps
    ranks = [e[0].numel() for e in eigs]
    note = f"rank {min(ranks)}..{max(ranks)}"
    rows.append(
        _row("tangent", "step_sgd", n, step_s["device"], step_s["cpu"], sz.tangent_steps, note)
    )
    what = "reorthonormalize (QR + fold)"
    rows.append(_row("tangent", what, n, fold_s["device"], fold_s["cpu"], 1))
    n_small, small = _small_map_eigenpairs(sz, seed)
    logsig = {}
    for name, dev in sides.items():
        tm, _ = _tangent_side(n_small, small, sz.readout_steps, sz.lr, dev)
        out, read_s[name] = _bench._timed(tm.readout, dev)
        logsig[name] = torch.as_tensor(out.exponents, dtype=torch.float64) * out.t
    d = float((logsig["device"] - logsig["cpu"]).abs().max())
    checks.append(Check("tangent", f"readout ln σ at N = {n_small}, max|d ln σ|", d))
    n_ref = n_params("mlp", 20)
    note = (
        f"×({n_ref}/{n_small})³ = {read_s['device'] * (n_ref / n_small) ** 3:.0f} s at N = {n_ref}"
    )
    what = "readout (QR, fold; Jacobi SVD on the CPU)"
    rows.append(_row("tangent", what, n_small, read_s["device"], read_s["cpu"], 1, note))
    med.update(tangent=step_s, reorth=fold_s, readout=read_s, readout_n=n_small)
    return rows, checks, med


def _run_settings(variant: str, sz: Sizes, device: str, steps: int, **kw) -> RunSettings:
    values = dict(
        run_id=f"bench-gpu_{variant}",
        dataset="usps",
        model="mlp",
        activation="relu",
        hidden=sz.hidden,
        variant=variant,
        onset=0,
        momentum=0.0,
        seed=0,
        lr=sz.lr,
        batch_size=sz.batch,
        epochs=1,
        dtype="float32",
        train_size=steps * sz.batch,
        test_size=0,
        subset_seed=0,
        evals_per_epoch=1,
        spectrum=True,
        curvature="auto",
        noise_scale=0.0,
        checkpoint_every=2**62,
        device=device,
    )
    values.update(kw)
    return RunSettings(**values)


def _ensembles(sz: Sizes, sides, seed: int):
    """Part 3: the lockstep ensemble on both sides, from the same θ0, directions and data."""
    gen = torch.Generator().manual_seed(seed + 2)
    n_img = sz.ensemble_steps * sz.batch
    eps = [float(e) for e in torch.logspace(-3, 1, sz.eps_count, dtype=torch.float64)]
    rows, per_step, final = [], {}, {}
    x = torch.randn(n_img, 1, 16, 16, generator=gen)
    y = torch.randint(0, 10, (n_img,), generator=gen)
    tx = torch.randn(256, 1, 16, 16, generator=gen)
    ty = torch.randint(0, 10, (256,), generator=gen)
    settings = _run_settings("sgd", sz, "cpu", sz.ensemble_steps, spectrum=False)
    theta0 = flat_params(initial_model(settings, "float32", torch.device("cpu")))
    dirs = {
        s: torch.nn.functional.normalize(
            torch.randn(theta0.numel(), generator=gen, dtype=torch.float64), dim=0
        )
        for s in STRATEGIES
    }
    members = 1 + len(STRATEGIES) * len(eps)
    for dtype in DTYPES:
        as_dtype = getattr(torch, dtype)
        secs = {}
        for name, dev in sides.items():
            data = Data(x.to(dev, as_dtype), y.to(dev), tx.to(dev, as_dtype), ty.to(dev))
            warm = Data(
                data.train_x[: 8 * sz.batch], data.train_y[: 8 * sz.batch], data.test_x, data.test_y
            )
            run_ensemble(settings, warm, theta0, dirs, eps, dtype, dev, record_every=10)
            res = run_ensemble(settings, data, theta0, dirs, eps, dtype, dev, record_every=10)
            secs[name] = res.info["seconds_per_step"]
            final[name, dtype] = res.final
        per_step[dtype] = secs
        diverged = _max_rel(final["device", dtype], final["cpu", dtype])
        rows.append(
            _row(
                "ensembles",
                f"{members} members {dtype} ({res.info['backend']})",
                theta0.numel(),
                secs["device"],
                secs["cpu"],
                sz.ensemble_steps,
                f"final θ differ by {diverged:.1e}",
            )
        )
    return rows, {"ensemble": per_step, "members": members}


class _StepClock:
    """A Trainer step hook that stamps the end of every step (after the device finished)."""

    def __init__(self, device: torch.device):
        self.device, self.stamps = device, []

    def after_step(self, step, eig, pruned) -> None:
        """Stamp the end of the step."""
        _bench._sync(self.device)
        self.stamps.append(time.perf_counter())

    def state_dict(self) -> dict:
        """Nothing to checkpoint: the bench never resumes."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore."""


def _usps_like(path: str, seed: int) -> None:
    """A prepared-dataset file shaped like USPS (7291 / 2007 standardised 16×16 images): noisy
    class templates, so that training learns something and the spectrum evolves as it would."""
    gen = torch.Generator().manual_seed(seed)
    templates = torch.randn(10, 1, 16, 16, generator=gen)
    blob = {}
    for split, n in (("train", DATASETS["usps"].train_size), ("test", DATASETS["usps"].test_size)):
        labels = torch.randint(0, 10, (n,), generator=gen)
        images = templates[labels] + torch.randn(n, 1, 16, 16, generator=gen)
        blob[f"{split}_x"] = (images - images.mean()) / images.std()
        blob[f"{split}_y"] = labels
    save_tensors(blob, path)


def _fig1(sz: Sizes, sides, seed: int):
    """Part 4: the Fig. 1 variants through the Trainer on both sides, from the same dataset."""
    rows, checks, per_step = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/usps_like.pt"
        _usps_like(path, seed)
        for variant in FIG1_VARIANTS:
            results, secs = {}, {}
            for name, dev in sides.items():
                settings = _run_settings(variant, sz, dev.type, sz.fig1_steps)
                clock = _StepClock(dev)
                trainer = Trainer(settings, path, hooks={"clock": clock}, progress=False)
                results[name] = trainer.run()
                intervals = [b - a for a, b in zip(clock.stamps, clock.stamps[1:])]
                secs[name] = _median(intervals)
            per_step[variant] = secs
            # step 0 sees the same θ (one initialization, cast) and batch on both sides
            first = {name: r.steps.iloc[0] for name, r in results.items()}
            scale = max(abs(first["cpu"]["lambda_min"]), abs(first["cpu"]["lambda_max"])) or 1.0
            d = max(abs(first["device"][k] - first["cpu"][k]) for k in ("lambda_min", "lambda_max"))
            checks.append(Check("fig1", f"{variant} step 0: λmin, λmax, |dλ|/max|λ|", d / scale))
            theta = {
                name: torch.cat([v.reshape(-1).double() for v in r.state_dict.values()])
                for name, r in results.items()
            }
            diverged = _max_rel(theta["device"], theta["cpu"])
            loss = {name: float(r.steps["loss"].iloc[-1]) for name, r in results.items()}
            note = f"final θ differ by {diverged:.1e}; last loss "
            note += f"{loss['device']:.3f} / {loss['cpu']:.3f}"
            n = n_params("mlp", sz.hidden)
            row = _row(
                "fig1",
                f"Trainer step, {variant}",
                n,
                secs["device"],
                secs["cpu"],
                sz.fig1_steps,
                note,
            )
            rows.append(row)
    return rows, checks, {"train": per_step}


# -- the paper config's cost --------------------------------------------------------------------


def _rank(model: str, n: int, batch: int) -> int:
    # as chaosgd.resources estimates it: a fraction of N, growing with the batch
    return max(1, min(n, math.ceil(RANK_FRACTION[model] * n * batch / BATCH_REF)))


def _load_paper_config(path: Path = PAPER_CONFIG) -> dict:
    raw = yaml.safe_load(path.read_text()) if path.is_file() else {}
    # without the file the schema's defaults are the paper's settings
    return validate_config(raw or {})


def project_paper_cost(measured: dict, sz: Sizes, side: str, config: dict | None = None) -> dict:
    """The paper config's jobs (train, lyapunov, ensembles) with their steps and the seconds each
    takes at ``side``'s measured per-step times; see :data:`ASSUMPTIONS`."""
    config = _load_paper_config() if config is None else config
    runs, _groups, lyapunov = plan_runs(config)
    lyap = {r for rs in lyapunov.values() for r in rs}
    refs = ensemble_references(config, runs, lyapunov)
    m = measured
    n_mlp, b0 = n_params("mlp", sz.hidden), sz.batch

    def step_seconds(s: RunSettings) -> float:
        n, b = n_params(s.model, s.hidden), s.batch_size
        variant = s.parsed_variant
        key = variant.name if variant.optimizer == "sgd" else f"cgd-{variant.prune_set}"
        total = m["train"][key if key in m["train"] else "sgd"][side]
        base = max(0.0, total - m["curvature"]["mlp"][side])
        base *= growth("step", s.model, n, b) / growth("step", "mlp", n_mlp, b0)
        if not s.needs_spectrum:
            return base
        kind = AUTO_CURVATURE[s.model]
        n0 = n_mlp if s.model == "mlp" else n_params(s.model, sz.hidden)
        scale = growth(kind, s.model, n, b) / growth(kind, s.model, n0, b0)
        return base + m["curvature"][s.model][side] * scale

    jobs = []
    steps_of = {rid: train_steps(s) for rid, s in runs.items()}
    for rid, s in runs.items():
        steps, n = steps_of[rid], n_params(s.model, s.hidden)
        seconds = steps * step_seconds(s)
        stage = "lyapunov" if rid in lyap else "train"
        if stage == "lyapunov":
            r0, r = _rank("mlp", n_mlp, b0), _rank(s.model, n, s.batch_size)
            per = m["tangent"][side] * (n / n_mlp) ** 2 * r / r0 * (2 if s.momentum else 1)
            per += m["reorth"][side] * (n / n_mlp) ** 3 / config["lyapunov"]["reorth_every"]
            readouts = min(config["lyapunov"]["readouts"], steps)
            read = m["readout"][side] * (n / m["readout_n"]) ** 3
            seconds += steps * per + readouts * read
        jobs.append(
            dict(
                stage=stage,
                run=rid,
                key=f"{stage} {s.dataset} {s.model}",
                steps=steps,
                seconds=seconds,
            )
        )
    ens = config["ensembles"]
    members = 1 + len(STRATEGIES) * len(ens["eps"])
    for rid in refs:
        s = runs[rid]
        n = n_params(s.model, s.hidden)
        per = sum(m["ensemble"][d][side] for d in ens["dtypes"]) * members / m["members"]
        per *= max(1.0, n / n_mlp)
        jobs.append(
            dict(
                stage="ensembles",
                run=rid,
                key=f"ensembles {s.dataset} {s.model}",
                steps=steps_of[rid],
                seconds=steps_of[rid] * per,
            )
        )
    groups: dict[str, dict] = {}
    for j in jobs:
        g = groups.setdefault(j["key"], dict(key=j["key"], jobs=0, steps=0, seconds=0.0))
        g["jobs"] += 1
        g["steps"] += j["steps"]
        g["seconds"] += j["seconds"]
    longest = max(jobs, key=lambda j: j["seconds"])
    return dict(
        side=side,
        groups=list(groups.values()),
        total_seconds=sum(j["seconds"] for j in jobs),
        longest=dict(longest),
        counts={
            st: sum(j["stage"] == st for j in jobs) for st in ("train", "lyapunov", "ensembles")
        },
    )


ASSUMPTIONS = (
    "one job at a time on the device (the gain from several sharing it is not measured)",
    "per-step costs do not depend on the data (measured on synthetic batches) or the activation "
    "(sigmoid runs cost what ReLU runs do); CGD top-k / random-k cost what their prune set does",
    "a CNN step is the MLP's Trainer step with the MLP's eigenpairs replaced by the CNN's",
    "every readout costs what part 2's did, scaled by N³ to the run's N (the Jacobi SVD needs "
    "more sweeps at the pipeline's t of thousands of steps: ≈ 2× from t = 5 to 200 on the CPU)",
    "job start-up, dataset preparation, fits, figures, report and claims are left out "
    "(seconds to a minute each)",
)


# -- the command --------------------------------------------------------------------------------


def bench_gpu(device: str = "cuda", sizes: Sizes | None = None, seed: int = 0) -> dict:
    """Run all four parts on ``device`` and on the CPU; returns rows, checks and the projected
    paper-config cost of each side (``device="cpu"`` runs both sides on the CPU)."""
    sz = sizes or Sizes()
    sides = {"device": torch.device(device), "cpu": torch.device("cpu")}
    rows, checks, measured = [], [], {}
    t0 = time.perf_counter()

    def progress(part: str) -> None:
        # on stderr as each part ends: a run stopped at its time limit still shows how far it got
        print(f"# {part} done after {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    m_rows, m_checks, mlp_eigs, m_med = _curvature("mlp", sz, sides, seed)
    progress("curvature mlp")
    c_rows, c_checks, _, c_med = _curvature("cnn", sz, sides, seed)
    progress("curvature cnn")
    rows += m_rows + c_rows
    checks += m_checks + c_checks
    measured["curvature"] = {"mlp": m_med, "cnn": c_med}
    t_rows, t_checks, t_med = _tangent(sz, sides, mlp_eigs, n_params("mlp", sz.hidden), seed)
    progress("tangent")
    del mlp_eigs
    rows += t_rows
    checks += t_checks
    measured.update(t_med)
    e_rows, e_med = _ensembles(sz, sides, seed)
    progress("ensembles")
    rows += e_rows
    measured.update(e_med)
    f_rows, f_checks, f_med = _fig1(sz, sides, seed)
    progress("fig1")
    rows += f_rows
    checks += f_checks
    measured.update(f_med)
    projection = {side: project_paper_cost(measured, sz, side) for side in sides}
    return dict(
        rows=rows,
        checks=[dict(asdict(c), ok=c.ok) for c in checks],
        passed=all(c.ok for c in checks),
        measured=_jsonable(measured),
        projection=projection,
        assumptions=list(ASSUMPTIONS),
        sizes=asdict(sz),
    )


def _jsonable(obj):
    if isinstance(obj, dict):
        return {
            (k if isinstance(k, str) else ",".join(map(str, k))): _jsonable(v)
            for k, v in obj.items()
        }
    return obj


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _environment(dev: torch.device) -> dict:
    env = dict(
        device=str(dev),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        cpus=os.cpu_count(),
        cpu=_cpu_name(),
    )
    if dev.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(dev), cuda=torch.version.cuda)
    return env


def _print_report(out: dict, env: dict, file=None) -> None:
    f = sys.stdout if file is None else file
    dev = env["device"]
    where = env.get("gpu", dev)
    print(
        f"# chaosgd.bench gpu: device {where} ({dev}; torch {env['torch']}, CUDA "
        f"{env.get('cuda')}) against the CPU ({env['cpu']}, {env['cpus']} cores, "
        f"{env['threads']} torch threads); curvature in float64",
        file=f,
    )
    head = f"{'part':<10} {'what':<44} {'N':>5} {'device s':>10} {'cpu s':>10} {'cpu/dev':>7}  note"
    print(head, file=f)
    print("-" * len(head), file=f)
    for r in out["rows"]:
        print(
            f"{r['part']:<10} {r['what'][:44]:<44} {r['n_params']:>5} {r['device_s']:>10.4g} "
            f"{r['cpu_s']:>10.4g} {r['ratio']:>7.2f}  {r['note']}",
            file=f,
        )
    print("# seconds: median per step (readout, reorthonormalize: one call)", file=f)
    print(f"\n# agreement on identical inputs (tolerance {TOL:g})", file=f)
    for c in out["checks"]:
        mark = "ok  " if c["ok"] else "FAIL"
        print(f"{mark} {c['part']:<15} {c['what']:<58} {c['value']:.2e}", file=f)
    proj = out["projection"]
    any_side = next(iter(proj.values()))
    counts = any_side["counts"]
    print(
        f"\n# projected cost of config/config.yaml: {counts['train']} training jobs, "
        f"{counts['lyapunov']} Lyapunov jobs, {counts['ensembles']} ensemble jobs, at the "
        "per-step times above",
        file=f,
    )
    head = f"{'jobs':<26} {'n':>3} {'steps':>9} {'device h':>9} {'cpu h':>9}"
    print(head, file=f)
    print("-" * len(head), file=f)
    cpu_groups = {g["key"]: g for g in proj["cpu"]["groups"]}
    for g in proj["device"]["groups"]:
        print(
            f"{g['key']:<26} {g['jobs']:>3} {g['steps']:>9} {g['seconds'] / 3600:>9.2f} "
            f"{cpu_groups[g['key']]['seconds'] / 3600:>9.2f}",
            file=f,
        )
    print(
        f"{'total':<26} {'':>3} {'':>9} {proj['device']['total_seconds'] / 3600:>9.2f} "
        f"{proj['cpu']['total_seconds'] / 3600:>9.2f}",
        file=f,
    )
    for side in ("device", "cpu"):
        lg = proj[side]["longest"]
        print(
            f"# longest job on the {side}: {lg['run']} ({lg['stage']}, "
            f"{lg['steps']} steps) {lg['seconds'] / 3600:.2f} h",
            file=f,
        )
    print("# assumptions: " + "; ".join(out["assumptions"]), file=f)
    if out.get("sizes", {}).get("hidden", 20) != 20:
        print("# --quick: tiny models scaled up to the paper's sizes, indicative only", file=f)
    bad = [c for c in out["checks"] if not c["ok"]]
    if bad:
        print(
            f"\nFAIL: {len(bad)} of {len(out['checks'])} agreement checks above {TOL:g} "
            f"({', '.join(c['part'] + ': ' + c['what'] for c in bad)})",
            file=f,
        )
    else:
        print(
            f"\nPASS: all {len(out['checks'])} agreement checks within {TOL:g} ({dev} vs cpu)",
            file=f,
        )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``gpu`` subcommand's options."""
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


def command(args) -> int:
    """Run ``python -m chaosgd.bench gpu``; the exit status (1: an agreement check failed)."""
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            f"chaosgd.bench gpu: --device cuda, but PyTorch sees no CUDA device (torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda}); run it on a GPU machine, or "
            "with --device cpu to run both sides on the CPU",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = Sizes.quick() if args.quick else Sizes()
    out = bench_gpu(args.device, sizes, args.seed)
    env = _environment(torch.device(args.device))
    out["environment"] = env
    _print_report(out, env)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    return 0 if out["passed"] else 1
