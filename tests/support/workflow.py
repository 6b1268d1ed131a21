"""Running the real workflow from tests: the repository, fresh checkouts, Snakemake, results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# the stress tool reads Snakemake's job table too: one parser
from chaosgd.tools.stress.compare import job_counts  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


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


# timings, and how this particular job got there: the only parts of run.json and the ensembles'
# info JSON that may differ between an interrupted and an uninterrupted run
VOLATILE = {
    "wall_seconds",
    "steps_per_second",
    "curvature_seconds",
    "tangent_seconds",
    "readout_seconds",
    "readout_seconds_each",
    "lambda1_seconds",
    "seconds",
    "seconds_per_step",
    "single_seconds_per_step",
    "ratio",
    "steps_this_job",
    "resumed_from_step",
}


def stable(obj):
    """A JSON document without its VOLATILE keys, at any depth."""
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [stable(v) for v in obj]
    return obj


def same_files(a: Path, b: Path) -> None:
    """Two result folders hold the same files, byte for byte (JSON: but VOLATILE keys)."""
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()), (a, b)
    for name in names:
        if name.endswith(".json"):
            assert stable(json.loads((a / name).read_text())) == stable(
                json.loads((b / name).read_text())
            ), name
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), f"{b / name} differs"
