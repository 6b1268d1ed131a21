"""Planning: experiments expand to runs, run settings round-trip through the command line."""

from __future__ import annotations

import argparse
import re

import pytest

from chaosgd.planning import feasibility, plan
from chaosgd.planning.config import validate_config
from chaosgd.planning.run_settings import RunSettings, Variant


def config(*experiments, **training):
    return validate_config({"experiments": list(experiments), "training": training})


def test_paper_config_expands_to_the_paper_runs():
    runs, groups = plan.expand_runs(validate_config({}))
    assert len(groups["fig1"]) == 12  # 4 variants x 3 seeds
    assert len(groups["fig2"]) == 3 + 3 * 3  # SGD + chaotic from 3 onsets, 3 seeds each
    # the selection groups share fig1's SGD baselines: they are trained once
    for selection in ("selection", "selection_k10"):
        assert set(groups["fig1"]) & set(groups[selection]) == {
            f"usps_mlp-relu20_sgd_m0_s{s}" for s in range(3)
        }
    assert len(runs) == sum(len(g) for g in groups.values()) - 6
    fig2 = runs["usps_mlp-sigmoid20_cgd-chaotic_on5000_m0_s2"]
    assert (fig2.activation, fig2.onset, fig2.seed, fig2.lr, fig2.batch_size, fig2.epochs) == (
        "sigmoid",
        5000,
        2,
        0.001,
        8,
        40,
    )
    assert runs["usps_cnn-relu_cgd-positive_m0_s0"].model == "cnn"


def test_paper_config_lyapunov_runs_are_the_ensemble_references():
    """App. C.3: the MLP on USPS and FashionMNIST, the CNN, and momentum 0.9 each get a
    Lyapunov spectrum and perturbed ensembles; the reference's k = 100 for every prune set."""
    cfg = validate_config({})
    runs, groups, lyapunov = plan.plan_runs(cfg)
    refs = plan.ensemble_references(cfg, runs, lyapunov)
    assert refs == {
        "usps_mlp-relu20_sgd_m0_s0": "fig1",
        "fmnist_mlp-relu20_sgd_m0_s0": "figB1_fmnist",
        "usps_cnn-relu_sgd_m0_s0": "figB1_cnn",
        "usps_mlp-relu20_sgd_m0.9_s0": "momentum",
    }
    assert runs["usps_mlp-relu20_sgd_m0.9_s0"].momentum == 0.9
    assert all(runs[r].spectrum for r in refs)
    k100 = {runs[r].variant for r in groups["selection"]} - {"sgd"}
    assert k100 == {
        f"cgd-{p}-{s}100" for p in ("chaotic", "negative", "positive") for s in ("top", "random")
    }


def test_sgd_ignores_onsets_and_momentum_is_in_the_name():
    runs, groups = plan.expand_runs(
        config(
            {
                "name": "a",
                "variants": ["sgd", "cgd-negative"],
                "onsets": [0, 7],
                "momentum": [0, 0.9],
                "seeds": [1],
            }
        )
    )
    assert groups["a"] == [
        "usps_mlp-relu20_sgd_m0_s1",
        "usps_mlp-relu20_sgd_m0.9_s1",
        "usps_mlp-relu20_cgd-negative_m0_s1",
        "usps_mlp-relu20_cgd-negative_m0.9_s1",
        "usps_mlp-relu20_cgd-negative_on7_m0_s1",
        "usps_mlp-relu20_cgd-negative_on7_m0.9_s1",
    ]


def test_group_overrides_reach_the_run_id_and_conflicts_need_a_tag():
    a = {"name": "a", "variants": ["sgd"], "seeds": [0]}
    b = {"name": "b", "variants": ["sgd"], "seeds": [0], "lr": 0.01}
    runs, groups = plan.expand_runs(config(a, b))
    assert groups["b"] == ["usps_mlp-relu20_sgd_m0_s0_lr0.01"]
    assert runs["usps_mlp-relu20_sgd_m0_s0_lr0.01"].lr == 0.01
    assert runs["usps_mlp-relu20_sgd_m0_s0"].lr == 0.001
    # a CNN ignores hidden, so its run id does not spell it: two CNN groups that differ only
    # there define one run name with two settings
    c = {"name": "c", "model": "cnn", "variants": ["sgd"], "seeds": [0], "hidden": 5}
    with pytest.raises(
        ValueError, match="'c' and 'd' both define run usps_cnn-relu_sgd_m0_s0.*tag"
    ):
        plan.expand_runs(config(c, {**c, "name": "d", "hidden": 6}))
    runs, groups = plan.expand_runs(config(c, {**c, "name": "d", "hidden": 6, "tag": "h6"}))
    assert groups["d"] == ["usps_cnn-relu_sgd_m0_s0_h6"]


