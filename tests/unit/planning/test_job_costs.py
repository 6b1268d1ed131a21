"""Job resources: each job's runtime and memory request follows its size, the config scales it,
and the workflow's jobs carry exactly the planner's numbers."""

from __future__ import annotations

import copy
import math

import pytest
import yaml

from chaosgd.planning import job_costs, plan
from chaosgd.planning.config import typed_overrides, validate_config
from chaosgd.planning.job_costs import COSTS, N_REF, n_params, train_steps
from chaosgd.planning.vocab import ARCHITECTURES, DTYPES

from support.costs import CNN_CGD, FMNIST_CGD, FMNIST_REF, PAPER, USPS_CGD, USPS_REF, planner
from support.workflow import REPO

MB = 1e6


def paper(**sections) -> dict:
    """The paper config with these sections' keys changed."""
    cfg = copy.deepcopy(PAPER)
    for name, values in sections.items():
        cfg[name].update(values)
    return cfg


def cost(name: str) -> float:
    return COSTS[name].seconds


def test_parameter_counts_are_the_models():
    from chaosgd.engine.models import build_model, num_params

    for hidden in (4, 20, 37):
        assert n_params("mlp", hidden) == num_params(build_model("mlp", "relu", hidden))
    assert n_params("cnn", 20) == num_params(build_model("cnn", "relu")) == 1158
    assert N_REF["mlp"] == 5350


def test_every_architecture_and_dtype_has_its_costs():
    for arch in ARCHITECTURES:
        assert f"step.{arch}" in COSTS and f"hvp.{arch}" in COSTS, arch
        # any network carries an ensemble (around a top-k Lyapunov run)
        for dtype in DTYPES:
            assert f"member_{dtype}.{arch}" in COSTS, (dtype, arch)
        if not ARCHITECTURES[arch].exact_curvature:
            continue  # no exact spectral run or N×N tangent map of it is planned
        for kind in ("lowrank", "dense", "tangent"):
            assert f"{kind}.{arch}" in COSTS, (kind, arch)
        assert arch in job_costs.AUTO_CURVATURE and arch in job_costs.RANK_FRACTION
    assert all(c.seconds > 0 and c.unit and c.scaling for c in COSTS.values())


