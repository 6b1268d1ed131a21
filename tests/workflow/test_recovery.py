"""Killed and preempted jobs under Snakemake: a SIGKILL or SIGTERM mid-run resumes to identical outputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from chaosgd.planning import code_inputs

from support.workflow import fresh_checkout, run_snakemake, same_files, venv_env

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
    config = yaml.safe_load((code_inputs.PACKAGE.parents[1] / "config" / "tiny.yaml").read_text())
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
