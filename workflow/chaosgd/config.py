"""Validate a pipeline config against the JSON schema, fill in defaults, and explain errors.

Snakemake's own ``validate`` prints the whole schema on a mistake; users need one line naming
the key. The checks are the schema's (draft 2020-12); defaults are filled in the same way as
Snakemake does (the jsonschema FAQ's ``extend_with_default``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import Draft202012Validator, validators

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """The config does not follow the schema; the message names the offending key."""


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def load_schema(path: str | Path = SCHEMA) -> dict:
    return yaml.safe_load(Path(path).read_text())


def key_path(error: jsonschema.ValidationError) -> str:
    """Dotted path of the config key an error is about (``datasets.fmnist.download``)."""
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in error.absolute_path]
    return ".".join(parts).replace(".[", "[") or "<top level>"


def describe(error: jsonschema.ValidationError) -> str:
    where = key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        names = ", ".join(repr(e) for e in extra)
        prefix = f"{where}: " if error.absolute_path else ""
        return f"{prefix}unknown key {names} (allowed: {', '.join(allowed)})"
    return f"{where}: {error.message}"


def validate_config(config: dict[str, Any], schema: dict | None = None) -> dict[str, Any]:
    """Fill defaults into ``config`` in place and check it; raise :class:`ConfigError`."""
    schema = load_schema() if schema is None else schema
    validator = _with_defaults(Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [describe(e) for e in errors]
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    return config
