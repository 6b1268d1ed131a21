"""The user's stress and fault test (python -m chaosgd.tools.stress) at its smallest size: two
checkouts killed at random moments side by side for one round, a full disk and a read-only
results/, a moved checkout, an archive round trip under a changed config, every recovery
compared bit for bit with a clean run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from support.workflow import REPO, venv_env


def small_config(path: Path) -> Path:
    """config/tiny.yaml without its Lyapunov run and ensemble: two training runs (SGD and CGD,
    the spectrum every step, checkpoints), their figures, the report and the claims; about half
    the tiny run's jobs, so that the whole test stays within about 3 minutes on 2 cores."""
    config = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    config["experiments"] = [
        {"name": "fig1", "dataset": "fmnist", "hidden": 4, "variants": ["sgd", "cgd-negative"],
         "seeds": [0]},
    ]  # fmt: skip
    config["lyapunov"]["runs"] = []
    path.write_text(yaml.safe_dump(config))
    return path


def test_stress_test_at_its_smallest_size(tmp_path, fmnist_dir):
    config = small_config(tmp_path / "stress.yaml")
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "chaosgd.tools.stress", "--configfile", str(config),
            "--parallel", "2", "--rounds", "1", "--seed", "1", "--timeout", "300",
            "--workdir", str(tmp_path / "scratch"), "--summary", str(summary),
        ],
        cwd=REPO,
        env={**venv_env(), "PYTHONPATH": str(REPO / "workflow"), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    out = proc.stdout[-6000:] + proc.stderr[-6000:]
    assert summary.is_file(), out
    found = json.loads(summary.read_text())
    assert found["mismatches"] == [], out
    assert found["escapes"] == [], out
    assert found["checks"]["failed"] == [], out
    assert proc.returncode == 0 and found["ok"], out
    assert sum(found["kills"].values()) > 0, out
    assert found["runs"]["snakemake"] >= 5  # the reference, two killed runs and their reruns
    assert found["faults"]["checkout moved"] == 1
    assert found["faults"]["archive under a changed config"] == 1
    if not found["skipped"]:  # a private mount namespace: the full disk and read-only mount
        assert found["faults"]["disk full"] == 1
        # each stopped its job and was named with the file and the cause
        assert len(found["fault_messages"]) == 3
        assert all(f["failed"] and f["named_by"] for f in found["fault_messages"]), out
    assert found["compared"]["bytes"] > 0 and found["compared"]["files"] > 0
    assert "PASSED" in proc.stdout
    assert not (tmp_path / "scratch").exists() or not any((tmp_path / "scratch").iterdir())