def test_costs_grow_with_the_jobs_size():
    growth = job_costs.growth
    n = N_REF["mlp"]
    # per-step overheads: never below the reference, linear above it
    assert growth("step.mlp", "mlp", n // 10) == 1 and growth("step.mlp", "mlp", 2 * n) == 2
    assert growth("step.mlp", "mlp", n, batch=32) == 4
    assert growth("dense.mlp", "mlp", 2 * n) == 8 and growth("dense.cnn", "cnn", 1158) == 1
    assert growth("readout", "mlp", n // 2) == pytest.approx(1 / 8)
    assert growth("readout", "cnn", 1158) == pytest.approx((1158 / n) ** 3)
    # the rank grows with N and the batch: the tangent update is O(rank·N²)
    assert growth("tangent.mlp", "mlp", 2 * n) == pytest.approx(8, rel=0.01)
    assert growth("tangent.mlp", "mlp", n, batch=16) == pytest.approx(2, rel=0.01)
    # 2·(rank + 30) Hessian-vector products, each ∝ N·batch
    assert growth("lowrank.mlp", "mlp", n, batch=16) == pytest.approx(2 * 530 / 280, rel=0.01)
    assert growth("member_float32.mlp", "mlp", n // 4) == 1
    assert growth("member_float64.mlp", "mlp", 3 * n) == 3


def test_the_bench_measures_every_cost_of_the_table(tmp_path, capsys):
    import json

    import torch

    from chaosgd.tools.bench import cli

    threads = torch.get_num_threads()
    argv = ["costs", "--arch", "mlp", "--hidden", "2", "--steps", "10", "--spectrum-steps", "1"]
    argv += ["--readout-hidden", "2", "--ensemble-steps", "5", "--eps-count", "1"]
    try:
        assert cli.main(argv + ["--json", str(tmp_path / "rows.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    rows = json.loads((tmp_path / "rows.json").read_text())
    names = {r["name"] for r in rows}
    mlp = {n for n in COSTS if n.endswith(".mlp")}
    assert names == mlp - {"dense.mlp"} | {"order_image", "reorth", "readout", "lambda1"}
    assert all(r["seconds"] > 0 and r["ratio"] == r["seconds"] / r["table_s"] for r in rows)
    # reported at the reference size: the N³ readout of a 544-parameter MLP, scaled up
    readout = next(r for r in rows if r["name"] == "readout")
    assert readout["n_params"] == 544
    assert readout["seconds"] == pytest.approx(readout["measured_s"] * (5350 / 544) ** 3)
    # λ1(t)'s O(N²) Krylov products, scaled by N²
    lambda1 = next(r for r in rows if r["name"] == "lambda1")
    assert lambda1["seconds"] == pytest.approx(lambda1["measured_s"] * (5350 / 544) ** 2)
    # its closing block is a config section the planner takes as it is
    out = capsys.readouterr().out
    block = yaml.safe_load(out[out.index("resources:\n") :])
    assert set(block["resources"]["costs"]) == names
    p = planner(costs=block["resources"]["costs"])
    assert p.costs["readout"] == pytest.approx(readout["seconds"], rel=1e-2)


def test_paper_usps_cgd_run_asks_for_its_measured_time_with_headroom():
    p = planner()
    run = p.runs[USPS_CGD]
    assert train_steps(run) == 36480
    req = p.request("train", USPS_CGD)
    measured = (
        0.028 * 36480
    )  # the eigenpairs' median per step, timed alone (docs/costs-and-benchmarks.md)
    assert req.runtime >= 1.5 * measured / 60
    # and not wildly more: the spectrum dominates, the rest is overheads
    assert req.runtime <= 1.5 * 1.3 * measured / 60
    # 36 480 steps × the per-step costs, plus the start-up, × 1.5, in whole minutes
    per_step = cost("step.mlp") + cost("lowrank.mlp") + cost("order_image") * 7291
    assert req.runtime == math.ceil(1.5 * (cost("startup") + 36480 * per_step) / 60)
    # memory: the process, and the dense fallback's Hessian, eigenvectors and workspace
    assert req.mem_mb >= 1.5 * (1000 + 6 * 5350**2 * 8 / MB)
    assert req.mem_mb <= 1.5 * (1000 + 6 * 5350**2 * 8 / MB + 500)


def test_sgd_without_spectrum_asks_for_little():
    p = planner(paper(training={"spectrum": False}))
    sgd = p.request("train", "usps_mlp-relu20_sgd_m0_s1")
    cgd = p.request("train", USPS_CGD)  # CGD computes the spectrum regardless
    assert sgd.runtime < 5 * 60 / 1.5 and sgd.seconds < 36480 * 0.01
    assert sgd.seconds * 10 < cgd.seconds and sgd.runtime < cgd.runtime
    assert sgd.mem_mb < cgd.mem_mb


def test_fashion_mnist_and_cnn_runs():
    p = planner()
    fm = p.request("train", FMNIST_CGD)
    assert train_steps(p.runs[FMNIST_CGD]) == 7500 * 40 == 300000
    assert fm.runtime >= 1.5 * 0.028 * 300000 / 60  # ≈ 2.4 h measured, 3.8 h asked
    usps = p.request("train", USPS_CGD)
    assert fm.runtime > 8 * usps.runtime
    assert fm.mem_mb > usps.mem_mb  # a larger dataset and 8× the step records
    cnn = p.request("train", CNN_CGD)
    # the CNN's dense eigenpairs: 0.278 s per step (docs/costs-and-benchmarks.md), 2.8 h per USPS run
    assert cnn.runtime >= 1.5 * 0.278 * 36480 / 60
    assert cnn.mem_mb < usps.mem_mb  # N = 1158: its Hessian is small


def test_lyapunov_run_with_ten_readouts():
    p = planner()
    assert p.config["lyapunov"]["readouts"] == 10
    lyap, train = p.request("lyapunov", USPS_REF), p.request("train", USPS_CGD)
    # 10 evenly spaced, 8 log-spaced early ones, App. C.2's anchors 10 and 10000
    assert p.config["lyapunov"]["early_readouts"] == 8
    assert p.config["lyapunov"]["anchors"] == [10, 10000]
    readouts = 20 * cost("readout")
    updates = 36480 * cost("tangent.mlp") + math.ceil(36480 / 100) * cost("reorth")
    # λ1(t) every 20 steps (lyapunov.lambda1_every) and at the 20 readouts
    assert p.config["lyapunov"]["lambda1_every"] == 20
    lambda1 = (36480 // 20 + 20) * cost("lambda1")
    assert lyap.seconds == pytest.approx(train.seconds + updates + readouts + lambda1)
    # the eigenpairs and the tangent update through the range basis, 20 graded readouts
    assert lyap.runtime >= 1.5 * ((0.028 + 0.124) * 36480 + 20 * 112) / 60
    # each readout adds its O(N³) cost, × the safety factor
    one = planner(paper(lyapunov={"readouts": 1})).request("lyapunov", USPS_REF)
    assert lyap.runtime - one.runtime == pytest.approx(1.5 * 9 * cost("readout") / 60, abs=1)
    # the tangent map's factors and the readout's copies: ≈ 10 N² float64 matrices more
    assert lyap.mem_mb - train.mem_mb >= 1.5 * 10 * 5350**2 * 8 / MB
    fm = p.request("lyapunov", FMNIST_REF)
    assert fm.runtime > 8 * (lyap.runtime - 1.5 * readouts / 60)


def test_ensembles_scale_with_members_dtypes_and_steps():
    p = planner()
    assert {USPS_REF, FMNIST_REF} <= set(p.references)  # with the CNN's and momentum's
    members = 1 + 5 * 11
    per_step = members * (cost("member_float32.mlp") + cost("member_float64.mlp"))
    req = p.request("ensembles", USPS_REF)
    assert req.seconds == pytest.approx(cost("startup") + 36480 * per_step)
    half = planner(paper(ensembles={"dtypes": ["float32"]}))
    alone = cost("startup") + 36480 * members * cost("member_float32.mlp")
    assert half.request("ensembles", USPS_REF).seconds == pytest.approx(alone)
    fm = p.request("ensembles", FMNIST_REF)
    assert fm.seconds - cost("startup") == pytest.approx(
        (req.seconds - cost("startup")) * 300000 / 36480
    )
    # its distance table: 30 000 recorded states × 56 members × 2 dtypes
    assert fm.mem_mb > req.mem_mb + 1.5 * 30000 * members * 2 * 200 / MB


def test_speed_divides_time_and_safety_multiplies_both():
    base, fast = planner(), planner(speed=2.0)
    careful = planner(safety_factor=3.0)
    for stage, key in (("train", USPS_CGD), ("lyapunov", FMNIST_REF), ("train", CNN_CGD)):
        b = base.request(stage, key)
        assert fast.request(stage, key).runtime == math.ceil(1.5 * b.seconds / 2 / 60)
        assert fast.request(stage, key).mem_mb == b.mem_mb  # a faster node needs no less memory
        assert careful.request(stage, key).runtime == math.ceil(3 * b.seconds / 60)
        assert careful.request(stage, key).mem_mb == math.ceil(3 * b.memory_mb)


def test_floors_and_cap_on_both_sides():
    tiny = validate_config(yaml.safe_load((REPO / "config/tiny.yaml").read_text()))
    run = next(iter(plan.plan_runs(tiny)[0]))
    p = planner(tiny)
    small = p.request("train", run)
    assert small.seconds * 1.5 / 60 < 5 and small.runtime == 5  # below the floor: the floor
    assert planner(tiny, min_runtime=17).runtime("train", run) == 17
    assert planner(tiny, min_runtime=1).runtime("train", run) == math.ceil(1.5 * small.seconds / 60)
    # memory: the floor where the estimate is below it, the estimate where it is above
    assert planner(tiny, base_mem_mb=1, min_mem_mb=1000).mem_mb("train", run) == 1000
    above = planner(tiny, min_mem_mb=1000).request("train", run)
    assert above.mem_mb == math.ceil(1.5 * above.memory_mb) > 1000
    # a long job stays above the floor, and a cap (a partition's MaxTime) caps it
    long = planner(min_runtime=600).request("lyapunov", FMNIST_REF)
    assert long.runtime == math.ceil(1.5 * long.seconds / 60) > 600
    assert planner(max_runtime=1440).runtime("lyapunov", FMNIST_REF) == 1440
    assert planner(max_runtime=1440).runtime("train", USPS_CGD) == planner().runtime(
        "train", USPS_CGD
    )


def test_costs_are_overridden_by_name():
    base = planner().request("lyapunov", USPS_REF)
    cheap = planner(costs={"readout": 100.0}).request("lyapunov", USPS_REF)
    assert base.seconds - cheap.seconds == pytest.approx(20 * (cost("readout") - 100))  # readouts
    with pytest.raises(ValueError, match="resources.costs: unknown cost 'redout'"):
        planner(costs={"redout": 100.0})


def test_every_stage_has_a_request():
    p = planner()
    for stage, key in (
        ("datasets", "fmnist"),
        ("fits", USPS_REF),
        ("figures", "fig1"),
        ("figures", "fig3a"),
        ("report", None),
        ("claims", None),
    ):
        req = p.request(stage, key)
        assert req.runtime >= 5 and req.mem_mb >= 1.5 * 1000, (stage, req)
    # the claims read every run's steps table: more memory than one figure's runs
    assert p.mem_mb("claims") > p.mem_mb("figures", "fig1") > p.mem_mb("report")
    with pytest.raises(ValueError, match="no resource estimate for stage 'plots'"):
        p.request("plots", "x")


def test_command_line_config_values_are_typed_as_in_a_file():
    given = {"resources": {"speed": "2", "safety_factor": "1.5", "costs": {"readout": "1.0e+2"}}}
    given["datasets"] = {"usps": {"local_dir": "/data/usps", "download": "false"}}
    given["download_cache"] = "x"
    typed = typed_overrides(given)
    assert typed["resources"] == {"speed": 2, "safety_factor": 1.5, "costs": {"readout": 100.0}}
    assert typed["datasets"] == {"usps": {"local_dir": "/data/usps", "download": False}}
    assert "download_cache" not in typed  # top-level scalars: Snakemake's own parsing


# -- the workflow's jobs carry the planner's numbers ---------------------------------------------


def _one_run(exp: dict, **datasets) -> tuple[job_costs.JobResources, str]:
    """The planner of a config of one run, ``datasets`` giving image sides."""
    cfg = {
        "experiments": [{"name": "a", "variants": ["sgd"], "seeds": [0], **exp}],
        "lyapunov": {"runs": []},
    }
    if datasets:
        cfg["datasets"] = {name: {"image_side": side} for name, side in datasets.items()}
    p = planner(cfg)
    (rid,) = p.runs
    return p, rid


def test_a_runs_size_is_its_width_depth_and_image_side():
    from chaosgd.engine.models import build_model, num_params

    resnet = {"dataset": "fmnist", "model": "resnet", "hidden": 4, "spectrum": False}
    for depth, side in ((8, 16), (14, 28), (None, 16)):
        p, rid = _one_run({**resnet, "depth": depth}, fmnist=side)
        s = p.runs[rid]
        built = build_model("resnet", "relu", 4, image_side=side, depth=depth)
        assert job_costs.run_n_params(s) == num_params(built)
        assert p.request("train", rid).seconds > 0  # the ResNet has no Hessian rank to ask for
    p, rid = _one_run({"dataset": "fmnist"}, fmnist=28)
    assert job_costs.run_n_params(p.runs[rid]) == 15910  # the paper's text's 784-20-10
    # a ResNet wider than the reference takes longer per step, and a deeper one longer still
    wide = {**resnet, "hidden": 64}
    steps = [_one_run({**wide, "depth": d}) for d in (8, 20)]
    shallow, deep = (p.request("train", rid).seconds for p, rid in steps)
    assert N_REF["resnet"] < job_costs.run_n_params(steps[0][0].runs[steps[0][1]])
    assert deep > 2 * shallow


def test_the_data_of_28x28_images_take_their_memory():
    exp = {"dataset": "fmnist", "spectrum": False, "dtype": "float64"}
    (p16, r16), (p28, r28) = _one_run(exp, fmnist=16), _one_run(exp, fmnist=28)
    extra = p28.request("train", r28).memory_mb - p16.request("train", r16).memory_mb
    # the whole dataset as loaded (float32) and as trained on (float64), 784 pixels for 256
    assert extra == pytest.approx(70000 * (784 - 256) * (4 + 8) / MB)


def _resnet_planner(variants, **lyap) -> job_costs.JobResources:
    exp = {"name": "a", "dataset": "fmnist", "model": "resnet", "hidden": 16, "spectrum": False}
    cfg = {
        "experiments": [{**exp, "variants": variants, "seeds": [0]}],
        "training": {"curvature": "topk", "epochs": 1},
        "lyapunov": {"runs": [{"experiment": "a", "variants": ["sgd"]}], **lyap},
        "ensembles": {"enabled": False},
    }
    return planner(cfg)


def test_topk_curvature_is_priced_by_its_hessian_vector_products():
    p = _resnet_planner(["sgd", "cgd-negative-top5", "cgd-negative-top20"], topk=4)
    sgd, top5, top20 = (p.runs[r] for r in sorted(p.runs, key=lambda r: ("top" in r, len(r), r)))
    steps = train_steps(top5)
    n = job_costs.run_n_params(top5)
    hvp = cost("hvp.resnet") * job_costs.growth("hvp.resnet", "resnet", n)
    t5 = p.request("train", top5.run_id).seconds
    t20 = p.request("train", top20.run_id).seconds
    # 15 pairs more, each TOPK_HVPS_PER_PAIR products a step
    assert t20 - t5 == pytest.approx(15 * job_costs.TOPK_HVPS_PER_PAIR * hvp * steps, rel=1e-9)
    # and the Lanczos basis of 12 N-vectors a pair
    m5 = p.request("train", top5.run_id).memory_mb
    m20 = p.request("train", top20.run_id).memory_mb
    assert m20 - m5 == pytest.approx(15 * job_costs.TOPK_BASIS_PER_PAIR * n * 8 / MB, rel=1e-9)


def test_a_topk_lyapunov_run_costs_k_products_a_step_and_order_kn_memory():
    few, many = _resnet_planner(["sgd"], topk=4), _resnet_planner(["sgd"], topk=40)
    (rid,) = few.runs
    s = few.runs[rid]
    n, steps = job_costs.run_n_params(s), train_steps(s)
    hvp = cost("hvp.resnet") * job_costs.growth("hvp.resnet", "resnet", n)
    a, b = few.request("lyapunov", rid), many.request("lyapunov", rid)
    assert b.seconds - a.seconds >= 36 * hvp * steps  # one product of k vectors every step
    # O(kN): the block, its product, Q0, a copy, and the anchors' vectors (10 and 10000,
    # clipped to the run: 2); nowhere near an N×N matrix (N = 272k: 590 GB)
    blocks = 4 + 2
    assert b.memory_mb - a.memory_mb == pytest.approx(36 * blocks * n * 8 / MB, rel=1e-9)
    assert b.mem_mb < n * n * 8 / MB / 100


def test_ensembles_around_a_topk_map_count_three_strategies():
    """Around a top-k Lyapunov run the ensembles have the reference and 3 strategies × ε
    (max chaos, chaotic, random; Fig. 3a's other two need the bottom of the spectrum)."""
    p = planner(paper(lyapunov={"topk": 8}, ensembles={"dtypes": ["float32"]}))
    members = 1 + 3 * len(PAPER["ensembles"]["eps"])
    req = p.request("ensembles", USPS_REF)
    assert req.seconds == pytest.approx(
        cost("startup") + 36480 * members * cost("member_float32.mlp")
    )
    exact = planner(paper(ensembles={"dtypes": ["float32"]})).request("ensembles", USPS_REF)
    assert exact.seconds - cost("startup") == pytest.approx(
        (req.seconds - cost("startup")) * (1 + 5 * 11) / members
    )


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config").glob("*.yaml")))
def test_every_job_of_every_shipped_config_is_priced_while_planning(name, monkeypatch):
    """A missing cost would end the workflow when Snakemake first asks for that job's
    resources, after the jobs before it ran: planning prices every run's and reference's job."""
    asked = []
    real = job_costs.JobResources.request

    def request(self, stage, key=None):
        asked.append((stage, key))
        return real(self, stage, key)

    monkeypatch.setattr(job_costs.JobResources, "request", request)
    p = planner(yaml.safe_load((REPO / "config" / name).read_text()))
    stages = {stage for stage, _ in asked}
    assert {key for stage, key in asked if stage in ("train", "lyapunov")} == set(p.runs)
    for ref in p.references:
        assert ("ensembles", ref) in asked and ("fits", ref) in asked
    assert stages <= {"train", "lyapunov", "ensembles", "fits"}


def test_a_cost_the_table_lacks_stops_the_planning(monkeypatch):
    monkeypatch.delitem(job_costs.COSTS, "member_float32.mlp")
    with pytest.raises(KeyError, match="member_float32.mlp"):
        planner()
