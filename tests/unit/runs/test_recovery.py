"""Preemption and crashes: stop signals, checkpoint fingerprints, bad checkpoint files, and real
kills of the training, Lyapunov and ensemble jobs under Snakemake, each resumed to the same bytes
as an uninterrupted run."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal

import pytest
import torch

from chaosgd import lyapunov
from chaosgd.planning import code_inputs
from chaosgd.runs import lockstep, recovery, run_outputs, trainer
from chaosgd.runs.artifacts import load_tensors, save_tensors

from support.runs import (
    LYAP,
    TRAIN_BASE,
    Crash,
    CrashAt,
    ensembles_cli,
    lyap_args,
    run_cli,
    small_ensemble,
    write_spectrum,
)
from support.workflow import same_files, stable


def settings(**changes) -> trainer.RunSettings:
    """6 steps of a 2-unit MLP without the spectrum: the cheapest run with checkpoints."""
    base = {**TRAIN_BASE, "hidden": 2, "train_size": 48, "epochs": 1, "spectrum": False}
    return trainer.RunSettings(**{**base, "checkpoint_every": 2, **changes})


class SignalEscaped(Exception):
    """SIGTERM reached the test's own handler: the job had none installed."""


@pytest.fixture
def term_guard():
    """Catch a SIGTERM that a job fails to handle, so that it fails the test instead of killing
    pytest; and check afterwards that the job put this handler back."""

    def guard(signum, frame):
        raise SignalEscaped

    old = signal.signal(signal.SIGTERM, guard)
    yield guard
    signal.signal(signal.SIGTERM, old)


class TermAt:
    """A hook that sends this process SIGTERM during a given step, as SLURM would."""

    def __init__(self, step):
        self.step = step

    def after_step(self, step, eig, pruned):
        if step == self.step:
            signal.raise_signal(signal.SIGTERM)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


# -- the signal handler -------------------------------------------------------------------------


def test_stop_on_signals_sets_a_flag_and_restores_the_handlers(term_guard):
    before = signal.getsignal(signal.SIGINT)
    with recovery.stop_on_signals() as stop:
        assert not stop
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # SLURM may repeat it: still only a request
        assert stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is term_guard
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(KeyboardInterrupt):
        with recovery.stop_on_signals() as stop:
            signal.raise_signal(signal.SIGINT)
            assert stop.signum == signal.SIGINT
            signal.raise_signal(signal.SIGINT)  # a second Ctrl-C insists
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_checkpoints_at_the_next_step_and_the_rerun_ends_identical(
    tmp_path, fmnist_pt, term_guard, capsys
):
    s = settings(spectrum=True, variant="cgd-negative", checkpoint_every=100)
    rc, ref = run_cli(s, fmnist_pt, tmp_path / "ref")
    assert rc == 0
    folder = tmp_path / "stopped"
    ckpt = folder / "checkpoint.pt"
    job = trainer.Trainer(s, fmnist_pt, hooks={"term": TermAt(2)}, checkpoint=ckpt)
    with pytest.raises(recovery.Interrupted) as stopped:
        job.run()
    assert stopped.value.exit_status == 143
    assert "after step 3 of 6" in stopped.value.report(ckpt)
    assert signal.getsignal(signal.SIGTERM) is term_guard  # restored
    # no periodic checkpoint was due (every 100): this one is the signal's
    assert load_tensors(ckpt)["step"] == 3
    capsys.readouterr()
    rc, out = run_cli(s, fmnist_pt, folder)
    assert rc == 0
    assert "resuming t from step 3" in capsys.readouterr().err
    assert json.loads(out["info"].read_text())["result"]["resumed_from_step"] == 3
    same_files(tmp_path / "ref", folder)


def test_the_cli_exits_with_143_and_says_so(tmp_path, fmnist_pt, term_guard, capsys, monkeypatch):
    real_step = trainer.Trainer.train_step

    def step_then_term(self, x, y):
        real_step(self, x, y)
        if self.step == 4:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(trainer.Trainer, "train_step", step_then_term)
    rc, out = run_cli(settings(checkpoint_every=100), fmnist_pt, tmp_path / "run")
    assert rc == 143
    err = capsys.readouterr().err
    assert (
        f"received SIGTERM: stopped run t after step 4 of 6; checkpoint written to "
        f"{tmp_path / 'run' / 'checkpoint.pt'}, a rerun resumes from it; exit status 143" in err
    )
    assert not any(p.exists() for p in out.values())


