"""Shared fixtures: the repository root and a runner for the real Snakemake workflow."""

from __future__ import annotations

import os
import shutil
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


def fresh_checkout(dest: Path) -> Path:
    """Copy the files git would commit (tracked and untracked-not-ignored) to ``dest``: what a
    fresh clone of this working tree holds, uncommitted changes included."""
    names = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, names):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def run_snakemake(
    *args: str,
    workdir: Path | None = None,
    check: bool = True,
    timeout: float = 1200,
    repo: Path = REPO,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run ``repo``'s Snakefile (in ``workdir`` if given) and return the result.

    For another checkout than this one, its jobs import that checkout's package (PYTHONPATH).
    """
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(repo / "Snakefile")]
    if workdir is not None:
        cmd += ["--directory", str(workdir)]
    cmd += list(args)
    full_env = venv_env()
    if repo != REPO:
        full_env["PYTHONPATH"] = str(repo / "workflow")
    full_env.update(env or {})
    proc = subprocess.run(
        cmd, cwd=repo, env=full_env, capture_output=True, text=True, timeout=timeout
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
        [
            "fmnist",
            "--out",
            str(out),
            "--manifest",
            str(out.with_suffix(".json")),
            "--local-dir",
            str(fmnist_dir),
            "--no-download",
            "--cache-dir",
            str(out.parent / "cache"),
        ]
    )
    assert rc == 0
    return out


def job_counts(output: str) -> dict[str, int]:
    """Jobs per rule from the 'Job stats' table that Snakemake prints."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Job stats:":
            for row in lines[i + 3 :]:
                parts = row.split()
                if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
                    break
                counts[parts[0]] = int(parts[1])
            break
    return counts


@pytest.fixture(scope="module")
def one_thread():
    """Run a module single-threaded: on a shared 2-core machine the many small two-thread
    LAPACK calls (QR, eigh) of the curvature tests are much slower under contention."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
