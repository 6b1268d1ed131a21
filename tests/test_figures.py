"""Figures: every kind draws from hand-made results and writes the numbers it draws beside its
PDF and PNG; those numbers are what the inputs imply (moving averages, mean ± std over seeds,
fits, reference lines), and what is on the axes is in the table."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from chaosgd import exponents, figures, plotting
from chaosgd.io import write_json, write_parquet
from chaosgd.vocab import FIGURE_KINDS, STRATEGIES

from conftest import REPO

STEPS = 130  # more than the moving average's 50, so its interior and both edges are drawn
SGD = ["e_sgd_s0", "e_sgd_s1"]
NEG = ["e_neg_s0", "e_neg_s1"]
REF = SGD[0]  # the Lyapunov run and ensemble reference
EPS = [0.01, 0.1, 1.0]
MAIN_EPS = 0.1
DTYPES = ["float32", "float64"]
QUANTILES = [0.1, 0.5, 0.9]
REF_COLUMNS = list(figures.REF_COLUMNS)


def settings(run, variant, seed, **changes) -> dict:
    return {
        "run_id": run, "dataset": "usps", "model": "mlp", "activation": "relu", "hidden": 20,
        "variant": variant, "onset": 0, "momentum": 0.0, "seed": seed, "lr": 0.01,
        "batch_size": 8, "dtype": "float32", "spectrum": True, **changes,
    }  # fmt: skip


def steps_table(seed: int, offset: float, rng, ref: bool = True) -> pd.DataFrame:
    step = np.arange(STEPS)
    df = pd.DataFrame(
        {
            "step": step,
            "acc": np.clip(0.1 + offset + 0.005 * step + 0.05 * rng.standard_normal(STEPS), 0, 1),
            "loss": 2.0 * np.exp(-0.01 * step) + 0.1 * rng.random(STEPS) + offset,
            "n_negative": rng.integers(50, 100, STEPS),
            "n_positive": rng.integers(100, 150, STEPS),
            "n_positive_chaotic": rng.integers(0, 3, STEPS),
            "grad_frac_positive": 0.6 + 0.1 * rng.random(STEPS),
            "grad_frac_negative": 0.2 + 0.1 * rng.random(STEPS),
        }
    )
    if ref:
        half_null = (5350 - df["n_negative"] - df["n_positive"]) / 2
        df["ref_n_negative"] = df["n_negative"] + half_null
        df["ref_n_positive"] = df["n_positive"] + half_null
        for col in REF_COLUMNS[2:]:
            df[col] = 0.1 * rng.random(STEPS)
    return df


def fake_run(root, run, variant, seed, offset, rng, ref=True, **changes) -> None:
    folder = root / "train" / run
    info = {
        "run_id": run,
        "settings": settings(run, variant, seed, **changes),
        "environment": {},
        "result": {},
    }
    write_json(info, folder / "run.json")
    write_parquet(steps_table(seed, offset, rng, ref), folder / "steps.parquet")
    epoch = np.arange(4)
    write_parquet(
        pd.DataFrame(
            {
                "step": epoch * 30,
                "epoch": epoch.astype(float),
                "train_acc": 0.5 + 0.1 * epoch + offset + 0.01 * seed,
                "train_loss": 1.0 / (1 + epoch) + offset,
                "val_acc": 0.45 + 0.1 * epoch + offset - 0.01 * seed,
                "val_loss": 1.2 / (1 + epoch) + offset,
            }
        ),
        folder / "epochs.parquet",
    )


def subspaces_table(rng) -> pd.DataFrame:
    """App. C.2's table as chaosgd.exponents.stability_row makes it, from random bases."""
    n, readouts, anchors = 12, [1, 2, 4, 8, 16, 60, 120], [2, 16]
    bases = {t: np.linalg.qr(rng.standard_normal((n, n)))[0] for t in readouts}
    spectra = {t: np.sort(rng.standard_normal(n))[::-1] / t for t in readouts}
    rows = [
        exponents.stability_row(bases[t0], spectra[t0], t0, bases[t], spectra[t], t, 1e-8, rng)
        for t0 in anchors
        for t in readouts
        if t > t0
    ]
    return pd.DataFrame(rows)


