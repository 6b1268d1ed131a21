"""Stale outputs: what a config no longer makes is listed, moved (never deleted) with ``--move``,
left out of an archive export, and the current outputs stay where they are, untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from chaosgd import report
from chaosgd.planning import plan
from chaosgd.planning.config import validate_config
from chaosgd.planning.stale import STALE, find_stale, listing, planned_by_config
from chaosgd.planning.tables import DISTANCES, EXPONENTS, FITS, STEPS
from chaosgd.tools import archive, stale

from support import recorded
from support.recorded import write_runs
from support.workflow import REPO


def experiment(name, **keys):
    return {
        "name": name,
        "dataset": "usps",
        "model": "mlp",
        "activation": "relu",
        "variants": ["sgd", "cgd-chaotic"],
        "seeds": [0],
        **keys,
    }


LYAPUNOV = {"runs": [{"experiment": "base", "variants": ["sgd"], "seeds": [0]}]}
# the current config, and the one that made the results: an experiment more, whose runs (tag
# x1) and figures the current one no longer makes
CURRENT = {"experiments": [experiment("base")], "lyapunov": LYAPUNOV}
BEFORE = {"experiments": [experiment("base"), experiment("extra", tag="x1")], "lyapunov": LYAPUNOV}


def make_outputs(root: Path, config: dict) -> None:
    """The files the workflow's rules write for ``config`` (their paths as the rules name
    them), under ``root``: results/ and logs/."""
    cfg = validate_config(json.loads(json.dumps(config)))
    runs, groups, lyapunov = plan.plan_runs(cfg)
    refs = plan.ensemble_references(cfg, runs, lyapunov)
    figures = plan.figures(runs, groups, lyapunov, refs, cfg["ensembles"])
    lyap = {r for rs in lyapunov.values() for r in rs}
    results = str(root / "results")
    files = [
        root / f"results/datasets/{d}.{ext}" for d in cfg["datasets"] for ext in ("pt", "json")
    ]
    files += [root / f"logs/datasets/{d}.log" for d in cfg["datasets"]]
    for run in runs:
        files += [Path(STEPS.path(run, results)), root / f"results/train/{run}/run.json"]
        files.append(root / f"logs/{'lyapunov' if run in lyap else 'train'}/{run}.log")
    files += [Path(EXPONENTS.path(run, results)) for run in lyap]
    for ref in refs:
        files += [Path(DISTANCES.path(ref, results)), Path(FITS.path(ref, results))]
        files += [root / f"logs/ensembles/{ref}.log", root / f"logs/fits/{ref}.log"]
    for name in figures:
        files += [root / f"results/figures/{name}.{ext}" for ext in ("pdf", "png", "parquet")]
        files.append(root / f"logs/figures/{name}.log")
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"{f.name} of {[e['name'] for e in config['experiments']]}")
    (root / "results/report").mkdir(parents=True, exist_ok=True)
    (root / "results/report/runs.tsv").write_text("run_id\n")


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and STALE not in p.relative_to(root).parts
    }


@pytest.fixture
def outputs(tmp_path):
    """Results made by BEFORE, the config files, and the paths the tool is given."""
    make_outputs(tmp_path, BEFORE)
    # a job's temporary file beside its output: not stale, still being written
    (tmp_path / "results/figures/.extra.png.ab12.tmp").write_text("partial")
    for name, config in (("current.yaml", CURRENT), ("before.yaml", BEFORE)):
        (tmp_path / name).write_text(yaml.safe_dump(config))
    where = ["--results", str(tmp_path / "results"), "--logs", str(tmp_path / "logs")]
    return tmp_path, where


EXTRA_RUNS = ["usps_mlp-relu20_cgd-chaotic_m0_s0_x1", "usps_mlp-relu20_sgd_m0_s0_x1"]
EXTRA_FIGURES = ["extra", "extra_validation", "figB2_extra", "figB2hist_extra"]
STALE_PATHS = sorted(
    [f"logs/figures/{f}.log" for f in EXTRA_FIGURES]
    + [f"logs/train/{r}.log" for r in EXTRA_RUNS]
    + [f"results/figures/{f}.{ext}" for f in EXTRA_FIGURES for ext in ("parquet", "pdf", "png")]
    + [f"results/train/{r}/" for r in EXTRA_RUNS]
)


def listed(text: str, root: Path) -> list[str]:
    paths = [line for line in text.splitlines() if line and not line.startswith("#")]
    return sorted(str(Path(p).relative_to(root)) + ("/" if p.endswith("/") else "") for p in paths)


def test_the_config_that_made_the_results_lists_nothing(outputs, capsys):
    root, where = outputs
    assert stale.main(["--configfile", str(root / "before.yaml"), *where]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Nothing stale: ") and listed(out, root) == []


def test_a_removed_experiment_s_runs_figures_and_logs_are_listed(outputs, capsys):
    root, where = outputs
    before = tree(root)
    assert stale.main(["--configfile", str(root / "current.yaml"), *where]) == 0
    out = capsys.readouterr().out
    assert listed(out, root) == STALE_PATHS
    assert f"#   python -m chaosgd.tools.stale --configfile {root / 'current.yaml'} --move" in out
    assert tree(root) == before  # listing changes nothing


def test_move_moves_only_the_stale_outputs_and_deletes_nothing(outputs, capsys):
    root, where = outputs
    before = tree(root)
    (root / "results/report/stale.txt").write_text("old listing\n")
    assert stale.main(["--configfile", str(root / "current.yaml"), *where, "--move"]) == 0
    moved = capsys.readouterr().out.splitlines()
    assert len(moved) == len(STALE_PATHS)
    (folder,) = (root / "results" / STALE).iterdir()
    assert folder.name.endswith("Z") and len(folder.name) == len("20250101T000000Z")
    after = tree(root)
    for rel, text in before.items():
        is_stale = any(rel == s or rel.startswith(s) for s in STALE_PATHS if s.endswith("/")) or (
            rel in STALE_PATHS
        )
        if not is_stale:
            assert after.get(rel) == text, rel  # current outputs untouched
            continue
        assert rel not in after
        inside = rel.removeprefix("results/") if rel.startswith("results/") else rel
        assert (folder / inside).read_text() == text  # moved, same relative path
    assert f"{root / 'results/train' / EXTRA_RUNS[0]}/ -> {folder / 'train' / EXTRA_RUNS[0]}" in (
        moved
    )
    # the report's listing no longer names what was moved
    assert (root / "results/report/stale.txt").read_text().startswith("# Nothing stale: ")
    assert stale.main(["--configfile", str(root / "current.yaml"), *where]) == 0
    assert listed(capsys.readouterr().out, root) == []


def test_an_archive_export_leaves_the_stale_folder_behind(outputs, tmp_path):
    root, where = outputs
    assert stale.main(["--configfile", str(root / "current.yaml"), *where, "--move"]) == 0
    manifest = archive.export(root / "results", tmp_path / "results.tar.gz")
    assert manifest["files"] and not any(f"/{STALE}/" in f for f in manifest["files"])
    assert "results/figures/base.png" in manifest["files"]


def test_the_report_stage_writes_the_listing(outputs, monkeypatch):
    root, _ = outputs
    monkeypatch.setattr(report, "runs_table", lambda results, runs: pd.DataFrame({"run_id": runs}))
    out = root / "results/report/stale.txt"
    args = ["runs", "--results", str(root / "results"), "--logs", str(root / "logs")]
    args += ["--runs", "a", "--out", str(root / "results/report/runs.tsv")]
    args += ["--config-json", json.dumps(CURRENT), "--config-name", "current.yaml"]
    assert report.main([*args, "--out-stale", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# 20 outputs that current.yaml no longer makes")
    assert "#   python -m chaosgd.tools.stale --configfile current.yaml --move" in text
    assert listed(text, root) == STALE_PATHS
    args[-3] = json.dumps(BEFORE)
    assert report.main([*args, "--out-stale", str(out)]) == 0
    assert out.read_text().startswith("# Nothing stale: ")


def test_the_report_rule_writes_the_listing_where_the_tool_refreshes_it():
    from chaosgd.planning.stale import LISTING

    assert f'"results/{LISTING}"' in (REPO / "workflow/rules/report.smk").read_text()


def test_a_download_cache_inside_a_stage_folder_is_not_stale(tmp_path):
    config = validate_config({**CURRENT, "download_cache": "results/datasets/cache"})
    (tmp_path / "results/datasets/cache").mkdir(parents=True)
    (tmp_path / "results/datasets/old.pt").write_text("x")
    found = find_stale(planned_by_config(config), tmp_path / "results", tmp_path / "logs")
    assert found == [tmp_path / "results/datasets/old.pt"]
    text = listing(found, "c.yaml", "results")
    assert text.splitlines()[-1] == str(tmp_path / "results/datasets/old.pt")


def test_a_bad_config_is_one_error_line(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("experiments: 3\n")
    assert stale.main(["--configfile", str(tmp_path / "bad.yaml")]) == 1
    assert capsys.readouterr().err.startswith("error: invalid config:")


def _configs(root: Path) -> tuple[Path, Path]:
    """The config the runs were made with, and a second file asking another lr on top of it."""
    base, lr = root / "base.yaml", root / "lr.yaml"
    base.write_text(yaml.safe_dump(recorded.CONFIG))
    lr.write_text("training:\n  lr: 0.02\n")
    return base, lr


def test_runs_made_with_other_settings_are_listed_moved_and_in_the_report(tmp_path, capsys):
    results, logs = tmp_path / "results", tmp_path / "logs"
    make_outputs(tmp_path, recorded.CONFIG)
    write_runs(results, recorded.config())
    base, lr = _configs(tmp_path)
    where = ["--results", str(results), "--logs", str(logs)]
    assert stale.main(["--configfile", str(base), *where]) == 0
    assert capsys.readouterr().out.startswith("# Nothing stale: ")
    # the config files merge in order, given in one --configfile or several
    assert stale.main(["--configfile", str(base), "--configfile", str(lr), *where]) == 0
    out = capsys.readouterr().out
    for run in (recorded.CGD, recorded.SGD):
        line = f"{results}/train/{run}/: lr 0.001 here, 0.02 in the config"
        assert f"# made with other settings: {line}" in out.splitlines()
    assert f"#   python -m chaosgd.tools.stale --configfile {base} {lr} --move" in out
    # the runs, and all that was made from them: every result but the dataset's
    made = sorted(
        str(p.relative_to(tmp_path)) + "/" * p.is_dir()
        for p in results.glob("*/*")
        if p.parent.name != "datasets"
    )
    assert listed(out, tmp_path) == made
    assert f"results/fits/{recorded.SGD}/" in made and "results/figures/base.png" in made
    # the report's listing holds them too
    report_args = ["runs", "--results", str(results), "--logs", str(logs), "--runs", "a"]
    report_args += ["--out", str(results / "report/runs.tsv"), "--config-name", "x.yaml"]
    report_args += ["--config-json", json.dumps(recorded.config(lr=0.02))]
    listing_file = results / "report/stale.txt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "runs_table", lambda results, runs: pd.DataFrame({"run_id": runs}))
        assert report.main([*report_args, "--out-stale", str(listing_file)]) == 0
    text = listing_file.read_text()
    assert text.startswith("# 2 runs made with other settings than x.yaml")
    assert listed(text, tmp_path) == made
    # moved, so that the next run remakes them; the dataset and the logs stay
    before = tree(tmp_path)
    assert stale.main(["--configfile", str(base), str(lr), *where, "--move"]) == 0
    err = capsys.readouterr().err
    assert f"made with other settings: {results}/train/{recorded.CGD}/: lr 0.001 here" in err
    (folder,) = (results / STALE).iterdir()
    after = tree(tmp_path)
    for rel, text in before.items():
        if rel.startswith("results/") and not rel.startswith("results/datasets/"):
            assert rel not in after and (folder / rel.removeprefix("results/")).read_text() == text
        else:
            assert after[rel] == text, rel
