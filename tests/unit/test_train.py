"""Training stage on a FashionMNIST slice: outputs, determinism, resume, failures, the effect."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.schedule import spectrum_steps
from chaosgd.planning.tables import SPECTRA
from chaosgd.planning.vocab import ARCHITECTURES
from chaosgd.runs import trainer
from chaosgd.runs.artifacts import load_tensors

from support.runs import TRAIN_BASE, Crash, CrashAt, run_cli

BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def settings(**changes) -> RunSettings:
    return RunSettings(**{**TRAIN_BASE, **changes})


STEP_COLUMNS = {
    "step": "int64",
    "epoch": "int32",
    "loss": "float64",
    "acc": "float64",
    "grad_norm": "float64",
    "n_negative": "int32",
    "n_positive": "int32",
    "n_positive_chaotic": "int32",
    "n_chaotic": "int32",
    "rank": "int32",
    "lambda_min": "float64",
    "lambda_max": "float64",
    "grad_frac_positive": "float64",
    "grad_frac_negative": "float64",
    "n_pruned": "int32",
    "update_norm": "float64",
}
EPOCH_COLUMNS = {
    "step": "int64",
    "epoch": "float64",
    "train_loss": "float64",
    "train_acc": "float64",
    "val_loss": "float64",
    "val_acc": "float64",
}


def test_outputs_columns_dtypes_and_metadata(tmp_path, fmnist_pt):
    s = settings(variant="cgd-negative")
    rc, out = run_cli(s, fmnist_pt, tmp_path / "run")
    assert rc == 0
    steps = pd.read_parquet(out["steps"])
    epochs = pd.read_parquet(out["epochs"])
    for col, dtype in STEP_COLUMNS.items():
        assert str(steps[col].dtype) == dtype, col
    for col, dtype in EPOCH_COLUMNS.items():
        assert str(epochs[col].dtype) == dtype, col
    assert steps["step"].tolist() == list(range(24))  # 96 images / 8 x 2 epochs
    assert epochs["epoch"].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]
    # CGD-negative removes exactly the negative eigenspace, so its size is what is pruned
    assert (steps["n_pruned"] == steps["n_negative"]).all()
    assert (steps["n_negative"] > 0).all()
    # the gradient lies in the Hessian's range: overlaps sum to one
    total = steps["grad_frac_positive"] + steps["grad_frac_negative"]
    assert np.allclose(total, 1.0, atol=1e-8)
    state = load_tensors(out["final"])
    assert set(state) == {"1.weight", "1.bias", "3.weight", "3.bias"}
    info = json.loads(out["info"].read_text())
    assert info["settings"] == s.as_dict()
    assert info["environment"]["device"] == "cpu"
    assert info["result"]["steps"] == 24 and info["result"]["steps_per_second"] > 0
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # removed once complete


def test_sgd_without_spectrum_has_no_curvature_columns(tmp_path, fmnist_pt):
    rc, out = run_cli(settings(spectrum=False), fmnist_pt, tmp_path / "run")
    assert rc == 0
    steps = pd.read_parquet(out["steps"])
    assert "n_negative" not in steps.columns
    assert (steps["n_pruned"] == 0).all()
    # the rule's outputs are fixed: a valid table without rows
    spectra = pd.read_parquet(out["spectra"])
    assert spectra.empty and list(spectra.columns) == list(SPECTRA.columns)
    assert str(spectra["step"].dtype) == "int64" and str(spectra["eigenvalue"].dtype) == "float64"


def test_a_tiny_resnet_trains_through_the_stage_and_records_its_size(tmp_path, fmnist_pt):
    """The train stage's command line carries the depth and image side to the model, and
    run.json records them: ResNet-8 of width 2, plain SGD, 16 images, 2 steps."""
    s = settings(
        model="resnet", hidden=2, depth=8, train_size=16, test_size=16, epochs=1,
        evals_per_epoch=1, spectrum=False,
    )  # fmt: skip
    assert "--depth" in s.to_args() and "--image-side" in s.to_args()
    rc, out = run_cli(s, fmnist_pt, tmp_path / "run")
    assert rc == 0
    steps = pd.read_parquet(out["steps"])
    assert steps["step"].tolist() == [0, 1] and np.isfinite(steps["loss"]).all()
    info = json.loads(out["info"].read_text())
    assert info["settings"] == s.as_dict()
    assert (info["settings"]["depth"], info["settings"]["image_side"]) == (8, 16)
    final = load_tensors(out["final"])
    # ResNet-8: three residual blocks (of which two have projection shortcuts), BatchNorm's
    # running statistics kept beside the parameters
    blocks = {k.split(".")[0] for k in final if ".branch." in k}
    assert len(blocks) == 3 and sum(".shortcut.0." in k for k in final) == 2
    params = {k: v for k, v in final.items() if not k.endswith(BN_STATS)}
    assert sum(v.numel() for v in params.values()) == ARCHITECTURES["resnet"].n_params(2, depth=8)


def test_spectra_hold_the_nonzero_eigenvalues_at_the_evaluation_steps(tmp_path, fmnist_pt):
    rc, out = run_cli(settings(), fmnist_pt, tmp_path / "run")
    assert rc == 0
    steps = pd.read_parquet(out["steps"]).set_index("step")
    epochs = pd.read_parquet(out["epochs"])
    spectra = pd.read_parquet(out["spectra"])
    assert list(spectra.columns) == list(SPECTRA.columns)
    assert str(spectra["step"].dtype) == "int64" and str(spectra["eigenvalue"].dtype) == "float64"
    # the rows of epochs.parquet, the end of the run (step 24) by its last step
    assert epochs["step"].tolist() == [0, 6, 12, 18, 24]
    assert sorted(spectra["step"].unique()) == [0, 6, 12, 18, 23]
    assert sorted(spectra["step"].unique()) == spectrum_steps(12, 2, 2)
    by_step = spectra.groupby("step")["eigenvalue"]
    # the eigenvalues the step's diagnostics counted: as many, of the same signs and extremes
    kept = steps.loc[by_step.size().index]
    assert (by_step.size() == kept["rank"]).all()
    assert (by_step.apply(lambda v: int((v < 0).sum())) == kept["n_negative"]).all()
    assert np.allclose(by_step.max(), kept["lambda_max"], rtol=0, atol=0)
    assert np.allclose(by_step.min(), kept["lambda_min"], rtol=0, atol=0)
    assert (spectra["eigenvalue"] != 0).all()


def test_same_run_twice_gives_identical_files(tmp_path, fmnist_pt):
    s = settings(variant="cgd-chaotic-random5")
    outs = []
    for i in range(2):
        rc, out = run_cli(s, fmnist_pt, tmp_path / f"run{i}")
        assert rc == 0
        outs.append(out)
    for name in ("steps", "epochs", "spectra"):
        assert outs[0][name].read_bytes() == outs[1][name].read_bytes(), name
    a, b = load_tensors(outs[0]["final"]), load_tensors(outs[1]["final"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_variants_of_one_seed_share_initialization_and_batches(tmp_path, fmnist_pt):
    """Before the onset CGD is plain SGD: identical steps up to the onset."""
    outs = {}
    for variant, onset in (("sgd", 0), ("cgd-negative", 10)):
        rc, out = run_cli(settings(variant=variant, onset=onset), fmnist_pt, tmp_path / variant)
        assert rc == 0
        outs[variant] = pd.read_parquet(out["steps"])
    sgd, cgd = outs["sgd"], outs["cgd-negative"]
    cols = ["loss", "acc", "grad_norm"]
    pd.testing.assert_frame_equal(sgd.loc[:10, cols], cgd.loc[:10, cols])  # step 10's loss too
    pd.testing.assert_series_equal(sgd.loc[:9, "update_norm"], cgd.loc[:9, "update_norm"])
    assert sgd.loc[10, "update_norm"] != cgd.loc[10, "update_norm"]
    assert not np.allclose(sgd.loc[11:, "loss"], cgd.loc[11:, "loss"])
    assert (cgd.loc[:9, "n_pruned"] == 0).all() and (cgd.loc[10:, "n_pruned"] > 0).all()


@pytest.mark.parametrize("variant, momentum", [("cgd-negative-random3", 0.0), ("sgd", 0.9)])
def test_resume_after_crash_equals_uninterrupted_run(tmp_path, fmnist_pt, variant, momentum):
    s = settings(variant=variant, momentum=momentum, checkpoint_every=5)
    rc, ref = run_cli(s, fmnist_pt, tmp_path / "ref")
    assert rc == 0

    folder = tmp_path / "crashed"
    ckpt = folder / "checkpoint.pt"
    job = trainer.Trainer(
        s, fmnist_pt, hooks={"crash": CrashAt(13)}, checkpoint=ckpt, progress=False
    )
    with pytest.raises(Crash):
        job.run()
    assert ckpt.is_file()  # the checkpoint of step 10 survived the crash
    assert not any(folder.glob("*.parquet")) and not any(folder.glob("*.json"))

    rc, out = run_cli(s, fmnist_pt, folder)
    assert rc == 0
    info = json.loads(out["info"].read_text())
    assert info["result"]["resumed_from_step"] == 10
    for name in ("steps", "epochs", "spectra"):
        assert ref[name].read_bytes() == out[name].read_bytes(), name
    # the checkpoint of step 10 held the eigenvalues of steps 0 and 6, the resumed job the rest
    assert pd.read_parquet(out["spectra"])["step"].unique().tolist() == [0, 6, 12, 18, 23]
    a, b = load_tensors(ref["final"]), load_tensors(out["final"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_other_settings_is_ignored(tmp_path, fmnist_pt, capsys):
    folder = tmp_path / "run"
    job = trainer.Trainer(
        settings(lr=0.02),
        fmnist_pt,
        hooks={"crash": CrashAt(7)},
        checkpoint=folder / "checkpoint.pt",
        progress=False,
    )
    with pytest.raises(Crash):
        job.run()
    rc, out = run_cli(settings(), fmnist_pt, folder)
    assert rc == 0
    assert "belongs to other settings" in capsys.readouterr().err
    assert json.loads(out["info"].read_text())["result"]["resumed_from_step"] is None


def test_non_finite_loss_fails_naming_run_and_step(tmp_path, fmnist_pt, capsys):
    rc, out = run_cli(
        settings(run_id="exploding", lr=3e4, spectrum=False), fmnist_pt, tmp_path / "run"
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "run exploding: non-finite" in err and "at step" in err
    assert not any(p.exists() for p in out.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_demanded_without_gpu_fails_clearly(tmp_path, fmnist_pt, capsys):
    rc, out = run_cli(settings(device="cuda"), fmnist_pt, tmp_path / "run")
    assert rc == 1
    assert "demands CUDA (device: cuda) but no GPU is visible" in capsys.readouterr().err
    assert not any(p.exists() for p in out.values())


@pytest.mark.slow
def test_negative_pruning_learns_less_than_sgd_over_seeds(fmnist_pt):
    """The paper's Fig. 1 effect on a small slice: every seed, with a margin."""
    gaps = []
    for seed in (0, 1, 2):
        acc = {}
        for variant in ("sgd", "cgd-negative"):
            s = settings(variant=variant, seed=seed, train_size=480, epochs=1, spectrum=False)
            acc[variant] = (
                trainer.Trainer(s, fmnist_pt, progress=False).run().epochs["train_acc"].iloc[-1]
            )
        gaps.append(acc["sgd"] - acc["cgd-negative"])
    assert min(gaps) > 0.1, gaps
