"""Curvature "topk" gives the k eigenpairs a top-k CGD variant prunes and nothing else: every
run that needs more of the spectrum is refused while planning, naming the key; the ResNet,
whose whole spectrum is not affordable, plans with it."""

from __future__ import annotations

import pytest

from chaosgd.planning import plan
from chaosgd.planning.config import validate_config


def config(variants, model="mlp", spectrum=False, lyapunov=(), curvature="topk"):
    exp = {"name": "b", "dataset": "usps", "model": model, "hidden": 4, "variants": variants}
    return validate_config(
        {
            "training": {"curvature": curvature, "train_size": 480, "epochs": 1},
            "experiments": [{**exp, "seeds": [0], "spectrum": spectrum}],
            "lyapunov": (
                {"runs": [{"experiment": "b", "variants": list(lyapunov)}]}
                if lyapunov
                else {"runs": []}
            ),
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
