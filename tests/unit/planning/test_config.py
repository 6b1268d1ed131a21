"""Config validation: the schema rejects what the jobs would reject, in one line naming the key."""

from __future__ import annotations

import math

import pytest
import yaml

from chaosgd.planning.config import ConfigError, schema_default, validate_config

from support.workflow import REPO


def error_lines(config: dict) -> list[str]:
    """Return the lines of the :class:`ConfigError` that validating ``config`` raises."""
    with pytest.raises(ConfigError) as info:
        validate_config(config)
    header, *lines = str(info.value).splitlines()
    assert header == "invalid config:"
    return [line.strip() for line in lines]


def only_line(config: dict) -> str:
    """Return the one line of the error that validating ``config`` raises (one mistake)."""
    lines = error_lines(config)
    assert len(lines) == 1, lines
    return lines[0]


# (config with the value at the key, the key as the error names it), at several depths
INTEGER_KEYS = [
    pytest.param(lambda v: {"training": {"batch_size": v}}, "training.batch_size", id="batch"),
    pytest.param(
        lambda v: {"experiments": [{"name": "a", "seeds": [v]}]},
        "experiments[0].seeds[0]",
        id="seeds",
    ),
    pytest.param(
        lambda v: {"experiments": [{"name": "a", "batch_size": v}]},
        "experiments[0].batch_size",
        id="nullable",
    ),
    pytest.param(lambda v: {"lyapunov": {"readouts": v}}, "lyapunov.readouts", id="readouts"),
    pytest.param(
        lambda v: {"lyapunov": {"runs": [{"experiment": "fig1", "seeds": [v]}]}},
        "lyapunov.runs[0].seeds[0]",
        id="lyapunov-seeds",
    ),
    pytest.param(
        lambda v: {"ensembles": {"record_every": v}}, "ensembles.record_every", id="record_every"
    ),
]

NUMBER_KEYS = [
    pytest.param(lambda v: {"training": {"lr": v}}, "training.lr", id="lr"),
    pytest.param(
        lambda v: {"experiments": [{"name": "a", "momentum": [v]}]},
        "experiments[0].momentum[0]",
        id="momentum",
    ),
    pytest.param(
        lambda v: {"experiments": [{"name": "a", "lr": v}]}, "experiments[0].lr", id="nullable"
    ),
    pytest.param(lambda v: {"ensembles": {"eps": [v]}}, "ensembles.eps[0]", id="eps"),
    # bounded on both sides, which nan slips through anyway
    pytest.param(
        lambda v: {"lyapunov": {"quantiles": [v]}}, "lyapunov.quantiles[0]", id="quantiles"
    ),
]


@pytest.mark.parametrize("make, key", INTEGER_KEYS)
def test_integer_keys_reject_floats_naming_the_key(make, key):
    """Reject ``8.0`` for an integer: the jobs' argparse (type=int) would."""
    line = only_line(make(8.0))
    assert line.startswith(f"{key}: 8.0 is not of type 'integer'"), line
    assert line.endswith("(write 8, not 8.0)"), line


@pytest.mark.parametrize("make, key", INTEGER_KEYS)
def test_integer_keys_take_ints(make, key):
    """Accept ``8`` where ``8.0`` is rejected."""
    validate_config(make(8))


@pytest.mark.parametrize("make, key", INTEGER_KEYS)
def test_integer_keys_reject_fractions_without_a_hint(make, key):
    """Offer no ``write ...`` advice for 8.5: no integer spells it."""
    line = only_line(make(8.5))
    assert line.startswith(f"{key}: 8.5 is not of type 'integer'") and "write" not in line, line


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("make, key", NUMBER_KEYS)
def test_number_keys_reject_non_finite_floats(make, key, value):
    """Reject nan and ±inf, which pass the schema's bounds, naming the key once."""
    assert only_line(make(value)) == f"{key}: {value!r} is not a finite number"


