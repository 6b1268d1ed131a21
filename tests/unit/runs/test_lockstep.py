"""Lockstep ensembles against sequential training of each member (float64 to rounding), the
records, an ε = 0 member bit-identical to the reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from chaosgd.engine.models import assign_flat_params, build_model, flat_params
from chaosgd.planning.run_settings import RunSettings
from chaosgd.runs import lockstep, perturbations, trainer
from chaosgd.runs.data import Data, epoch_order, initial_model, load_data

from support.runs import (
    ENSEMBLE_BASE,
    F64,
    init_theta,
    random_dirs,
)

STEPS = 26
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_thread")


def settings(**changes) -> RunSettings:
    return RunSettings(**{**ENSEMBLE_BASE, **changes})


def test_record_steps():
    assert lockstep.record_steps(26, 1) == list(range(27))
    assert lockstep.record_steps(26, 5) == [0, 5, 10, 15, 20, 25, 26]
    assert lockstep.record_steps(25, 5) == [0, 5, 10, 15, 20, 25]
    with pytest.raises(ValueError):
        lockstep.record_steps(10, 0)


def sequential(s: RunSettings, data: Data, thetas: torch.Tensor, dtype: str):
    """Each member alone: nn.Module, cross-entropy, backward, torch.optim.SGD, the reference's
    batches. Returns trajectories M×(T+1)×N (float64) and per-step losses / accuracies M×T."""
    trajs, losses, accs = [], [], []
    for theta in thetas:
        model = initial_model(s, dtype, CPU)
        assign_flat_params(model, theta)
        opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum)
        traj, loss_row, acc_row = [flat_params(model).to(F64)], [], []
        n = len(data.train_y)
        for epoch in range(s.epochs):
            order = epoch_order(n, s.seed, epoch)
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
    # BatchNorm: each member normalized by its own batch statistics, as the module in train mode
    pytest.param(
        dict(model="resnet", hidden=2, momentum=0.5, epochs=1),
        "func",
        [0.05, 0.5],
        id="resnet-batchnorm-momentum-vmap",
    ),
]


@pytest.mark.parametrize("changes, backend, eps", CASES)
def test_lockstep_equals_sequential_training_float64(fmnist_pt, changes, backend, eps):
    s = settings(dtype="float64", **changes)
    data = load_data(fmnist_pt, s, CPU)
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
    """Member 0 is trainer.Trainer's run (spectrum off, float64): same init, batches, update."""
    s = settings(dtype="float64")
    job = trainer.Trainer(s, fmnist_pt, progress=False)
    result = job.run()
    ref = torch.cat([v.reshape(-1) for v in result.state_dict.values()]).to(F64)
    data = load_data(fmnist_pt, s, CPU)
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
    data = load_data(fmnist_pt, s, CPU)
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
        data = load_data(fmnist_pt, s, CPU)
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
    data = load_data(fmnist_pt, s, CPU)
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
    data = load_data(fmnist_pt, s, CPU)
    theta0 = init_theta(s)
    with pytest.raises(trainer.TrainingError, match="non-finite"):
        lockstep.run_ensemble(s, data, theta0, random_dirs(theta0.numel()), [10.0], "float32", CPU)
