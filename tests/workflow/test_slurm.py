"""End-to-end check of profiles/slurm on a real (throwaway) SLURM cluster.

Starts a single-node SLURM with one fake GPU (tests/slurmcluster.py), runs a
workflow with `snakemake --profile profiles/slurm`, and checks in SLURM's own
records (sacct, scontrol) that the GPU rules were given a GPU and the CPU
rules were not, and that every job's time limit and memory are what its rule
asked (chaosgd.planning.job_costs); then that every daemon is gone again.

Skipped, with the reason, where SLURM is not installed (see .ci/slurm-install)
or the test does not run as root.

The workflow under test is the real one on config/tiny.yaml (the quick workflow's
smallest form: every stage, a few seconds per job), run from this checkout in a
temporary working directory.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from support.slurmcluster import SlurmCluster, slurm_available
from support.workflow import REPO

PROFILE = REPO / "profiles" / "slurm"

# Rules that must run with exactly one GPU; every other rule must get none.
GPU_RULES = {"train_run", "lyapunov_run", "ensembles_run"}

# Rules the tiny workflow submits to SLURM (every stage).
EXPECTED_RULES = {
    "datasets_prepare",
    "train_run",
    "lyapunov_run",
    "ensembles_run",
    "fits_divergence",
    "figures_draw",
    "report_runs",
    "claims_check",
}

# Overrides for the test cluster, layered over the profile's own
# default-resources: its partition (set in default_resources_args), a short
# time limit and little memory. Every rule sets its own runtime and mem_mb, so
# these are only the fallback, and no job may show them.
TEST_RESOURCES = {"runtime": 10, "mem_mb": 300}

# A site's scaling of the rules' requests, as README says to give it: nodes
# 20x slower than the reference machine make the tiny jobs' time limits differ
# from job to job (15-40 min) and from the floor, and the jobs on the cluster
# must read the nested value as the submitting Snakemake did.
SITE_CONFIG = {"speed": 0.05}
SITE_ARGS = ["--config", "resources={speed: 0.05}"]

# 1 CPU per job (pitfall 8: on 2 cores a job asking for more CPUs than are
# free waits forever). Capping threads keeps the profile's own
# `cpus_per_task: threads` under test.
TEST_ARGS = ["--max-threads", "1"]

# Test-only polling cadence. The plugin polls sacct this many seconds after a
# poll in which a job finished, and adds 10 s to the wait after every poll in
# which none did. A job here takes 7-9 s from sbatch to COMPLETED (two
# Snakemake start-ups on 2 cores), so with 1 the second poll, 12 s after
# submission, sees it done; a value just under the job time would cost 10 s
# more per job, and one just over it would gain little and break on a slower
# machine.
STATUS_CHECK_SECONDS = 1

WORKFLOW_TIMEOUT = 900  # seconds; the tiny workflow takes a few minutes on 2 cores


def profile_default_resources(profile: Path = PROFILE) -> dict:
    """The default-resources of the shipped profile."""
    config = yaml.safe_load((profile / "config.yaml").read_text())
    return dict(config.get("default-resources") or {})


def default_resources_args(cluster: SlurmCluster, overrides: dict | None = None) -> list[str]:
    """`--default-resources` for the test cluster.

    A command-line --default-resources replaces the profile's whole key, so
    the profile's values are repeated and only the site-specific ones
    overridden: what a site would do.
    """
    resources = profile_default_resources()
    resources.update(TEST_RESOURCES)
    resources["slurm_partition"] = cluster.partition
    resources.update(overrides or {})
    return ["--default-resources", *(f"{k}={v}" for k, v in resources.items())]


def run_workflow_on_cluster(
    cluster: SlurmCluster,
    workdir: Path,
    snakefile: Path,
    extra_args: list[str] | tuple[str, ...] = (),
    timeout: float = WORKFLOW_TIMEOUT,
) -> list[dict[str, str]]:
    """Run a workflow through profiles/slurm on the cluster; return the
    sacct rows (see SlurmCluster.sacct) of the jobs it submitted.

    Fails the test with the end of Snakemake's output if the run fails.
    """
    log = workdir / "snakemake-slurm.log"
    argv = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        "--profile",
        str(PROFILE),
        *default_resources_args(cluster),
        # Test-only: poll SLURM often, jobs here take seconds.
        "--slurm-init-seconds-before-status-checks",
        str(STATUS_CHECK_SECONDS),
        *TEST_ARGS,
        *extra_args,
    ]
    env = dict(cluster.env)
    # The jobs run `python -m snakemake` with this interpreter; make its
    # environment's scripts (e.g. snakemake itself) findable as well.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    with open(log, "w") as out:
        try:
            proc = subprocess.run(
                argv, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"snakemake did not finish in {timeout} s\n{_tail(log)}\n"
                f"{cluster.run(['squeue', '-l']).stdout}"
            )
    if proc.returncode != 0:
        pytest.fail(
            f"snakemake failed ({proc.returncode}):\n{_tail(log)}\n"
            f"{cluster.daemons['slurmctld'].logs(15)}"
        )
    run_id = _slurm_run_id(log.read_text())
    return [row for row in cluster.sacct() if run_id is None or row["JobName"] == run_id]


def _slurm_run_id(log_text: str) -> str | None:
    """The plugin names every job of a run after the run's ID, which it logs."""
    match = re.search(r"SLURM run ID: (\S+)", log_text)
    return match.group(1) if match else None


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _tres(row: dict[str, str]) -> dict[str, str]:
    """'billing=1,cpu=1,gres/gpu=1' -> {'billing': '1', ...}"""
    return dict(item.split("=", 1) for item in row["AllocTRES"].split(",") if "=" in item)