def test_bad_experiments_are_named():
    with pytest.raises(ValueError, match="name 'a' is used twice"):
        plan.expand_runs(config({"name": "a"}, {"name": "a"}))
    cfg = validate_config(
        {"datasets": {"fmnist": {}}, "experiments": [{"name": "a", "dataset": "usps"}]}
    )
    with pytest.raises(ValueError, match=r"experiments\[a\].dataset: 'usps' is not configured"):
        plan.expand_runs(cfg)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("sgd", Variant("sgd", "sgd")),
        ("cgd-chaotic", Variant("cgd-chaotic", "cgd", "chaotic")),
        ("cgd-negative-top10", Variant("cgd-negative-top10", "cgd", "negative", "top_k", 10)),
        (
            "cgd-positive-random3-noise",
            Variant("cgd-positive-random3-noise", "cgd", "positive", "random_k", 3, True),
        ),
    ],
)
def test_variant_names(name, expected):
    assert Variant.parse(name) == expected


@pytest.mark.parametrize("bad", ["adam", "cgd", "cgd-neg", "cgd-negative-top0", "cgd-negative-top"])
def test_bad_variant_names(bad):
    with pytest.raises(ValueError, match="unknown optimizer variant"):
        Variant.parse(bad)


def test_run_settings_round_trip_through_the_command_line():
    runs, _ = plan.expand_runs(validate_config({}))
    parser = argparse.ArgumentParser()
    RunSettings.add_arguments(parser)
    for settings in list(runs.values())[:5]:
        assert RunSettings.from_namespace(parser.parse_args(settings.to_args())) == settings


def test_figures_follow_the_groups():
    cfg = config(
        {"name": "a", "variants": ["sgd"], "spectrum": False, "seeds": [0, 1]},
        {"name": "b", "variants": ["cgd-negative"]},
    )
    cfg["lyapunov"]["runs"] = [{"experiment": "a", "seeds": [1], "variants": []}]
    runs, groups = plan.expand_runs(cfg)
    runs, lyap = plan.lyapunov_runs(cfg, runs, groups)
    assert lyap == {"a": ["usps_mlp-relu20_sgd_m0_s1"]}
    assert (
        runs["usps_mlp-relu20_sgd_m0_s1"].spectrum
        and not runs["usps_mlp-relu20_sgd_m0_s0"].spectrum
    )
    figures = plan.figures(runs, groups, lyap)
    kinds = {name: (f.kind, f.experiment, len(f.runs)) for name, f in figures.items()}
    assert kinds == {
        "a": ("curves", "a", 2),
        "a_validation": ("validation", "a", 2),
        "figB2_a": ("spectrum", "a", 1),  # only the run with a tangent map has a spectrum
        "figB2hist_a": ("spectra", "a", 1),
        "figC1_a": ("exponents", "a", 1),
        "figC2_a": ("subspaces", "a", 1),
        "b": ("curves", "b", 3),
        "b_validation": ("validation", "b", 3),
        "figB2_b": ("spectrum", "b", 3),
        "figB2hist_b": ("spectra", "b", 3),
    }
    assert figures["figC1_a"].inputs == (
        "results/lyapunov/usps_mlp-relu20_sgd_m0_s1/exponents.parquet",
        "results/lyapunov/usps_mlp-relu20_sgd_m0_s1/lambda1.parquet",
        "results/train/usps_mlp-relu20_sgd_m0_s1/run.json",
    )
    # the eigenvalue distributions read what the runs with the spectrum keep
    assert figures["figB2hist_a"].inputs == (
        "results/train/usps_mlp-relu20_sgd_m0_s1/spectra.parquet",
        "results/train/usps_mlp-relu20_sgd_m0_s1/run.json",
    )


def test_bad_lyapunov_selection_is_named():
    cfg = config({"name": "a", "variants": ["sgd"]})
    cfg["lyapunov"]["runs"] = [{"experiment": "a", "variants": ["cgd-negative"], "seeds": []}]
    runs, groups = plan.expand_runs(cfg)
    with pytest.raises(
        ValueError, match=r"lyapunov.runs\[0\].variants: \['cgd-negative'\] not in experiment 'a'"
    ):
        plan.lyapunov_runs(cfg, runs, groups)
    cfg["lyapunov"]["runs"] = [{"experiment": "zz", "variants": [], "seeds": []}]
    with pytest.raises(ValueError, match="no experiment named 'zz'"):
        plan.lyapunov_runs(cfg, runs, groups)


