"""Curvature "topk" gives the k eigenpairs a top-k CGD variant prunes and nothing else: every
run that needs more of the spectrum is refused while planning, naming the key; the ResNet,
whose whole spectrum is not affordable, plans with it."""

from __future__ import annotations

import pytest

from chaosgd.planning import plan
from chaosgd.planning.config import validate_config
from chaosgd.planning.vocab import strategies_for


def config(variants, model="mlp", spectrum=False, lyapunov=(), curvature="topk", **lyap):
    exp = {"name": "b", "dataset": "usps", "model": model, "hidden": 4, "variants": variants}
    return validate_config(
        {
            "training": {"curvature": curvature, "train_size": 480, "epochs": 1},
            "experiments": [{**exp, "seeds": [0], "spectrum": spectrum}],
            "lyapunov": (
                {"runs": [{"experiment": "b", "variants": list(lyapunov)}], **lyap}
                if lyapunov
                else {"runs": [], **lyap}
            ),
            "ensembles": {"enabled": False},
        }
    )


@pytest.mark.parametrize("model", ["mlp", "resnet"])
def test_top_k_pruning_plans_with_topk(model):
    runs, _, _ = plan.plan_runs(config(["sgd", "cgd-negative-top5", "cgd-chaotic-top2"], model))
    assert sorted(s.variant for s in runs.values()) == [
        "cgd-chaotic-top2",
        "cgd-negative-top5",
        "sgd",
    ]
    assert {s.curvature for s in runs.values()} == {"topk"}


@pytest.mark.parametrize(
    "cfg, starts, says",
    [
        (
            dict(variants=["cgd-negative"]),
            "experiments[b].variants: variant cgd-negative of run ",
            "prunes all eigenpairs of its set",
        ),
        (
            dict(variants=["cgd-positive-random3"]),
            "experiments[b].variants: variant cgd-positive-random3 of run ",
            "prunes k random eigenpairs of its set",
        ),
        (
            dict(variants=["sgd"], spectrum=True),
            "experiments[b].spectrum: run ",
            "set spectrum: false for it",
        ),
        (
            dict(variants=["sgd"], lyapunov=["sgd"]),
            "lyapunov.runs[0]: run ",
            "the Lyapunov stage's tangent map takes every step's whole spectrum",
        ),
    ],
    ids=["all", "random-k", "spectrum", "tangent-map"],
)
def test_what_topk_cannot_give_is_refused_naming_the_key(cfg, starts, says):
    with pytest.raises(ValueError) as err:
        plan.plan_runs(config(**cfg))
    assert str(err.value).startswith(starts) and says in str(err.value), str(err.value)
    # the same runs with the exact curvature plan (the MLP's spectrum is affordable)
    plan.plan_runs(config(**cfg, curvature="auto"))


def test_the_resnet_without_topk_is_told_to_use_it():
    with pytest.raises(ValueError) as err:
        plan.plan_runs(config(["cgd-negative-top5"], "resnet", curvature="auto"))
    assert "with curvature: topk" in str(err.value)


@pytest.mark.parametrize("model", ["mlp", "resnet"])
def test_the_leading_exponents_plan_on_any_network_without_the_spectrum(model):
    cfg = config(["sgd", "cgd-negative-top5"], model, lyapunov=["sgd", "cgd-negative-top5"], topk=8)
    runs, _, lyapunov = plan.plan_runs(cfg)
    assert sorted(lyapunov["b"]) == sorted(runs)
    # k tangent vectors need Hessian-vector products only: nothing forces the spectrum on
    assert not any(s.spectrum for s in runs.values())
    assert plan.lyapunov_args(cfg).endswith("--topk 8")
    assert "--topk" not in plan.lyapunov_args(config(["sgd"], curvature="auto"))


def test_more_exponents_than_parameters_are_refused_naming_the_key():
    n = 1078  # the MLP 256-4-10
    plan.plan_runs(config(["sgd"], lyapunov=["sgd"], topk=n))
    with pytest.raises(ValueError) as err:
        plan.plan_runs(config(["sgd"], lyapunov=["sgd"], topk=n + 1))
    assert str(err.value).startswith(f"lyapunov.topk: {n + 1} exponents, but run ")
    assert f"has only {n} parameters" in str(err.value)


def test_ensembles_around_a_topk_map_plan_with_the_three_strategies_it_gives():
    """Around a top-k map the ensembles perturb along max chaos, the chaotic combination and a
    random direction (what k leading vectors give), and their cost counts those members."""
    cfg = config(["sgd"], lyapunov=["sgd"], topk=3, curvature="auto")
    cfg["ensembles"].update(enabled=True, eps=[0.1, 1.0], main_eps=0.1)
    runs, groups, lyapunov = plan.plan_runs(cfg)
    refs = plan.ensemble_references(cfg, runs, lyapunov)
    assert list(refs) == lyapunov["b"] and refs[lyapunov["b"][0]] == "b"
    assert strategies_for(cfg["lyapunov"]["topk"]) == ("max_chaos", "chaotic", "random")
    figures = plan.figures(runs, groups, lyapunov, refs, cfg["ensembles"])
    assert {"fig3a", "fig3b_b", "figC3_b", "figC4_b", "figC5_b"} <= set(figures)
    costs = plan.job_resources(cfg, runs, lyapunov, refs, figures)
    assert costs._members() == 1 + 3 * 2
    cfg["lyapunov"]["topk"] = 0
    exact = plan.job_resources(cfg, runs, lyapunov, refs, figures)
    assert exact._members() == 1 + 5 * 2


def test_runs_with_topk_curvature_plan_no_spectrum_figures():
    """App. B.2's figures draw the whole spectrum, which topk never records: none is planned
    (a figure job would find no rows); with the exact curvature they are."""
    cfg = config(["sgd", "cgd-negative-top5"], model="mlp", curvature="topk")
    runs, groups, lyapunov = plan.plan_runs(cfg)
    names = set(plan.figures(runs, groups, lyapunov))
    assert "b" in names and not any(n.startswith("figB2") for n in names), names
    exact = config(["sgd", "cgd-negative-top5"], model="mlp", curvature="auto")
    runs, groups, lyapunov = plan.plan_runs(exact)
    assert {"figB2_b", "figB2hist_b"} <= set(plan.figures(runs, groups, lyapunov))
