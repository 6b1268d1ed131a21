"""Shared fixtures: the repository root and a runner for the real Snakemake workflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def venv_env() -> dict[str, str]:
    """Environment in which `python` and `snakemake` are this interpreter's (the venv's)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def run_snakemake(
    *args: str, workdir: Path | None = None, check: bool = True, timeout: float = 1200
) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile (in ``workdir`` if given) and return the result."""
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile")]
    if workdir is not None:
        cmd += ["--directory", str(workdir)]
    cmd += list(args)
    proc = subprocess.run(
        cmd, cwd=REPO, env=venv_env(), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
            f"{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"FashionMNIST not found in {FMNIST_DIR}: apt-get install dataset-fashion-mnist "
            "(.ci/run does)"
        )
    return FMNIST_DIR


@pytest.fixture(scope="session")
def fmnist_pt(tmp_path_factory, fmnist_dir) -> Path:
    """FashionMNIST prepared by the datasets stage (once per test session)."""
    from chaosgd import datasets

    out = tmp_path_factory.mktemp("prepared") / "fmnist.pt"
    rc = datasets.main(
        ["fmnist", "--out", str(out), "--manifest", str(out.with_suffix(".json")),
         "--local-dir", str(fmnist_dir), "--no-download", "--cache-dir", str(out.parent / "cache")]
    )
    assert rc == 0
    return out
