"""Each vocabulary has one home (planning.vocab) that the schema, planner and consumers read."""

from __future__ import annotations

import re

import pytest
import yaml

from chaosgd import figures
from chaosgd.analysis.plots import style
from chaosgd.engine import cgd, models
from chaosgd.planning import plan, vocab
from chaosgd.planning.config import load_schema, validate_config
from chaosgd.runs import dataset_prep

from support.workflow import REPO

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
    assert set(dataset_prep.SPECS) == set(vocab.DATASETS)
    assert all(dataset_prep.SPECS[d].title == vocab.DATASETS[d].title for d in vocab.DATASETS)
    for d in vocab.DATASETS.values():
        # every dataset at 16×16, and no side its files cannot give without upsampling
        native = dataset_prep.SPECS[d.name].native_size
        assert vocab.IMAGE_SIDE in d.sides and max(d.sides) <= native, d.name
        for side in d.sides:
            for arch in vocab.ARCHITECTURES.values():
                assert arch.n_params(side=side) > 0, (d.name, side, arch.name)
    assert set(figures.PLOTS) == set(vocab.FIGURE_KINDS)
    assert {k.scope for k in vocab.FIGURE_KINDS.values()} <= set(vocab.FIGURE_SCOPES)
    for arch in vocab.ARCHITECTURES:
        for act in vocab.ACTIVATIONS:
            assert models.num_params(models.build_model(arch, act)) > 0
    assert cgd.PRUNE_SETS == tuple(vocab.PRUNE_SETS)
    assert set(cgd.SELECTIONS) == set(vocab.SELECTIONS.values())
    assert [style.strategy_order().index(s) for s in vocab.STRATEGIES] == [
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
