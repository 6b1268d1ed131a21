"""The whole workflow on a data slice, through Snakemake: datasets -> train -> figures."""

from __future__ import annotations

import json

import pandas as pd

from conftest import REPO, run_snakemake


def test_tiny_workflow_end_to_end(tmp_path, fmnist_dir):
    proc = run_snakemake("--cores", "2", "--configfile", str(REPO / "config/tiny.yaml"), workdir=tmp_path)
    assert "steps (100%) done" in proc.stdout + proc.stderr
    results = tmp_path / "results"
    runs = sorted(p.name for p in (results / "train").iterdir())
    assert runs == [
        "fmnist_mlp-relu4_cgd-chaotic_on3_m0_s0",
        "fmnist_mlp-relu4_cgd-negative_m0_s0",
        "fmnist_mlp-relu4_sgd_m0_s0",
    ]
    for run in runs:
        steps = pd.read_parquet(results / "train" / run / "steps.parquet")
        assert len(steps) == 6
        assert json.loads((results / "train" / run / "run.json").read_text())["run_id"] == run
    figures = sorted(p.name for p in (results / "figures").iterdir())
    lyap = results / "lyapunov" / "fmnist_mlp-relu4_sgd_m0_s0"
    assert sorted(p.name for p in lyap.iterdir()) == [
        "exponents.parquet", "spectrum_final.pt", "subspaces.parquet"
    ]
    names = ["fig1", "fig1_validation", "figB2_fig1", "fig2", "fig2_validation", "figB2_fig2"]
    for name in names + ["figC1_fig1", "figC2_fig1"]:
        for ext in ("pdf", "png"):
            assert f"{name}.{ext}" in figures
            assert (results / "figures" / f"{name}.{ext}").stat().st_size > 5000
    assert (tmp_path / "logs" / "train" / f"{runs[0]}.log").is_file()

    # a second invocation has nothing to do
    again = run_snakemake("-n", "--configfile", str(REPO / "config/tiny.yaml"), workdir=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr
