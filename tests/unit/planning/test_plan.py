"""Planning: experiments expand to runs, run settings round-trip through the command line."""

from __future__ import annotations

import argparse

import pytest

from chaosgd.planning import plan
from chaosgd.planning.config import validate_config
from chaosgd.planning.run_settings import RunSettings, Variant


def config(*experiments, **training):
    return validate_config({"experiments": list(experiments), "training": training})


def test_paper_config_expands_to_the_paper_runs():
    runs, groups = plan.expand_runs(validate_config({}))
    assert len(groups["fig1"]) == 12  # 4 variants x 3 seeds
    assert len(groups["fig2"]) == 3 + 3 * 3  # SGD + chaotic from 3 onsets, 3 seeds each
    # the selection groups share fig1's SGD baselines: they are trained once
    for selection in ("selection", "selection_k10"):
        assert set(groups["fig1"]) & set(groups[selection]) == {
            f"usps_mlp-relu20_sgd_m0_s{s}" for s in range(3)
        }
    assert len(runs) == sum(len(g) for g in groups.values()) - 6
    fig2 = runs["usps_mlp-sigmoid20_cgd-chaotic_on5000_m0_s2"]
    assert (fig2.activation, fig2.onset, fig2.seed, fig2.lr, fig2.batch_size, fig2.epochs) == (
        "sigmoid",
        5000,
        2,
        0.001,
        8,
        40,
    )
    assert runs["usps_cnn-relu_cgd-positive_m0_s0"].model == "cnn"


def test_paper_config_lyapunov_runs_are_the_ensemble_references():
    """App. C.3: the MLP on USPS and FashionMNIST, the CNN, and momentum 0.9 each get a
    Lyapunov spectrum and perturbed ensembles; the reference's k = 100 for every prune set."""
    cfg = validate_config({})
    runs, groups, lyapunov = plan.plan_runs(cfg)
    refs = plan.ensemble_references(cfg, runs, lyapunov)
    assert refs == {
        "usps_mlp-relu20_sgd_m0_s0": "fig1",
        "fmnist_mlp-relu20_sgd_m0_s0": "figB1_fmnist",
        "usps_cnn-relu_sgd_m0_s0": "figB1_cnn",
        "usps_mlp-relu20_sgd_m0.9_s0": "momentum",
    }
    assert runs["usps_mlp-relu20_sgd_m0.9_s0"].momentum == 0.9
    assert all(runs[r].spectrum for r in refs)
    k100 = {runs[r].variant for r in groups["selection"]} - {"sgd"}
    assert k100 == {
        f"cgd-{p}-{s}100" for p in ("chaotic", "negative", "positive") for s in ("top", "random")
    }


def test_sgd_ignores_onsets_and_momentum_is_in_the_name():
    runs, groups = plan.expand_runs(
        config(
            {
                "name": "a",
                "variants": ["sgd", "cgd-negative"],
                "onsets": [0, 7],
                "momentum": [0, 0.9],
                "seeds": [1],
            }
        )
    )
    assert groups["a"] == [
        "usps_mlp-relu20_sgd_m0_s1",
        "usps_mlp-relu20_sgd_m0.9_s1",
        "usps_mlp-relu20_cgd-negative_m0_s1",
        "usps_mlp-relu20_cgd-negative_m0.9_s1",
        "usps_mlp-relu20_cgd-negative_on7_m0_s1",
        "usps_mlp-relu20_cgd-negative_on7_m0.9_s1",
    ]


def test_group_overrides_reach_the_run_id_and_conflicts_need_a_tag():
    a = {"name": "a", "variants": ["sgd"], "seeds": [0]}
    b = {"name": "b", "variants": ["sgd"], "seeds": [0], "lr": 0.01}
    runs, groups = plan.expand_runs(config(a, b))
    assert groups["b"] == ["usps_mlp-relu20_sgd_m0_s0_lr0.01"]
    assert runs["usps_mlp-relu20_sgd_m0_s0_lr0.01"].lr == 0.01
    assert runs["usps_mlp-relu20_sgd_m0_s0"].lr == 0.001
    # a CNN ignores hidden, so its run id does not spell it: two CNN groups that differ only
    # there define one run name with two settings
    c = {"name": "c", "model": "cnn", "variants": ["sgd"], "seeds": [0], "hidden": 5}
    with pytest.raises(
        ValueError, match="'c' and 'd' both define run usps_cnn-relu_sgd_m0_s0.*tag"
    ):
        plan.expand_runs(config(c, {**c, "name": "d", "hidden": 6}))
    runs, groups = plan.expand_runs(config(c, {**c, "name": "d", "hidden": 6, "tag": "h6"}))
    assert groups["d"] == ["usps_cnn-relu_sgd_m0_s0_h6"]


def test_bad_experiments_are_named():
    with pytest.raises(ValueError, match="name 'a' is used twice"):
        plan.expand_runs(config({"name": "a"}, {"name": "a"}))
    cfg = validate_config(
        {"datasets": {"fmnist": {}}, "experiments": [{"name": "a", "dataset": "usps"}]}
    )
    with pytest.raises(ValueError, match=r"experiments\[a\].dataset: 'usps' is not configured"):
        plan.expand_runs(cfg)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("sgd", Variant("sgd", "sgd")),
        ("cgd-chaotic", Variant("cgd-chaotic", "cgd", "chaotic")),
        ("cgd-negative-top10", Variant("cgd-negative-top10", "cgd", "negative", "top_k", 10)),
        (
            "cgd-positive-random3-noise",
            Variant("cgd-positive-random3-noise", "cgd", "positive", "random_k", 3, True),
        ),
    ],
)
def test_variant_names(name, expected):
    assert Variant.parse(name) == expected