def test_ensembles_stop_on_sigterm_and_resume_to_the_same_bytes(
    tmp_path, fmnist_pt, term_guard, capsys, monkeypatch
):
    s = small_ensemble(momentum=0.9, checkpoint_every=10)
    spectrum = write_spectrum(tmp_path / "spectrum_final.pt", s)
    extra = ["--eps", "0.1", "--dtypes", "float32", "float64", "--baseline-steps", "5"]
    rc, ref = ensembles_cli(s, fmnist_pt, spectrum, tmp_path / "ref", *extra)
    assert rc == 0
    folder = tmp_path / "stopped"
    ckpt = folder / "checkpoint.pt"
    args = [*extra, "--checkpoint", str(ckpt)]
    real_step, calls = lockstep.LockstepSGD.step, []

    def step_then_term(self, x, y):
        calls.append(1)
        if len(calls) == 26 + 5:  # during the 5th step of the float64 ensemble
            signal.raise_signal(signal.SIGTERM)
        return real_step(self, x, y)

    monkeypatch.setattr(lockstep.LockstepSGD, "step", step_then_term)
    capsys.readouterr()
    rc, out = ensembles_cli(s, fmnist_pt, spectrum, folder, *args)
    assert rc == 143
    assert "stopped the float64 ensemble of ref after step 5 of 26; checkpoint written" in (
        capsys.readouterr().err
    )
    assert signal.getsignal(signal.SIGTERM) is term_guard
    steps = {d: st["step"] for d, st in load_tensors(ckpt)["states"].items()}
    assert steps == {"float32": 26, "float64": 5}  # the finished dtype is kept
    monkeypatch.undo()
    rc, out = ensembles_cli(s, fmnist_pt, spectrum, folder, *args)
    assert rc == 0
    assert "resuming ref from" in capsys.readouterr().err
    assert not ckpt.exists()
    runs = json.loads(out["info"].read_text())["ensembles"]
    assert [r["resumed_from_step"] for r in runs] == [26, 5]
    for name in ("distances", "members"):
        assert ref[name].read_bytes() == out[name].read_bytes(), name
    assert stable(json.loads(ref["info"].read_text())) == stable(
        json.loads(out["info"].read_text())
    )


# -- bad checkpoint files -----------------------------------------------------------------------


