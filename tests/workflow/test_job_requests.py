"""Each job's runtime and memory as Snakemake and the SLURM profile see them."""

from __future__ import annotations

import re

import pytest

from support.costs import FMNIST_REF, planner
from support.workflow import REPO, run_snakemake

JOB = re.compile(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", re.M | re.S)


def dry_run_requests(*args: str, workdir) -> dict[tuple[str, str | None], tuple[int, int]]:
    """(rule, wildcard value) -> (runtime, mem_mb) of every job a dry run prints."""
    return parse_requests(run_snakemake("-n", *args, workdir=workdir).stdout)


def parse_requests(out: str) -> dict[tuple[str, str | None], tuple[int, int]]:
    """(rule, wildcard value) -> (runtime, mem_mb) of every job in a dry run's output."""
    jobs = {}
    for rule, body in JOB.findall(out):
        if rule == "all":  # the target: no command, nothing submitted
            continue
        wildcards = re.search(r"^\s+wildcards: \w+=(\S+)$", body, re.M)
        res = re.search(r"^\s+resources: (.*)$", body, re.M)
        assert res, f"rule {rule}: no resources in the dry run\n{body}"
        values = dict(item.split("=", 1) for item in res[1].split(", "))
        key = wildcards[1] if wildcards else None
        jobs[rule, key] = (int(values["runtime"]), int(values["mem_mb"]))
    return jobs


def test_dry_run_shows_every_jobs_runtime_and_memory(tmp_path):
    p = planner()
    fast = planner(speed=2.0)
    jobs = dry_run_requests(workdir=tmp_path)
    rules = {rule for rule, _ in jobs}
    assert rules == {
        "datasets_prepare", "train_run", "lyapunov_run", "ensembles_run", "fits_divergence",
        "figures_draw", "report_runs", "claims_check",
    }  # fmt: skip
    assert len([r for r, _ in jobs if r in ("train_run", "lyapunov_run")]) == len(p.runs)
    for (rule, key), (runtime, mem_mb) in jobs.items():
        stage = rule.split("_")[0]
        assert (runtime, mem_mb) == (p.runtime(stage, key), p.mem_mb(stage, key)), (rule, key)
    # a site scales them from the command line
    scaled = dry_run_requests("--config", "resources={speed: 2}", workdir=tmp_path)
    assert scaled.keys() == jobs.keys()
    for (rule, key), (runtime, mem_mb) in scaled.items():
        stage = rule.split("_")[0]
        assert (runtime, mem_mb) == (fast.runtime(stage, key), fast.mem_mb(stage, key))
    assert scaled["lyapunov_run", FMNIST_REF][0] < jobs["lyapunov_run", FMNIST_REF][0]


def test_the_slurm_profile_keeps_the_rules_requests(tmp_path):
    """Through profiles/slurm (whose default-resources are only a fallback), and with
    --set-resources overriding one rule as README says: the profile's GPU entries repeated,
    since a command-line --set-resources replaces the profile's whole key."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    p = planner()
    gpus = ["train_run:gpu=1", "lyapunov_run:gpu=1", "ensembles_run:gpu=1"]
    out = run_snakemake(
        "-n", "--profile", str(REPO / "profiles/slurm"),
        "--set-resources", "lyapunov_run:runtime=4000", *gpus, workdir=tmp_path,
    ).stdout  # fmt: skip
    jobs = parse_requests(out)
    for (rule, key), (runtime, mem_mb) in jobs.items():
        stage = rule.split("_")[0]
        expected = 4000 if rule == "lyapunov_run" else p.runtime(stage, key)
        assert (runtime, mem_mb) == (expected, p.mem_mb(stage, key)), (rule, key)
    for rule, body in JOB.findall(out):
        if rule == "all":
            continue
        gpu = "gpu=1" in re.search(r"resources: (.*)", body)[1].split(", ")
        assert gpu == (rule in ("train_run", "lyapunov_run", "ensembles_run")), rule
