"""The package's layout: stages import no stage, rules name their code, vocabularies have one home."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import pytest
import yaml

from chaosgd import cgd, datasets, figures, models, plan, plotting, settings, vocab
from chaosgd.config import load_schema, validate_config

from conftest import REPO

PACKAGE = REPO / "workflow" / "chaosgd"
RULES = REPO / "workflow" / "rules"
# a stage is what a rule file is named after; everything else in the package is library or tool
STAGES = sorted(p.stem for p in RULES.glob("*.smk") if p.stem != "common")
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
TOOLS = ("archive", "bench")


def test_every_stage_has_a_module_and_only_its_rules_run_it():
    for stage in STAGES:
        text = (RULES / f"{stage}.smk").read_text()
        assert (PACKAGE / f"{stage}.py").is_file(), stage
        rules = re.findall(r"^rule (\w+):", text, re.M)
        assert rules and all(r.startswith(f"{stage}_") for r in rules), (stage, rules)
        commands = re.findall(r"python -m chaosgd\.(\w+)", text)
        assert set(commands) == {stage}, (stage, commands)
        # every rule that runs the stage names the stage's import closure as its code
        closures = re.findall(r'code=plan\.code_closure\("(\w+)"\)', text)
        assert closures == [stage] * len(commands), (stage, closures)


def test_no_module_imports_a_stage():
    offenders = {m: sorted((plan.package_imports(m) & set(STAGES)) - {m}) for m in MODULES}
    assert not {m: s for m, s in offenders.items() if s}


def test_the_import_check_sees_every_spelling(tmp_path):
    pkg = tmp_path / "chaosgd"
    pkg.mkdir()
    for name in ("a", "b", "c", "d", "e", "f"):
        (pkg / f"{name}.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "stage.py").write_text(
        "import chaosgd.a\nfrom chaosgd import b\nfrom chaosgd.c import x\nfrom . import d\n"
        "from .e import y\nimport numpy\n\ndef f():\n    from chaosgd.f import z\n"
    )
    assert plan.package_imports("stage", pkg) == {"a", "b", "c", "d", "e", "f"}
    closure = {os.path.basename(p) for p in plan.code_closure("stage", pkg)}
    assert closure == {"__init__.py", "stage.py", "a.py", "b.py", "c.py", "d.py", "e.py", "f.py"}


@pytest.mark.parametrize("module", STAGES + list(TOOLS))
def test_code_closure_is_what_python_imports(module):
    """The rules' code inputs (read from the sources) equal what importing the module loads."""
    script = (
        f"import sys, chaosgd.{module}\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'chaosgd')))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow"))
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    imported = {m.split(".", 1)[1] if "." in m else "__init__" for m in out}
    declared = {os.path.basename(p)[: -len(".py")] for p in plan.code_closure(module)}
    assert declared == imported


# -- vocabularies --------------------------------------------------------------------------------


def _walk(node, path=""):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def test_the_schema_spells_no_vocabulary_itself():
    raw = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    words = {w for values in vocab.schema_vocabularies().values() for w in values.get("enum", [])}
    for path, node in _walk(raw):
        assert "enum" not in node, f"{path}: write x-vocabulary instead of an enum"
        assert "pattern" not in node or "sgd" not in node["pattern"], path
    datasets_node = raw["properties"]["datasets"]
    assert "properties" not in datasets_node and "default" not in datasets_node
    assert words >= set(vocab.DATASETS) | set(vocab.ARCHITECTURES)


def test_filled_schema_enums_are_the_registries():
    schema = load_schema()
    props = schema["properties"]
    exp = props["experiments"]["items"]["properties"]
    assert exp["dataset"]["enum"] == list(vocab.DATASETS)
    assert exp["model"]["enum"] == list(vocab.ARCHITECTURES)
    assert exp["activation"]["enum"] == list(vocab.ACTIVATIONS)
    assert exp["dtype"]["enum"] == list(vocab.DTYPES) + [None]
    assert props["device"]["enum"] == list(vocab.DEVICES)
    assert props["training"]["properties"]["curvature"]["enum"] == list(vocab.CURVATURE_METHODS)
    assert props["ensembles"]["properties"]["dtypes"]["items"]["enum"] == list(vocab.DTYPES)
    assert set(props["datasets"]["properties"]) == set(vocab.DATASETS)
    assert props["datasets"]["default"] == {d: {} for d in vocab.DATASETS}
    pattern = re.compile(exp["variants"]["items"]["pattern"])
    for name in ("sgd", "cgd-chaotic", "cgd-negative-top100", "cgd-positive-random10-noise"):
        assert pattern.match(name) and vocab.VARIANT_RE.match(name), name
    for name in ("cgd", "cgd-neutral", "cgd-chaotic-top0", "sgd-noise", "cgd-positive-best3"):
        assert not pattern.match(name) and not vocab.VARIANT_RE.match(name), name


