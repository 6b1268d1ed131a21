"""The whole workflow through Snakemake on a data slice (config/tiny.yaml), run in a fresh
checkout: datasets -> train / lyapunov -> figures and report; then figures from the output
cache in a second fresh checkout without any training, and results shared as an archive."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pandas as pd
import pytest

from chaosgd.tools import archive

from support.workflow import FMNIST_DIR, fresh_checkout, job_counts, run_snakemake, venv_env

TINY = "config/tiny.yaml"
RUNS = [
    "fmnist_mlp-relu4_cgd-chaotic_on3_m0_s0",
    "fmnist_mlp-relu4_cgd-negative_m0_s0",
    "fmnist_mlp-relu4_sgd_m0_s0",
]
LYAPUNOV_RUN = "fmnist_mlp-relu4_sgd_m0_s0"
FIGURES = [
    "fig1", "fig1_validation", "figB2_fig1", "fig2", "fig2_validation", "figB2_fig2",
    "figB2hist_fig1", "figB2hist_fig2", "figC1_fig1", "figC2_fig1", "fig3a", "fig3b_fig1", "figC3_fig1", "figC4_fig1", "figC5_fig1",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, fmnist_dir):
    """A fresh checkout that ran the tiny workflow with the output cache on."""
    base = tmp_path_factory.mktemp("pipeline")
    cache = base / "cache"
    cache.mkdir()
    checkout = fresh_checkout(base / "first")
    env = {"SNAKEMAKE_OUTPUT_CACHE": str(cache)}
    proc = run_snakemake("--cores", "2", "--cache", "--configfile", TINY, repo=checkout, env=env)
    return {"checkout": checkout, "cache": cache, "env": env, "log": proc.stdout + proc.stderr}


def test_tiny_workflow_end_to_end(tiny):
    results = tiny["checkout"] / "results"
    assert "steps (100%) done" in tiny["log"]
    assert sorted(p.name for p in (results / "train").iterdir()) == RUNS
    for run in RUNS:
        steps = pd.read_parquet(results / "train" / run / "steps.parquet")
        assert len(steps) == 6
        # every run of the tiny config records the spectrum: eigenvalues at its evaluation steps
        spectra = pd.read_parquet(results / "train" / run / "spectra.parquet")
        assert len(spectra) and spectra["step"].isin(steps["step"]).all()
        assert json.loads((results / "train" / run / "run.json").read_text())["run_id"] == run
    assert sorted(p.name for p in (results / "lyapunov" / LYAPUNOV_RUN).iterdir()) == [
        "exponents.parquet",
        "lambda1.parquet",
        "spectrum_final.pt",
        "subspaces.parquet",
    ]
    ensemble = results / "ensembles" / LYAPUNOV_RUN
    distances = pd.read_parquet(ensemble / "distances.parquet")
    assert set(distances["dtype"]) == {"float32", "float64"}
    assert set(distances["eps"]) == {0.01, 0.1}
    assert distances.groupby(["dtype", "strategy", "eps"]).size().eq(7).all()  # steps 0..6
    fits = pd.read_parquet(results / "fits" / LYAPUNOV_RUN / "fits.parquet")
    assert len(fits) == 2 * 5 * 2 and fits["upper_bound_holds"].between(0, 1).all()
    for name in FIGURES:
        for ext in ("pdf", "png"):
            assert (results / "figures" / f"{name}.{ext}").stat().st_size > 5000, name
    verdicts = pd.read_parquet(results / "claims" / "claims.parquet")
    assert sorted(set(verdicts["claim"])) == list(range(1, 20))
    assert set(verdicts["verdict"]) <= {"supported", "not supported", "not run"}
    assert "| # | claim |" in (results / "claims" / "claims.md").read_text()
    table = pd.read_csv(results / "report" / "runs.tsv", sep="\t")
    assert sorted(table["run_id"]) == RUNS
    assert table.loc[table["run_id"] == LYAPUNOV_RUN, "tangent_map"].item()
    again = run_snakemake("-n", "--configfile", TINY, repo=tiny["checkout"], env=tiny["env"])
    assert "Nothing to be done" in again.stdout + again.stderr


def test_report_holds_every_figure_with_its_caption(tiny):
    out = tiny["checkout"] / "report.zip"
    run_snakemake("--configfile", TINY, "--report", str(out), repo=tiny["checkout"])
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        html = z.read("report/report.html").decode()
    for name in FIGURES:
        assert any(n.endswith(f"/{name}.png") for n in names), name
    assert any(n.endswith("/runs.tsv") for n in names)
    assert any(n.endswith("/claims.html") for n in names)
    for text in (
        "Reproduces Fig. 1",
        "Reproduces App. B.2",
        "Reproduces App. C.1",
        "lr 0.01, batch 8",
    ):
        assert text in html, text


def test_figures_from_the_cache_in_a_fresh_checkout_without_training(tiny, tmp_path):
    second = fresh_checkout(tmp_path / "second")
    proc = run_snakemake(
        "--cores", "2", "--cache", "--configfile", TINY, repo=second, env=tiny["env"]
    )
    log = proc.stdout + proc.stderr
    results = second / "results"
    cache = tiny["cache"].resolve()
    for run in RUNS:
        for f in (results / "train" / run).iterdir():
            assert f.is_symlink() and f.resolve().parent == cache, f
    for f in (results / "lyapunov" / LYAPUNOV_RUN).iterdir():
        assert f.is_symlink() and f.resolve().parent == cache, f
    # the training jobs' commands never ran: their logs are empty
    for log_file in [
        *(second / "logs" / "train").iterdir(),
        *(second / "logs" / "lyapunov").iterdir(),
    ]:
        assert log_file.stat().st_size == 0, log_file
    for f in (results / "ensembles" / LYAPUNOV_RUN).iterdir():
        assert f.is_symlink() and f.resolve().parent == cache, f
    assert not list((second / "logs" / "ensembles").iterdir())[0].stat().st_size
    # every output of the 2 train (5 each), 1 lyapunov (its run's 5 and its own 4) and 1
    # ensembles (3) jobs
    assert log.count("from cache") == 2 * 5 + 9 + 3
    for name in FIGURES:
        assert (results / "figures" / f"{name}.pdf").is_file()


@pytest.mark.parametrize("metadata", [True, False], ids=["moved", "results-copied"])
def test_a_moved_or_copied_checkout_reruns_nothing(tiny, tmp_path, metadata):
    """The rules name their code relative to the working directory: a checkout moved elsewhere
    with its Snakemake records (or its results copied to a checkout without them) is up to
    date, where absolute code paths made Snakemake see a changed input set in every job."""
    moved = tmp_path / "elsewhere" / "checkout"
    ignore = None if metadata else shutil.ignore_patterns(".snakemake")
    shutil.copytree(tiny["checkout"], moved, symlinks=True, ignore=ignore)  # mtimes kept
    dry = run_snakemake("-n", "--configfile", TINY, repo=moved, env=tiny["env"])
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]


def test_a_deleted_intermediate_result_is_remade(tiny, tmp_path):
    """A job killed while it was forced to rerun takes its outputs with it; what read them is
    still up to date. Every result is a target of `all`, so the next plain run remakes them
    (fits, a run's spectra) instead of finding nothing to do."""
    copy = tmp_path / "checkout"
    shutil.copytree(tiny["checkout"], copy, symlinks=True)  # mtimes and records kept
    (copy / "results" / "fits" / LYAPUNOV_RUN / "bounds.parquet").unlink()
    (
        copy / "results" / "train" / "fmnist_mlp-relu4_cgd-negative_m0_s0" / "spectra.parquet"
    ).unlink()
    dry = run_snakemake("-n", "--configfile", TINY, repo=copy, env=tiny["env"])
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts.get("fits_divergence") == 1 and counts.get("train_run") == 1, counts
    assert "datasets_prepare" not in counts and "lyapunov_run" not in counts


@pytest.mark.parametrize(
    "override",
    [
        "training={checkpoint_every: 7}",
        "device=cpu",
        "datasets={fmnist: {local_dir: LOCAL}}",
    ],
    ids=["checkpoint_every", "device", "local_dir"],
)
def test_a_setting_that_cannot_change_a_result_reruns_nothing(tiny, tmp_path, override):
    """The checkpoint cadence, the device and where verified files are read from are not params
    (a rerun trigger): changing them leaves every result valid."""
    local = tmp_path / "fmnist-copy"
    local.mkdir()
    for f in FMNIST_DIR.glob("*.gz"):
        (local / f.name).symlink_to(f)
    override = override.replace("LOCAL", str(local))
    dry = run_snakemake(
        "-n", "--configfile", TINY, "--config", override, repo=tiny["checkout"], env=tiny["env"]
    )
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]