def _etc_slurm_snapshot() -> dict[str, str | None]:
    """What /etc/slurm/{slurm,gres,slurmdbd}.conf are now (link target or
    content digest), to check that the cluster put them back."""
    snap = {}
    for name in ("slurm.conf", "gres.conf", "slurmdbd.conf"):
        p = Path("/etc/slurm") / name
        if p.is_symlink():
            snap[name] = "link:" + os.readlink(p)
        elif p.exists():
            snap[name] = "file:" + hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            snap[name] = None
    return snap


def _check_gpu_routing(cluster: SlurmCluster, rows: list[dict[str, str]]) -> None:
    """GPU rules got gres/gpu=1, CPU rules no GPU, in sacct and scontrol."""
    for row in rows:
        gpus = _tres(row).get("gres/gpu")
        scontrol_tres = cluster.scontrol_job(row["JobID"]).get("TRES", "")
        if row["Rule"] in GPU_RULES:
            assert gpus == "1", f"{row['Rule']} should have one GPU: {row}"
            assert "gres/gpu=1" in scontrol_tres.split(","), scontrol_tres
        else:
            assert gpus is None, f"{row['Rule']} should have no GPU: {row}"
            assert "gres/gpu" not in scontrol_tres, scontrol_tres


def expected_requests(configfile: Path, site: dict):
    """The planner of the jobs' requests (chaosgd.planning.job_costs) for ``configfile`` with the site's
    ``resources`` settings: what the Snakefile computes."""
    from chaosgd.planning import plan
    from chaosgd.planning.config import validate_config

    config = yaml.safe_load(configfile.read_text())
    config["resources"] = dict(site)
    config = validate_config(config)
    runs, groups, lyapunov = plan.plan_runs(config)
    refs = plan.ensemble_references(config, runs, lyapunov)
    figures = plan.figures(runs, groups, lyapunov, refs, config["ensembles"])
    return plan.job_resources(config, runs, lyapunov, refs, figures)


def _minutes(limit: str) -> int:
    """scontrol's TimeLimit ([days-]hours:minutes:seconds) in minutes."""
    days, _, clock = limit.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + math.ceil(s / 60)


def _check_requests(cluster: SlurmCluster, rows: list[dict[str, str]], planned) -> None:
    """Each job's time limit and memory in sacct and scontrol are its rule's request for it
    (the rule name and wildcard value come from the plugin's job comment)."""
    for row in rows:
        stage = row["Rule"].split("_")[0]
        _, _, key = row["Comment"].partition("_wildcards_")
        want = planned.request(stage, key or None)
        where = f"{row['Rule']} {key}: {row}"
        assert int(row["TimelimitRaw"]) == want.runtime, where
        assert re.fullmatch(rf"{want.mem_mb}Mn?", row["ReqMem"]), where
        job = cluster.scontrol_job(row["JobID"])
        assert _minutes(job["TimeLimit"]) == want.runtime, (where, job["TimeLimit"])
        assert job["MinMemoryNode"] == f"{want.mem_mb}M", (where, job["MinMemoryNode"])
    limits = {int(r["TimelimitRaw"]) for r in rows}
    # the profile's fallback reached no job, and the jobs' limits follow their sizes
    assert TEST_RESOURCES["runtime"] not in limits and len(limits) > 1, limits


