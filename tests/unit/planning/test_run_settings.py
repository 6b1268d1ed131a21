"""Every run setting has a role, help and a run-id suffix where it overrides."""

from __future__ import annotations

import dataclasses

import pytest

from chaosgd.planning import plan, run_settings
from chaosgd.planning.config import load_schema, validate_config

# -- run settings --------------------------------------------------------------------------------


def test_every_run_setting_has_a_role_and_help():
    names = [f.name for f in dataclasses.fields(run_settings.RunSettings)]
    assert set(run_settings.ROLES) == set(names) == set(run_settings.HELP)
    overrides = {k for k, r in run_settings.ROLES.items() if r == "override"}
    assert overrides == set(run_settings.RUN_ID_SUFFIX)
    overrides |= {k for k, r in run_settings.ROLES.items() if r == "recorded"}
    # an experiment can override exactly the override settings
    exp = load_schema()["properties"]["experiments"]["items"]["properties"]
    training = load_schema()["properties"]["training"]["properties"]
    assert overrides <= set(exp) & set(training)
    shared = {k for k, r in run_settings.ROLES.items() if r == "shared"}
    assert not shared & set(exp)
    per_dataset = load_schema()["$defs"]["dataset_source"]["properties"]
    assert set(run_settings.PER_DATASET) <= shared & set(per_dataset)
    assert shared - set(run_settings.TOP_LEVEL) - set(run_settings.PER_DATASET) <= set(training)
    identity = {k for k, r in run_settings.ROLES.items() if r == "identity"}
    assert identity - {"variant", "onset", "seed"} <= set(exp)


def test_a_setting_without_a_role_is_rejected(monkeypatch):
    monkeypatch.delitem(run_settings.ROLES, "lr")
    with pytest.raises(RuntimeError, match="missing \\['lr'\\]"):
        run_settings._check_roles()


@pytest.mark.parametrize(
    "key, value, suffix",
    [
        ("lr", 0.01, "lr0.01"),
        ("batch_size", 16, "b16"),
        ("epochs", 3, "ep3"),
        ("dtype", "float64", "f64"),
        ("train_size", 500, "n500"),
    ],
)
def test_an_override_reaches_the_run_id(key, value, suffix):
    a = {"name": "a", "variants": ["sgd"], "seeds": [0]}
    b = {**a, "name": "b", key: value}
    runs, groups = plan.expand_runs(validate_config({"experiments": [a, b]}))
    (ra,), (rb,) = groups["a"], groups["b"]
    assert ra == "usps_mlp-relu20_sgd_m0_s0" and rb == f"{ra}_{suffix}"
    assert getattr(runs[rb], key) == value != getattr(runs[ra], key)
    # the training section's own value is no override: the run is shared
    same = {**a, "name": "c", key: validate_config({})["training"][key]}
    _, groups = plan.expand_runs(validate_config({"experiments": [a, same]}))
    assert groups["c"] == [ra]


def test_a_recording_override_is_merged_not_spelled():
    """spectrum changes what a run records, not its trajectory: a shared run records it if any
    of its experiments asks."""
    a = {"name": "a", "variants": ["sgd"], "seeds": [0], "spectrum": False}
    b = {**a, "name": "b", "spectrum": True}
    for order in ((a, b), (b, a)):
        runs, groups = plan.expand_runs(validate_config({"experiments": list(order)}))
        assert groups["a"] == groups["b"] == ["usps_mlp-relu20_sgd_m0_s0"]
        assert runs["usps_mlp-relu20_sgd_m0_s0"].spectrum
    runs, _ = plan.expand_runs(validate_config({"experiments": [a]}))
    assert not runs["usps_mlp-relu20_sgd_m0_s0"].spectrum


# -- the image side and the depth --------------------------------------------------------------


def _one(exp: dict, datasets: dict | None = None) -> tuple[str, run_settings.RunSettings]:
    cfg = {"experiments": [{"name": "a", "variants": ["sgd"], "seeds": [0], **exp}]}
    if datasets is not None:
        cfg["datasets"] = datasets
    runs, groups = plan.expand_runs(validate_config(cfg))
    (rid,) = groups["a"]
    return rid, runs[rid]


def test_the_depth_is_spelled_after_the_architecture_that_takes_one():
    resnet = {"dataset": "fmnist", "model": "resnet", "hidden": 16, "spectrum": False}
    rid, s = _one(resnet)
    # null is the architecture's default (ResNet-20), spelled like any other depth
    assert rid == "fmnist_resnet20-relu16_sgd_m0_s0" and s.depth == 20
    assert _one({**resnet, "depth": 20}) == (rid, s)
    rid, s = _one({**resnet, "depth": 8})
    assert rid == "fmnist_resnet8-relu16_sgd_m0_s0" and s.depth == 8
    # the paper's networks have no depth to spell
    assert _one({})[0] == "usps_mlp-relu20_sgd_m0_s0"
    assert _one({"model": "cnn"})[0] == "usps_cnn-relu_sgd_m0_s0"
    assert _one({})[1].depth is None


def test_the_image_side_is_the_datasets_and_shared_by_its_runs():
    rid, s = _one({"dataset": "fmnist"})
    assert s.image_side == 16 and rid == "fmnist_mlp-relu20_sgd_m0_s0"
    # one side per dataset in a config: not spelled, but recorded (run.json) and on the
    # command line, so that a change reruns the run and the stale-settings check sees it
    rid28, s28 = _one({"dataset": "fmnist"}, {"fmnist": {"image_side": 28}})
    assert rid28 == rid and s28.image_side == 28
    assert s28.as_dict()["image_side"] == 28 and s28 != s
    assert "--image-side 28" in plan.train_args(s28)


@pytest.mark.parametrize(
    "model, depth, side",
    [("resnet", 8, 16), ("resnet", None, 28), ("mlp", None, 28), ("cnn", None, 16)],
)
def test_the_new_settings_round_trip_through_the_command_line(model, depth, side):
    import argparse

    exp = {"dataset": "fmnist", "model": model, "depth": depth, "spectrum": model != "resnet"}
    _, s = _one(exp, {"fmnist": {"image_side": side}})
    parser = argparse.ArgumentParser()
    run_settings.RunSettings.add_arguments(parser)
    back = run_settings.RunSettings.from_namespace(parser.parse_args(s.to_args()))
    assert back == s and (back.image_side, back.depth) == (
        side,
        20 if depth is None and model == "resnet" else depth,
    )


def test_run_settings_refuse_a_depth_the_model_cannot_take():
    base = {**dict(_one({})[1].as_dict()), "run_id": "x"}
    with pytest.raises(ValueError, match="invalid depth=20"):
        run_settings.RunSettings(**{**base, "depth": 20})  # the MLP's depth is fixed
    with pytest.raises(ValueError, match="6n \\+ 2"):
        run_settings.RunSettings(**{**base, "model": "resnet", "depth": 9})
    with pytest.raises(ValueError, match="invalid image_side=0"):
        run_settings.RunSettings(**{**base, "image_side": 0})