def test_a_setting_that_shapes_results_reruns_exactly_its_jobs(tiny):
    """A training setting reruns every run and what reads them, not the dataset; a Lyapunov
    setting the Lyapunov run and what follows it, no training run."""
    dry = run_snakemake(
        "-n", "--configfile", TINY, "--config", "training={lr: 0.02}",
        repo=tiny["checkout"], env=tiny["env"],
    )  # fmt: skip
    counts = job_counts(dry.stdout + dry.stderr)
    assert "datasets_prepare" not in counts
    assert counts["train_run"] == 2 and counts["lyapunov_run"] == 1
    dry = run_snakemake(
        "-n", "--configfile", TINY, "--config", "lyapunov={neutral_tol: 1.0e-9}",
        repo=tiny["checkout"], env=tiny["env"],
    )  # fmt: skip
    counts = job_counts(dry.stdout + dry.stderr)
    assert "train_run" not in counts and counts["lyapunov_run"] == 1


def _edit_curvature(checkout):
    """A one-line change in a library module that training imports (not a stage module)."""
    path = checkout / "workflow" / "chaosgd" / "engine" / "curvature.py"
    text = path.read_text()
    path.write_text(text + "\n_ONE_LINE_CHANGE = 1\n")
    return path, text


def test_a_library_change_reruns_what_imports_it(tiny):
    """Each rule's code input is its stage's import closure: a change in curvature.py (imported
    by training, Lyapunov and ensembles, not by the datasets stage) schedules those jobs and
    what depends on them, and nothing else."""
    checkout = tiny["checkout"]
    path, text = _edit_curvature(checkout)
    stat = path.stat()
    try:
        dry = run_snakemake("-n", "--configfile", TINY, repo=checkout, env=tiny["env"])
    finally:
        path.write_text(text)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - 10**12))
    counts = job_counts(dry.stdout + dry.stderr)
    assert counts == {
        "train_run": 2,
        "lyapunov_run": 1,
        "ensembles_run": 1,
        "fits_divergence": 1,
        "figures_draw": len(FIGURES),
        "report_runs": 1,
        "claims_check": 1,
        "all": 1,
    }
    again = run_snakemake("-n", "--configfile", TINY, repo=checkout, env=tiny["env"])
    assert "Nothing to be done" in again.stdout + again.stderr


