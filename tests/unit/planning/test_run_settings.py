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
    assert shared - set(run_settings.TOP_LEVEL) <= set(training)


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