@pytest.mark.parametrize("bad", ["adam", "cgd", "cgd-neg", "cgd-negative-top0", "cgd-negative-top"])
def test_bad_variant_names(bad):
    with pytest.raises(ValueError, match="unknown optimizer variant"):
        Variant.parse(bad)


def test_run_settings_round_trip_through_the_command_line():
    runs, _ = plan.expand_runs(validate_config({}))
    parser = argparse.ArgumentParser()
    RunSettings.add_arguments(parser)
    for settings in list(runs.values())[:5]:
        assert RunSettings.from_namespace(parser.parse_args(settings.to_args())) == settings


def test_figures_follow_the_groups():
    cfg = config(
        {"name": "a", "variants": ["sgd"], "spectrum": False, "seeds": [0, 1]},
        {"name": "b", "variants": ["cgd-negative"]},
    )
    cfg["lyapunov"]["runs"] = [{"experiment": "a", "seeds": [1], "variants": []}]
    runs, groups = plan.expand_runs(cfg)
    runs, lyap = plan.lyapunov_runs(cfg, runs, groups)
    assert lyap == {"a": ["usps_mlp-relu20_sgd_m0_s1"]}
    assert (
        runs["usps_mlp-relu20_sgd_m0_s1"].spectrum
        and not runs["usps_mlp-relu20_sgd_m0_s0"].spectrum
    )
    figures = plan.figures(runs, groups, lyap)
    kinds = {name: (f.kind, f.experiment, len(f.runs)) for name, f in figures.items()}
    assert kinds == {
        "a": ("curves", "a", 2),
        "a_validation": ("validation", "a", 2),
        "figB2_a": ("spectrum", "a", 1),  # only the run with a tangent map has a spectrum
        "figB2hist_a": ("spectra", "a", 1),
        "figC1_a": ("exponents", "a", 1),
        "figC2_a": ("subspaces", "a", 1),
        "b": ("curves", "b", 3),
        "b_validation": ("validation", "b", 3),
        "figB2_b": ("spectrum", "b", 3),
        "figB2hist_b": ("spectra", "b", 3),
    }
    assert figures["figC1_a"].inputs == (
        "results/lyapunov/usps_mlp-relu20_sgd_m0_s1/exponents.parquet",
        "results/lyapunov/usps_mlp-relu20_sgd_m0_s1/lambda1.parquet",
        "results/train/usps_mlp-relu20_sgd_m0_s1/run.json",
    )
    # the eigenvalue distributions read what the runs with the spectrum keep
    assert figures["figB2hist_a"].inputs == (
        "results/train/usps_mlp-relu20_sgd_m0_s1/spectra.parquet",
        "results/train/usps_mlp-relu20_sgd_m0_s1/run.json",
    )


def test_bad_lyapunov_selection_is_named():
    cfg = config({"name": "a", "variants": ["sgd"]})
    cfg["lyapunov"]["runs"] = [{"experiment": "a", "variants": ["cgd-negative"], "seeds": []}]
    runs, groups = plan.expand_runs(cfg)
    with pytest.raises(
        ValueError, match=r"lyapunov.runs\[0\].variants: \['cgd-negative'\] not in experiment 'a'"
    ):
        plan.lyapunov_runs(cfg, runs, groups)
    cfg["lyapunov"]["runs"] = [{"experiment": "zz", "variants": [], "seeds": []}]
    with pytest.raises(ValueError, match="no experiment named 'zz'"):
        plan.lyapunov_runs(cfg, runs, groups)


def test_ensemble_references_and_their_figures():
    cfg = config({"name": "a", "variants": ["sgd", "cgd-negative"], "seeds": [0, 1]})
    cfg["lyapunov"]["runs"] = [{"experiment": "a", "variants": [], "seeds": []}]
    runs, groups = plan.expand_runs(cfg)
    runs, lyap = plan.lyapunov_runs(cfg, runs, groups)
    refs = plan.ensemble_references(cfg, runs, lyap)
    # CGD runs carry a tangent map but are no references; two references get seed labels
    assert refs == {"usps_mlp-relu20_sgd_m0_s0": "a_m0_s0", "usps_mlp-relu20_sgd_m0_s1": "a_m0_s1"}
    figures = plan.figures(runs, groups, lyap, refs, cfg["ensembles"])
    assert figures["fig3a"].runs == tuple(refs)
    assert figures["fig3b_a_m0_s1"].options == ("--eps", "0.1")
    assert (
        "results/fits/usps_mlp-relu20_sgd_m0_s1/bounds.parquet" in figures["figC5_a_m0_s1"].inputs
    )
    assert "Reproduces App. C.4" in figures["figC4_a_m0_s0"].caption
    cfg["ensembles"]["main_eps"] = 0.2
    with pytest.raises(ValueError, match="main_eps: 0.2 is not one of ensembles.eps"):
        plan.ensemble_references(cfg, runs, lyap)
    cfg["ensembles"]["enabled"] = False
    assert plan.ensemble_references(cfg, runs, lyap) == {}