def test_a_library_change_misses_the_output_cache(tiny, tmp_path):
    """The same results hit the cache from a fresh checkout; after the change they miss it."""
    changed = fresh_checkout(tmp_path / "changed")
    _edit_curvature(changed)
    proc = run_snakemake(
        "train_all", "lyapunov_all", "--cores", "2", "--cache", "--configfile", TINY,
        repo=changed, env=tiny["env"],
    )  # fmt: skip
    log = proc.stdout + proc.stderr
    # a miss computes the outputs and then moves them into the cache; a hit only links them
    for run in RUNS:
        stage = "lyapunov" if run == LYAPUNOV_RUN else "train"
        steps = f"results/train/{run}/steps.parquet"
        assert f"Moving output file {steps} to cache." in log, (stage, run)
    for run in RUNS:
        # stored in the cache by this run, not by the first: another cache entry
        steps = changed / "results" / "train" / run / "steps.parquet"
        assert (
            steps.resolve()
            != (tiny["checkout"] / "results/train" / run / "steps.parquet").resolve()
        )
        # the job's command ran (a job served from the cache leaves an empty log)
        stage = "lyapunov" if run == LYAPUNOV_RUN else "train"
        assert (changed / "logs" / stage / f"{run}.log").stat().st_size > 0, run


def test_results_archive_round_trip(tiny, tmp_path):
    packed = tmp_path / "results.tar.gz"
    assert (
        archive.main(["export", str(packed), "--results", str(tiny["checkout"] / "results")]) == 0
    )
    third = fresh_checkout(tmp_path / "third")
    assert archive.main(["import", str(packed), "--results", str(third / "results")]) == 0
    for run in RUNS:
        a = tiny["checkout"] / "results" / "train" / run / "steps.parquet"
        b = third / "results" / "train" / run / "steps.parquet"
        assert a.read_bytes() == b.read_bytes() and not b.is_symlink()
    dry = run_snakemake("-n", "--configfile", TINY, repo=third)
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # without the figures, only the figures are redone: no training
    for f in (third / "results" / "figures").iterdir():
        f.unlink()
    dry = run_snakemake("-n", "--configfile", TINY, repo=third)
    assert job_counts(dry.stdout + dry.stderr) == {"figures_draw": len(FIGURES), "all": 1}