@pytest.mark.parametrize("make, key", NUMBER_KEYS)
def test_number_keys_take_finite_floats(make, key):
    """Accept a plain float where nan and inf are rejected."""
    validate_config(make(0.5))


def test_number_keys_take_ints():
    """Accept whole numbers written as ints (``lr: 1``, ``momentum: [0]``)."""
    validate_config(
        {
            "training": {"lr": 1, "noise_scale": 0},
            "experiments": [{"name": "a", "momentum": [0], "lr": 2}],
            "lyapunov": {"quantiles": [0, 1], "neutral_tol": 0},
            "ensembles": {"eps": [1, 10], "main_eps": 1},
        }
    )


def test_number_keys_reject_ints_too_large_for_a_float():
    """Reject an int the planner's ``float()`` would overflow on."""
    line = only_line({"training": {"noise_scale": 10**400}})
    assert line.startswith("training.noise_scale: 1000") and line.endswith(
        "is too large for a floating-point number"
    )


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"training": {"lr": True}}, "training.lr: True is not of type 'number'"),
        (
            {"training": {"batch_size": False}},
            "training.batch_size: False is not of type 'integer'",
        ),
        (
            {"experiments": [{"name": "a", "momentum": [True]}]},
            "experiments[0].momentum[0]: True is not of type 'number'",
        ),
        (
            {"experiments": [{"name": "a", "epochs": True}]},
            "experiments[0].epochs: True is not of type 'integer', 'null'",
        ),
    ],
)
def test_bools_are_neither_numbers_nor_integers(config, expected):
    """Reject YAML's yes/no for numbers: Python's bool is an int subclass."""
    assert only_line(config) == expected


def test_yaml_spellings_are_named_one_line_per_key():
    """Name every key of a YAML config with the usual slips, sorted by key, each once."""
    text = """
training: {lr: .nan, batch_size: 8.0, epochs: yes, checkpoint_every: 0.0}
experiments:
  - {name: a, momentum: [-.inf], seeds: [0, 1.0]}
ensembles: {eps: [.inf], record_every: 10.0}
"""
    assert error_lines(yaml.safe_load(text)) == [
        "ensembles.eps[0]: inf is not a finite number",
        "ensembles.record_every: 10.0 is not of type 'integer' (write 10, not 10.0)",
        "experiments[0].momentum[0]: -inf is not a finite number",
        "experiments[0].seeds[1]: 1.0 is not of type 'integer' (write 1, not 1.0)",
        "training.batch_size: 8.0 is not of type 'integer' (write 8, not 8.0)",
        # two rules broken by one value: still one line
        "training.checkpoint_every: 0.0 is not of type 'integer' (write 0, not 0.0); "
        "0.0 is less than the minimum of 1",
        "training.epochs: True is not of type 'integer'",
        "training.lr: nan is not a finite number",
    ]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("training: {lr: 1e-3}", "training.lr: '1e-3' is not of type 'number' "),
        ("lyapunov: {neutral_tol: 1.0e8}", "lyapunov.neutral_tol: '1.0e8' is not of type "),
        ("training: {epochs: 1e2}", "training.epochs: '1e2' is not of type 'integer' "),
    ],
)
def test_exponents_yaml_reads_as_text_get_a_spelling_that_works(text, expected):
    """Spell out the number YAML 1.1 would read (``1.0e-3``) for the text it read (``1e-3``)."""
    line = only_line(yaml.safe_load(text))
    assert line.startswith(expected), line
    written = line.rsplit("write ", 1)[1].rstrip(")")
    section, key = line.split(":", 1)[0].split(".")
    value = yaml.safe_load(written)
    assert isinstance(value, (int, float)) and not isinstance(value, bool)
    assert value == float(yaml.safe_load(text)[section][key])
    validate_config({section: {key: value}})


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    """Keep every config under config/ valid under the stricter types."""
    validate_config(yaml.safe_load(path.read_text()))