def test_a_new_dataset_takes_one_registry_entry(monkeypatch):
    """The schema, the planner and the rules' wildcard constraint follow the registry."""
    toy = vocab.Dataset("toy", "Toy", 100, 50, "A toy dataset.", local_dir="/data/toy")
    monkeypatch.setitem(vocab.DATASETS, "toy", toy)
    config = validate_config(
        {"datasets": {"toy": {}}, "experiments": [{"name": "a", "dataset": "toy"}]}
    )
    assert config["datasets"]["toy"]["local_dir"] == "/data/toy"
    runs, _ = plan.expand_runs(config)
    assert all(r.dataset == "toy" for r in runs.values())
    assert re.fullmatch(plan.wildcard_choice(vocab.DATASETS), "toy")
    monkeypatch.delitem(vocab.DATASETS, "toy")
    with pytest.raises(ValueError, match="datasets: unknown key 'toy'"):
        validate_config({"datasets": {"toy": {}}})


def test_a_new_figure_kind_takes_one_registry_entry(monkeypatch):
    kind = vocab.FigureKind(
        "toy", "tangent", "figT_{experiment}", "Lyapunov spectra", "Shows a toy.", "nothing",
        ("lyapunov/{run}/exponents.parquet",),
    )  # fmt: skip
    monkeypatch.setitem(vocab.FIGURE_KINDS, "toy", kind)
    cfg = validate_config({"experiments": [{"name": "a", "variants": ["sgd"], "seeds": [0]}]})
    cfg["lyapunov"]["runs"] = [{"experiment": "a", "variants": [], "seeds": []}]
    runs, groups, lyap = plan.plan_runs(cfg)
    figs = plan.figures(runs, groups, lyap)
    fig = figs["figT_a"]
    assert fig.kind == "toy" and fig.category == "Lyapunov spectra"
    assert fig.inputs == ("results/lyapunov/usps_mlp-relu20_sgd_m0_s0/exponents.parquet",)
    assert fig.caption.startswith("Shows a toy.") and "Reproduces nothing" in fig.caption


def test_every_consumer_knows_every_entry():
    assert set(datasets.SPECS) == set(vocab.DATASETS)
    assert all(datasets.SPECS[d].title == vocab.DATASETS[d].title for d in vocab.DATASETS)
    assert set(figures.PLOTS) == set(vocab.FIGURE_KINDS)
    assert {k.scope for k in vocab.FIGURE_KINDS.values()} <= set(vocab.FIGURE_SCOPES)
    for arch in vocab.ARCHITECTURES:
        for act in vocab.ACTIVATIONS:
            assert models.num_params(models.build_model(arch, act)) > 0
    assert cgd.PRUNE_SETS == tuple(vocab.PRUNE_SETS)
    assert set(cgd.SELECTIONS) == set(vocab.SELECTIONS.values())
    assert [plotting.strategy_order().index(s) for s in vocab.STRATEGIES] == [
        vocab.STRATEGIES[s].rank for s in vocab.STRATEGIES
    ]


def test_each_prune_set_has_its_own_rule():
    import torch

    values = torch.tensor([-3.0, -1.0, 0.5, 100.0, 4000.0], dtype=torch.float64)
    masks = {p: cgd.prune_mask(values, 1e-3, p).tolist() for p in vocab.PRUNE_SETS}
    assert masks["negative"] == [True, True, False, False, False]
    assert masks["positive"] == [False, False, True, True, True]
    assert masks["chaotic"] == [True, True, False, False, True]
    assert len({tuple(m) for m in masks.values()}) == len(vocab.PRUNE_SETS)


# -- run settings --------------------------------------------------------------------------------


def test_every_run_setting_has_a_role_and_help():
    names = [f.name for f in dataclasses.fields(settings.RunSettings)]
    assert set(settings.ROLES) == set(names) == set(settings.HELP)
    overrides = {k for k, r in settings.ROLES.items() if r == "override"}
    assert overrides == set(settings.RUN_ID_SUFFIX)
    overrides |= {k for k, r in settings.ROLES.items() if r == "recorded"}
    # an experiment can override exactly the override settings
    exp = load_schema()["properties"]["experiments"]["items"]["properties"]
    training = load_schema()["properties"]["training"]["properties"]
    assert overrides <= set(exp) & set(training)
    shared = {k for k, r in settings.ROLES.items() if r == "shared"}
    assert not shared & set(exp)
    assert shared - set(settings.TOP_LEVEL) <= set(training)


def test_a_setting_without_a_role_is_rejected(monkeypatch):
    monkeypatch.delitem(settings.ROLES, "lr")
    with pytest.raises(RuntimeError, match="missing \\['lr'\\]"):
        settings._check_roles()


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


def test_conda_environment_pins_the_package_dependencies():
    """envs/chaosgd.yaml installs what pyproject.toml pins, at the same versions."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs/chaosgd.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins = {p for p in pip if "==" in p}
    assert pins == set(deps)
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python == f"python={requires.removeprefix('>=')}"
