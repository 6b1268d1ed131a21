"""Ensembles stage: directions, lockstep training against sequential training, records, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from chaosgd import ensembles, fits, lockstep, perturbations, training
from chaosgd.io import save_tensors
from chaosgd.models import assign_flat_params, build_model, flat_params
from chaosgd.settings import RunSettings
from test_train import BASE as TRAIN_BASE

F64 = torch.float64

# the training tests' small run, as a momentum-SGD reference without the spectrum
BASE = {
    **TRAIN_BASE,
    "run_id": "ref",
    "momentum": 0.9,
    "seed": 3,
    "train_size": 100,  # 13 steps per epoch, the last batch of 4
    "evals_per_epoch": 1,
    "spectrum": False,
    "checkpoint_every": 1000,
}
STEPS = 26
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def settings(**changes) -> RunSettings:
    return RunSettings(**{**BASE, **changes})


def init_theta(s: RunSettings) -> torch.Tensor:
    torch.manual_seed(s.seed)
    return flat_params(build_model(s.model, s.activation, s.hidden)).to(F64)


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


def random_dirs(n, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return {
        k: perturbations._unit(torch.randn(n, generator=gen, dtype=F64))
        for k in perturbations.STRATEGIES
    }


# -- directions ----------------------------------------------------------------------------------


def test_directions_are_unit_and_lie_in_their_subspaces():
    spec = synthetic_spectrum(40, n_pos=6, n_neutral=4)
    v = spec["vectors"]
    dirs = perturbations.directions(spec, torch.Generator().manual_seed(0))
    assert list(dirs) == list(perturbations.STRATEGIES)
    for name, d in dirs.items():
        assert d.dtype == F64 and d.shape == (40,)
        assert abs(float(d.norm()) - 1.0) < 1e-14, name
    assert torch.allclose(dirs["max_chaos"], v[:, 0], atol=1e-15, rtol=0)
    assert torch.allclose(dirs["max_convergence"], v[:, -1], atol=1e-15, rtol=0)
    chaotic, nonchaotic = v[:, :6], v[:, 10:]
    for name, basis, other in (
        ("chaotic", chaotic, v[:, 6:]),
        ("nonchaotic", nonchaotic, v[:, :10]),
    ):
        d = dirs[name]
        residual = d - basis @ (basis.T @ d)
        assert float(residual.norm()) < 1e-12, name
        # nothing along the neutral or opposite vectors, and a genuine mixture of its own
        assert float((other.T @ d).abs().max()) < 1e-12, name
        assert int(((basis.T @ d).abs() > 1e-3).sum()) >= 3, name
    # the random direction is in neither subspace
    r = dirs["random"]
    assert float((r - chaotic @ (chaotic.T @ r)).norm()) > 0.5


def test_directions_are_fixed_by_the_generator_seed():
    spec = synthetic_spectrum(30)
    a = perturbations.directions(spec, torch.Generator().manual_seed(5))
    b = perturbations.directions(spec, torch.Generator().manual_seed(5))
    c = perturbations.directions(spec, torch.Generator().manual_seed(6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(a["max_chaos"], c["max_chaos"])
    for k in ("chaotic", "nonchaotic", "random"):
        assert not torch.allclose(a[k], c[k])


@pytest.mark.parametrize("empty", ["chaotic", "nonchaotic"])
def test_empty_subspace_is_an_error_naming_the_strategy(empty):
    spec = synthetic_spectrum(20)
    exps = spec["exponents"].clone()
    if empty == "chaotic":
        exps = -exps.abs().sort().values  # all ≤ 0, still descending
        exps[:3] = 0.0
    else:
        exps = exps.abs().sort(descending=True).values
    spec["exponents"] = exps
    with pytest.raises(ValueError, match=f"strategy '{empty}'"):
        perturbations.directions(spec, torch.Generator().manual_seed(0))


def test_members_and_initial_perturbations():
    members = perturbations.plan_members([0.1, 1.0])
    assert members[0] == perturbations.Member("reference", 0.0)
    assert len(members) == 1 + 5 * 2
    dirs = random_dirs(50)
    theta0 = torch.randn(50, dtype=F64)
    thetas, d = perturbations.initial_parameters(theta0, dirs, members)
    assert torch.equal(thetas[0], theta0)
    dist = (thetas[1:] - theta0).norm(dim=1)
    eps = torch.tensor([m.eps for m in members[1:]], dtype=F64)
    assert torch.allclose(dist, eps, rtol=1e-14, atol=0)
    assert torch.equal(d[0], dirs[members[1].strategy])
    for bad in ([], [-0.1], [float("nan")], [0.1, 0.1]):
        with pytest.raises(ValueError):
            perturbations.plan_members(bad)


def test_record_steps():
    assert lockstep.record_steps(26, 1) == list(range(27))
    assert lockstep.record_steps(26, 5) == [0, 5, 10, 15, 20, 25, 26]
    assert lockstep.record_steps(25, 5) == [0, 5, 10, 15, 20, 25]
    with pytest.raises(ValueError):
        lockstep.record_steps(10, 0)


# -- lockstep training ---------------------------------------------------------------------------


def sequential(s: RunSettings, data: training.Data, thetas: torch.Tensor, dtype: str):
    """Each member alone: nn.Module, cross-entropy, backward, torch.optim.SGD, the reference's
    batches. Returns trajectories M×(T+1)×N (float64) and per-step losses / accuracies M×T."""
    trajs, losses, accs = [], [], []
    for theta in thetas:
        model = training.initial_model(s, dtype, CPU)
        assign_flat_params(model, theta)
        opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum)
        traj, loss_row, acc_row = [flat_params(model).to(F64)], [], []
        n = len(data.train_y)
        for epoch in range(s.epochs):
            order = training.epoch_order(n, s.seed, epoch)
            for start in range(0, n, s.batch_size):
                idx = order[start : start + s.batch_size]
                x, y = data.train_x[idx], data.train_y[idx]
                opt.zero_grad()
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                loss.backward()
                opt.step()
                loss_row.append(loss.item())
                acc_row.append(float((logits.argmax(1) == y).double().mean()))
                traj.append(flat_params(model).to(F64))
        trajs.append(torch.stack(traj))
        losses.append(loss_row)
        accs.append(acc_row)
    return torch.stack(trajs), np.array(losses), np.array(accs)


def curves(df: pd.DataFrame, column: str, members) -> np.ndarray:
    """(M−1)×R array of one column, rows in member order."""
    return np.stack(
        [
            df[(df.strategy == m.strategy) & (df.eps == m.eps)]
            .sort_values("step")[column]
            .to_numpy()
            for m in members[1:]
        ]
    )


# more than 25 members takes torch.cdist's inaccurate matrix-product path unless told not to
MANY_EPS = [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.5]
CASES = [
    pytest.param(dict(), "mlp", MANY_EPS, id="mlp-relu-momentum-handwritten-31members"),
    pytest.param(dict(), "func", [0.05, 0.5], id="mlp-relu-momentum-vmap"),
    pytest.param(
        dict(activation="sigmoid", momentum=0.0),
        "mlp",
        [0.05, 0.5],
        id="mlp-sigmoid-sgd-handwritten",
    ),
    pytest.param(
        dict(model="cnn", momentum=0.5, epochs=1), "func", [0.05, 0.5], id="cnn-momentum-vmap"
    ),
]


@pytest.mark.parametrize("changes, backend, eps", CASES)
def test_lockstep_equals_sequential_training_float64(fmnist_pt, changes, backend, eps):
    s = settings(dtype="float64", **changes)
    data = training.load_data(fmnist_pt, s, CPU)
    theta0 = init_theta(s)
    dirs = random_dirs(theta0.numel())
    res = lockstep.run_ensemble(s, data, theta0, dirs, eps, "float64", CPU, backend=backend)
    assert res.info["backend"] == backend
    members = perturbations.plan_members(eps)
    thetas, _ = perturbations.initial_parameters(theta0, dirs, members)
    traj, losses, accs = sequential(s, data, thetas, "float64")
    total = traj.shape[1] - 1
    assert res.info["steps"] == total

    # parameters after the last step
    assert float((res.final - traj[:, -1]).abs().max()) <= 1e-12
    # distances at every step, total and per parameter tensor, and along the direction
    diff = traj[1:] - traj[:1]
    want = diff.norm(dim=2).numpy()
    got = curves(res.distances, "distance", members)
    assert np.abs(got - want).max() <= 1e-12
    assert (np.abs(got - want) / want).max() <= 1e-10  # small ε too
    d = torch.stack([dirs[m.strategy] for m in members[1:]])
    along = (diff * d[:, None, :]).sum(2).numpy()
    assert np.abs(curves(res.distances, "distance_along", members) - along).max() <= 1e-12
    model = build_model(s.model, s.activation, s.hidden)
    start = 0
    for name, p in model.named_parameters():
        part = diff[:, :, start : start + p.numel()].norm(dim=2).numpy()
        got = curves(res.distances, "dist_" + name.replace(".", "_"), members)
        assert np.abs(got - part).max() <= 1e-12, name
        start += p.numel()
    # each member's batch loss and accuracy (NaN at the final state: no batch there)
    loss = curves(res.distances, "loss", members)
    acc = curves(res.distances, "acc", members)
    assert np.isnan(loss[:, -1]).all() and np.isnan(acc[:, -1]).all()
    assert np.abs(loss[:, :-1] - losses[1:]).max() <= 1e-12
    assert np.array_equal(acc[:, :-1], accs[1:])


def test_reference_member_equals_the_training_stage(fmnist_pt):
    """Member 0 is training.Trainer's run (spectrum off, float64): same init, batches, update."""
    s = settings(dtype="float64")
    trainer = training.Trainer(s, fmnist_pt, progress=False)
    result = trainer.run()
    ref = torch.cat([v.reshape(-1) for v in result.state_dict.values()]).to(F64)
    data = training.load_data(fmnist_pt, s, CPU)
    theta0 = init_theta(s)
    res = lockstep.run_ensemble(s, data, theta0, random_dirs(theta0.numel()), [0.1], "float64", CPU)
    assert float((res.final[0] - ref).abs().max()) <= 1e-12
    # the reference's final evaluation matches the training stage's last one
    last = result.epochs.iloc[-1]
    member0 = res.members.iloc[0]
    assert member0["strategy"] == "reference"
    assert abs(member0["train_loss"] - last["train_loss"]) <= 1e-12
    assert abs(member0["val_loss"] - last["val_loss"]) <= 1e-12
    assert member0["train_acc"] == last["train_acc"] and member0["val_acc"] == last["val_acc"]


