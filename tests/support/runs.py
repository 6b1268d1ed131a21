"""Small runs the stage tests share: settings, command lines and crash hooks."""

from __future__ import annotations

import torch

from chaosgd import ensembles, train
from chaosgd.engine.models import build_model, flat_params
from chaosgd.planning.run_settings import RunSettings
from chaosgd.runs import perturbations, run_outputs
from chaosgd.runs.artifacts import save_tensors

TRAIN_BASE = dict(
    run_id="t",
    dataset="fmnist",
    model="mlp",
    activation="relu",
    hidden=20,
    variant="sgd",
    onset=0,
    momentum=0.0,
    seed=0,
    lr=0.01,
    batch_size=8,
    epochs=2,
    dtype="float32",
    train_size=96,
    test_size=64,
    subset_seed=0,
    evals_per_epoch=2,
    spectrum=True,
    curvature="auto",
    noise_scale=0.0,
    checkpoint_every=5,
    device="cpu",
)


def run_cli(s: RunSettings, data, folder, checkpoint=True) -> tuple[int, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {k: folder / name for k, name in run_outputs.OUTPUT_FILES.items()}
    args = s.to_args() + ["--data", str(data), "--no-progress"]
    args += [a for k, p in out.items() for a in (f"--out-{k}", str(p))]
    if checkpoint:
        args += ["--checkpoint", str(folder / "checkpoint.pt")]
    return train.main(args), out


class Crash(Exception):
    pass


class CrashAt:
    """A hook that kills the run after a given step (as a SIGKILL would, minus the OS)."""

    def __init__(self, step):
        self.step = step

    def after_step(self, step, eig, pruned):
        if step == self.step:
            raise Crash

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


LYAP = dict(
    readouts=3,
    quantiles=[0.1, 0.5, 0.9],
    neutral_tol=1e-8,
    reorth_every=3,
    early_readouts=1,
    anchors=[2, 100],
    lambda1_every=1,
)


def lyap_args(**changes) -> list[str]:
    opts = {**LYAP, **changes}
    return [
        "--readouts", str(opts["readouts"]),
        "--neutral-tol", str(opts["neutral_tol"]), "--reorth-every", str(opts["reorth_every"]),
        "--lambda1-every", str(opts["lambda1_every"]),
        "--quantiles", *map(str, opts["quantiles"]),
        "--early-readouts", str(opts["early_readouts"]), "--anchors", *map(str, opts["anchors"]),
    ] + (["--topk", str(opts["topk"])] if opts.get("topk") else [])  # fmt: skip


ENSEMBLE_BASE = {
    **TRAIN_BASE,
    "run_id": "ref",
    "momentum": 0.9,
    "seed": 3,
    "train_size": 100,  # 13 steps per epoch, the last batch of 4
    "evals_per_epoch": 1,
    "spectrum": False,
    "checkpoint_every": 1000,
}


F64 = torch.float64


def init_theta(s: RunSettings) -> torch.Tensor:
    torch.manual_seed(s.seed)
    model = build_model(s.model, s.activation, s.hidden, image_side=s.image_side, depth=s.depth)
    return flat_params(model).to(F64)


def synthetic_spectrum(
    n, n_pos=5, n_neutral=3, t=1000, tol=1e-2, seed=0, theta0=None, run_id="ref"
):
    """A spectrum_final-like dict: orthonormal vectors (QR of a random matrix), made-up exponents
    sorted descending: n_pos chaotic, n_neutral with |λt| < tol, the rest non-chaotic."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    n_neg = n - n_pos - n_neutral
    exps = torch.cat(
        [
            torch.linspace(2e-3, 5e-4, n_pos, dtype=F64),
            torch.linspace(tol / t / 2, -tol / t / 2, n_neutral, dtype=F64),
            torch.linspace(-1e-4, -3e-3, n_neg, dtype=F64),
        ]
    )
    return {
        "exponents": exps,
        "vectors": q,
        "t": t,
        "method": "svd",
        "neutral_tol": tol,
        "n_chaotic": n_pos,
        "n_nonchaotic": n_neg,
        "theta0": theta0 if theta0 is not None else torch.zeros(n, dtype=F64),
        "run_id": run_id,
    }


def ensembles_cli(s: RunSettings, data, spectrum, folder, *extra):
    out = {
        k: folder / f"{k}.{ext}"
        for k, ext in (("distances", "parquet"), ("members", "parquet"), ("info", "json"))
    }
    args = s.to_args() + ["--data", str(data), "--spectrum-file", str(spectrum), "--no-progress"]
    args += [a for k, p in out.items() for a in (f"--out-{k}", str(p))]
    return ensembles.main(args + list(extra)), out


def small_ensemble(**changes) -> RunSettings:
    return RunSettings(
        **{**ENSEMBLE_BASE, "hidden": 4, **changes}
    )  # N = 1078: a full synthetic spectrum stays cheap


def write_spectrum(path, s: RunSettings, **kw):
    theta0 = init_theta(s)
    save_tensors(synthetic_spectrum(theta0.numel(), theta0=theta0, run_id=s.run_id, **kw), path)
    return path


def random_dirs(n, seed=1):
    """A random unit direction per strategy: stand-ins for a reference's Lyapunov directions."""
    gen = torch.Generator().manual_seed(seed)
    dirs = {k: torch.randn(n, generator=gen, dtype=F64) for k in perturbations.STRATEGIES}
    return {k: v / torch.linalg.vector_norm(v) for k, v in dirs.items()}
