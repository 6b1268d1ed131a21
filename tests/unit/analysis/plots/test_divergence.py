"""Divergence figures (Fig. 3a, 3b, App. C.3–C.5): the distances drawn are the ensembles' own,
with the expected distance of two initializations, the fits, the Lyapunov bounds, the ε sweep
and float32 against float64."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from chaosgd.analysis.plots import divergence, style
from chaosgd.analysis.plots.loading import load_runs
from chaosgd.planning.vocab import FIGURE_KINDS, STRATEGIES, TOPK_ABSENT, strategies_for
from chaosgd.runs.artifacts import write_parquet

from support.figures import DTYPES, EPS, MAIN_EPS, REF, curve, fake_results
from support.figures import draw as draw_kind

PLOTS = {
    "divergence": divergence.plot_divergence,
    "fit": divergence.plot_fit,
    "sweep": divergence.plot_sweep,
    "precision": divergence.plot_precision,
    "bounds": divergence.plot_bounds,
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return fake_results(tmp_path_factory.mktemp("figures") / "results")


def draw(results, out_dir, kind, runs=None) -> pd.DataFrame:
    return draw_kind(results, out_dir, kind, PLOTS[kind], runs)


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
    fig, _ = divergence.plot_divergence(load_runs(results, [REF]), "d", MAIN_EPS)
    labels = fig.legends[0].get_texts()
    assert divergence.INIT_DISTANCE_LABEL in [t.get_text() for t in labels]
    style.plt.close(fig)
    assert "√2" in FIGURE_KINDS["divergence"].shows and "6.38" in FIGURE_KINDS["divergence"].shows


@pytest.mark.slow
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
    # the upper bound at every step from the per-step λ1, up to the distances' last step
    lam = pd.read_parquet(results / "lyapunov" / REF / "lambda1.parquet")
    lam = lam[lam["step"] <= 120]
    upper = MAIN_EPS * np.exp(lam["lambda_1"] * lam["step"])
    for data_bounds, panel in ((data, "bounds"), (draw(results, tmp_path, "bounds"), "max_chaos")):
        c = curve(data_bounds, panel, "upper")
        np.testing.assert_array_equal(c["x"], lam["step"])
        np.testing.assert_allclose(c["y"], upper)
        for col in ("upper", "lower"):  # at the exact readouts only
            series = "upper: readouts" if col == "upper" else col
            want = rows(bounds, "chaotic" if panel == "bounds" else panel, MAIN_EPS)[col]
            np.testing.assert_allclose(curve(data_bounds, panel, series)["y"], want)

    data = draw(results, tmp_path, "bounds")
    np.testing.assert_allclose(
        curve(data, "max_chaos", "distance")["y"], rows(dist, "max_chaos", MAIN_EPS)["distance"]
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


def test_an_eps_the_ensembles_lack_is_named_not_drawn_empty(results):
    with pytest.raises(ValueError, match=r"distances\.parquet: no rows for strategy .* eps 0\.5"):
        divergence.plot_divergence(load_runs(results, [REF]), "d", 0.5)
    style.plt.close("all")


@pytest.fixture(scope="module")
def topk_results(tmp_path_factory):
    """The hand-made results as around a top-k Lyapunov reference: ensembles of the three
    strategies its k leading vectors give, and no bounds (no exact readout: ``topk_svd`` rows)."""
    root = fake_results(tmp_path_factory.mktemp("topk_figures") / "results")
    kept = strategies_for(8)
    for stage, name in (("ensembles", "distances"), ("ensembles", "members"), ("fits", "fits")):
        path = root / stage / REF / f"{name}.parquet"
        table = pd.read_parquet(path)
        write_parquet(table[table["strategy"].isin(kept + ("reference",))], path)
    path = root / "fits" / REF / "bounds.parquet"
    write_parquet(pd.read_parquet(path).iloc[:0], path)
    path = root / "lyapunov" / REF / "exponents.parquet"
    write_parquet(pd.read_parquet(path).assign(method="topk_svd"), path)
    return root


@pytest.mark.parametrize("kind", list(PLOTS))
def test_a_topk_ensemble_draws_its_three_strategies_and_names_the_others(
    topk_results, tmp_path, kind
):
    data = draw(topk_results, tmp_path, kind)
    drawn = {s for s in STRATEGIES if (data["panel"] == s).any() or (data["series"] == s).any()}
    drawn |= {s for s in STRATEGIES if data["series"].str.startswith(f"{s}:").any()}
    assert drawn == {"max_chaos", "chaotic", "random"}, kind
    extra = {"eps": MAIN_EPS} if FIGURE_KINDS[kind].main_eps else {}
    fig, _ = PLOTS[kind](load_runs(topk_results, [REF]), "d", **extra)
    text = fig._suptitle.get_text()
    style.plt.close(fig)
    absent = text.split("not run, not drawn: ", 1)[1]
    assert STRATEGIES["max_convergence"].label in absent
    assert STRATEGIES["nonchaotic"].label in absent
    assert TOPK_ABSENT in text
    # where the bounds are drawn: what a top-k reference's λ̂1 is, and that no λN is known
    assert (divergence.TOPK_BOUNDS in text) == (kind in ("fit", "bounds"))


def test_all_five_strategies_need_no_note(results):
    fig, _ = divergence.plot_sweep(load_runs(results, [REF]), "d")
    assert "not run" not in fig._suptitle.get_text()
    style.plt.close(fig)
