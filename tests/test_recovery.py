"""Preemption and crashes: stop signals, checkpoint fingerprints, bad checkpoint files, and real
kills of the training, Lyapunov and ensemble jobs under Snakemake, each resumed to the same bytes
as an uninterrupted run."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from chaosgd import lockstep, lyapunov, plan, recovery, training
from test_ensembles import cli as ensembles_cli
from test_ensembles import small, write_spectrum
from test_lyapunov import LYAP, lyap_args
from test_train import BASE, Crash, CrashAt, run_cli

from conftest import fresh_checkout, run_snakemake, venv_env

# timings, and how this particular job got there: the only parts of run.json and the ensembles'
# info JSON that may differ between an interrupted and an uninterrupted run
VOLATILE = {
    "wall_seconds",
    "steps_per_second",
    "curvature_seconds",
    "tangent_seconds",
    "readout_seconds",
    "readout_seconds_each",
    "seconds",
    "seconds_per_step",
    "single_seconds_per_step",
    "ratio",
    "steps_this_job",
    "resumed_from_step",
}


def settings(**changes) -> training.RunSettings:
    """6 steps of a 2-unit MLP without the spectrum: the cheapest run with checkpoints."""
    base = {**BASE, "hidden": 2, "train_size": 48, "epochs": 1, "spectrum": False}
    return training.RunSettings(**{**base, "checkpoint_every": 2, **changes})


def stable(obj):
    """A JSON document without its VOLATILE keys, at any depth."""
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


def same_files(a: Path, b: Path) -> None:
    """Two result folders hold the same files, byte for byte (JSON: but VOLATILE keys)."""
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()), (a, b)
    for name in names:
        if name.endswith(".json"):
            assert stable(json.loads((a / name).read_text())) == stable(
                json.loads((b / name).read_text())
            ), name
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), f"{b / name} differs"


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
    trainer = training.Trainer(s, fmnist_pt, hooks={"term": TermAt(2)}, checkpoint=ckpt)
    with pytest.raises(recovery.Interrupted) as stopped:
        trainer.run()
    assert stopped.value.exit_status == 143
    assert "after step 3 of 6" in stopped.value.report(ckpt)
    assert signal.getsignal(signal.SIGTERM) is term_guard  # restored
    # no periodic checkpoint was due (every 100): this one is the signal's
    assert training.load_tensors(ckpt)["step"] == 3
    capsys.readouterr()
    rc, out = run_cli(s, fmnist_pt, folder)
    assert rc == 0
    assert "resuming t from step 3" in capsys.readouterr().err
    assert json.loads(out["info"].read_text())["result"]["resumed_from_step"] == 3
    same_files(tmp_path / "ref", folder)


def test_the_cli_exits_with_143_and_says_so(tmp_path, fmnist_pt, term_guard, capsys, monkeypatch):
    real_step = training.Trainer.train_step

    def step_then_term(self, x, y):
        real_step(self, x, y)
        if self.step == 4:
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(training.Trainer, "train_step", step_then_term)
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
    s = small(momentum=0.9, checkpoint_every=10)
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
    steps = {d: st["step"] for d, st in training.load_tensors(ckpt)["states"].items()}
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
    trainer = training.Trainer(
        s, data, hooks={"crash": CrashAt(step)}, checkpoint=folder / "checkpoint.pt"
    )
    with pytest.raises(Crash):
        trainer.run()
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
    s = small(checkpoint_every=10)
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
    trainer, _, _ = lyapunov.make_trainer(
        s, fmnist_pt, argparse.Namespace(**old), folder / "checkpoint.pt", progress=False
    )
    trainer.hooks["crash"] = CrashAt(3)
    with pytest.raises(Crash):
        trainer.run()
    capsys.readouterr()
    folder.mkdir(exist_ok=True)
    files = {**training.OUTPUT_FILES, **lyapunov.LYAP_OUTPUTS}
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
    blob = training.load_tensors(data)
    blob["test_y"] = blob["test_y"].flip(0)  # same shapes, other labels
    training.save_tensors(blob, data)
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
    shutil.copytree(plan.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = {stage: recovery.code_digest(stage, package) for stage in ("train", "ensembles")}
    assert before["train"] != before["ensembles"]
    # figures.py is not imported by the training stage; curvature.py is
    (package / "figures.py").write_text((package / "figures.py").read_text() + "\n# x\n")
    forget = [("train", str(package)), ("ensembles", str(package))]
    for key in forget:
        recovery._CODE_DIGESTS.pop(key)
    assert recovery.code_digest("train", package) == before["train"]
    (package / "curvature.py").write_text((package / "curvature.py").read_text() + "\n# x\n")
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
    s = small(checkpoint_every=10)
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

TRAIN_RUN = "fmnist_mlp-relu2_cgd-negative_m0_s0"
LYAP_RUN = "fmnist_mlp-relu2_sgd_m0_s0"
OUTPUTS = {
    "train": [f"results/train/{TRAIN_RUN}"],
    "lyapunov": [f"results/train/{LYAP_RUN}", f"results/lyapunov/{LYAP_RUN}"],
    "ensembles": [f"results/ensembles/{LYAP_RUN}"],
}
TARGETS = {
    "train": f"results/train/{TRAIN_RUN}/run.json",
    "lyapunov": f"results/lyapunov/{LYAP_RUN}/spectrum_final.pt",
    "ensembles": f"results/ensembles/{LYAP_RUN}/distances.parquet",
}
CHECKPOINTS = {
    "train": f"results/train/{TRAIN_RUN}/checkpoint.pt",
    "lyapunov": f"results/lyapunov/{LYAP_RUN}/checkpoint.pt",
    "ensembles": f"results/ensembles/{LYAP_RUN}/checkpoint.pt",
}
LOGS = {
    "train": f"logs/train/{TRAIN_RUN}.log",
    "lyapunov": f"logs/lyapunov/{LYAP_RUN}.log",
    "ensembles": f"logs/ensembles/{LYAP_RUN}.log",
}
RUN_OF = {"train": TRAIN_RUN, "lyapunov": LYAP_RUN, "ensembles": LYAP_RUN}
WAIT = 240  # seconds for any one thing to happen, on a loaded 2-core machine


def recovery_config(path: Path) -> Path:
    """config/tiny.yaml with 24 steps of a 2-unit MLP, checkpoints every 2 steps and one ε: jobs
    that last a few seconds, long enough to be killed halfway."""
    config = yaml.safe_load((plan.PACKAGE.parents[1] / "config" / "tiny.yaml").read_text())
    config["training"].update(train_size=192, checkpoint_every=2)
    config["experiments"] = [
        {
            "name": "fig1",
            "dataset": "fmnist",
            "hidden": 2,
            "variants": ["sgd", "cgd-negative"],
            "seeds": [0],
        }
    ]
    config["ensembles"].update(eps=[0.1], main_eps=0.1)
    path.write_text(yaml.safe_dump(config))
    return path


def job_pid(stage: str) -> int | None:
    """The PID of the running ``python -m chaosgd.<stage> --run-id <run>`` process (the job
    itself, not a shell around it), from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        pairs = set(zip(argv, argv[1:]))
        if ("-m", f"chaosgd.{stage}") in pairs and ("--run-id", RUN_OF[stage]) in pairs:
            return int(entry.name)
    return None


