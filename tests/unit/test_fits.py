"""Fits stage: the command line fits every curve of a distances table, checks the bounds, and
writes the two tables with their column types; bad input is one error naming the file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chaosgd import fits

from support.fit_tables import exponents_table, synthetic_distances

FIT_COLUMNS = {
    "dtype": "str",
    "strategy": "str",
    "eps": "float64",
    "alpha": "float64",
    "beta": "float64",
    "alpha_se": "float64",
    "beta_se": "float64",
    "r2": "float64",
    "r2_squared": "float64",
    "n": "int64",
    "constrained": "bool",
    "final_distance": "float64",
    "lower_bound_holds": "float64",
    "upper_bound_holds": "float64",
    "bound_steps": "int64",
    "upper_margin": "float64",
    "lower_margin": "float64",
    "lower_log_max": "float64",
    "upper_margin_steps": "float64",
    "upper_steps": "int64",
}
BOUND_COLUMNS = {
    "dtype": "str",
    "strategy": "str",
    "eps": "float64",
    "step": "int64",
    "distance": "float64",
    "lower": "float64",
    "upper": "float64",
}


def test_cli_end_to_end(tmp_path):
    dist, truth = synthetic_distances()
    dist.to_parquet(tmp_path / "distances.parquet", index=False)
    exponents_table().to_parquet(tmp_path / "exponents.parquet", index=False)
    out_fits, out_bounds = tmp_path / "out" / "fits.parquet", tmp_path / "out" / "bounds.parquet"
    rc = fits.main(
        [
            "--distances",
            str(tmp_path / "distances.parquet"),
            "--exponents",
            str(tmp_path / "exponents.parquet"),
            "--out-fits",
            str(out_fits),
            "--out-bounds",
            str(out_bounds),
        ]
    )
    assert rc == 0
    f = pd.read_parquet(out_fits)
    b = pd.read_parquet(out_bounds)
    assert {c: str(t) for c, t in f.dtypes.items()} == FIT_COLUMNS
    assert {c: str(t) for c, t in b.dtypes.items()} == BOUND_COLUMNS
    assert len(f) == 8 and not f.duplicated(["dtype", "strategy", "eps"]).any()
    for row in f.itertuples():
        alpha, beta = truth[(row.dtype, row.strategy, row.eps)]
        assert row.alpha == pytest.approx(alpha, rel=0.05)
        assert row.beta == pytest.approx(beta, rel=0.1)
        assert row.n == 41 and row.bound_steps == 4
        assert 0 < row.alpha_se < row.alpha / 2 and 0 < row.beta_se
        # d grows faster than e^{1e-3 t} ε only for the steep curves
        assert 0 <= row.upper_bound_holds <= 1 and row.lower_bound_holds == 1.0
        assert (row.upper_margin >= 0) == (row.upper_bound_holds == 1.0)
        assert row.lower_margin > 0 and row.lower_log_max == pytest.approx(-0.1)
        # no lambda1.parquet given: the upper bound is not checked between the readouts
        assert row.upper_steps == 0 and pd.isna(row.upper_margin_steps)
    assert len(b) == 8 * 4 and sorted(b.step.unique()) == [100, 200, 300, 400]
    last = dist[dist.step == 400].set_index(["dtype", "strategy", "eps"])["distance"]
    got = f.set_index(["dtype", "strategy", "eps"])["final_distance"]
    pd.testing.assert_series_equal(got.sort_index(), last.sort_index(), check_names=False)


def test_cli_errors(tmp_path, capsys):
    dist, _ = synthetic_distances()
    dist = dist[dist.step < 20]  # two points per curve
    dist.to_parquet(tmp_path / "distances.parquet", index=False)
    exponents_table().to_parquet(tmp_path / "exponents.parquet", index=False)
    out = tmp_path / "out" / "fits.parquet"
    rc = fits.main(
        [
            "--distances",
            str(tmp_path / "distances.parquet"),
            "--exponents",
            str(tmp_path / "exponents.parquet"),
            "--out-fits",
            str(out),
        ]
    )
    assert rc == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "at least 3 points" in err[0]
    assert not out.exists()
    rc = fits.main(
        [
            "--distances",
            str(tmp_path / "missing.parquet"),
            "--exponents",
            str(tmp_path / "exponents.parquet"),
            "--out-fits",
            str(out),
        ]
    )
    assert rc == 1 and not out.exists()


def test_cli_checks_the_upper_bound_at_every_step_between_the_readouts(tmp_path):
    # λ1 = 1e-3 at the readouts (100..400) and at every step; a curve that stays below
    # e^{λ1 t}ε at the readouts but bulges above it between them (steps 110..190)
    steps = np.arange(0, 401, 10)
    eps = 0.1
    bound = eps * np.exp(1e-3 * steps)
    rows = []
    for strategy, bulge in (("max_chaos", 1.5), ("random", 1.0)):
        d = 0.9 * bound
        d[(steps > 100) & (steps < 200)] *= bulge
        rows.append(pd.DataFrame(dict(dtype="float32", strategy=strategy, eps=eps, step=steps)))
        rows[-1]["distance"] = d
    pd.concat(rows).to_parquet(tmp_path / "distances.parquet", index=False)
    exponents_table().to_parquet(tmp_path / "exponents.parquet", index=False)
    every = np.arange(1, 401)
    pd.DataFrame({"step": every, "lambda_1": 1e-3, "iterations": np.int32(3)}).to_parquet(
        tmp_path / "lambda1.parquet", index=False
    )
    out = tmp_path / "fits.parquet"
    args = ["--distances", str(tmp_path / "distances.parquet")]
    args += ["--exponents", str(tmp_path / "exponents.parquet")]
    rc = fits.main(args + ["--lambda1", str(tmp_path / "lambda1.parquet"), "--out-fits", str(out)])
    assert rc == 0
    f = pd.read_parquet(out).set_index("strategy")
    # every recorded step but 0 (d(0) = ε = the bound at t = 0 says nothing)
    assert (f["upper_steps"] == 40).all()
    # at the readouts both hold with the same margin ln(1/0.9)
    assert f["upper_margin"].to_numpy() == pytest.approx(np.log(1 / 0.9))
    assert f.loc["random", "upper_margin_steps"] == pytest.approx(np.log(1 / 0.9))
    assert f.loc["max_chaos", "upper_margin_steps"] == pytest.approx(np.log(1 / (0.9 * 1.5)))
    assert f.loc["max_chaos", "upper_margin_steps"] < 0 < f.loc["max_chaos", "upper_margin"]