def test_ensemble_references_and_their_figures():
    cfg = config({"name": "a", "variants": ["sgd", "cgd-negative"], "seeds": [0, 1]})
    cfg["lyapunov"]["runs"] = [{"experiment": "a", "variants": [], "seeds": []}]
    runs, groups = plan.expand_runs(cfg)
    runs, lyap = plan.lyapunov_runs(cfg, runs, groups)
    refs = plan.ensemble_references(cfg, runs, lyap)
    # CGD runs carry a tangent map but are no references; two references get seed labels
    assert refs == {"usps_mlp-relu20_sgd_m0_s0": "a_m0_s0", "usps_mlp-relu20_sgd_m0_s1": "a_m0_s1"}
    figures = plan.figures(runs, groups, lyap, refs, cfg["ensembles"])
    assert figures["fig3a"].runs == tuple(refs)
    assert figures["fig3b_a_m0_s1"].options == ("--eps", "0.1")
    assert (
        "results/fits/usps_mlp-relu20_sgd_m0_s1/bounds.parquet" in figures["figC5_a_m0_s1"].inputs
    )
    assert "Reproduces App. C.4" in figures["figC4_a_m0_s0"].caption
    cfg["ensembles"]["main_eps"] = 0.2
    with pytest.raises(ValueError, match="main_eps: 0.2 is not one of ensembles.eps"):
        plan.ensemble_references(cfg, runs, lyap)
    cfg["ensembles"]["enabled"] = False
    assert plan.ensemble_references(cfg, runs, lyap) == {}


# --- what a later stage cannot handle, refused while planning ----------------------------------


def short(anchors=(2,), train_size=48, readouts=2, early_readouts=0, seeds=(0,), **exp):
    """A 6-step run (48 images, batch 8, 1 epoch) with a tangent map and an ensemble."""
    return validate_config(
        {
            "training": {"train_size": train_size, "batch_size": 8, "epochs": 1},
            "experiments": [{"name": "e", "variants": ["sgd"], "seeds": list(seeds), **exp}],
            "lyapunov": {
                "runs": [{"experiment": exp.get("name", "e")}],
                "readouts": readouts,
                "early_readouts": early_readouts,
                "anchors": list(anchors),
            },
        }
    )


def plan_all(cfg) -> dict:
    """Every planning step the Snakefile takes (workflow/rules/common.smk); the figures."""
    runs, groups, lyap = plan.plan_runs(cfg)
    refs = plan.ensemble_references(cfg, runs, lyap)
    return plan.figures(runs, groups, lyap, refs, cfg["ensembles"])


@pytest.mark.parametrize("anchors", [[6], [100], [6, 100], []], ids=str)
def test_anchors_that_leave_no_later_readout_are_refused(anchors):
    """App. C.2 compares the readouts after t0 with t0: an anchor at or past the last step
    (clipped to it) leaves figC2 with an empty table and claims 9 and 16 with nothing."""
    with pytest.raises(ValueError) as err:
        plan_all(short(anchors))
    assert str(err.value).startswith(
        f"lyapunov.anchors: {anchors} leaves no reference time t0 before the last readout (step "
        "6) of run usps_mlp-relu20_sgd_m0_s0, which has 6 steps (48 images / batch 8 x 1 epochs)"
    )
    assert "figC2_e" in str(err.value) and str(err.value).endswith("Add an anchor below 6")


@pytest.mark.parametrize("anchors", [[5], [1], [5, 100]], ids=str)
def test_an_anchor_before_the_last_step_is_enough(anchors):
    """The advice followed: one anchor below the run's length, the others clipped."""
    assert "figC2_e" in plan_all(short(anchors))


def test_the_anchor_check_is_the_tangent_maps_schedule():
    """A subspaces row is written at each readout after an anchor (TangentHook._exact): the
    planner passes exactly the configs whose schedule has one."""
    from chaosgd.planning.schedule import anchor_steps, readout_steps

    for anchors in ([], [1], [5], [6], [9], [3, 9]):
        for readouts in (1, 2, 6):
            total = 6
            kept = anchor_steps(anchors, total) if anchors else []
            steps = readout_steps(total, readouts, 0, kept)
            rows = [(a, t) for a in kept for t in steps if t > a]
            try:
                plan.plan_runs(short(anchors, readouts=readouts))
                planned = True
            except ValueError:
                planned = False
            assert planned == bool(rows), (anchors, readouts)


