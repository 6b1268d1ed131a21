"""The four parts of ``python -m chaosgd.tools.bench gpu`` (curvature, tangent, ensembles, fig1),
each run on the device and on the CPU side by side on identical inputs, and the sizes they run at.

Each part returns its table rows (seconds per step on both sides), its agreement checks where the
inputs are identical, and the per-step medians the paper-cost projection scales up.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from dataclasses import dataclass

import torch

from chaosgd.engine.curvature import hessian_eigenpairs
from chaosgd.engine.models import (
    build_model,
    flat_params,
    hessian_structure,
    make_loss_fn,
    num_params,
)
from chaosgd.engine.tangent_map import TangentMap
from chaosgd.planning.job_costs import n_params
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.vocab import DATASETS, DTYPES, STRATEGIES
from chaosgd.runs.artifacts import save_tensors
from chaosgd.runs.data import Data, initial_model
from chaosgd.runs.lockstep import run_ensemble
from chaosgd.runs.trainer import Trainer
from chaosgd.tools.bench.agreement import Check, compare_eigenpairs, max_rel_diff
from chaosgd.tools.bench.timing import median, sync, synthetic_batches, timed

__all__ = [
    "FIG1_VARIANTS",
    "Sizes",
    "curvature_part",
    "tangent_part",
    "ensembles_part",
    "fig1_part",
]

FIG1_VARIANTS = ("sgd", "cgd-chaotic", "cgd-negative", "cgd-positive")


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


def _row(part, what, n, dev_s, cpu_s, steps, note="") -> dict:
    """One table row: a part's seconds per step on the device and on the CPU, and their ratio."""
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


def curvature_part(arch: str, sz: Sizes, sides, seed: int):
    """Part 1 for one architecture: rows, checks, and the CPU side's nonzero eigenpairs (for the
    tangent map) and per-step medians of both sides."""
    torch.manual_seed(seed)
    model = build_model(arch, "relu", hidden=sz.hidden)
    models = {name: copy.deepcopy(model).to(dev) for name, dev in sides.items()}
    gens = {name: torch.Generator(dev).manual_seed(seed + 7_919) for name, dev in sides.items()}
    hints: dict[str, int | None] = {name: None for name in sides}
    next_batch = synthetic_batches(sz.batch, seed, torch.device("cpu"))
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

            eig, dt = timed(call, dev)
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
    med = {name: median(times[name]) for name in sides}
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
        _, dt = timed(lambda: tm.step_sgd(lr, lam, vec), dev)
        secs.append(dt)
    return tm, secs


def _small_map_eigenpairs(sz: Sizes, seed: int):
    """Eigenpairs of ``readout_steps`` real minibatch Hessians of the readout's smaller MLP."""
    torch.manual_seed(seed)
    model = build_model("mlp", "relu", hidden=sz.readout_hidden)
    next_batch = synthetic_batches(sz.batch, seed + 1, torch.device("cpu"))
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


def tangent_part(sz: Sizes, sides, eigs, n: int, seed: int):
    """Part 2: step_sgd at the MLP's size with part 1's eigenpairs, one fold, one readout."""
    rows, checks, maps, med = [], [], {}, {}
    step_s, fold_s, read_s = {}, {}, {}
    for name, dev in sides.items():
        _tangent_side(n, eigs, 1, sz.lr, dev)  # warm-up: first-call overheads
        maps[name], secs = _tangent_side(n, eigs, sz.tangent_steps, sz.lr, dev)
        step_s[name] = median(secs)
    checks.append(
        Check(
            "tangent",
            "Q after the steps, max|dQ|/max|Q|",
            max_rel_diff(maps["device"].Q, maps["cpu"].Q),
        )
    )
    for name, dev in sides.items():
        _, fold_s[name] = timed(maps[name].reorthonormalize, dev)
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
        out, read_s[name] = timed(tm.readout, dev)
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


def ensembles_part(sz: Sizes, sides, seed: int):
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
        diverged = max_rel_diff(final["device", dtype], final["cpu", dtype])
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
        sync(self.device)
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


def fig1_part(sz: Sizes, sides, seed: int):
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
                secs[name] = median(intervals)
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
            diverged = max_rel_diff(theta["device"], theta["cpu"])
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