def _tiny_figures() -> dict:
    """Every figure the planner makes of the tiny config."""
    import yaml

    from chaosgd.planning import plan
    from chaosgd.planning.config import validate_config

    config = validate_config(yaml.safe_load((REPO / "config/tiny.yaml").read_text()))
    runs, groups, lyapunov = plan.plan_runs(config)
    references = plan.ensemble_references(config, runs, lyapunov)
    return plan.figures(runs, groups, lyapunov, references, config["ensembles"])


def _check_outputs(workdir: Path) -> None:
    """The pipeline's results are all there; the fake GPU is only a scheduling slot, so the
    GPU jobs fell back to the CPU (device: auto)."""
    results = workdir / "results"
    assert (results / "report" / "runs.tsv").is_file()
    assert len(list((results / "figures").glob("*.pdf"))) == len(_tiny_figures())
    runs = sorted((results / "train").iterdir())
    assert runs
    for run in runs:
        info = yaml.safe_load((run / "run.json").read_text())
        assert info["environment"]["device"] == "cpu", info["environment"]


@pytest.mark.slurm
def test_profile_routes_gpu_rules_to_gpu(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ok, reason = slurm_available()
    if not ok:
        pytest.skip(reason)
    etc_before = _etc_slurm_snapshot()
    timings = {}
    t0 = time.monotonic()
    cluster = SlurmCluster()
    try:
        cluster.start()
        timings["cluster start"] = time.monotonic() - t0

        t1 = time.monotonic()
        tiny = REPO / "config/tiny.yaml"
        rows = run_workflow_on_cluster(
            cluster, tmp_path, REPO / "Snakefile", ["--configfile", str(tiny), *SITE_ARGS]
        )
        timings["workflow"] = time.monotonic() - t1

        assert {r["Rule"] for r in rows} == EXPECTED_RULES, rows
        assert all(r["State"] == "COMPLETED" for r in rows), rows
        assert {r["Partition"] for r in rows} == {cluster.partition}, rows
        _check_gpu_routing(cluster, rows)
        _check_requests(cluster, rows, expected_requests(tiny, SITE_CONFIG))
        _check_outputs(tmp_path)
    finally:
        t2 = time.monotonic()
        cluster.stop()
        timings["cluster stop"] = time.monotonic() - t2
        timings["total"] = time.monotonic() - t0
        report = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        with capsys.disabled():  # shown even when output is captured
            print(f"\nSLURM test timings: {report}")

    assert cluster.leftover_processes() == [], "processes survived the cluster"
    assert _etc_slurm_snapshot() == etc_before, "/etc/slurm was not restored"


def test_profile_requests_gpus_only_for_gpu_rules() -> None:
    """Static check of profiles/slurm, runs without SLURM: exactly the GPU
    rules get `gpu: 1`, and nothing GPU-related is a default for all rules."""
    config = yaml.safe_load((PROFILE / "config.yaml").read_text())
    gpu_rules = {
        rule for rule, res in (config.get("set-resources") or {}).items() if res.get("gpu") == 1
    }
    assert gpu_rules == GPU_RULES
    defaults = config.get("default-resources") or {}
    assert not {"gpu", "gpus", "gres", "gpu_model"} & set(defaults), defaults


def test_profile_keys_are_snakemake_options() -> None:
    """Every top-level key of profiles/slurm is an option of the installed
    Snakemake + SLURM plugin, so a typo cannot be silently ignored."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    config = yaml.safe_load((PROFILE / "config.yaml").read_text())
    help_text = subprocess.run(
        [sys.executable, "-m", "snakemake", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    options = set(re.findall(r"--[a-z][a-z0-9-]*", help_text))
    unknown = [key for key in config if f"--{key}" not in options]
    assert not unknown, f"not Snakemake options: {unknown}"