def test_a_one_step_tangent_map_is_refused_naming_its_selection():
    """No anchor can be below the end of a 1-step run: the advice is a longer run."""
    with pytest.raises(ValueError) as err:
        plan_all(short([1], train_size=8, readouts=1))
    assert str(err.value).startswith(
        "lyapunov.runs[0]: run usps_mlp-relu20_sgd_m0_s0 has only 1 steps (8 images / batch 8 x "
        "1 epochs); App. C.2 compares"
    )
    assert str(err.value).endswith("make it longer (epochs, train_size, batch_size)")
    plan_all(short([1], train_size=16, readouts=1))  # 2 steps


def test_recorded_steps_are_the_ensembles():
    """The planner checks the fits against the ensembles' own record steps (one home,
    chaosgd.planning.schedule, which the lockstep ensembles use)."""
    from chaosgd.planning import schedule
    from chaosgd.runs import lockstep

    assert lockstep.record_steps is schedule.record_steps
    for total in (1, 2, 6, 37):
        for every in (1, 2, 5, 40):
            for extra in ((), (1,), (3, 6, 50)):
                assert schedule.record_steps(total, every, extra) == lockstep.record_steps(
                    total, every, extra
                )


def test_an_ensemble_too_sparse_to_fit_is_refused():
    """The fits need distances at 2 steps after 0: a reference whose ensemble records fewer is
    refused, naming ensembles.record_every (the anchors check refuses such runs first, in the
    Snakefile's order: this guards the fits on their own)."""
    cfg = short([1], train_size=8, readouts=1)
    runs, groups = plan.expand_runs(cfg)
    lyap = {"e": groups["e"]}
    with pytest.raises(ValueError) as err:
        plan.ensemble_references(cfg, runs, lyap)
    assert str(err.value).startswith(
        "ensembles.record_every: reference usps_mlp-relu20_sgd_m0_s0 has 1 steps (8 images / "
        "batch 8 x 1 epochs), so its ensemble records distances after step 0 at step 1 only"
    )
    assert str(err.value).endswith(
        "make the run 2 steps or longer (epochs, train_size, batch_size)"
    )
    # 2 steps, recorded every 10: only the last step and the readouts
    cfg = short([1], train_size=16, readouts=1)
    cfg["ensembles"]["record_every"] = 10
    runs, groups = plan.expand_runs(cfg)
    assert plan.ensemble_references(cfg, runs, {"e": groups["e"]})  # the readout at step 1
    cfg["lyapunov"]["anchors"], cfg["lyapunov"]["readouts"] = [2], 1
    with pytest.raises(ValueError, match="at step 2 only.*lower ensembles.record_every below 2"):
        plan.ensemble_references(cfg, runs, {"e": groups["e"]})
    cfg["ensembles"]["record_every"] = 1
    assert plan.ensemble_references(cfg, runs, {"e": groups["e"]})


def test_the_file_names_are_the_rules():
    """RUN_FILES and FIGURE_FILES name every file or folder the rules make of a run id or a
    figure name (the tables' paths too)."""
    from support.workflow import REPO

    text = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    text += " ".join(t.path() for t in vars(plan).values() if hasattr(t, "filename"))
    parts = {
        part.replace("{ext}", ext)
        for path in re.findall(r"[\w.{}-]*/[\w/.{}-]*\{(?:run|figure)\}[\w/.{}-]*", text)
        for part in path.split("/")
        if "{run}" in part or "{figure}" in part
        for ext in ("pdf", "png", "parquet")
    }
    assert {"{run}", "{run}.log", "{figure}.parquet"} <= parts
    assert parts <= set(feasibility.RUN_FILES) | set(feasibility.FIGURE_FILES)


def test_atomic_temporary_names_are_as_long_as_the_planners(tmp_path):
    from chaosgd.runs.artifacts import atomic_path

    with atomic_path(tmp_path / "x.parquet") as tmp:
        assert len(tmp.name) == len(feasibility.ATOMIC.format(name="x.parquet"))


def test_a_tag_too_long_for_a_file_name_is_refused():
    """The run id is a folder and a log's name (<run>.log): at most 255 bytes."""
    with pytest.raises(ValueError) as err:
        plan.expand_runs(short(tag="t" * 240))
    message = str(err.value)
    assert message.startswith("experiments[e].tag: run id usps_mlp-relu20_sgd_m0_s0_ttt")
    assert "a file name of 270 bytes" in message
    assert message.endswith(
        "more than the 255 a file name may have; shorten the tag by 15 characters or more"
    )
    # the advice followed: 15 characters less
    runs, _ = plan.expand_runs(short(tag="t" * 225))
    assert max(len(r) for r in runs) + len(".log") == 255


