"""Runs made with other settings than the config plans: listed by what differs (never by a
setting that cannot change a result), and refused at parse time unless Snakemake made them
itself, which it tells by its own records (whose layout a real Snakemake run holds us to)."""

from __future__ import annotations

import json
import subprocess
import sys
from base64 import urlsafe_b64encode
from pathlib import Path

import pytest

from chaosgd.planning import plan
from chaosgd.planning.stale import (
    Difference,
    OtherSettings,
    differing_by_config,
    made_by_snakemake,
    made_from,
    refuse_other_settings,
)

from support.recorded import CGD, SGD, config, write_ensembles, write_runs


def test_a_run_made_with_another_lr_is_listed(tmp_path):
    cfg = config(lr=0.02)
    write_runs(tmp_path, cfg, {CGD: {"lr": 0.01}})
    assert differing_by_config(cfg, tmp_path) == [
        Difference(tmp_path / "train" / CGD, "lr", 0.01, 0.02)
    ]


def test_checkpoint_cadence_and_device_never_count(tmp_path):
    cfg = config()
    changed = {"checkpoint_every": 7, "device": "cuda"}
    write_runs(tmp_path, cfg, {CGD: changed, SGD: changed})
    assert differing_by_config(cfg, tmp_path) == []


def test_a_lyapunov_run_s_readouts_and_cadence_are_compared(tmp_path):
    cfg = config()
    write_runs(tmp_path, cfg, {SGD: {"lyapunov": {"readout_steps": [1, 2], "lambda1_every": 3}}})
    found = differing_by_config(cfg, tmp_path)
    assert [(d.folder.name, d.setting, d.recorded) for d in found] == [
        (SGD, "lyapunov.readout_steps", [1, 2]),
        (SGD, "lyapunov.lambda1_every", 3),
    ]
    # the same runs under a config asking for more readouts
    more = config()
    more["lyapunov"]["readouts"] += 1
    write_runs(tmp_path, cfg)
    (d,) = differing_by_config(more, tmp_path)
    assert d.setting == "lyapunov.readout_steps" and len(d.configured) > len(d.recorded)


def test_a_setting_not_recorded_counts_and_a_damaged_run_json_is_left_to_its_reader(tmp_path):
    cfg = config()
    write_runs(tmp_path, cfg)
    info = json.loads((tmp_path / "train" / CGD / "run.json").read_text())
    del info["settings"]["epochs"]
    (tmp_path / "train" / CGD / "run.json").write_text(json.dumps(info))
    (tmp_path / "train" / SGD / "run.json").write_text('{"run_id": ')
    (d,) = differing_by_config(cfg, tmp_path)
    assert (d.setting, d.recorded) == ("epochs", None)


def test_an_ensemble_made_with_other_ensemble_settings_is_listed(tmp_path):
    cfg = config()
    write_runs(tmp_path, cfg)
    write_ensembles(tmp_path, cfg, eps=[0.5], direction_seed=3)
    folder = tmp_path / "ensembles" / SGD
    assert differing_by_config(cfg, tmp_path) == [
        Difference(folder, "ensembles.eps", [0.5], [float(e) for e in cfg["ensembles"]["eps"]]),
        Difference(folder, "ensembles.direction_seed", 3, cfg["ensembles"]["direction_seed"]),
    ]
    # the same files under a config that asks for them
    asked = json.loads(json.dumps(cfg))
    asked["ensembles"].update(eps=[0.5], main_eps=0.5, direction_seed=3)
    assert differing_by_config(asked, tmp_path) == []
    # the reference's own settings, as the ensemble recorded them, count too
    write_ensembles(tmp_path, config(lr=0.02))
    (d,) = differing_by_config(cfg, tmp_path)
    assert (d.folder, d.setting, d.recorded) == (folder, "lr", 0.02)


def test_only_the_ensembles_and_fits_go_with_an_ensemble_made_otherwise(tmp_path):
    cfg = config()
    write_runs(tmp_path, cfg)
    write_ensembles(tmp_path, cfg, record_every=9)
    runs, groups, lyapunov = plan.plan_runs(cfg)
    references = plan.ensemble_references(cfg, runs, lyapunov)
    figures = plan.figures(runs, groups, lyapunov, references, cfg["ensembles"])
    (tmp_path / "figures").mkdir()
    for name in figures:
        (tmp_path / "figures" / f"{name}.png").write_bytes(b"")
    moved = made_from(differing_by_config(cfg, tmp_path), figures, tmp_path)
    folders = [p for p in moved if p.parent.name != "figures"]
    assert folders == [tmp_path / "ensembles" / SGD, tmp_path / "fits" / SGD]
    drawn = {p.stem for p in moved if p.parent.name == "figures"}
    from_ensembles = {
        n for n, f in figures.items() if any("/ensembles/" in i or "/fits/" in i for i in f.inputs)
    }
    assert drawn == from_ensembles and drawn and drawn != set(figures)


RECORD = {"record_format_version": 6, "params": ["--lr 0.01"]}


