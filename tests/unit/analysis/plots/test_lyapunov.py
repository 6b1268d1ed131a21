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

from support.figures import REF, SGD, curve, fake_results, fake_run, lambda1_table
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
    per_step = pd.read_parquet(results / "lyapunov" / REF / "lambda1.parquet")
    c = curve(data, "extremes", "SGD: λ1 per step")
    np.testing.assert_array_equal(c["x"], per_step["step"])
    np.testing.assert_allclose(c["y"], per_step["lambda_1"])
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


CGD = "e_cgdc_s0"


@pytest.fixture(scope="module")
def with_cgd(tmp_path_factory):
    """The SGD reference's Lyapunov results and a CGD-chaotic run's beside them: λ1 at 0 (no
    chaotic direction left, Theorem 2.2), no chaotic subspace (NaN similarities)."""
    results = fake_results(tmp_path_factory.mktemp("cgd") / "results")
    fake_run(results, CGD, "cgd-chaotic", 0, 0.0, np.random.default_rng(5))
    folder = results / "lyapunov" / CGD
    exps = pd.read_parquet(results / "lyapunov" / REF / "exponents.parquet")
    exps["lambda_1"] = 0.0
    exps["n_negative"] += exps["n_positive"]
    exps["n_positive"] = 0
    write_parquet(exps, folder / "exponents.parquet")
    write_parquet(lambda1_table(scale=0.0), folder / "lambda1.parquet")
    subs = pd.read_parquet(results / "lyapunov" / REF / "subspaces.parquet")
    for col in subs.columns:
        if col.endswith("_chaotic") and not col.startswith("dim"):
            subs[col] = math.nan
        elif col.endswith("_chaotic"):
            subs[col] = 0
    write_parquet(subs, folder / "subspaces.parquet")
    return results


def test_exponents_one_column_per_variant_on_the_same_y_limits(with_cgd, tmp_path):
    data = draw(with_cgd, tmp_path, "exponents", runs=[CGD, REF])
    # SGD first, whatever the order of the runs
    assert set(data["panel"]) == {
        f"{v}: {p}" for v in ("SGD", "CGD chaotic") for p in ("extremes", "quantiles", "counts")
    }
    c = curve(data, "CGD chaotic: extremes", "CGD chaotic, seed 0: λ1 per step")
    assert (c["y"] == 0).all() and len(c) == 120
    fig, _ = lyapunov.plot_exponents(load_runs(with_cgd, [CGD, REF]), "e")
    axes = fig.axes
    assert len(axes) == 6
    assert axes[0].get_title(loc="left").startswith("(a) SGD: λ1 (line); readouts")
    assert "CGD chaotic" in axes[1].get_title(loc="left")
    for row in range(3):
        assert axes[2 * row].get_ylim() == axes[2 * row + 1].get_ylim()
    style.plt.close(fig)


def test_exponents_without_a_per_step_table_draw_the_readouts_and_say_so(with_cgd, tmp_path):
    results = tmp_path / "results"
    fake_run(results, REF, "sgd", 0, 0.0, np.random.default_rng(2))
    (results / "lyapunov" / REF).mkdir(parents=True)
    for name in ("exponents", "subspaces"):
        src = with_cgd / "lyapunov" / REF / f"{name}.parquet"
        (results / "lyapunov" / REF / f"{name}.parquet").write_bytes(src.read_bytes())
    data = draw(results, tmp_path, "exponents")
    assert not data["series"].str.contains("per step").any()
    fig, _ = lyapunov.plot_exponents(load_runs(results, [REF]), "e")
    assert "readouts only" in fig.texts[0].get_text()
    style.plt.close(fig)


def test_subspaces_draw_the_sgd_runs_of_an_experiment_with_cgd(with_cgd, tmp_path):
    data = draw(with_cgd, tmp_path, "subspaces", runs=[REF, CGD])
    assert not data["panel"].str.contains("CGD").any()
    assert set(data["panel"]) == {
        f"t0={t0}: {part}" for t0 in (2, 16) for part in ("same", "cross", "dims")
    }
    fig, _ = lyapunov.plot_subspaces(load_runs(with_cgd, [REF, CGD]), "s")
    assert f"SGD runs only (left out: {CGD})" in fig.texts[0].get_text()
    style.plt.close(fig)
