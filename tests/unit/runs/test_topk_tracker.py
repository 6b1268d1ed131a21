"""The Lyapunov stage with k tangent vectors (``--topk``): at k = N the exact stage's spectrum;
at k < N lower bounds of the exact exponents at every readout; resumable bit for bit; and a
ResNet with BatchNorm, whose N×N map no path could afford, without any Hessian spectrum."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from chaosgd import lyapunov
from chaosgd.engine.exponents import TOPK_METHODS
from chaosgd.engine.topk_tangent import overlap_bound
from chaosgd.planning.run_settings import RunSettings
from chaosgd.runs import run_outputs
from chaosgd.runs.artifacts import load_tensors

from support.runs import LYAP, TRAIN_BASE, Crash, CrashAt, lyap_args

pytestmark = pytest.mark.usefixtures("one_thread")

N = 544  # the MLP 256-2-10


def settings(**changes) -> RunSettings:
    base = {**TRAIN_BASE, "hidden": 2, "train_size": 48, "epochs": 2, "dtype": "float64"}
    return RunSettings(**{**base, "lr": 0.05, **changes})


def run(s, data, folder, **lyap):
    folder.mkdir(parents=True, exist_ok=True)
    files = {**run_outputs.OUTPUT_FILES, **lyapunov.LYAP_OUTPUTS}
    out = {k: folder / name for k, name in files.items()}
    args = s.to_args() + lyap_args(**lyap) + ["--data", str(data), "--no-progress"]
    args += [a for k, p in out.items() for a in (f"--out-{k}", str(p))]
    args += ["--checkpoint", str(folder / "checkpoint.pt")]
    return lyapunov.main(args), out


@pytest.mark.parametrize("variant, momentum", [("sgd", 0.0), ("cgd-negative", 0.0), ("sgd", 0.9)])
def test_all_n_vectors_give_the_exact_spectrum(tmp_path, fmnist_pt, variant, momentum):
    """k = N: σ_i(Y Q0) = σ_i(Y) for an orthogonal Q0, so the matrix-free map's readouts are
    the exact stage's (SGD, CGD's projection, the momentum recursion), to the folds' rounding."""
    # one epoch, λ1 every 3rd step: each value is an SVD of the N×N factor here
    s = settings(variant=variant, momentum=momentum, epochs=1)
    rc, exact = run(s, fmnist_pt, tmp_path / "exact", lambda1_every=3)
    assert rc == 0
    rc, topk = run(s, fmnist_pt, tmp_path / "topk", topk=N, lambda1_every=3)
    assert rc == 0
    a, b = pd.read_parquet(exact["exponents"]), pd.read_parquet(topk["exponents"])
    assert set(b["method"]) <= set(TOPK_METHODS) and a["step"].tolist() == b["step"].tolist()
    for col in ("lambda_1", "lambda_N", "q0.5"):
        np.testing.assert_allclose(b[col], a[col], rtol=0, atol=1e-9, err_msg=col)
    counts = ["n_positive", "n_negative"]
    assert (a[counts].to_numpy() == b[counts].to_numpy()).all()
    sa, sb = load_tensors(exact["spectrum"]), load_tensors(topk["spectrum"])
    assert sb["topk"] == N and sa["topk"] == 0
    np.testing.assert_allclose(sb["exponents"], sa["exponents"], rtol=0, atol=1e-9)
    # the chaotic subspace, not single vectors (the exponents may be close)
    sel = sa["n_chaotic"]
    assert sb["n_chaotic"] == sel
    if sel:
        va, vb = sa["vectors"][:, :sel].numpy(), sb["vectors"][:, :sel].numpy()
        assert np.abs(va @ va.T - vb @ vb.T).max() < 1e-7
    # the training it followed is the same training
    assert exact["steps"].read_bytes() == topk["steps"].read_bytes()
    # App. C.2 on the same subspaces
    ca, cb = pd.read_parquet(exact["subspaces"]), pd.read_parquet(topk["subspaces"])
    np.testing.assert_allclose(cb["similarity_chaotic"], ca["similarity_chaotic"], atol=1e-7)