def _crashed_run(s, data, folder, step=3):
    """A run killed after ``step`` with its checkpoint of step 2 on disk."""
    job = trainer.Trainer(
        s, data, hooks={"crash": CrashAt(step)}, checkpoint=folder / "checkpoint.pt"
    )
    with pytest.raises(Crash):
        job.run()
    return folder / "checkpoint.pt"


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, fmnist_pt):
    folder = tmp_path_factory.mktemp("reference")
    rc, _ = run_cli(settings(), fmnist_pt, folder)
    assert rc == 0
    return folder


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "not-a-checkpoint"])
def test_unreadable_checkpoint_is_set_aside_and_the_run_starts_over(
    tmp_path, fmnist_pt, reference_run, capsys, damage
):
    folder = tmp_path / "run"
    ckpt = _crashed_run(settings(), fmnist_pt, folder)
    content = ckpt.read_bytes()
    if damage == "truncated":
        ckpt.write_bytes(content[: len(content) // 2])
    elif damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "garbage":
        ckpt.write_bytes(os.urandom(2000))
    else:
        torch.save([1, 2, 3], ckpt)
    capsys.readouterr()
    rc, out = run_cli(settings(), fmnist_pt, folder)
    assert rc == 0
    err = capsys.readouterr().err
    aside = list(folder.glob("checkpoint.pt.corrupt-*"))
    assert len(aside) == 1 and not ckpt.exists()
    assert f"checkpoint {ckpt} is unreadable (" in err
    assert f"set aside as {aside[0]}; starting over" in err
    assert json.loads(out["info"].read_text())["result"]["resumed_from_step"] is None
    aside[0].unlink()
    same_files(reference_run, folder)


def test_unreadable_ensembles_checkpoint_is_set_aside(tmp_path, fmnist_pt, capsys):
    s = small_ensemble(checkpoint_every=10)
    spectrum = write_spectrum(tmp_path / "spectrum_final.pt", s)
    folder = tmp_path / "ens"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(b"PK\x03\x04 not really a zip")
    extra = ["--eps", "0.1", "--baseline-steps", "5", "--checkpoint", str(folder / "checkpoint.pt")]
    rc, out = ensembles_cli(s, fmnist_pt, spectrum, folder, *extra)
    assert rc == 0
    assert f"checkpoint {folder / 'checkpoint.pt'} is unreadable" in capsys.readouterr().err
    assert len(list(folder.glob("checkpoint.pt.corrupt-*"))) == 1
    assert json.loads(out["info"].read_text())["ensembles"][0]["resumed_from_step"] is None


# -- fingerprints -------------------------------------------------------------------------------


def test_other_lyapunov_settings_start_over_naming_them(tmp_path, fmnist_pt, capsys):
    s = settings(spectrum=True, checkpoint_every=2)
    folder = tmp_path / "lyap"
    old = dict(LYAP, readouts=2, neutral_tol=1e-6)
    job, _, _ = lyapunov.make_trainer(
        s, fmnist_pt, argparse.Namespace(**old), folder / "checkpoint.pt", progress=False
    )
    job.hooks["crash"] = CrashAt(3)
    with pytest.raises(Crash):
        job.run()
    capsys.readouterr()
    folder.mkdir(exist_ok=True)
    files = {**run_outputs.OUTPUT_FILES, **lyapunov.LYAP_OUTPUTS}
    out = {k: folder / name for k, name in files.items()}
    args = s.to_args() + lyap_args(readouts=1) + ["--data", str(fmnist_pt), "--no-progress"]
    args += [a for k, p in out.items() for a in (f"--out-{k}", str(p))]
    args += ["--checkpoint", str(folder / "checkpoint.pt")]
    assert lyapunov.main(args) == 0
    err = capsys.readouterr().err
    assert "it belongs to other settings or inputs (" in err and "starting over" in err
    assert (
        "hooks.tangent.readouts: 2 -> 1" in err
        and "hooks.tangent.neutral_tol: 1e-06 -> 1e-08" in err
    )
    assert "other code" not in err
    assert json.loads(out["info"].read_text())["result"]["resumed_from_step"] is None


def test_other_data_starts_over(tmp_path, fmnist_pt, capsys):
    data = tmp_path / "data.pt"
    shutil.copy(fmnist_pt, data)
    folder = tmp_path / "run"
    _crashed_run(settings(), data, folder)
    blob = load_tensors(data)
    blob["test_y"] = blob["test_y"].flip(0)  # same shapes, other labels
    save_tensors(blob, data)
    capsys.readouterr()
    rc, out = run_cli(settings(), data, folder)
    assert rc == 0
    assert "it belongs to other settings or inputs (data: " in capsys.readouterr().err


def test_other_code_starts_over(tmp_path, fmnist_pt, capsys, monkeypatch):
    folder = tmp_path / "run"
    _crashed_run(settings(), fmnist_pt, folder)
    # as if a source file of the train stage had changed since the checkpoint was written
    monkeypatch.setitem(recovery._CODE_DIGESTS, ("train", None), "0" * 64)
    capsys.readouterr()
    rc, out = run_cli(settings(), fmnist_pt, folder)
    assert rc == 0
    err = capsys.readouterr().err
    assert "it was written by other code (the source files of chaosgd.train changed" in err
    assert "other settings" not in err
    assert json.loads(out["info"].read_text())["result"]["resumed_from_step"] is None


def test_code_digest_follows_the_stage_closure(tmp_path):
    package = tmp_path / "chaosgd"
    shutil.copytree(code_inputs.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = {stage: recovery.code_digest(stage, package) for stage in ("train", "ensembles")}
    assert before["train"] != before["ensembles"]
    # the figures stage is not imported by the training stage; the curvature engine is
    (package / "figures.py").write_text((package / "figures.py").read_text() + "\n# x\n")
    forget = [("train", str(package)), ("ensembles", str(package))]
    for key in forget:
        recovery._CODE_DIGESTS.pop(key)
    assert recovery.code_digest("train", package) == before["train"]
    (package / "engine" / "curvature.py").write_text(
        (package / "engine" / "curvature.py").read_text() + "\n# x\n"
    )
    for key in forget:
        recovery._CODE_DIGESTS.pop(key, None)
    assert recovery.code_digest("train", package) != before["train"]
    assert recovery.code_digest("ensembles", package) != before["ensembles"]


def test_checkpoint_every_is_not_part_of_the_fingerprint(tmp_path, fmnist_pt, capsys):
    """Writing checkpoints more or less often changes no output: such a checkpoint resumes."""
    folder = tmp_path / "run"
    _crashed_run(settings(checkpoint_every=2), fmnist_pt, folder)
    rc, out = run_cli(settings(checkpoint_every=5), fmnist_pt, folder)
    assert rc == 0
    assert json.loads(out["info"].read_text())["result"]["resumed_from_step"] == 2


def test_other_ensemble_settings_start_over(tmp_path, fmnist_pt, capsys, monkeypatch, term_guard):
    s = small_ensemble(checkpoint_every=10)
    spectrum = write_spectrum(tmp_path / "spectrum_final.pt", s)
    folder = tmp_path / "ens"
    ckpt = folder / "checkpoint.pt"
    real_step, calls = lockstep.LockstepSGD.step, []

    def step_then_term(self, x, y):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGTERM)
        return real_step(self, x, y)

    monkeypatch.setattr(lockstep.LockstepSGD, "step", step_then_term)
    common = ["--baseline-steps", "5", "--checkpoint", str(ckpt)]
    rc, _ = ensembles_cli(s, fmnist_pt, spectrum, folder, "--eps", "0.1", *common)
    assert rc == 143 and ckpt.is_file()
    monkeypatch.undo()
    capsys.readouterr()
    rc, out = ensembles_cli(s, fmnist_pt, spectrum, folder, "--eps", "0.1", "1", *common)
    assert rc == 0
    err = capsys.readouterr().err
    assert "it belongs to other settings or inputs (ensemble.eps: [0.1] -> [0.1, 1.0])" in err
    assert json.loads(out["info"].read_text())["ensembles"][0]["resumed_from_step"] is None


# -- real kills under Snakemake -----------------------------------------------------------------