def test_schema_default_is_what_validation_fills_in():
    """The default a stage reads from the schema is the one a config without the key gets."""
    filled = validate_config({})
    assert schema_default("lyapunov", "neutral_tol") == filled["lyapunov"]["neutral_tol"] == 1e-8
    assert schema_default("training", "lr") == filled["training"]["lr"]
    with pytest.raises(KeyError, match="'lyapunov.no_such_key'"):
        schema_default("lyapunov", "no_such_key")
    bare = {"properties": {"a": {"properties": {"b": {"type": "number"}}}}}
    with pytest.raises(KeyError, match="'a.b' has no default"):
        schema_default("a", "b", schema=bare)


# --- what the schema cannot see: keys against each other and against the datasets' sizes ------


def test_no_experiments_is_refused_and_one_is_enough():
    """An empty experiments list plans nothing at all: say so instead of finishing silently."""
    assert only_line({"experiments": []}) == (
        "experiments: empty; nothing to run (list an experiment, or leave the key out)"
    )
    validate_config({"experiments": [{"name": "a"}]})


@pytest.mark.parametrize(
    "config, expected",
    [
        (
            {"training": {"train_size": 7292}, "experiments": [{"name": "a"}]},
            "training.train_size: 7292 is more than the 7291 training images of usps (used by "
            "experiments[0] (a)); use at most 7291, or 0 for all of them, or set train_size in "
            "those experiments",
        ),
        (
            {
                "experiments": [
                    {"name": "a"},
                    {"name": "b", "dataset": "fmnist", "train_size": 60001},
                ]
            },
            "experiments[1].train_size: 60001 is more than the 60000 training images of fmnist; "
            "use at most 60000, or 0 for all of them",
        ),
        (
            {"training": {"test_size": 2008}, "experiments": [{"name": "a", "dataset": "fmnist"},
                                                             {"name": "b"}]},  # fmt: skip
            "training.test_size: 2008 is more than the 2007 test images of usps; use at most "
            "2007, or 0 for all of them",
        ),
    ],
    ids=["train_size", "experiment-train_size", "test_size"],
)
def test_subsets_larger_than_the_dataset_are_refused(config, expected):
    """A subset larger than the dataset would be all of it, under another name and caption."""
    assert only_line(config) == expected


@pytest.mark.parametrize(
    "config",
    [
        {"training": {"train_size": 7291, "test_size": 2007}, "experiments": [{"name": "a"}]},
        {"experiments": [{"name": "b", "dataset": "fmnist", "train_size": 60000}]},
        {"training": {"test_size": 10000}, "experiments": [{"name": "a", "dataset": "fmnist"}]},
        # the advice of the first case above, followed: the USPS experiment sets its own size
        {
            "training": {"train_size": 10000},
            "experiments": [{"name": "a", "train_size": 7291}, {"name": "b", "dataset": "fmnist"}],
        },
    ],
    ids=["whole-usps", "whole-fmnist", "whole-fmnist-test", "override"],
)
def test_subsets_up_to_the_dataset_size_pass(config):
    validate_config(config)