@pytest.mark.parametrize("backend", ["mlp", "func"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_eps_zero_member_stays_bit_identical_to_the_reference(fmnist_pt, dtype, backend):
    # ε = 0 last, so that the very last member of the batch is one of them
    s = settings(dtype=dtype)
    data = training.load_data(fmnist_pt, s, CPU)
    theta0 = init_theta(s)
    res = lockstep.run_ensemble(
        s, data, theta0, random_dirs(theta0.numel()), [0.1, 0.0], dtype, CPU, backend=backend
    )
    df = res.distances
    zero, pert = df[df.eps == 0.0], df[df.eps == 0.1]
    assert len(zero) == 5 * (STEPS + 1)
    dist_cols = [c for c in df.columns if c.startswith("dist")]
    assert (zero[dist_cols] == 0.0).all().all()
    members = perturbations.plan_members([0.1, 0.0])
    for i, m in enumerate(members):
        if m.eps == 0.0:
            assert torch.equal(res.final[i], res.final[0]), m
    # the perturbed ones start at ε (float32: up to the rounding of θ0 + εd) and move
    start = pert[pert.step == 0]["distance"].to_numpy()
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert np.abs(start - 0.1).max() <= tol
    assert (
        pert[pert.step == STEPS]["distance"] != pert[pert.step == 0]["distance"].to_numpy()
    ).all()
    ref = res.members[res.members.eps == 0.0]
    assert (ref[["train_loss", "val_loss", "train_acc", "val_acc"]].nunique() == 1).all()


def test_float32_and_float64_ensembles_are_separate_trajectories(fmnist_pt):
    """Each dtype has its own reference: the float32 distances are those of float32 members to
    the float32 reference, close to but not equal to the float64 ones."""
    out = {}
    for dtype in ("float32", "float64"):
        s = settings(dtype=dtype)
        data = training.load_data(fmnist_pt, s, CPU)
        theta0 = init_theta(s)
        out[dtype] = lockstep.run_ensemble(
            s, data, theta0, random_dirs(theta0.numel()), [0.1], dtype, CPU
        )
    d32, d64 = (out[k].distances["distance"].to_numpy() for k in ("float32", "float64"))
    assert not np.array_equal(d32, d64)
    assert np.allclose(d32, d64, rtol=1e-3)
    ref32, ref64 = out["float32"].final[0], out["float64"].final[0]
    assert 0 < float((ref32 - ref64).abs().max()) < 1e-4


def test_thinned_records_equal_the_full_record(fmnist_pt):
    s = settings()
    data = training.load_data(fmnist_pt, s, CPU)
    theta0 = init_theta(s)
    dirs = random_dirs(theta0.numel())
    full = lockstep.run_ensemble(s, data, theta0, dirs, [0.1], "float32", CPU).distances
    thin = lockstep.run_ensemble(
        s, data, theta0, dirs, [0.1], "float32", CPU, record_every=5
    ).distances
    assert sorted(thin.step.unique()) == [0, 5, 10, 15, 20, 25, 26]
    pd.testing.assert_frame_equal(
        thin.reset_index(drop=True), full[full.step.isin(thin.step.unique())].reset_index(drop=True)
    )


def test_non_finite_training_is_an_error(fmnist_pt):
    s = settings(lr=1e6, momentum=0.0, dtype="float32")
    data = training.load_data(fmnist_pt, s, CPU)
    theta0 = init_theta(s)
    with pytest.raises(training.TrainingError, match="non-finite"):
        lockstep.run_ensemble(s, data, theta0, random_dirs(theta0.numel()), [10.0], "float32", CPU)


def test_only_sgd_references_can_be_perturbed():
    s = settings(variant="cgd-negative")
    with pytest.raises(ValueError, match="run ref: .*plain SGD"):
        perturbations.check_reference(s, {"theta0": torch.zeros(5350, dtype=F64), "run_id": "ref"})


# -- command line --------------------------------------------------------------------------------

DIST_COLUMNS = {
    "dtype": "str",
    "strategy": "str",
    "eps": "float64",
    "step": "int64",
    "distance": "float64",
    "distance_along": "float64",
    "dist_1_weight": "float64",
    "dist_1_bias": "float64",
    "dist_3_weight": "float64",
    "dist_3_bias": "float64",
    "loss": "float64",
    "acc": "float64",
}
MEMBER_COLUMNS = {
    "dtype": "str",
    "strategy": "str",
    "eps": "float64",
    "train_loss": "float64",
    "train_acc": "float64",
    "val_loss": "float64",
    "val_acc": "float64",
    "final_distance": "float64",
}


def cli(s: RunSettings, data, spectrum, folder, *extra):
    out = {
        k: folder / f"{k}.{ext}"
        for k, ext in (("distances", "parquet"), ("members", "parquet"), ("info", "json"))
    }
    args = s.to_args() + ["--data", str(data), "--spectrum-file", str(spectrum), "--no-progress"]
    args += [a for k, p in out.items() for a in (f"--out-{k}", str(p))]
    return ensembles.main(args + list(extra)), out


def small(**changes) -> RunSettings:
    return settings(hidden=4, **changes)  # N = 1078: a full synthetic spectrum stays cheap


def write_spectrum(path, s: RunSettings, **kw):
    theta0 = init_theta(s)
    save_tensors(synthetic_spectrum(theta0.numel(), theta0=theta0, run_id=s.run_id, **kw), path)
    return path


def test_cli_end_to_end(tmp_path, fmnist_pt):
    s = small(momentum=0.0)
    spectrum = write_spectrum(tmp_path / "spectrum_final.pt", s)
    # exact readouts at 7 and 13 are recorded despite --record-every 4; a Benettin row is not
    exponents = pd.DataFrame(
        {
            "step": [7, 9, 13],
            "method": ["svd", "benettin", "svd_deflated"],
            "lambda_1": [1e-2, 1e-2, 1e-2],
            "lambda_N": [-1e-2, -1e-2, -1e-2],
        }
    )
    exponents.to_parquet(tmp_path / "exponents.parquet", index=False)
    extra = ["--eps", "0.1", "1", "--dtypes", "float32", "float64", "--record-every", "4"]
    extra += ["--baseline-steps", "20", "--direction-seed", "7"]
    extra += ["--exponents", str(tmp_path / "exponents.parquet")]
    rc, out = cli(s, fmnist_pt, spectrum, tmp_path / "ens", *extra)
    assert rc == 0
    dist = pd.read_parquet(out["distances"])
    members = pd.read_parquet(out["members"])
    info = json.loads(out["info"].read_text())
    assert {c: str(t) for c, t in dist.dtypes.items()} == DIST_COLUMNS
    assert {c: str(t) for c, t in members.dtypes.items()} == MEMBER_COLUMNS
    steps = [0, 4, 7, 8, 12, 13, 16, 20, 24, 26]
    assert len(dist) == 2 * 5 * 2 * len(steps)
    for _, curve in dist.groupby(["dtype", "strategy", "eps"]):
        assert curve["step"].tolist() == steps
        assert abs(curve["distance"].iloc[0] - curve["eps"].iloc[0]) < 1e-5 * curve["eps"].iloc[0]
        assert np.isnan(curve["loss"].iloc[-1]) and np.isfinite(curve["loss"].iloc[:-1]).all()
    assert set(dist.strategy) == set(perturbations.STRATEGIES)
    assert len(members) == 2 * 11
    assert (members.groupby("dtype")["strategy"].first() == "reference").all()
    assert (members[members.strategy == "reference"]["final_distance"] == 0).all()
    last = dist[dist.step == 26].set_index(["dtype", "strategy", "eps"])["distance"]
    pert = members[members.strategy != "reference"].set_index(["dtype", "strategy", "eps"])[
        "final_distance"
    ]
    pd.testing.assert_series_equal(pert.sort_index(), last.sort_index(), check_names=False)
    assert info["run_id"] == "ref" and info["dtypes"] == ["float32", "float64"]
    for run in info["ensembles"]:
        assert run["members"] == 11 and run["steps"] == 26 and run["backend"] == "mlp"
        assert run["seconds_per_step"] > 0 and run["single_seconds_per_step"] > 0
        assert run["ratio"] == pytest.approx(
            run["seconds_per_step"] / run["single_seconds_per_step"]
        )
    assert info["environment"]["device"] == "cpu" and "torch" in info["environment"]

    # the fits stage reads these outputs as they are
    rc = fits.main(
        ["--distances", str(out["distances"]), "--exponents", str(tmp_path / "exponents.parquet")]
        + [
            "--out-fits",
            str(tmp_path / "fits.parquet"),
            "--out-bounds",
            str(tmp_path / "b.parquet"),
        ]
    )
    assert rc == 0
    fitted = pd.read_parquet(tmp_path / "fits.parquet")
    assert len(fitted) == 20 and (fitted["bound_steps"] == 2).all() and (fitted["n"] == 10).all()


def errors(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return [line for line in err if line.startswith("error:")]


@pytest.mark.parametrize(
    "case", ["cgd", "other-seed", "other-run", "empty-chaotic", "negative-eps", "record-every"]
)
def test_cli_errors_leave_no_outputs(tmp_path, fmnist_pt, capsys, case):
    s = small()
    spectrum_settings, kw, extra = s, {}, ["--eps", "0.1"]
    if case == "cgd":
        s = small(variant="cgd-negative")
    elif case == "other-seed":
        spectrum_settings = small(seed=4)
    elif case == "other-run":
        spectrum_settings = small(run_id="someone-else")
    elif case == "empty-chaotic":
        kw = dict(n_pos=0)
    elif case == "negative-eps":
        extra = ["--eps", "0.1", "-1"]
    elif case == "record-every":
        extra += ["--record-every", "0"]
    spectrum = write_spectrum(tmp_path / "spectrum_final.pt", spectrum_settings, **kw)
    rc, out = cli(s, fmnist_pt, spectrum, tmp_path / "ens", *extra)
    assert rc == 1
    lines = errors(capsys)
    assert len(lines) == 1, lines
    assert not (tmp_path / "ens").exists() or not any((tmp_path / "ens").iterdir())
    if case == "cgd":
        assert "plain SGD" in lines[0] and "run ref" in lines[0]
    if case == "empty-chaotic":
        assert "'chaotic'" in lines[0]
