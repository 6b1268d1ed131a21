"""The project as files: formatted and lint-clean code, a schema that describes and defaults
every key, every module's command line explained."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chaosgd.planning import plan
from chaosgd.planning.config import ConfigError, validate_config

from support.workflow import REPO, venv_env


def test_snakefmt_is_clean():
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "snakefmt"), "--check", "."],
        cwd=REPO,
        env=venv_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_python_code_is_ruff_clean():
    """pyflakes, import order and docstrings on public functions (pyproject.toml's [tool.ruff])."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ruff"), "check", "--no-cache", "workflow", "tests"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_python_code_is_black_formatted():
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "black"), "--check", "-q", "workflow/chaosgd", "tests"],
        cwd=REPO,
        env=venv_env(),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_defaults_are_the_paper_config():
    """config/config.yaml spells out the schema's defaults (the paper's settings)."""
    import yaml

    assert validate_config({}) == validate_config(
        yaml.safe_load((REPO / "config/config.yaml").read_text())
    )


def test_schema_describes_and_defaults_every_key():
    from chaosgd.planning.config import load_schema

    # as the validator sees it: with the vocabularies filled in (datasets' entries among them)
    schema = load_schema()
    missing = []

    def walk(node, where):
        if not isinstance(node, dict):
            return
        if "properties" in node and node.get("additionalProperties", True) is not False:
            missing.append(f"{where}: additionalProperties must be false")
        # entries of a mapping of optional entries take their default from the mapping's
        parent_default = node.get("default") if isinstance(node.get("default"), dict) else {}
        for name, sub in node.get("properties", {}).items():
            here = f"{where}.{name}"
            if "description" not in sub:
                missing.append(f"{here}: no description")
            # a required key has no default by definition
            if (
                "default" not in sub
                and name not in parent_default
                and name not in node.get("required", [])
            ):
                missing.append(f"{here}: no default")
            walk(sub, here)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")

    walk(schema, "config")
    assert not missing, missing


def test_config_error_is_a_value_error_naming_the_key():
    with pytest.raises(ConfigError, match="datasets.usps.mirrors"):
        validate_config({"datasets": {"usps": {"mirrors": "http://x"}}})


def test_datasets_args_quote_paths():
    cfg = validate_config(
        {"datasets": {"fmnist": {"local_dir": "/data/my files", "download": False}}}
    )
    args = plan.datasets_args(cfg, "fmnist")
    assert "--local-dir '/data/my files'" in args and "--no-download" in args
    with pytest.raises(ValueError, match="'usps' is not configured"):
        plan.datasets_args(cfg, "usps")


@pytest.mark.parametrize(
    "module, command",
    [
        (f"chaosgd.{s}", f"chaosgd.{s}")
        for s in ("datasets", "train", "lyapunov", "ensembles", "fits", "figures", "report")
    ]
    + [
        ("chaosgd.claims", "chaosgd.claims"),
        ("chaosgd.tools.archive", "chaosgd.tools.archive"),
        ("chaosgd.tools.bench.cli", "chaosgd.tools.bench"),
    ],
)
def test_every_module_explains_itself(module, command, capsys):
    import importlib

    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main(["--help"])
    assert exit_.value.code == 0
    assert f"python -m {command}" in capsys.readouterr().out
