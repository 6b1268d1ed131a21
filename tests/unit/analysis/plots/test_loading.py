"""Loading the runs a figure draws: settings from run.json, tables checked for what is drawn,
and the figure's title."""

from __future__ import annotations

import numpy as np
import pytest

from chaosgd.analysis.plots.loading import TABLES, load_runs, title
from chaosgd.runs.artifacts import UnreadableFile, write_parquet

from support.figures import NEG, SGD, fake_run


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    rng = np.random.default_rng(0)
    for seed, run in enumerate(SGD):
        fake_run(root, run, "sgd", seed, 0.0, rng)
    fake_run(root, NEG[0], "cgd-negative", 0, 0.0, rng, onset=500)
    return root


def test_runs_come_with_their_settings_and_tables(results):
    sgd, neg = load_runs(results, [SGD[0], NEG[0]])
    assert sgd.run_id == SGD[0] and sgd.condition == ("sgd", 0, 0.0)
    assert neg.condition == ("cgd-negative", 500, 0.0)
    assert sgd.path("exponents", "lyapunov") == results / "lyapunov" / SGD[0] / "exponents.parquet"
    steps = sgd.table("steps")
    assert set(TABLES["steps"][0]) <= set(steps.columns)
    assert list(sgd.table("steps", ["step", "acc"]).columns) == ["step", "acc"]


def test_no_runs_or_a_missing_run_is_an_error(results):
    with pytest.raises(ValueError, match="no runs given"):
        load_runs(results, [])
    with pytest.raises(UnreadableFile, match=r"train/missing/run\.json: no such file"):
        load_runs(results, ["missing"])


def test_a_table_without_a_drawn_column_or_with_a_gap_names_its_file(results):
    (run,) = load_runs(results, [SGD[0]])
    steps = run.table("steps")
    write_parquet(steps.drop(columns="loss"), run.path("steps"))
    with pytest.raises(UnreadableFile, match=r"steps\.parquet: lacks column"):
        run.table("steps")
    write_parquet(steps.assign(loss=np.nan), run.path("steps"))
    with pytest.raises(UnreadableFile, match=r"steps\.parquet"):
        run.table("steps")


def test_the_title_names_the_data_the_model_and_the_seeds(results):
    runs = load_runs(results, SGD)
    assert title(runs, "fig1") == "fig1: USPS, MLP-relu (h=20), lr 0.01, batch 8, 2 seed(s)"
