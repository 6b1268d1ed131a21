"""CGD with curvature "topk": the matrix-free top-k path trains as the exact one does on the
paper's MLP, resumes bit for bit, and trains a ResNet with BatchNorm, whose whole spectrum the
exact paths cannot afford."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from chaosgd.planning.run_settings import RunSettings
from chaosgd.runs import trainer
from chaosgd.runs.artifacts import load_tensors

from support.runs import TRAIN_BASE, Crash, CrashAt, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


def settings(**changes) -> RunSettings:
    # float64 training: the two paths then differ by the eigensolvers' tolerance, not by float32
    # rounding of the projected gradient
    base = {**TRAIN_BASE, "dtype": "float64", "epochs": 1, "train_size": 96, "lr": 0.05}
    return RunSettings(**{**base, **changes})


@pytest.mark.parametrize("variant", ["cgd-negative-top5", "cgd-chaotic-top3", "cgd-positive-top4"])
def test_topk_prunes_as_the_exact_eigenpairs_do_on_the_paper_mlp(fmnist_pt, variant):
    """The same run with the exact eigenpairs (auto: the MLP's range basis) and with the top-k
    path: the same eigenpairs pruned at every step, and parameters equal to the tolerance the
    eigensolvers are certified to (1e-10 relative residuals; 1e-8 here after 12 steps)."""
    exact = trainer.Trainer(settings(variant=variant), fmnist_pt, progress=False).run()
    topk = trainer.Trainer(
        settings(variant=variant, curvature="topk"), fmnist_pt, progress=False
    ).run()
    assert (exact.steps["n_pruned"] > 0).all()
    assert exact.steps["n_pruned"].tolist() == topk.steps["n_pruned"].tolist()
    # the extremes: stopped at residual 1e-6·max|λ| (topk_curvature's rule), so within ~1e-5
    scale = exact.steps["lambda_max"].abs().max()
    for key in ("lambda_min", "lambda_max"):
        assert (exact.steps[key] - topk.steps[key]).abs().max() <= 1e-5 * scale, key
    assert (topk.steps["topk_residual"] <= 1e-10).all()
    assert (topk.steps["curvature_method"] == "topk").all()
    for name, a in exact.state_dict.items():
        b = topk.state_dict[name]
        assert torch.allclose(a, b, rtol=0, atol=1e-8 * float(a.abs().max())), name
    # what top-k cannot know is not written: no counts of the whole spectrum, no spectra rows
    assert "n_negative" not in topk.steps and topk.spectra.empty


def test_a_resumed_topk_run_equals_the_uninterrupted_one(tmp_path, fmnist_pt):
    """The warm start shapes the next step's rounding: it is in the checkpoint."""
    s = settings(variant="cgd-negative-top3", curvature="topk", checkpoint_every=4)
    rc, ref = run_cli(s, fmnist_pt, tmp_path / "ref")
    assert rc == 0
    folder = tmp_path / "crashed"
    job = trainer.Trainer(
        s,
        fmnist_pt,
        hooks={"crash": CrashAt(7)},
        checkpoint=folder / "checkpoint.pt",
        progress=False,
    )
    with pytest.raises(Crash):
        job.run()
    rc, out = run_cli(s, fmnist_pt, folder)
    assert rc == 0
    assert json.loads(out["info"].read_text())["result"]["resumed_from_step"] == 4
    assert ref["steps"].read_bytes() == out["steps"].read_bytes()
    a, b = load_tensors(ref["final"]), load_tensors(out["final"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_resnet_trains_with_topk_pruning(fmnist_pt):
    """BatchNorm and skip connections: CGD prunes the 3 most negative eigenpairs of every
    step's minibatch Hessian of a ResNet-20 of width 2, certified, with the BatchNorm statistics of the
    batch (the map training applies)."""
    s = settings(
        variant="cgd-negative-top3",
        curvature="topk",
        model="resnet",
        hidden=2,
        train_size=48,
        dtype="float32",
        lr=0.01,
    )
    res = trainer.Trainer(s, fmnist_pt, progress=False).run()
    steps = pd.DataFrame(res.steps)
    assert len(steps) == 6 and (steps["n_pruned"] == 3).all()
    assert (steps["lambda_min"] < 0).all() and (steps["topk_residual"] <= 1e-10).all()
    assert steps["topk_hvps"].gt(0).all()