@pytest.mark.parametrize("seeds", [(0,), (0, 1)], ids=["one-reference", "two-references"])
def test_an_experiment_name_too_long_for_its_figures_is_refused(seeds):
    """The longest figure file of an experiment is the temporary file of <name>_validation's
    table, or of a reference's figures when it has several (figC5_<name>_m0_s1): the advice
    names the length that fits all of them."""
    name = "e" * 240
    with pytest.raises(ValueError) as err:
        plan_all(short(name=name, seeds=seeds))
    message = str(err.value)
    assert message.startswith(f"experiments[{name}].name: a name of 240 characters makes file ")
    limit = int(re.search(r"at most (\d+) characters$", message)[1])
    assert limit == (222 if len(seeds) == 1 else 221)
    figures = plan_all(short(name="e" * limit, seeds=seeds))
    longest = max(
        feasibility.longest_file_name(feasibility.FIGURE_FILES, figure=f) for f in figures
    )
    assert len(longest) <= 255
    with pytest.raises(ValueError, match="at most"):
        plan_all(short(name="e" * (limit + 1), seeds=seeds))


def test_spectral_runs_of_a_network_without_exact_curvature_are_refused():
    """The ResNet's N×N Hessian is not affordable: CGD, the spectrum and a tangent map of it
    are refused while planning, naming the key; plain SGD of it plans."""
    resnet = {"name": "r", "dataset": "usps", "model": "resnet", "hidden": 4, "seeds": [0]}

    def config(*experiments):
        return validate_config({"experiments": list(experiments), "lyapunov": {"runs": []}})

    runs, _, _ = plan.plan_runs(config({**resnet, "variants": ["sgd"], "spectrum": False}))
    assert [s.model for s in runs.values()] == ["resnet"]
    cases = [
        (
            config({**resnet, "variants": ["sgd", "cgd-negative-top5"], "spectrum": False}),
            "experiments[r].variants",
        ),
        (config({**resnet, "variants": ["sgd"]}), "experiments[r].spectrum"),  # the default
        (short(model="resnet", hidden=4, spectrum=False), "lyapunov.runs[0]"),
    ]
    for cfg, where in cases:
        with pytest.raises(ValueError) as err:
            plan.plan_runs(cfg)
        text = str(err.value)
        assert text.startswith(f"{where}: run ") and "17462 parameters" in text, text
    # the paper's networks have exact curvature: the same settings plan
    plan.plan_runs(short(model="cnn"))


# the sorted run ids of the paper config (81: 77 training runs and 4 Lyapunov runs) before the
# image side and depth were settings; their names must not change, or every result of a paper
# run made before would be stale
PAPER_RUN_IDS = "018e7633630ba094f403d42a582d1a04698013ce3c49dbbe4dc8926025c9600c"


def test_the_paper_configs_run_ids_are_unchanged(repo):
    import hashlib

    import yaml

    for cfg in ({}, yaml.safe_load((repo / "config/config.yaml").read_text())):
        runs, _, _ = plan.plan_runs(validate_config(cfg))
        assert len(runs) == 81
        digest = hashlib.sha256("\n".join(sorted(runs)).encode()).hexdigest()
        assert digest == PAPER_RUN_IDS
        assert {(s.image_side, s.depth) for s in runs.values()} == {(16, None)}


def test_the_datasets_stage_gets_the_image_side():
    cfg = validate_config({})
    assert plan.datasets_args(cfg, "fmnist") == "--resize reference --image-side 16"
    cfg = validate_config({"datasets": {"fmnist": {"image_side": 28}, "usps": {}}})
    assert plan.datasets_args(cfg, "fmnist").endswith("--image-side 28")
    assert plan.datasets_args(cfg, "usps").endswith("--image-side 16")


def test_captions_name_the_models_size():
    cfg = validate_config(
        {
            "datasets": {"fmnist": {"image_side": 28}},
            "experiments": [
                {"name": "m", "dataset": "fmnist", "variants": ["sgd"], "seeds": [0]},
                {
                    "name": "r",
                    "dataset": "fmnist",
                    "model": "resnet",
                    "depth": 8,
                    "hidden": 4,
                    "variants": ["sgd"],
                    "seeds": [0],
                    "spectrum": False,
                },
            ],
            "lyapunov": {"runs": []},
        }
    )
    runs, groups = plan.expand_runs(cfg)
    mlp = plan.describe_runs([runs[r] for r in groups["m"]])
    resnet = plan.describe_runs([runs[r] for r in groups["r"]])
    assert mlp.startswith("fmnist (28×28), MLP 784-20-10 (relu)")
    assert resnet.startswith("fmnist (28×28), ResNet-8 of width 4 (relu)")
    assert groups["r"] == ["fmnist_resnet8-relu4_sgd_m0_s0"]