def handles_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler installed (its SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))


class Workflow:
    """Snakemake on the recovery config in a fresh checkout, started in the background."""

    def __init__(self, checkout: Path, config: Path):
        self.checkout, self.config = checkout, config
        self.proc: subprocess.Popen | None = None

    def start(self, *stages: str) -> None:
        """Start Snakemake on the outputs of ``stages``."""
        cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", "Snakefile", "--cores", "2"]
        cmd += [TARGETS[s] for s in stages] + ["--configfile", str(self.config)]
        env = {**venv_env(), "PYTHONPATH": str(self.checkout / "workflow")}
        self.out = self.checkout / f"snakemake-{len(list(self.checkout.glob('snakemake-*')))}.log"
        self.proc = subprocess.Popen(
            cmd, cwd=self.checkout, env=env, stdout=self.out.open("w"), stderr=subprocess.STDOUT
        )

    def wait(self) -> tuple[int, str]:
        """Snakemake's exit status and output."""
        rc = self.proc.wait(timeout=WAIT * 2)
        return rc, self.out.read_text()

    def until(self, what: str, ready) -> None:
        """Wait until ``ready()`` holds, failing with Snakemake's output if it ends first."""
        deadline = time.monotonic() + WAIT
        while not ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"never saw {what}:\n{self.out.read_text()[-3000:]}")
            time.sleep(0.005)

    def stop(self) -> None:
        """End Snakemake and every job of this checkout (a failed test leaves none behind)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and Path(os.readlink(entry / "cwd")) == self.checkout:
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass

    def log(self, stage: str) -> str:
        """The job log of a stage."""
        return (self.checkout / LOGS[stage]).read_text()


@pytest.fixture(scope="module")
def killed(tmp_path_factory, fmnist_pt):
    """One checkout: an uninterrupted run of the training, Lyapunov and ensemble jobs (kept as
    the reference); then the same jobs again, the training job SIGKILLed and the Lyapunov job
    SIGTERMed halfway, rerun (both resume; the ensemble job starts and is SIGTERMed), and rerun
    once more. Returns what each step left in the logs, and both sets of results."""
    if sys.platform != "linux" or not Path("/proc/self/status").is_file():
        pytest.skip("the kill tests find the jobs and their signal handlers in Linux's /proc")
    base = tmp_path_factory.mktemp("recovery")
    checkout = fresh_checkout(base / "checkout")
    config = recovery_config(base / "recovery.yaml")
    # the prepared dataset of this session, not a datasets job: newer than the code, so current
    (checkout / "results" / "datasets").mkdir(parents=True)
    for src in (fmnist_pt, fmnist_pt.with_suffix(".json")):
        shutil.copy(src, checkout / "results" / "datasets" / f"fmnist{src.suffix}")
    run_snakemake(
        "--cores", "2", TARGETS["train"], TARGETS["ensembles"], "--configfile", str(config),
        repo=checkout,
    )  # fmt: skip
    reference = base / "reference"
    for stage, folders in OUTPUTS.items():
        for folder in folders:
            shutil.copytree(checkout / folder, reference / folder)
            shutil.rmtree(checkout / folder)

    flow, seen = Workflow(checkout, config), {}
    try:
        # 1. training and Lyapunov jobs side by side: SIGKILL the one, SIGTERM the other, each
        #    once its first checkpoint is on disk
        flow.start("train", "lyapunov")
        pending = {"train": signal.SIGKILL, "lyapunov": signal.SIGTERM}

        def signalled() -> bool:
            for stage, sig in list(pending.items()):
                pid = job_pid(stage)
                if pid and handles_sigterm(pid) and (checkout / CHECKPOINTS[stage]).is_file():
                    os.kill(pid, sig)
                    del pending[stage]
            return not pending

        flow.until("both jobs halfway", signalled)
        seen["first"] = flow.wait()
        seen["train_killed"] = flow.log("train")
        seen["lyapunov_stopped"] = flow.log("lyapunov")
        seen["checkpoints_left"] = {
            s: (checkout / CHECKPOINTS[s]).is_file() for s in ("train", "lyapunov")
        }
        # 2. rerun: both resume; then SIGTERM the ensemble job once its handler is in place
        flow.start("train", "lyapunov", "ensembles")

        def ensemble_signalled() -> bool:
            pid = job_pid("ensembles")
            if pid and handles_sigterm(pid):
                os.kill(pid, signal.SIGTERM)
                return True
            return False

        flow.until("the ensemble job", ensemble_signalled)
        seen["second"] = flow.wait()
        seen["train_resumed"] = flow.log("train")
        seen["lyapunov_resumed"] = flow.log("lyapunov")
        seen["ensembles_stopped"] = flow.log("ensembles")
        seen["ensembles_checkpoint_left"] = (checkout / CHECKPOINTS["ensembles"]).is_file()
        # 3. rerun: the ensemble job resumes
        flow.start("ensembles")
        seen["third"] = flow.wait()
        seen["ensembles_resumed"] = flow.log("ensembles")
    finally:
        flow.stop()
    return {"checkout": checkout, "reference": reference, **seen}


def _resumed_outputs_equal_the_reference(killed, stage):
    for folder in OUTPUTS[stage]:
        same_files(killed["reference"] / folder, killed["checkout"] / folder)
    assert not (killed["checkout"] / CHECKPOINTS[stage]).exists()  # removed once complete
    assert not list((killed["checkout"] / "results").rglob("*.corrupt-*"))


def test_sigkilled_training_job_resumes_to_identical_outputs(killed):
    rc, out = killed["first"]
    assert rc != 0 and "Error in rule train_run" in out
    assert "received" not in killed["train_killed"]  # SIGKILL: no chance to say anything
    assert killed["checkpoints_left"]["train"]
    assert f"resuming {TRAIN_RUN} from step " in killed["train_resumed"]
    info = json.loads(
        (killed["checkout"] / "results" / "train" / TRAIN_RUN / "run.json").read_text()
    )
    assert info["result"]["resumed_from_step"] >= 2
    _resumed_outputs_equal_the_reference(killed, "train")


def test_sigtermed_lyapunov_job_checkpoints_and_resumes_to_identical_outputs(killed):
    log = killed["lyapunov_stopped"]
    assert f"received SIGTERM: stopped run {LYAP_RUN} after step " in log
    assert f"checkpoint written to {CHECKPOINTS['lyapunov']}, a rerun resumes from it" in log
    assert "exit status 143" in log and killed["checkpoints_left"]["lyapunov"]
    assert "exit status 143" in killed["first"][1]  # Snakemake reports the job's status
    step = int(log.split(f"{LYAP_RUN} after step ")[1].split()[0])
    assert f"resuming {LYAP_RUN} from step {step}" in killed["lyapunov_resumed"]
    _resumed_outputs_equal_the_reference(killed, "lyapunov")


def test_sigtermed_ensemble_job_checkpoints_and_resumes_to_identical_outputs(killed):
    rc, out = killed["second"]
    assert rc != 0 and "Error in rule ensembles_run" in out
    log = killed["ensembles_stopped"]
    assert "received SIGTERM: stopped the float" in log
    assert f"checkpoint written to {CHECKPOINTS['ensembles']}, a rerun resumes from it" in log
    assert "exit status 143" in log and killed["ensembles_checkpoint_left"]
    rc, out = killed["third"]
    assert rc == 0, out[-3000:]
    assert f"resuming {LYAP_RUN} from {CHECKPOINTS['ensembles']}: float32 at step" in (
        killed["ensembles_resumed"]
    )
    info = json.loads(
        (killed["checkout"] / "results" / "ensembles" / LYAP_RUN / "ensemble.json").read_text()
    )
    assert info["ensembles"][0]["resumed_from_step"] is not None
    _resumed_outputs_equal_the_reference(killed, "ensembles")
