"""chaosgd.tools.bench.gpu: the GPU bench runs on the CPU end to end, says so without CUDA, and
exits 1 when an agreement check fails; the GPU profile shares the GPU between the GPU rules."""

import dataclasses
import json

import pytest
import torch
import yaml

from chaosgd.tools.bench import gpu
from chaosgd.tools.bench.agreement import Check

from support.bench import run_bench
from support.workflow import REPO


def test_gpu_bench_on_the_cpu_end_to_end(tmp_path):
    rc, out, _ = run_bench(
        ["gpu", "--device", "cpu", "--quick", "--json", str(tmp_path / "g.json")]
    )
    assert rc == 0, out
    assert out.rstrip().splitlines()[-1].startswith("PASS: all")
    result = json.loads((tmp_path / "g.json").read_text())
    assert result["passed"] and all(c["ok"] for c in result["checks"])
    parts = {c["part"] for c in result["checks"]}
    assert parts == {"curvature mlp", "curvature cnn", "tangent", "fig1"}
    # the three prune sets' projected gradients, per model and batch (the warm-up one too)
    assert sum("projected gradient" in c["what"] for c in result["checks"]) == 2 * 2 * 3
    assert {r["part"] for r in result["rows"]} == {"curvature", "tangent", "ensembles", "fig1"}
    assert all(r["device_s"] > 0 and r["cpu_s"] > 0 for r in result["rows"])
    for side in ("device", "cpu"):
        projection = result["projection"][side]
        assert projection["counts"]["train"] > 0 and projection["total_seconds"] > 0
        assert projection["total_seconds"] == pytest.approx(
            sum(g["seconds"] for g in projection["groups"])
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_bench_without_cuda_says_so():
    rc, out, err = run_bench(["gpu", "--quick"])  # --device cuda is the default
    assert rc == 2 and not out
    assert "no CUDA device" in err and "--device cpu" in err


def test_gpu_bench_exits_1_when_a_check_fails(monkeypatch):
    side = dict(groups=[], total_seconds=0.0, counts=dict(train=0, lyapunov=0, ensembles=0))
    side["longest"] = dict(run="r", stage="train", steps=0, seconds=0.0)
    failed = Check("curvature mlp", "eigenvalues", 1e-6)
    canned = dict(
        rows=[],
        checks=[dict(dataclasses.asdict(failed), ok=failed.ok)],
        passed=False,
        projection=dict(device=side, cpu=side),
        assumptions=[],
    )
    monkeypatch.setattr(gpu, "bench_gpu", lambda *args, **kw: canned)
    rc, out, _ = run_bench(["gpu", "--device", "cpu", "--quick"])
    assert rc == 1
    assert out.rstrip().splitlines()[-1].startswith("FAIL: 1 of 1 agreement checks")


def test_gpu_profile_shares_the_gpu_between_the_slurm_profiles_gpu_rules():
    gpu = yaml.safe_load((REPO / "profiles/gpu/config.yaml").read_text())
    slurm = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    slots = gpu["resources"]["gpu_slots"]
    assert isinstance(slots, int) and slots > 1
    gpu_rules = {rule for rule, res in slurm["set-resources"].items() if res.get("gpu")}
    assert gpu["set-resources"] == {rule: {"gpu_slots": 1} for rule in gpu_rules}
