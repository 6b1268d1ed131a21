"""Figures stage: every kind of the command line draws from hand-made results and writes the
numbers it draws beside its PDF and PNG, what is on the axes is in the table, and the rule
declares the table. What each kind draws: tests/unit/analysis/plots/."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from chaosgd import figures
from chaosgd.analysis.plots import style
from chaosgd.analysis.plots.figure_data import DATA_COLUMNS
from chaosgd.analysis.plots.loading import load_runs
from chaosgd.planning.vocab import FIGURE_KINDS

from support.figures import MAIN_EPS, SGD, fake_results, kind_args
from support.workflow import REPO


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return fake_results(tmp_path_factory.mktemp("figures") / "results")


def run_stage(results, out_dir, kind, runs=None, name=None) -> pd.DataFrame:
    """Run ``python -m chaosgd.figures <kind>`` in-process; return the data it wrote."""
    default_runs, options = kind_args(kind)
    name = name or f"fig_{kind}"
    outs = [out_dir / f"{name}.pdf", out_dir / f"{name}.png"]
    argv = [kind, "--name", name, "--results", str(results), "--runs", *(runs or default_runs)]
    argv += [*options, "--out", *map(str, outs), "--data", str(out_dir / f"{name}.parquet")]
    assert figures.main(argv) == 0
    for out in outs:
        assert out.stat().st_size > 5000, out
    return pd.read_parquet(out_dir / f"{name}.parquet")


@pytest.mark.parametrize("kind", sorted(FIGURE_KINDS))
def test_every_kind_writes_what_it_draws(results, tmp_path, kind):
    """A new kind fails here until its figure draws from these results and saves its data."""
    assert kind in figures.PLOTS
    data = run_stage(results, tmp_path, kind)
    assert list(data.columns) == list(DATA_COLUMNS)
    assert len(data) and data["x"].notna().all()
    assert data["panel"].map(type).eq(str).all() and data["series"].map(type).eq(str).all()
    # every line on the axes in data coordinates (not reference lines spanning an axis, as
    # pruning onsets) is a series of the table, point for point
    runs, options = kind_args(kind)
    extra = {"eps": MAIN_EPS} if options else {}
    fig, _ = figures.PLOTS[kind](load_runs(results, runs), kind, **extra)
    try:
        curves = [
            (g["x"].to_numpy(), g["y"].to_numpy()) for _, g in data.groupby(["panel", "series"])
        ]
        for ax in fig.axes:
            for line in ax.lines:
                if line.get_transform() is not ax.transData:
                    continue
                x, y = (np.asarray(v, dtype=float) for v in line.get_data())
                assert any(
                    len(cx) == len(x) and np.allclose(cx, x) and np.allclose(cy, y, equal_nan=True)
                    for cx, cy in curves
                ), (kind, line.get_label())
    finally:
        style.plt.close(fig)


def test_the_data_goes_next_to_the_first_output_by_default(results, tmp_path):
    argv = ["validation", "--name", "v", "--results", str(results), "--runs", *SGD]
    argv += ["--out", str(tmp_path / "v.png"), str(tmp_path / "v.pdf")]
    assert figures.main(argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.parquet", "v.pdf", "v.png"]


def test_a_figure_that_fails_writes_nothing(results, tmp_path, capsys):
    argv = ["curves", "--name", "c", "--results", str(results), "--runs", SGD[0], "missing"]
    argv += ["--out", str(tmp_path / "c.png"), "--data", str(tmp_path / "c.parquet")]
    assert figures.main(argv) == 1
    assert "missing" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_a_kind_that_shows_one_eps_needs_it(results, tmp_path, capsys):
    kind = next(k for k in sorted(FIGURE_KINDS) if FIGURE_KINDS[k].main_eps)
    argv = [kind, "--name", "f", "--results", str(results), "--runs", SGD[0]]
    argv += ["--out", str(tmp_path / "f.png")]
    assert figures.main(argv) == 1
    assert f"{kind} needs --eps" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_the_rule_declares_the_data():
    rule = (REPO / "workflow" / "rules" / "figures.smk").read_text()
    assert 'data="results/figures/{figure}.parquet"' in rule
    assert "--data {output.data}" in rule
    assert re.search(r'ext=\["pdf", "png", "parquet"\]', rule)
