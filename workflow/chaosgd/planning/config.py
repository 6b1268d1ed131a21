"""Validate a pipeline config against the JSON schema, fill in defaults, and explain errors.

Snakemake's own ``validate`` prints the whole schema on a mistake; users need one line naming
the key. The checks are the schema's (draft 2020-12); defaults are filled in the same way as
Snakemake does (the jsonschema FAQ's ``extend_with_default``).

The schema's types are stricter than JSON Schema's, to reject what the jobs would reject: an
``integer`` is a Python int (not ``8.0``), a ``number`` is an int or a finite float (not
``.nan`` or ``.inf``), and a bool (YAML ``yes``) is neither.
"""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import Draft202012Validator, validators

from chaosgd.planning.vocab import ARCHITECTURES, DATASETS, fill_schema

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The config does not follow the schema; the message names the offending key."""


def _is_integer(checker, instance) -> bool:
    # JSON Schema counts 8.0 as an integer, but the jobs' argparse (type=int) rejects "8.0";
    # bool is an int subclass, and YAML reads yes/no/on/off as bools.
    return isinstance(instance, int) and not isinstance(instance, bool)


def _is_number(checker, instance) -> bool:
    # nan passes every minimum and maximum (all comparisons with it are false) and inf passes
    # the lower bounds, so without this .nan and .inf would reach the jobs; an int too large
    # for a float would stop the planner's float().
    if isinstance(instance, bool) or not isinstance(instance, (int, float)):
        return False
    try:
        return math.isfinite(float(instance))
    except OverflowError:
        return False


TYPE_CHECKER = Draft202012Validator.TYPE_CHECKER.redefine_many(
    {"integer": _is_integer, "number": _is_number}
)


def _with_defaults(validator_class, type_checker=TYPE_CHECKER):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(
        validator_class, {"properties": set_defaults}, type_checker=type_checker
    )


Validator = _with_defaults(Draft202012Validator)


def load_schema(path: str | Path = SCHEMA) -> dict:
    """Read the config schema (``workflow/schemas/config.schema.yaml`` unless ``path`` is given),
    with its vocabularies filled in from :mod:`chaosgd.planning.vocab`."""
    return fill_schema(yaml.safe_load(Path(path).read_text()))


def schema_default(*keys: str, schema: dict | None = None) -> Any:
    """The schema's default of the config key ``keys`` (``"lyapunov", "neutral_tol"``), from
    :func:`load_schema` unless ``schema`` is given; a :class:`KeyError` names a key the schema
    lacks or gives no default."""
    node = load_schema() if schema is None else schema
    for i, key in enumerate(keys):
        properties = node.get("properties", {})
        if key not in properties:
            raise KeyError(f"config schema: no key {'.'.join(keys[: i + 1])!r}")
        node = properties[key]
    if "default" not in node:
        raise KeyError(f"config schema: {'.'.join(keys)!r} has no default")
    return copy.deepcopy(node["default"])


def key_path(error: jsonschema.ValidationError) -> str:
    """Dotted path of the config key an error is about (``datasets.fmnist.download``)."""
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path]
    return ".".join(parts).replace(".[", "[") or "<top level>"


# what YAML 1.1 (PyYAML, hence Snakemake) reads as a float needs a dot and a signed exponent:
# 1e-3 and 1.0e3 are strings, 1.0e-3 and 1.0e+3 are floats
_EXPONENT = re.compile(r"^([-+]?)([0-9]+)(?:\.([0-9]*))?[eE]([-+]?)([0-9]+)$")


def _type_hint(instance: Any, types: list[str]) -> str:
    """How to write ``instance`` so that it has one of ``types`` ('' when there is no advice)."""
    if isinstance(instance, float) and "integer" in types and instance.is_integer():
        return f" (write {int(instance)}, not {instance!r})"
    m = _EXPONENT.match(instance) if isinstance(instance, str) else None
    if m is None:
        return ""
    value = float(instance)
    if "number" in types:
        sign, whole, frac, exp_sign, exp = m.groups()
        spelled = f"{sign}{whole}.{frac or '0'}e{exp_sign or '+'}{exp}"
        if yaml.safe_load(spelled) == value:
            return f" (YAML reads {instance} as text; write {spelled})"
    elif "integer" in types and value.is_integer() and math.isfinite(value):
        return f" (YAML reads {instance} as text; write {int(value)})"
    return ""


def describe(error: jsonschema.ValidationError) -> str:
    """One line naming the key ``error`` is about and what is wrong with its value."""
    where = key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        names = ", ".join(repr(e) for e in extra)
        prefix = f"{where}: " if error.absolute_path else ""
        return f"{prefix}unknown key {names} (allowed: {', '.join(allowed)})"
    if error.validator == "type":
        types = error.validator_value
        types = [types] if isinstance(types, str) else list(types)
        value = error.instance
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and {"number", "integer"} & set(types) and not _is_number(None, value):
            if isinstance(value, int):
                return f"{where}: {value} is too large for a floating-point number"
            return f"{where}: {value!r} is not a finite number"
        return f"{where}: {error.message}{_type_hint(value, types)}"
    return f"{where}: {error.message}"


def validate_config(config: dict[str, Any], schema: dict | None = None) -> dict[str, Any]:
    """Fill defaults into ``config`` in place and check it; raise :class:`ConfigError`."""
    schema = load_schema() if schema is None else schema
    validator = Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_one_line_per_key(errors)))
    _expand_home(config)
    problems = config_problems(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return config


def _expand_home(config: dict[str, Any]) -> None:
    # the stages get these paths as arguments, where no shell expands a ~ any more: a cache
    # named "~/data" would be a folder called "~" in the working directory
    config["download_cache"] = os.path.expanduser(config["download_cache"])
    for source in config["datasets"].values():
        if source.get("local_dir"):
            source["local_dir"] = os.path.expanduser(source["local_dir"])


def config_problems(config: dict[str, Any]) -> list[str]:
    """What a config that follows the schema still asks of a later stage that it cannot do, one
    line per key: the schema cannot compare a key with another one or with a dataset's size.

    What needs the runs' lengths (onsets, readouts, anchors, fits) or their names is checked
    where those are planned (:mod:`chaosgd.planning.plan`).
    """
    if not config["experiments"]:
        # no runs, no figures, no claims: Snakemake would plan nothing and say nothing
        return ["experiments: empty; nothing to run (list an experiment, or leave the key out)"]
    lines = _size_problems(config)
    training = config["training"]
    # the caption, the run id and the cost estimate would name a subset the dataset cannot give
    inherit: dict[str, list[str]] = {}  # dataset -> experiments too small for training.train_size
    for i, exp in enumerate(config["experiments"]):
        n = DATASETS[exp["dataset"]].train_size
        if exp.get("train_size") is not None:
            if exp["train_size"] > n:
                lines.append(
                    f"experiments[{i}].train_size: {exp['train_size']} is more than the {n} "
                    f"training images of {exp['dataset']}; use at most {n}, or 0 for all of them"
                )
        elif training["train_size"] > n:
            inherit.setdefault(exp["dataset"], []).append(f"experiments[{i}] ({exp['name']})")
    if inherit:
        smallest = min(inherit, key=lambda d: DATASETS[d].train_size)
        n = DATASETS[smallest].train_size
        names = ", ".join(e for d in inherit for e in inherit[d])
        lines.append(
            f"training.train_size: {training['train_size']} is more than the {n} training "
            f"images of {smallest} (used by {names}); use at most {n}, or 0 for all of them, or "
            "set train_size in those experiments"
        )
    used = {exp["dataset"] for exp in config["experiments"]}
    smallest = min(used, key=lambda d: DATASETS[d].test_size)
    n = DATASETS[smallest].test_size
    if training["test_size"] > n:
        lines.append(
            f"training.test_size: {training['test_size']} is more than the {n} test images of "
            f"{smallest}; use at most {n}, or 0 for all of them"
        )
    return lines


def _size_problems(config: dict[str, Any]) -> list[str]:
    """The image sides and depths the datasets and models cannot take: a side the dataset is
    not prepared at (:attr:`chaosgd.planning.vocab.Dataset.sides`), a depth for a model that
    takes none, a depth the model cannot be built with (the ResNet's 6n + 2)."""
    lines = []
    for name, source in config["datasets"].items():
        sides = DATASETS[name].sides
        if source["image_side"] not in sides:
            lines.append(
                f"datasets.{name}.image_side: {source['image_side']} is not a side "
                f"{DATASETS[name].title} is prepared at; use "
                + " or ".join(str(side) for side in sides)
            )
    for exp in config["experiments"]:
        depth, arch = exp["depth"], ARCHITECTURES[exp["model"]]
        where = f"experiments[{exp['name']}].depth"
        if depth is None:
            continue
        if not arch.uses_depth:
            lines.append(
                f"{where}: {depth}, but the {arch.title}'s depth is fixed; leave it out (null)"
            )
            continue
        try:
            arch.layers(exp["hidden"], depth=depth)
        except ValueError as exc:
            lines.append(f"{where}: {exc}")
    return lines


def typed_overrides(overrides) -> dict:
    """Snakemake's ``--config`` values with their nested scalars typed as in a config file.

    Snakemake reads a nested value (``--config resources='{speed: 2}'``) with YAML's BaseLoader,
    which leaves every scalar in it a string ('2'); each such string is read again as YAML, so
    that numbers, booleans and null are what the same text in a config file would be. Top-level
    scalars (``--config download_cache=x``) are Snakemake's own business and stay as given.
    """

    def typed(value):
        if isinstance(value, dict):
            return {k: typed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [typed(v) for v in value]
        if isinstance(value, str):
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                return value
            # only what BaseLoader flattened: a scalar that YAML reads as a number, bool or null
            if parsed is None or isinstance(parsed, (bool, int, float)):
                return parsed
        return value

    return {k: typed(v) for k, v in dict(overrides or {}).items() if isinstance(v, (dict, list))}


def _one_line_per_key(errors: list[jsonschema.ValidationError]) -> list[str]:
    # A key can break several rules at once (0.0 for an integer of minimum 1); a second line
    # naming the same key reads like a second mistake.
    lines: dict[str, str] = {}
    for error in errors:
        where, line = key_path(error), describe(error)
        if where not in lines:
            lines[where] = line
        else:
            lines[where] += "; " + line.removeprefix(f"{where}: ")
    return list(lines.values())
