"""The workflow as a whole: it plans cleanly, lints cleanly, and rejects bad configs early."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chaosgd.planning import plan
from chaosgd.planning.config import ConfigError, validate_config

from support.workflow import REPO, run_snakemake, venv_env


def test_dry_run_quick_config_is_clean(tmp_path):
    proc = run_snakemake("-n", "--configfile", str(REPO / "config/quick.yaml"), workdir=tmp_path)
    assert "datasets_prepare" in proc.stdout


def test_dry_run_paper_config_is_clean(tmp_path):
    proc = run_snakemake("-n", workdir=tmp_path)
    assert "datasets_prepare" in proc.stdout


def test_lint_is_clean():
    proc = run_snakemake("--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


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


@pytest.mark.parametrize(
    "text, expected",
    [
        ("download_cachee: x\n", "unknown key 'download_cachee'"),
        ("datasets:\n  fmnist:\n    local_dirr: /x\n", "datasets.fmnist: unknown key 'local_dirr'"),
        ("datasets:\n  fmnist:\n    download: 'yes'\n", "datasets.fmnist.download: 'yes' is not"),
        ("datasets:\n  mnist: {}\n", "datasets: unknown key 'mnist'"),
    ],
)
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path, text, expected):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    proc = run_snakemake("-n", "--configfile", str(cfg), workdir=tmp_path, check=False)
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr
    assert "datasets_prepare" not in proc.stdout


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
    "stage",
    [
        "datasets",
        "train",
        "lyapunov",
        "ensembles",
        "fits",
        "figures",
        "report",
        "claims",
        "archive",
        "bench",
    ],
)
def test_every_module_explains_itself(stage, capsys):
    import importlib

    module = importlib.import_module(f"chaosgd.{stage}")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    assert f"python -m chaosgd.{stage}" in capsys.readouterr().out
