"""chaosgd.bench: tiny runs of the commands; low-rank and dense tangent updates agree; the GPU
bench runs on the CPU, and its agreement check can fail."""

import contextlib
import dataclasses
import io
import json
import math

import pytest
import torch
import yaml

from chaosgd import bench, bench_gpu
from chaosgd.curvature import hessian_eigenpairs
from chaosgd.models import build_model, flat_params, hessian_structure, make_loss_fn

from conftest import REPO


def test_tangent_agreement(tmp_path):
    threads = torch.get_num_threads()
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            rc = bench.main(
                [
                    "tangent",
                    "--hidden",
                    "2",
                    "--steps",
                    "3",
                    "--no-readout",
                    "--threads",
                    "1",
                    "--json",
                    str(tmp_path / "rows.json"),
                ]
            )
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    lines = buf.getvalue().splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("operation"))
    end = lines[head].index("agreement") + len("agreement")
    cells = [line[end - 9 : end].strip() for line in lines[head + 2 :]]
    values = [float(c) for c in cells if c not in ("-", "ref")]
    assert len(values) == 3  # step_sgd plain and through the basis, and after the fold
    assert all(v < 1e-10 for v in values), cells
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert rows[0]["op"] == "step_sgd (low-rank)" and rows[0]["n_params"] == 544
    assert rows[1]["op"] == "step_sgd (basis)" and rows[1]["agreement"] < 1e-10
    assert not any(r["op"].startswith("readout") for r in rows)


def test_ensembles_rows(tmp_path):
    threads = torch.get_num_threads()
    buf = io.StringIO()
    argv = ["ensembles", "--hidden", "3", "--steps", "20", "--eps-counts", "1", "2"]
    argv += ["--dtype", "float64", "--repeats", "1", "--threads", "1"]
    try:
        with contextlib.redirect_stdout(buf):
            rc = bench.main(argv + ["--json", str(tmp_path / "rows.json")])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(r["what"], r["members"]) for r in rows] == [
        ("one model", 1),
        ("ensemble (mlp)", 6),
        ("ensemble (mlp)", 11),
    ]
    assert rows[0]["n_params"] == 256 * 3 + 3 + 3 * 10 + 10
    assert all(r["median_s"] > 0 for r in rows)
    assert rows[2]["ratio"] == rows[2]["median_s"] / rows[0]["median_s"]
    assert "ensemble (mlp)" in buf.getvalue()


def _run_gpu_bench(argv):
    threads = torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = bench.main(["gpu", *argv])
    finally:
        torch.set_num_threads(threads)
    return rc, out.getvalue(), err.getvalue()


def test_gpu_bench_on_the_cpu_end_to_end(tmp_path):
    rc, out, _ = _run_gpu_bench(["--device", "cpu", "--quick", "--json", str(tmp_path / "g.json")])
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
    rc, out, err = _run_gpu_bench(["--quick"])  # --device cuda is the default
    assert rc == 2 and not out
    assert "no CUDA device" in err and "--device cpu" in err


def test_gpu_bench_agreement_can_fail():
    torch.manual_seed(0)
    model = build_model("mlp", hidden=2)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    loss_fn = make_loss_fn(model, x, y)
    theta = flat_params(model).double()
    eig = hessian_eigenpairs(loss_fn, theta, "lowrank", **hessian_structure(model, x, y))
    grad = torch.func.grad(loss_fn)(theta)
    dense = hessian_eigenpairs(loss_fn, theta, "dense")
    assert all(c.ok for c in bench_gpu.compare_eigenpairs(eig, grad, dense, grad, 1e-3, "t"))

    shifted = dataclasses.replace(eig, values=eig.values * (1 + 1e-8))
    checks = bench_gpu.compare_eigenpairs(eig, grad, shifted, grad, 1e-3, "t")
    assert [c.ok for c in checks] == [False, True, True, True]  # same vectors, same projections

    # a rotation by 1e-6 between the top and the bottom eigenvector moves the projections
    v = eig.vectors.clone()
    c, s = math.cos(1e-6), math.sin(1e-6)
    v[:, 0], v[:, -1] = (
        c * eig.vectors[:, 0] - s * eig.vectors[:, -1],
        s * eig.vectors[:, 0] + c * eig.vectors[:, -1],
    )
    rotated = dataclasses.replace(eig, vectors=v)
    checks = bench_gpu.compare_eigenpairs(eig, grad, rotated, grad, 1e-3, "t")
    assert checks[0].ok and not all(c.ok for c in checks[1:])
    assert not bench_gpu.Check("t", "nan", math.nan).ok


def test_gpu_bench_exits_1_when_a_check_fails(monkeypatch):
    side = dict(groups=[], total_seconds=0.0, counts=dict(train=0, lyapunov=0, ensembles=0))
    side["longest"] = dict(run="r", stage="train", steps=0, seconds=0.0)
    failed = bench_gpu.Check("curvature mlp", "eigenvalues", 1e-6)
    canned = dict(
        rows=[],
        checks=[dict(dataclasses.asdict(failed), ok=failed.ok)],
        passed=False,
        projection=dict(device=side, cpu=side),
        assumptions=[],
    )
    monkeypatch.setattr(bench_gpu, "bench_gpu", lambda *args, **kw: canned)
    rc, out, _ = _run_gpu_bench(["--device", "cpu", "--quick"])
    assert rc == 1
    assert out.rstrip().splitlines()[-1].startswith("FAIL: 1 of 1 agreement checks")


def test_gpu_profile_shares_the_gpu_between_the_slurm_profiles_gpu_rules():
    gpu = yaml.safe_load((REPO / "profiles/gpu/config.yaml").read_text())
    slurm = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    slots = gpu["resources"]["gpu_slots"]
    assert isinstance(slots, int) and slots > 1
    gpu_rules = {rule for rule, res in slurm["set-resources"].items() if res.get("gpu")}
    assert gpu["set-resources"] == {rule: {"gpu_slots": 1} for rule in gpu_rules}


@pytest.mark.parametrize("x", [5e-05, 1.2e-5, 4.68e-09, 0.0291, 17.4, 880.0, 1e20, 3e-300])
def test_costs_block_numbers_read_back_as_numbers(x):
    """The printed ``resources: costs:`` block is YAML: every value must read back as a number
    (YAML 1.1 reads ``5e-05`` as text), equal to x at 3 significant digits."""
    value = yaml.safe_load(f"a: {bench._yaml_float(x)}")["a"]
    assert isinstance(value, (int, float)) and not isinstance(value, bool)
    assert value == pytest.approx(x, rel=5e-3)