@pytest.mark.parametrize(
    "config, key",
    [
        ({"experiments": [{"name": "a", "variants": []}]}, "experiments[0].variants"),
        ({"experiments": [{"name": "a", "seeds": []}]}, "experiments[0].seeds"),
        ({"experiments": [{"name": "a", "onsets": []}]}, "experiments[0].onsets"),
        ({"experiments": [{"name": "a", "momentum": []}]}, "experiments[0].momentum"),
        ({"ensembles": {"eps": []}}, "ensembles.eps"),
        ({"ensembles": {"dtypes": []}}, "ensembles.dtypes"),
        ({"lyapunov": {"quantiles": []}}, "lyapunov.quantiles"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_empty_lists_a_stage_needs_are_refused(config, key):
    """Each of these lists reaches a stage's arguments (nargs='+') or its loops."""
    assert only_line(config) == f"{key}: [] should be non-empty"
    # the nearest valid config: one item
    name = key.rsplit(".", 1)[1]
    one = {"variants": "sgd", "dtypes": "float32", "eps": 0.1, "quantiles": 0.5}.get(name, 0)
    section = (
        config["experiments"][0] if key.startswith("experiments") else next(iter(config.values()))
    )
    section[name] = [one]
    validate_config(config)


def test_a_leading_tilde_in_a_path_is_the_home_folder(monkeypatch, tmp_path):
    """The jobs get these paths as arguments, where no shell expands ``~`` any more."""
    monkeypatch.setenv("HOME", str(tmp_path))
    config = validate_config(
        {
            "download_cache": "~/cache",
            "datasets": {"usps": {"local_dir": "~/usps"}, "fmnist": {"local_dir": None}},
        }
    )
    assert config["download_cache"] == f"{tmp_path}/cache"
    assert config["datasets"]["usps"]["local_dir"] == f"{tmp_path}/usps"
    assert config["datasets"]["fmnist"]["local_dir"] is None
    # validating again (the planner's tests do) changes nothing more
    assert validate_config(config)["download_cache"] == f"{tmp_path}/cache"
    # a ~ elsewhere in a path is a plain character
    assert validate_config({"download_cache": "a/~b"})["download_cache"] == "a/~b"


# -- the image side of a dataset, the depth of a model ----------------------------------------


def test_image_sides_and_depths_default_to_the_papers():
    cfg = validate_config({})
    assert {name: src["image_side"] for name, src in cfg["datasets"].items()} == {
        "usps": 16,
        "fmnist": 16,
    }
    assert all(exp["depth"] is None for exp in cfg["experiments"])
    fmnist28 = validate_config({"datasets": {"fmnist": {"image_side": 28}}})["datasets"]
    assert fmnist28 == {"fmnist": {**cfg["datasets"]["fmnist"], "image_side": 28}}


@pytest.mark.parametrize(
    "config, expected",
    [
        (
            {"datasets": {"usps": {"image_side": 28}}},
            "datasets.usps.image_side: 28 is not a side USPS is prepared at; use 16",
        ),
        (
            {"datasets": {"fmnist": {"image_side": 32}}},
            "datasets.fmnist.image_side: 32 is not a side FashionMNIST is prepared at; use 16 or 28",
        ),
        (
            {"datasets": {"fmnist": {"image_side": 28.0}}},
            "datasets.fmnist.image_side: 28.0 is not of type 'integer' (write 28, not 28.0)",
        ),
        (
            {"experiments": [{"name": "a", "depth": 8}]},
            "experiments[a].depth: 8, but the MLP's depth is fixed; leave it out (null)",
        ),
        (
            {"experiments": [{"name": "c", "model": "cnn", "depth": 20}]},
            "experiments[c].depth: 20, but the CNN's depth is fixed; leave it out (null)",
        ),
        (
            {"experiments": [{"name": "r", "model": "resnet", "depth": 9}]},
            "experiments[r].depth: a ResNet's depth must be 6n + 2 with n ≥ 1 (8, 14, 20, …), "
            "got 9",
        ),
        (
            {"experiments": [{"name": "r", "model": "resnet", "depth": 2}]},
            "experiments[0].depth: 2 is less than the minimum of 8",
        ),
    ],
)
def test_sides_and_depths_a_model_cannot_take_are_refused_naming_the_key(config, expected):
    assert only_line(config) == expected


def test_sides_and_depths_that_fit_pass():
    cfg = validate_config(
        {
            "datasets": {"fmnist": {"image_side": 28}, "usps": {"image_side": 16}},
            "experiments": [
                {"name": "r", "model": "resnet", "depth": 14},
                {"name": "d", "model": "resnet", "depth": None},
            ],
        }
    )
    assert [exp["depth"] for exp in cfg["experiments"]] == [14, None]
