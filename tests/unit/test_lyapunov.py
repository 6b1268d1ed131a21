"""Lyapunov stage: the spectra of a real (tiny) training run against an independent dense
reference, equality of its training outputs with the training stage's, resume, tables."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.func import hessian

from chaosgd import lyapunov
from chaosgd.engine.models import build_model, flat_params, make_loss_fn
from chaosgd.runs import run_outputs, trainer
from chaosgd.runs.artifacts import load_tensors
from chaosgd.runs.data import epoch_order

from support.runs import LYAP, TRAIN_BASE, Crash, CrashAt, lyap_args, run_cli


def settings(**changes):
    # 2 hidden units: N = 544, so the dense reference below is cheap
    return trainer.RunSettings(
        **{**TRAIN_BASE, "hidden": 2, "train_size": 48, "epochs": 1, "dtype": "float64", **changes}
    )


def run_lyapunov(s, data, folder, checkpoint=True, **lyap):
    folder.mkdir(parents=True, exist_ok=True)
    files = {**run_outputs.OUTPUT_FILES, **lyapunov.LYAP_OUTPUTS}
    out = {k: folder / name for k, name in files.items()}
    args = s.to_args() + lyap_args(**lyap) + ["--data", str(data), "--no-progress"]
    args += [a for k, p in out.items() for a in (f"--out-{k}", str(p))]
    if checkpoint:
        args += ["--checkpoint", str(folder / "checkpoint.pt")]
    return lyapunov.main(args), out


class Recorder:
    """Records the parameters after every step, for the dense reference."""

    def __init__(self, model):
        self.model = model
        self.thetas = [flat_params(model).double()]

    def after_step(self, step, eig, pruned):
        self.thetas.append(flat_params(self.model).double())

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def dense_reference(s, data_path):
    """Y(T) multiplied out from exact dense Hessians of the recorded trajectory (short T only)."""
    job = trainer.Trainer(s, data_path, progress=False)
    rec = Recorder(job.model)
    job.hooks["rec"] = rec
    job.run()
    n_train = len(job.data.train_y)
    n = rec.thetas[0].numel()
    Y = torch.eye(n, dtype=torch.float64)
    G = torch.zeros_like(Y)
    v = s.parsed_variant
    for step in range(job.total_steps):
        epoch, within = divmod(step, job.steps_per_epoch)
        idx = epoch_order(n_train, s.seed, epoch)[
            within * s.batch_size : (within + 1) * s.batch_size
        ]
        loss_fn = make_loss_fn(job.model, job.data.train_x[idx], job.data.train_y[idx])
        H = hessian(loss_fn)(rec.thetas[step])
        H = (H + H.T) / 2
        if v.optimizer == "cgd" and step >= s.onset:
            lam, V = torch.linalg.eigh(H)
            pruned = (lam < 0) & (lam.abs() > 1e-10 * lam.abs().max())
            assert v.prune_set == "negative"
            H = (V[:, ~pruned] * lam[~pruned]) @ V[:, ~pruned].T
        G = s.momentum * G + H @ Y
        Y = Y - s.lr * G
    U, sig, Vt = torch.linalg.svd(Y)
    return (torch.log(sig) / job.total_steps).numpy(), Vt.T.numpy()


@pytest.mark.parametrize("variant, momentum", [("sgd", 0.0), ("cgd-negative", 0.0), ("sgd", 0.9)])
def test_final_spectrum_matches_dense_product(tmp_path, fmnist_pt, variant, momentum):
    s = settings(variant=variant, momentum=momentum, lr=0.05)
    rc, out = run_lyapunov(s, fmnist_pt, tmp_path / "lyap")
    assert rc == 0
    spec = load_tensors(out["spectrum"])
    exps, vecs = spec["exponents"].numpy(), spec["vectors"].numpy()
    ref_exps, ref_vecs = dense_reference(s, fmnist_pt)
    assert spec["t"] == 6 and spec["method"] == "svd"
    np.testing.assert_allclose(exps, ref_exps, rtol=0, atol=1e-10)
    # the chaotic and non-chaotic subspaces (and the bottom vector, up to sign) agree
    for sign, count in ((1, "n_chaotic"), (-1, "n_nonchaotic")):
        sel, ref_sel = sign * exps * 6 > 1e-8, sign * ref_exps * 6 > 1e-8
        assert sel.sum() == ref_sel.sum() == spec[count]
        P, P_ref = vecs[:, sel] @ vecs[:, sel].T, ref_vecs[:, ref_sel] @ ref_vecs[:, ref_sel].T
        assert np.abs(P - P_ref).max() < 1e-8
    assert abs(abs(vecs[:, -1] @ ref_vecs[:, -1]) - 1) < 1e-10
    # Theorem 2.2: pruning the negative (here: all chaotic) directions leaves no chaotic one
    if variant == "cgd-negative":
        assert spec["n_chaotic"] == 0 and exps[0] < 1e-12
    else:
        assert spec["n_chaotic"] > 0
    torch.manual_seed(s.seed)
    init = flat_params(build_model(s.model, s.activation, s.hidden)).double()
    assert torch.equal(spec["theta0"], init)


def test_training_outputs_equal_the_training_stage(tmp_path, fmnist_pt):
    s = settings(dtype="float32")
    rc, lyap_out = run_lyapunov(s, fmnist_pt, tmp_path / "lyap")
    assert rc == 0
    rc, train_out = run_cli(s, fmnist_pt, tmp_path / "train")
    assert rc == 0
    for name in ("steps", "epochs", "spectra"):
        assert lyap_out[name].read_bytes() == train_out[name].read_bytes(), name
    info = json.loads(lyap_out["info"].read_text())
    # 3 even, 1 early (log-spaced from step 1), the anchors 2 and 100 clipped to the run's 6
    assert info["result"]["lyapunov"]["readout_steps"] == [1, 2, 4, 6]


def test_tables(tmp_path, fmnist_pt):
    rc, out = run_lyapunov(settings(), fmnist_pt, tmp_path / "lyap")
    assert rc == 0
    exps = pd.read_parquet(out["exponents"])
    assert exps["step"].tolist() == [1, 2, 4, 6]
    assert set(exps["method"]) == {"svd"}
    for col in ("lambda_1", "lambda_N", "q0.1", "q0.5", "q0.9", "log_range"):
        assert exps[col].dtype == np.float64
    assert "seconds" not in exps  # timings live in run.json: a rerun's table is identical
    info = json.loads(out["info"].read_text())["result"]
    each = info["lyapunov"]["readout_seconds_each"]
    assert len(each) == 4 and all(0 < x < info["wall_seconds"] for x in each)
    assert info["lyapunov"]["readout_seconds"] == pytest.approx(sum(each))
    for col in ("n_positive", "n_negative", "n_neutral"):
        assert exps[col].dtype == np.int32
    assert (exps[["n_positive", "n_negative", "n_neutral"]].sum(axis=1) == 544).all()
    assert (exps["lambda_1"] >= exps["q0.9"]).all() and (exps["q0.1"] >= exps["lambda_N"]).all()
    # App. C.2: every readout after each anchor t0 (2, and 100 clipped to 6) against it
    subs = pd.read_parquet(out["subspaces"])
    assert subs["t0"].tolist() == [2, 2] and subs["step"].tolist() == [4, 6]
    assert ((subs["similarity_chaotic"] > 0) & (subs["similarity_chaotic"] <= 1 + 1e-12)).all()
    assert (subs["dim_chaotic"] + subs["dim_nonchaotic"] <= 544).all()
    assert np.allclose(
        subs["baseline_chaotic"], np.maximum(subs["dim0_chaotic"], subs["dim_chaotic"]) / 544
    )
    # the split carries information: well above the random-subspace values
    assert (subs["similarity_chaotic"] > subs["baseline_chaotic"] + 0.2).all()
    assert (subs["similarity_chaotic"] > subs["random_chaotic"] + 0.2).all()


@pytest.mark.parametrize("variant, momentum", [("sgd", 0.0), ("cgd-chaotic", 0.9)])
def test_lambda1_every_step_equals_the_exact_readouts(tmp_path, fmnist_pt, variant, momentum):
    # 2 epochs (12 steps, folds every reorth_every = 3 in between) and a lr at which the tiny
    # MLP's map grows, so that ln σ1 is well away from 0 and a relative tolerance means something
    s = settings(variant=variant, momentum=momentum, lr=0.05, epochs=2)
    rc, out = run_lyapunov(s, fmnist_pt, tmp_path / "lyap")
    assert rc == 0
    per_step = pd.read_parquet(out["lambda1"])
    exact = pd.read_parquet(out["exponents"])
    assert per_step["step"].tolist() == list(range(1, 13))
    assert per_step["iterations"].dtype == np.int32 and (per_step["iterations"] >= 1).all()
    both = exact.merge(per_step, on="step", suffixes=("", "_step"))
    assert both["step"].tolist() == exact["step"].tolist()
    # TOP_TOL = 1e-10 bounds σ1²'s error, 5e-11 in ln σ1; 1e-9 leaves room for the bound's gap
    # estimate (engine/tangent_map.py)
    log_sigma = both["lambda_1"] * both["step"]
    err = (both["lambda_1_step"] - both["lambda_1"]) * both["step"]
    assert (err.abs() <= 1e-9 * np.maximum(log_sigma.abs(), 1.0)).all(), err


def test_lambda1_every_k_steps_and_at_every_readout(tmp_path, fmnist_pt):
    """lyapunov.lambda1_every: λ1(t) at the multiples of k and at the exact readouts, which
    check it, and nowhere else."""
    s = settings(lr=0.05, epochs=2)  # 12 steps
    rc, out = run_lyapunov(s, fmnist_pt, tmp_path / "lyap", lambda1_every=5)
    assert rc == 0
    per_step = pd.read_parquet(out["lambda1"])["step"].tolist()
    readouts = pd.read_parquet(out["exponents"])["step"].tolist()
    assert per_step == sorted({5, 10} | set(readouts))
    assert 1 in readouts and 5 not in readouts  # both parts of the rule are exercised


def test_resume_with_tangent_map_equals_uninterrupted(tmp_path, fmnist_pt):
    s = settings(checkpoint_every=2)
    rc, ref = run_lyapunov(s, fmnist_pt, tmp_path / "ref")
    assert rc == 0
    folder = tmp_path / "crashed"
    ns = argparse.Namespace(**LYAP)
    trainer, _, _ = lyapunov.make_trainer(
        s, fmnist_pt, ns, folder / "checkpoint.pt", progress=False
    )
    trainer.hooks["crash"] = CrashAt(4)  # after the step-4 checkpoint and readout
    with pytest.raises(Crash):
        trainer.run()
    rc, out = run_lyapunov(s, fmnist_pt, folder)
    assert rc == 0
    assert json.loads(out["info"].read_text())["result"]["resumed_from_step"] == 4
    names = ("exponents", "lambda1", "subspaces", "steps", "epochs", "spectra", "spectrum", "final")
    for name in names:
        assert ref[name].read_bytes() == out[name].read_bytes(), name
    a, b = load_tensors(ref["spectrum"]), load_tensors(out["spectrum"])
    assert torch.equal(a["vectors"], b["vectors"]) and torch.equal(a["exponents"], b["exponents"])


def test_needs_the_spectrum(tmp_path, fmnist_pt, capsys):
    rc, out = run_lyapunov(settings(spectrum=False), fmnist_pt, tmp_path / "lyap")
    assert rc == 1
    assert "needs spectrum: true" in capsys.readouterr().err
    assert not any(p.exists() for p in out.values())