def test_fewer_vectors_bound_the_exact_exponents_from_below(tmp_path, fmnist_pt):
    """k < N: λ̂_i ≤ λ_i at every readout (interlacing), λ̂1 per step ≤ the exact λ1, and at
    the end within the derived bound: 0 ≤ Σ_{j≤i}(λ_j − λ̂_j) ≤ β_i/t, β_i from Q0 and the exact
    Lyapunov vectors (chaosgd.engine.topk_tangent.overlap_bound)."""
    s = settings()
    rc, exact = run(s, fmnist_pt, tmp_path / "exact")
    assert rc == 0
    k = 5
    rc, topk = run(s, fmnist_pt, tmp_path / "topk", topk=k)
    assert rc == 0
    a, b = pd.read_parquet(exact["exponents"]), pd.read_parquet(topk["exponents"])
    assert (b["lambda_1"] <= a["lambda_1"] + 1e-12).all()
    assert (b[["n_positive", "n_negative", "n_neutral"]].sum(axis=1) == k).all()
    la, lb = pd.read_parquet(exact["lambda1"]), pd.read_parquet(topk["lambda1"])
    assert la["step"].tolist() == lb["step"].tolist()
    assert (lb["lambda_1"] <= la["lambda_1"] + 1e-9).all() and (lb["iterations"] == 0).all()
    final_a, final_b = load_tensors(exact["spectrum"]), load_tensors(topk["spectrum"])
    assert final_b["vectors"].shape == (N, k) and final_b["topk"] == k
    ea, eb = final_a["exponents"].numpy(), final_b["exponents"].numpy()
    assert (eb <= ea[:k] + 1e-12).all()
    ns = argparse.Namespace(**{**LYAP, "topk": k})
    _, hook, _ = lyapunov.make_trainer(s, fmnist_pt, ns, None, progress=False)
    beta = overlap_bound(hook.tangent.q0, final_a["vectors"][:, :k])
    gap = np.cumsum(ea[:k] - eb)
    t = int(final_a["t"])
    assert (gap >= -1e-10).all() and (gap <= beta / t + 1e-10).all(), (gap, beta / t)
    subs = pd.read_parquet(topk["subspaces"])
    assert len(subs) and (subs["dim_chaotic"] <= k).all()
    info = json.loads(topk["info"].read_text())["result"]["lyapunov"]
    assert info["topk"] == k


def test_a_resumed_topk_map_equals_the_uninterrupted_one(tmp_path, fmnist_pt):
    s = settings(checkpoint_every=2)
    rc, ref = run(s, fmnist_pt, tmp_path / "ref", topk=7)
    assert rc == 0
    folder = tmp_path / "crashed"
    ns = argparse.Namespace(**{**LYAP, "topk": 7})
    trainer, _, _ = lyapunov.make_trainer(
        s, fmnist_pt, ns, folder / "checkpoint.pt", progress=False
    )
    trainer.hooks["crash"] = CrashAt(5)
    with pytest.raises(Crash):
        trainer.run()
    rc, out = run(s, fmnist_pt, folder, topk=7)
    assert rc == 0
    assert json.loads(out["info"].read_text())["result"]["resumed_from_step"] == 4
    for name in ("exponents", "lambda1", "subspaces", "steps", "spectrum"):
        assert ref[name].read_bytes() == out[name].read_bytes(), name


def test_a_checkpoint_of_another_k_is_not_resumed(tmp_path, fmnist_pt):
    s = settings(checkpoint_every=2)
    folder = tmp_path / "run"
    ns = argparse.Namespace(**{**LYAP, "topk": 7})
    trainer, _, _ = lyapunov.make_trainer(s, fmnist_pt, ns, folder / "checkpoint.pt", False)
    trainer.hooks["crash"] = CrashAt(5)
    with pytest.raises(Crash):
        trainer.run()
    rc, out = run(s, fmnist_pt, folder, topk=6)
    assert rc == 0
    assert json.loads(out["info"].read_text())["result"]["resumed_from_step"] is None


def test_a_resnet_without_any_spectrum(tmp_path, fmnist_pt):
    """BatchNorm and skips: plain SGD, spectrum off; the map needs only Hessian-vector
    products."""
    s = settings(model="resnet", depth=8, hidden=2, spectrum=False, dtype="float32", lr=0.01)
    rc, out = run(s, fmnist_pt, tmp_path / "resnet", topk=4)
    assert rc == 0
    e = pd.read_parquet(out["exponents"])
    assert e["step"].is_monotonic_increasing and len(e) >= 3
    assert np.isfinite(e["lambda_1"]).all() and set(e["method"]) <= set(TOPK_METHODS)
    assert load_tensors(out["spectrum"])["vectors"].shape[1] == 4


def test_k_beyond_the_parameters_is_refused(tmp_path, fmnist_pt, capsys):
    rc, out = run(settings(), fmnist_pt, tmp_path / "big", topk=N + 1)
    assert rc == 1
    assert f"--topk {N + 1} exceeds its {N} parameters" in capsys.readouterr().err
    assert not any(p.exists() for p in out.values())