def test_archive_refuses_corruption_and_conflicts(tiny, tmp_path, capsys):
    packed = tmp_path / "results.tar.gz"
    results = tiny["checkout"] / "results"
    assert (
        archive.main(["export", str(packed), "--results", str(results), "--stages", "train"]) == 0
    )
    target = tmp_path / "elsewhere" / "results"
    assert archive.main(["import", str(packed), "--results", str(target)]) == 0
    victim = target / "train" / RUNS[0] / "run.json"
    victim.write_text("{}")
    assert archive.main(["import", str(packed), "--results", str(target)]) == 1
    assert "differ from the archive" in capsys.readouterr().err
    assert victim.read_text() == "{}"  # nothing was replaced
    assert archive.main(["import", str(packed), "--results", str(target), "--force"]) == 0
    assert victim.read_text() != "{}"
    # a member changed after export (the manifest kept): its checksum catches it
    tampered = tmp_path / "tampered.tar.gz"
    bad = None
    with tarfile.open(packed) as src, tarfile.open(tampered, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if bad is None and member.name.endswith("steps.parquet"):
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
                bad = member.name
            dst.addfile(member, io.BytesIO(data))
    assert archive.main(["import", str(tampered), "--results", str(tmp_path / "x")]) == 1
    assert f"checksum mismatch for {bad}" in capsys.readouterr().err
    # a truncated archive
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(packed.read_bytes()[: packed.stat().st_size // 2])
    assert archive.main(["import", str(truncated), "--results", str(tmp_path / "y")]) == 1
    assert "corrupt or unreadable archive" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_results_copied_under_another_config_are_refused_until_moved(tiny, tmp_path):
    """Results copied without Snakemake's records pass for up to date whatever the config asks:
    the Snakefile names the runs whose settings differ, and after the tool moves them aside
    exactly the training runs and what follows them are scheduled."""
    copy = fresh_checkout(tmp_path / "copy")
    shutil.copytree(tiny["checkout"] / "results", copy / "results", symlinks=True)
    lr = tmp_path / "lr.yaml"
    lr.write_text("training:\n  lr: 0.02\n")
    dry = run_snakemake(
        "-n", "--configfile", TINY, "--config", "training={lr: 0.02}", repo=copy, check=False
    )
    log = dry.stdout + dry.stderr
    assert dry.returncode != 0
    for run in RUNS:
        assert f"results/train/{run}/: lr 0.01 here, 0.02 in the config" in log, log[-3000:]
    assert f"python -m chaosgd.tools.stale --configfile {TINY} --move" in log
    moved = subprocess.run(
        [sys.executable, "-m", "chaosgd.tools.stale", "--configfile", TINY, str(lr), "--move"],
        cwd=copy,
        env={**venv_env(), "PYTHONPATH": str(copy / "workflow")},
        capture_output=True,
        text=True,
    )
    assert moved.returncode == 0, moved.stderr
    dry = run_snakemake("-n", "--configfile", TINY, str(lr), repo=copy)
    assert job_counts(dry.stdout + dry.stderr) == {
        "train_run": 2,
        "lyapunov_run": 1,
        "ensembles_run": 1,
        "fits_divergence": 1,
        "figures_draw": len(FIGURES),
        "report_runs": 1,
        "claims_check": 1,
        "all": 1,
    }
