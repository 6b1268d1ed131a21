"""Lyapunov figures (App. C.1, C.2): the exponents over training on a log step axis, and the
stability of the Lyapunov subspaces against fixed t₀, or in older tables between readouts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from chaosgd.analysis.plots import lyapunov, style
from chaosgd.analysis.plots.loading import load_runs
from chaosgd.runs.artifacts import write_parquet

from support.figures import REF, SGD, curve, fake_results, fake_run
from support.figures import draw as draw_kind

PLOTS = {"exponents": lyapunov.plot_exponents, "subspaces": lyapunov.plot_subspaces}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return fake_results(tmp_path_factory.mktemp("figures") / "results")


def draw(results, out_dir, kind, runs=None) -> pd.DataFrame:
    return draw_kind(results, out_dir, kind, PLOTS[kind], runs)


def test_exponents_on_a_log_step_axis(results, tmp_path):
    data = draw(results, tmp_path, "exponents")
    exps = pd.read_parquet(results / "lyapunov" / REF / "exponents.parquet")
    for panel, series, column in (
        ("extremes", "SGD: λ1", "lambda_1"),
        ("extremes", "SGD: λN", "lambda_N"),
        ("counts", "SGD: λ>0", "n_positive"),
        ("counts", "SGD: λ<0", "n_negative"),
    ):
        c = curve(data, panel, series)
        np.testing.assert_array_equal(c["x"], exps["step"])
        np.testing.assert_allclose(c["y"], exps[column])
    q = curve(data, "quantiles", "SGD: median")
    np.testing.assert_allclose(q[["y", "lo", "hi"]].to_numpy().T, exps[["q0.5", "q0.1", "q0.9"]].T)
    fig, _ = lyapunov.plot_exponents(load_runs(results, [REF]), "e")
    assert {ax.get_xscale() for ax in fig.axes} == {"log"}
    # the first readout, at step 1, is inside the drawn range
    assert all(ax.get_xlim()[0] <= 1 for ax in fig.axes)
    style.plt.close(fig)


def test_subspaces_one_row_per_t0_with_baselines(results, tmp_path):
    data = draw(results, tmp_path, "subspaces")
    table = pd.read_parquet(results / "lyapunov" / REF / "subspaces.parquet")
    assert sorted(set(table["t0"])) == [2, 16]
    assert set(data["panel"]) == {
        f"t0={t0}: {part}" for t0 in (2, 16) for part in ("same", "cross", "dims")
    }
    for t0, rows in table.groupby("t0"):
        rows = rows.sort_values("step")
        for pair in (
            "chaotic",
            "edge",
            "nonchaotic",
            "chaotic_vs_nonchaotic",
            "nonchaotic_vs_chaotic",
        ):
            part = "cross" if "_vs_" in pair else "same"
            for what, suffix in (
                ("similarity", ""),
                ("baseline", ": baseline"),
                ("random", ": random"),
            ):
                c = curve(data, f"t0={t0}: {part}", pair + suffix)
                np.testing.assert_array_equal(c["x"], rows["step"])
                np.testing.assert_allclose(c["y"], rows[f"{what}_{pair}"], equal_nan=True)
        for pair in ("chaotic", "edge", "nonchaotic"):
            for what in ("dim", "dim0"):
                c = curve(data, f"t0={t0}: dims", f"{what} {pair}")
                np.testing.assert_array_equal(c["y"], rows[f"{what}_{pair}"])
    # the random baseline is max(dim)/N of the two subspaces' dimensions (N = 12 here)
    c = table.iloc[0]
    assert c["baseline_chaotic"] == pytest.approx(max(c["dim0_chaotic"], c["dim_chaotic"]) / 12)


def test_subspaces_of_an_older_table_compare_consecutive_readouts(tmp_path):
    results = tmp_path / "results"
    fake_run(results, REF, "sgd", 0, 0.0, np.random.default_rng(2))
    old = pd.DataFrame(
        {
            "step": [2, 4, 8],
            "previous_step": [1, 2, 4],
            "dim_chaotic": [5, 4, 0],
            "similarity_chaotic": [0.9, 0.95, math.nan],
            "dim_nonchaotic": [7, 8, 12],
            "similarity_nonchaotic": [0.8, 0.9, 0.99],
        }
    )
    write_parquet(old, results / "lyapunov" / REF / "subspaces.parquet")
    data = draw(results, tmp_path, "subspaces")
    assert set(data["panel"]) == {"previous readout: same", "previous readout: dims"}
    np.testing.assert_allclose(
        curve(data, "previous readout: same", "chaotic")["y"],
        old["similarity_chaotic"],
        equal_nan=True,
    )
    assert not data["series"].str.contains("baseline").any()
    fig, _ = lyapunov.plot_subspaces(load_runs(results, [REF]), "s")
    assert "older table" in fig.texts[0].get_text()
    style.plt.close(fig)


def test_subspaces_of_several_runs_name_the_run_in_each_panel(results, tmp_path):
    table = pd.read_parquet(results / "lyapunov" / REF / "subspaces.parquet")
    write_parquet(table, results / "lyapunov" / SGD[1] / "subspaces.parquet")
    data = draw(results, tmp_path, "subspaces", runs=SGD)
    assert set(data["panel"]) == {
        f"SGD, seed {seed}, t0={t0}: {part}"
        for seed in (0, 1)
        for t0 in (2, 16)
        for part in ("same", "cross", "dims")
    }
