"""The project as files: formatted and lint-clean code, a schema that describes and defaults
every key, every module's command line explained."""

from __future__ import annotations

import dataclasses
import shlex
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
    args = str(plan.datasets_sources(cfg, "fmnist"))
    assert "--local-dir '/data/my files'" in args and "--no-download" in args
    with pytest.raises(ValueError, match="'usps' is not configured"):
        plan.datasets_args(cfg, "usps")


def test_settings_that_cannot_change_a_result_are_passed_untracked():
    """Where files come from, the checkpoint cadence and the device reach the stages as
    plan.Untracked, which Snakemake's params rerun trigger leaves out (it serializes builtin
    types only); what shapes a result stays in the tracked arguments."""
    from chaosgd.planning.run_settings import UNTRACKED

    fmnist = {"local_dir": "/data/x", "md5": {"a.gz": "0" * 32}}
    cfg = validate_config({"datasets": {"usps": {}, "fmnist": fmnist}})
    sources, shaping = plan.datasets_sources(cfg, "fmnist"), plan.datasets_args(cfg, "fmnist")
    assert "--local-dir" in sources and "--local-dir" not in shaping
    assert "--md5" in shaping and "--resize" in shaping and "--md5" not in sources
    runs, _, _ = plan.plan_runs(cfg)
    run = next(iter(runs.values()))
    assert UNTRACKED == ("checkpoint_every", "device")
    tracked, untracked = plan.train_args(run), plan.untracked_args(run)
    assert "--checkpoint-every" in untracked and "--device" in untracked
    assert "--checkpoint-every" not in tracked and "--lr" in tracked and "--seed" in tracked
    # every setting reaches the stage, exactly once
    assert sorted(f"{tracked} {untracked}".split()) == sorted(shlex.join(run.to_args()).split())
    # Snakemake records params by repr for its rerun trigger: the same whatever the value
    other = dataclasses.replace(run, checkpoint_every=run.checkpoint_every + 1, device="cpu")
    assert plan.untracked_args(other) != untracked
    assert repr(plan.untracked_args(other)) == repr(untracked) == repr(sources)
    for stage in ("train", "lyapunov", "ensembles"):
        text = (REPO / "workflow" / "rules" / f"{stage}.smk").read_text()
        assert "untracked=lambda wildcards: plan.untracked_args(RUNS[wildcards.run])" in text
        assert text.count("{params.untracked}") == 1


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