def lyapunov_results(root, rng) -> None:
    folder = root / "lyapunov" / REF
    step = np.array([1, 2, 4, 8, 16, 60, 120])
    lam1 = 0.5 / np.sqrt(step)
    exps = pd.DataFrame(
        {
            "step": step,
            "method": "svd",
            "lambda_1": lam1,
            "lambda_N": -0.3 / np.sqrt(step),
            "n_positive": np.array([900, 800, 700, 600, 500, 450, 400]),
            "n_negative": np.array([100, 200, 300, 400, 500, 550, 600]),
            "n_neutral": 4350,
        }
    )
    for q, v in zip(QUANTILES, (-0.1, 0.01, 0.2)):
        exps[f"q{q:g}"] = v / np.sqrt(step)
    write_parquet(exps, folder / "exponents.parquet")
    write_parquet(subspaces_table(rng), folder / "subspaces.parquet")


def ensemble_results(root, rng) -> None:
    step = np.arange(0, 121, 10)
    rows, members, fits, bounds = [], [], [], []
    for dtype in DTYPES:
        members.append(dict(dtype=dtype, strategy="reference", eps=0.0, train_acc=0.9, val_acc=0.8))
        for k, strategy in enumerate(STRATEGIES):
            for eps in EPS:
                d = np.sqrt(1e-4 * (k + 1) * step**2 + 1e-3 * step + eps**2)
                d *= 1 + 1e-3 * rng.random(len(step)) * (dtype == "float32")
                rows.append(
                    pd.DataFrame(
                        dict(dtype=dtype, strategy=strategy, eps=eps, step=step, distance=d)
                    )
                )
                members.append(
                    dict(
                        dtype=dtype,
                        strategy=strategy,
                        eps=eps,
                        train_acc=0.9 - eps / 10,
                        val_acc=0.8 - eps / 20,
                    )
                )
                fits.append(
                    dict(
                        dtype=dtype,
                        strategy=strategy,
                        eps=eps,
                        alpha=1e-4 * (k + 1),
                        beta=1e-3,
                        r2=0.99,
                        lower_bound_holds=1.0,
                        upper_bound_holds=0.5,
                        bound_steps=3,
                    )
                )
                at = np.array([1, 60, 120])
                bounds.append(
                    pd.DataFrame(
                        dict(
                            dtype=dtype,
                            strategy=strategy,
                            eps=eps,
                            step=at,
                            distance=d[[0, 6, 12]],
                            lower=eps * np.exp(-0.01 * at),
                            upper=eps * np.exp(0.03 * at),
                        )
                    )
                )
    write_parquet(
        pd.concat(rows, ignore_index=True), root / "ensembles" / REF / "distances.parquet"
    )
    write_parquet(pd.DataFrame(members), root / "ensembles" / REF / "members.parquet")
    write_parquet(pd.DataFrame(fits), root / "fits" / REF / "fits.parquet")
    write_parquet(pd.concat(bounds, ignore_index=True), root / "fits" / REF / "bounds.parquet")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two SGD and two CGD-negative seeds of one experiment, the first SGD run with Lyapunov
    spectra, ensembles and fits."""
    root = tmp_path_factory.mktemp("figures") / "results"
    rng = np.random.default_rng(0)
    for seed, run in enumerate(SGD):
        fake_run(root, run, "sgd", seed, 0.0, rng)
    for seed, run in enumerate(NEG):
        fake_run(root, run, "cgd-negative", seed, -0.05, rng)
    lyapunov_results(root, rng)
    ensemble_results(root, rng)
    return root


def kind_args(kind: str) -> tuple[list[str], list[str]]:
    """The runs a figure of ``kind`` draws (as the planner chooses by scope), and its options."""
    spec = FIGURE_KINDS[kind]
    runs = SGD + NEG if spec.scope in ("experiment", "spectral") else [REF]
    return runs, ["--eps", str(MAIN_EPS)] if spec.main_eps else []


def draw(results, out_dir, kind, runs=None, name=None) -> pd.DataFrame:
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


def curve(data: pd.DataFrame, panel: str, series: str) -> pd.DataFrame:
    rows = data[(data["panel"] == panel) & (data["series"] == series)]
    assert len(rows), (panel, series, sorted(set(zip(data["panel"], data["series"]))))
    return rows.reset_index(drop=True)


def moving_average(values: np.ndarray, window: int = 50) -> np.ndarray:
    """A centred moving average written out: the mean of the values from i − window/2 to
    i + window/2 − 1 that exist (pandas' centring of an even window)."""
    half = window // 2
    return np.array(
        [
            values[max(0, i - half) : min(len(values), i - half + window)].mean()
            for i in range(len(values))
        ]
    )


def seed_band(results, runs, table, column, window):
    series = [
        pd.read_parquet(results / "train" / r / f"{table}.parquet")[column].to_numpy() for r in runs
    ]
    smoothed = np.array([moving_average(s, window) if window > 1 else s for s in series])
    mean, std = smoothed.mean(axis=0), smoothed.std(axis=0, ddof=1)
    return mean, mean - std, mean + std


# --- every kind ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(FIGURE_KINDS))
def test_every_kind_writes_what_it_draws(results, tmp_path, kind):
    """A new kind fails here until its figure draws from these results and saves its data."""
    assert kind in figures.PLOTS
    data = draw(results, tmp_path, kind)
    assert list(data.columns) == list(plotting.DATA_COLUMNS)
    assert len(data) and data["x"].notna().all()
    assert data["panel"].map(type).eq(str).all() and data["series"].map(type).eq(str).all()
    # every line on the axes in data coordinates (not reference lines spanning an axis, as
    # pruning onsets) is a series of the table, point for point
    runs, options = kind_args(kind)
    extra = {"eps": MAIN_EPS} if options else {}
    fig, _ = figures.PLOTS[kind](figures.load_runs(results, runs), kind, **extra)
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
        plotting.plt.close(fig)


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


def test_the_rule_declares_the_data():
    rule = (REPO / "workflow" / "rules" / "figures.smk").read_text()
    assert 'data="results/figures/{figure}.parquet"' in rule
    assert "--data {output.data}" in rule
    assert re.search(r'ext=\["pdf", "png", "parquet"\]', rule)


# --- what each kind draws -------------------------------------------------------------------------


def test_curves_are_the_moving_average_of_50_mean_and_std_over_seeds(results, tmp_path):
    data = draw(results, tmp_path, "curves")
    assert set(data["panel"]) == {"accuracy", "loss"}
    assert set(data["series"]) == {"SGD", "CGD negative"}
    for panel, column in (("accuracy", "acc"), ("loss", "loss")):
        for series, runs in (("SGD", SGD), ("CGD negative", NEG)):
            c = curve(data, panel, series)
            mean, lo, hi = seed_band(results, runs, "steps", column, 50)
            np.testing.assert_array_equal(c["x"], np.arange(STEPS))
            np.testing.assert_allclose(c["y"], mean, rtol=1e-12)
            np.testing.assert_allclose(c["lo"], lo, rtol=1e-12)
            np.testing.assert_allclose(c["hi"], hi, rtol=1e-12)


def test_one_seed_has_no_band(results, tmp_path):
    data = draw(results, tmp_path, "curves", runs=[SGD[0]])
    c = curve(data, "accuracy", "SGD")
    steps = pd.read_parquet(results / "train" / SGD[0] / "steps.parquet")
    np.testing.assert_allclose(c["y"], moving_average(steps["acc"].to_numpy()), rtol=1e-12)
    assert c["lo"].isna().all() and c["hi"].isna().all()


def test_validation_per_epoch_mean_and_std(results, tmp_path):
    data = draw(results, tmp_path, "validation")
    for panel, split, column in (
        ("accuracy", "validation", "val_acc"),
        ("accuracy", "training set", "train_acc"),
        ("loss", "validation", "val_loss"),
        ("loss", "training set", "train_loss"),
    ):
        c = curve(data, panel, f"CGD negative: {split}")
        mean, lo, hi = seed_band(results, NEG, "epochs", column, 1)
        np.testing.assert_array_equal(c["x"], [0, 1, 2, 3])
        np.testing.assert_allclose(c[["y", "lo", "hi"]].to_numpy().T, [mean, lo, hi], rtol=1e-12)


def test_spectrum_in_both_conventions(results, tmp_path):
    data = draw(results, tmp_path, "spectrum")
    assert set(data["panel"]) == {
        "n_negative", "n_positive", "n_positive_chaotic", "grad_frac",
        "ref_n_negative", "ref_n_positive", "ref_cos", "cos_extreme",
    }  # fmt: skip
    for panel, series, column in (
        ("n_negative", "SGD", "n_negative"),
        ("ref_n_negative", "SGD", "ref_n_negative"),
        ("ref_n_positive", "CGD negative", "ref_n_positive"),
        ("grad_frac", "SGD: positive", "grad_frac_positive"),
        ("grad_frac", "CGD negative: negative", "grad_frac_negative"),
        ("ref_cos", "SGD: negative", "ref_cos_negative"),
        ("cos_extreme", "CGD negative: lambda_max", "cos_lambda_max"),
        ("cos_extreme", "SGD: lambda_min", "cos_lambda_min"),
    ):
        runs = SGD if series.startswith("SGD") else NEG
        mean, _, _ = seed_band(results, runs, "steps", column, 50)
        np.testing.assert_allclose(curve(data, panel, series)["y"], mean, rtol=1e-12)
    fig, _ = figures.plot_spectrum(figures.load_runs(results, SGD), "s")
    assert "the reference code's" in fig.texts[0].get_text()
    plotting.plt.close(fig)


def test_spectrum_of_older_runs_draws_ours_only_and_says_so(tmp_path):
    results = tmp_path / "results"
    rng = np.random.default_rng(1)
    fake_run(results, "old", "sgd", 0, 0.0, rng, ref=False)
    data = draw(results, tmp_path, "spectrum", runs=["old"])
    assert set(data["panel"]) == {"n_negative", "n_positive", "n_positive_chaotic", "grad_frac"}
    fig, _ = figures.plot_spectrum(figures.load_runs(results, ["old"]), "s")
    assert "ours only" in fig.texts[0].get_text() and "lack" in fig.texts[0].get_text()
    plotting.plt.close(fig)


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
    fig, _ = figures.plot_exponents(figures.load_runs(results, [REF]), "e")
    assert {ax.get_xscale() for ax in fig.axes} == {"log"}
    # the first readout, at step 1, is inside the drawn range
    assert all(ax.get_xlim()[0] <= 1 for ax in fig.axes)
    plotting.plt.close(fig)


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
    fig, _ = figures.plot_subspaces(figures.load_runs(results, [REF]), "s")
    assert "older table" in fig.texts[0].get_text()
    plotting.plt.close(fig)


def test_divergence_shows_the_expected_distance_of_two_initializations(results, tmp_path):
    data = draw(results, tmp_path, "divergence")
    assert set(data["panel"]) == {REF}
    assert set(data["series"]) == set(STRATEGIES) | {"init_distance"}
    dist = pd.read_parquet(results / "ensembles" / REF / "distances.parquet")
    sel = dist[(dist["dtype"] == "float32") & (dist["eps"] == MAIN_EPS)]
    for strategy in STRATEGIES:
        c = curve(data, REF, strategy)
        np.testing.assert_allclose(c["y"], sel[sel["strategy"] == strategy]["distance"])
    # App. A.8: each coordinate the difference of two U(-1/√k, 1/√k) draws, variance 2/(3k);
    # MLP 256-20-10: 256·20 + 20 parameters of fan-in 256, 20·10 + 10 of fan-in 20
    expected = math.sqrt((256 * 20 + 20) * 2 / (3 * 256) + (20 * 10 + 10) * 2 / (3 * 20))
    line = curve(data, REF, "init_distance")
    np.testing.assert_allclose(line["y"], [expected, expected])
    np.testing.assert_allclose(line["x"], [0, 120])
    assert expected == pytest.approx(4.515, abs=5e-4)
    assert math.sqrt(2) * expected == pytest.approx(6.38, abs=0.01)  # the paper's ≈ 6.38
    fig, _ = figures.plot_divergence(figures.load_runs(results, [REF]), "d", MAIN_EPS)
    labels = fig.legends[0].get_texts()
    assert figures.INIT_DISTANCE_LABEL in [t.get_text() for t in labels]
    plotting.plt.close(fig)
    assert "√2" in FIGURE_KINDS["divergence"].shows and "6.38" in FIGURE_KINDS["divergence"].shows


def test_fit_bounds_sweep_and_precision_values(results, tmp_path):
    dist = pd.read_parquet(results / "ensembles" / REF / "distances.parquet")
    fits = pd.read_parquet(results / "fits" / REF / "fits.parquet")
    bounds = pd.read_parquet(results / "fits" / REF / "bounds.parquet")

    def rows(df, strategy, eps, dtype="float32"):
        return df[(df["strategy"] == strategy) & (df["eps"] == eps) & (df["dtype"] == dtype)]

    data = draw(results, tmp_path, "fit")
    f = rows(fits, "chaotic", MAIN_EPS).iloc[0]
    c = curve(data, "fit", "chaotic: fit")
    t = c["x"].to_numpy()
    np.testing.assert_allclose(c["y"], np.sqrt(f["alpha"] * t**2 + f["beta"] * t + MAIN_EPS**2))
    np.testing.assert_allclose(
        curve(data, "bounds", "upper")["y"], rows(bounds, "chaotic", MAIN_EPS)["upper"]
    )

    data = draw(results, tmp_path, "bounds")
    for col in ("distance", "upper", "lower"):
        np.testing.assert_allclose(
            curve(data, "max_chaos", col)["y"], rows(bounds, "max_chaos", MAIN_EPS)[col]
        )

    data = draw(results, tmp_path, "sweep")
    for eps in EPS:
        np.testing.assert_allclose(
            curve(data, "random", f"eps={eps:g}")["y"], rows(dist, "random", eps)["distance"]
        )
    acc = curve(data, "final accuracy", "nonchaotic: val")
    np.testing.assert_allclose(acc["x"], EPS)
    np.testing.assert_allclose(acc["y"], [0.8 - e / 20 for e in EPS])
    np.testing.assert_allclose(curve(data, "final accuracy", "reference: train")["y"], 0.9)

    data = draw(results, tmp_path, "precision")
    assert set(data["series"]) == {f"eps={e:g} {d}" for e in (0.01, 0.1) for d in DTYPES}
    for dtype in DTYPES:
        np.testing.assert_allclose(
            curve(data, "max_convergence", f"eps=0.01 {dtype}")["y"],
            rows(dist, "max_convergence", 0.01, dtype)["distance"] / 0.01,
        )


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


def test_a_figure_that_draws_nothing_saves_nothing(tmp_path):
    with pytest.raises(ValueError, match="drew no data"):
        plotting.FigureData().write(tmp_path / "x.parquet")
    assert not any(tmp_path.iterdir())