def _record(metadata: Path, output: str, **record) -> None:
    """A Snakemake record of ``output`` as Snakemake 9 writes it: a file named by the urlsafe
    base64 of the output's path."""
    metadata.mkdir(parents=True, exist_ok=True)
    name = urlsafe_b64encode(output.encode()).decode()
    (metadata / name).write_text(json.dumps({"rule": "train_run", **record}))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory whose results hold CGD made with lr 0.01, the config asking 0.02."""
    monkeypatch.chdir(tmp_path)
    cfg = config(lr=0.02)
    write_runs(Path("results"), cfg, {CGD: {"lr": 0.01}})
    runs, _, lyapunov = plan.plan_runs(cfg)
    return lambda **kw: refuse_other_settings(cfg, runs, lyapunov, "c.yaml", **kw)


def test_a_run_snakemake_made_is_left_to_snakemake(workdir):
    _record(Path(".snakemake/metadata"), f"results/train/{CGD}/run.json", **RECORD)
    workdir()  # no error: Snakemake reruns it, its params having changed


@pytest.mark.parametrize(
    "record",
    [None, {**RECORD, "record_format_version": 5}, {**RECORD, "params": None}],
    ids=["none", "old-format", "no-params"],
)
def test_a_run_from_elsewhere_stops_the_workflow_naming_the_setting(workdir, record):
    if record is not None:  # one Snakemake compares no params with: it would rerun nothing
        _record(Path(".snakemake/metadata"), f"results/train/{CGD}/run.json", **record)
    with pytest.raises(OtherSettings) as err:
        workdir()
    text = str(err.value)
    assert (
        f"made with other settings: results/train/{CGD}/: lr 0.01 here, 0.02 in the config\n"
        in (text)
    )
    assert text.endswith("\n  python -m chaosgd.tools.stale --configfile c.yaml --move")
    assert SGD not in text and "--config values" not in text
    with pytest.raises(OtherSettings, match="put the --config values into a YAML file"):
        workdir(overrides=True)


def test_an_ensemble_from_elsewhere_stops_the_workflow_unless_snakemake_made_it(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    cfg = config()
    write_runs(Path("results"), cfg)
    write_ensembles(Path("results"), cfg, dtypes=["float64"])
    runs, _, lyapunov = plan.plan_runs(cfg)
    with pytest.raises(OtherSettings) as err:
        refuse_other_settings(cfg, runs, lyapunov, "c.yaml")
    assert (
        f"made with other settings: results/ensembles/{SGD}/: ensembles.dtypes "
        f'["float64"] here, {json.dumps(cfg["ensembles"]["dtypes"])} in the config\n'
        in str(err.value)
    )
    _record(Path(".snakemake/metadata"), f"results/ensembles/{SGD}/ensemble.json", **RECORD)
    refuse_other_settings(cfg, runs, lyapunov, "c.yaml")


@pytest.mark.slow  # Snakemake's start and scheduler: over 2 s
def test_snakemake_s_own_records_are_found(tmp_path):
    """Runs Snakemake: if it keeps its records otherwise, this fails rather than every run
    Snakemake made counting as one from elsewhere (the Snakefile would refuse them)."""
    (tmp_path / "Snakefile").write_text(
        'rule make:\n    output: "results/train/r/run.json"\n    params: lr="0.01"\n'
        '    shell: "echo {{}} > {output}"\n'
    )
    snakemake = Path(sys.executable).parent / "snakemake"
    subprocess.run(
        [snakemake, "--cores", "1", "--quiet", "all"], cwd=tmp_path, check=True, capture_output=True
    )
    metadata = tmp_path / ".snakemake" / "metadata"
    assert made_by_snakemake("results/train/r/run.json", metadata)
    assert not made_by_snakemake("results/train/other/run.json", metadata)


def test_a_run_json_from_before_a_setting_existed_records_its_value_then(tmp_path):
    """image_side and depth came later: a run.json without them was made at 16x16 with the
    paper's fixed depths, so under a config asking that it is not made otherwise."""
    cfg = config()
    write_runs(tmp_path, cfg)
    path = tmp_path / "train" / CGD / "run.json"
    info = json.loads(path.read_text())
    for key in ("image_side", "depth"):
        del info["settings"][key]
    path.write_text(json.dumps(info))
    assert differing_by_config(cfg, tmp_path) == []
    # a setting without such a past still counts when missing (it was never left out)
    del info["settings"]["epochs"]
    path.write_text(json.dumps(info))
    assert [d.setting for d in differing_by_config(cfg, tmp_path)] == ["epochs"]


def test_a_lyapunov_run_recorded_before_topk_existed_is_the_exact_map(tmp_path):
    cfg = config()
    write_runs(tmp_path, cfg)
    for path in (tmp_path / "train").glob("*/run.json"):
        info = json.loads(path.read_text())
        info["result"].get("lyapunov", {}).pop("topk", None)
        path.write_text(json.dumps(info))
    assert differing_by_config(cfg, tmp_path) == []
    # the same files under a config asking for the 3 leading exponents only
    topk = json.loads(json.dumps(cfg))
    topk["lyapunov"]["topk"] = 3
    topk["ensembles"]["enabled"] = False
    found = {
        (d.folder.name, d.setting, d.recorded, d.configured)
        for d in differing_by_config(topk, tmp_path)
    }
    assert (SGD, "lyapunov.topk", 0, 3) in found
