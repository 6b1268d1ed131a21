"""Training curves (Fig. 1, Fig. 2, App. B.1, B.2): the numbers drawn are what the runs imply,
moving averages of 50 steps with mean ± std over seeds, per step and per epoch, and the Hessian
spectrum in both conventions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chaosgd.analysis.plots import style, training
from chaosgd.analysis.plots.loading import load_runs

from support.figures import (
    NEG,
    SGD,
    STEPS,
    curve,
    fake_results,
    fake_run,
    moving_average,
    seed_band,
)
from support.figures import draw as draw_kind

PLOTS = {
    "curves": training.plot_curves,
    "validation": training.plot_validation,
    "spectrum": training.plot_spectrum,
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return fake_results(tmp_path_factory.mktemp("figures") / "results")


def draw(results, out_dir, kind, runs=None) -> pd.DataFrame:
    return draw_kind(results, out_dir, kind, PLOTS[kind], runs)


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
    fig, _ = training.plot_spectrum(load_runs(results, SGD), "s")
    assert "the reference code's" in fig.texts[0].get_text()
    style.plt.close(fig)


def test_spectrum_of_older_runs_draws_ours_only_and_says_so(tmp_path):
    results = tmp_path / "results"
    rng = np.random.default_rng(1)
    fake_run(results, "old", "sgd", 0, 0.0, rng, ref=False)
    data = draw(results, tmp_path, "spectrum", runs=["old"])
    assert set(data["panel"]) == {"n_negative", "n_positive", "n_positive_chaotic", "grad_frac"}
    fig, _ = training.plot_spectrum(load_runs(results, ["old"]), "s")
    assert "ours only" in fig.texts[0].get_text() and "lack" in fig.texts[0].get_text()
    style.plt.close(fig)


def test_spectrum_without_a_recorded_spectrum_is_an_error(tmp_path):
    results = tmp_path / "results"
    fake_run(results, "plain", "sgd", 0, 0.0, np.random.default_rng(3), spectrum=False)
    with pytest.raises(ValueError, match="no run recorded the Hessian spectrum"):
        training.plot_spectrum(load_runs(results, ["plain"]), "s")


def test_conditions_put_sgd_first_and_group_the_seeds(results):
    runs = load_runs(results, [NEG[1], SGD[1], NEG[0], SGD[0]])
    groups = training.conditions(runs)
    assert list(groups) == [("sgd", 0, 0.0), ("cgd-negative", 0, 0.0)]
    assert [r.run_id for r in groups[("sgd", 0, 0.0)]] == [SGD[1], SGD[0]]
    cond = training.Conditions.of(runs)
    assert cond.onsets == [0]
    assert [cond.label(k) for k in cond.groups] == ["SGD", "CGD negative"]
