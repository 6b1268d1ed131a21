"""Bad inputs: every file a stage reads, when missing, empty, truncated, garbage, foreign or
holding NaN where a number is needed, stops the stage's main with exit status 1 and one line
naming the file and what is wrong, and nothing is written. Planning refuses a CGD onset or
Lyapunov readouts past the end of a run. Identical results are identical bytes, so an archive
imported over them reports no conflict."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from chaosgd import claims, ensembles, figures, fits, lyapunov, report, train
from chaosgd.planning import plan
from chaosgd.planning.config import validate_config
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.schedule import train_steps
from chaosgd.runs import run_outputs
from chaosgd.runs.artifacts import load_tensors, save_tensors
from chaosgd.tools import archive

from support.runs import TRAIN_BASE, lyap_args
from support.workflow import REPO

SGD, NEG = "ref_sgd", "neg"  # the reference (with a tangent map and ensembles) and a CGD run
TINY = dict(TRAIN_BASE, hidden=4, train_size=48, test_size=48, epochs=1)  # 6 steps, 1078 parameters
EPS = "0.1"


def settings(run_id, **changes) -> RunSettings:
    return RunSettings(**{**TINY, "run_id": run_id, **changes})


def outputs(names, folder) -> list[str]:
    return [a for name in names for a in (f"--out-{name}", str(folder / name))]


@pytest.fixture(scope="module")
def made(tmp_path_factory, fmnist_pt):
    """A small prepared dataset and the results of every stage on it, made by the stages."""
    root = tmp_path_factory.mktemp("inputs")
    full = load_tensors(fmnist_pt)
    data = root / "fmnist.pt"
    save_tensors({k: v[:200] if torch.is_tensor(v) else v for k, v in full.items()}, data)
    res = root / "results"
    ref = settings(SGD)
    files = {**run_outputs.OUTPUT_FILES, **lyapunov.LYAP_OUTPUTS}
    stage_of = {k: "lyapunov" if k in lyapunov.LYAP_OUTPUTS else "train" for k in files}
    argv = ref.to_args() + lyap_args() + ["--data", str(data), "--no-progress"]
    for key, name in files.items():
        argv += [f"--out-{key}", str(res / stage_of[key] / SGD / name)]
    assert lyapunov.main(argv) == 0
    neg = settings(NEG, variant="cgd-negative")
    argv = neg.to_args() + ["--data", str(data), "--no-progress"]
    for key, name in run_outputs.OUTPUT_FILES.items():
        argv += [f"--out-{key}", str(res / "train" / NEG / name)]
    assert train.main(argv) == 0
    ens = res / "ensembles" / SGD
    argv = ensembles_args(res, data, ens)
    assert ensembles.main(argv) == 0
    assert fits.main(fits_args(res, res / "fits" / SGD)) == 0
    return {"data": data, "results": res}


def ensembles_args(res, data, out) -> list[str]:
    return settings(SGD).to_args() + [
        "--data", str(data), "--no-progress", "--eps", "0.01", EPS, "--dtypes", "float32",
        "--baseline-steps", "3",
        "--spectrum-file", str(res / "lyapunov" / SGD / "spectrum_final.pt"),
        "--exponents", str(res / "lyapunov" / SGD / "exponents.parquet"),
        "--out-distances", str(out / "distances.parquet"),
        "--out-members", str(out / "members.parquet"), "--out-info", str(out / "ensemble.json"),
    ]  # fmt: skip


def fits_args(res, out) -> list[str]:
    return [
        "--distances", str(res / "ensembles" / SGD / "distances.parquet"),
        "--exponents", str(res / "lyapunov" / SGD / "exponents.parquet"),
        "--out-fits", str(out / "fits.parquet"), "--out-bounds", str(out / "bounds.parquet"),
    ]  # fmt: skip


FIGURE_RUNS = {
    "curves": [SGD, NEG],
    "validation": [SGD, NEG],
    "spectrum": [SGD, NEG],
    "spectra": [SGD, NEG],
}


def figure_args(kind):
    def args(res, data, out):
        runs = FIGURE_RUNS.get(kind, [SGD])
        argv = [kind, "--name", kind, "--results", str(res), "--runs", *runs]
        argv += ["--out", str(out / f"{kind}.png")]
        if figures.FIGURE_KINDS[kind].main_eps:
            argv += ["--eps", EPS]
        return figures.main, argv

    return args


# each stage's main and command line, reading from the results ``res`` (and the dataset
# ``data``) and writing under ``out``
STAGES = {
    "train": lambda res, data, out: (
        train.main,
        settings(NEG).to_args() + ["--data", str(data), "--no-progress"]
        + outputs(run_outputs.OUTPUTS, out),
    ),
    "lyapunov": lambda res, data, out: (
        lyapunov.main,
        settings(SGD).to_args() + lyap_args() + ["--data", str(data), "--no-progress"]
        + outputs(run_outputs.OUTPUTS + tuple(lyapunov.LYAP_OUTPUTS), out),
    ),
    "ensembles": lambda res, data, out: (ensembles.main, ensembles_args(res, data, out)),
    "fits": lambda res, data, out: (fits.main, fits_args(res, out)),
    **{f"figures {kind}": figure_args(kind) for kind in figures.PLOTS},
    "report": lambda res, data, out: (
        report.main,
        ["runs", "--results", str(res), "--runs", SGD, NEG, "--out", str(out / "runs.tsv")],
    ),
    "claims": lambda res, data, out: (
        claims.main,
        [
            "--results", str(res), f"--group=fig1={SGD},{NEG}", f"--lyapunov=fig1={SGD}",
            f"--reference={SGD}=fig1", "--main-eps", EPS,
            "--out-table", str(out / "c.parquet"), "--out-markdown", str(out / "c.md"),
            "--out-html", str(out / "c.html"),
        ],
    ),
}  # fmt: skip


def run_stage(stage, made, tmp_path, damage=None, file=None, capsys=None):
    """Copy the results, damage ``file`` (relative to them, or ``data``), run the stage; return
    its exit status, its error lines, the damaged file's path and its output folder."""
    res = tmp_path / "results"
    shutil.copytree(made["results"], res)
    data = tmp_path / "fmnist.pt"
    shutil.copy(made["data"], data)
    path = data if file == "data" else res / file if file else None
    if damage is not None:
        damage(path)
    out = tmp_path / "out"
    main, argv = STAGES[stage](res, data, out)
    if capsys is not None:
        capsys.readouterr()
    rc = main(argv)
    lines = capsys.readouterr().err.splitlines() if capsys is not None else []
    return rc, [ln for ln in lines if ln.startswith("error:")], path, out


@pytest.mark.slow
def test_every_stage_runs_on_the_intact_results(made, tmp_path, capsys):
    """The baseline of the cases below: each stage succeeds on what the stages made."""
    for stage in STAGES:
        rc, errors, _, out = run_stage(stage, made, tmp_path / stage, capsys=capsys)
        assert (rc, errors) == (0, []), stage
        assert any(out.iterdir()), stage


@pytest.mark.slow
def test_the_claims_read_only_the_files_their_rule_names(made, tmp_path, capsys):
    """The claims rule's inputs (plan.claims_inputs) are every file the stage reads: with only
    those present it succeeds, so a file read but not named (which Snakemake would neither wait
    for nor rerun the claims after) fails here as missing."""
    runs = {SGD: settings(SGD), NEG: settings(NEG, variant="cgd-negative")}
    named = plan.claims_inputs(runs, {"fig1": [SGD]}, {SGD: "fig1"})
    res = tmp_path / "results"
    for name in named:
        src = made["results"] / name.removeprefix("results/")
        (res / src.relative_to(made["results"])).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, res / src.relative_to(made["results"]))
    out = tmp_path / "out"
    _, argv = STAGES["claims"](res, made["data"], out)
    capsys.readouterr()
    assert claims.main(argv) == 0, capsys.readouterr().err


# --- damaged files ---------------------------------------------------------------------------


def truncated(path):
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def empty(path):
    path.write_bytes(b"")


def garbage(path):
    path.write_bytes(b"\x00 not what this file should hold \xff\n" * 40)


def missing(path):
    path.unlink()


FORMAT = {".pt": "a torch file", ".parquet": "a Parquet file", ".json": "JSON"}
DATA = "delete it and rerun to prepare it again"
REMAKE = "delete it and rerun to make it again"

# every (stage, file it reads); "data" is the prepared dataset
READS = [
    ("train", "data"),
    ("lyapunov", "data"),
    ("ensembles", "data"),
    ("ensembles", f"lyapunov/{SGD}/spectrum_final.pt"),
    ("ensembles", f"lyapunov/{SGD}/exponents.parquet"),
    ("fits", f"ensembles/{SGD}/distances.parquet"),
    ("fits", f"lyapunov/{SGD}/exponents.parquet"),
    ("figures curves", f"train/{NEG}/run.json"),
    ("figures curves", f"train/{NEG}/steps.parquet"),
    ("figures validation", f"train/{NEG}/epochs.parquet"),
    ("figures spectrum", f"train/{NEG}/steps.parquet"),
    ("figures spectra", f"train/{SGD}/spectra.parquet"),
    ("figures exponents", f"lyapunov/{SGD}/exponents.parquet"),
    ("figures subspaces", f"lyapunov/{SGD}/subspaces.parquet"),
    ("figures divergence", f"ensembles/{SGD}/distances.parquet"),
    ("figures fit", f"fits/{SGD}/fits.parquet"),
    ("figures fit", f"fits/{SGD}/bounds.parquet"),
    ("figures sweep", f"ensembles/{SGD}/members.parquet"),
    ("figures precision", f"ensembles/{SGD}/distances.parquet"),
    ("figures bounds", f"fits/{SGD}/bounds.parquet"),
    ("report", f"train/{NEG}/run.json"),
    ("report", f"train/{NEG}/epochs.parquet"),
    ("claims", f"train/{NEG}/run.json"),
    ("claims", f"train/{NEG}/epochs.parquet"),
    ("claims", f"train/{SGD}/steps.parquet"),
    ("claims", f"lyapunov/{SGD}/exponents.parquet"),
    ("claims", f"ensembles/{SGD}/distances.parquet"),
    ("claims", f"fits/{SGD}/fits.parquet"),
    ("claims", f"lyapunov/{SGD}/subspaces.parquet"),
    ("claims", f"ensembles/{SGD}/members.parquet"),
    ("claims", f"fits/{SGD}/bounds.parquet"),
]


@pytest.mark.parametrize("damage", [truncated, empty, garbage, missing], ids=lambda f: f.__name__)
@pytest.mark.parametrize("stage, file", READS, ids=[f"{s}:{f.split('/')[-1]}" for s, f in READS])
def test_a_damaged_input_fails_naming_the_file(made, tmp_path, capsys, stage, file, damage):
    rc, errors, path, out = run_stage(stage, made, tmp_path, damage, file, capsys)
    assert rc == 1
    assert len(errors) == 1, errors
    assert f"{path}: " in errors[0]
    if damage is missing:
        assert f"{path}: no such file" in errors[0]
    elif damage is empty:
        assert f"{path}: empty file (0 bytes)" in errors[0]
    else:
        assert f"{path}: truncated or not {FORMAT[path.suffix]}" in errors[0]
    if damage is not missing:
        assert errors[0].endswith(DATA if file == "data" else REMAKE)
    assert not out.exists() or not any(out.iterdir())


# --- files of the wrong content ----------------------------------------------------------------


def tensors(change):
    def damage(path):
        save_tensors(change(load_tensors(path)), path)

    return damage


def table(change):
    def damage(path):
        change(pd.read_parquet(path)).to_parquet(path, index=False)

    return damage


def set_value(column, value):
    """Text in the whole column, or a number in its second half."""

    def change(df):
        df = df.copy()
        if isinstance(value, str):
            df[column] = value
        else:
            df[column] = df[column].astype(float)
            df.loc[df.index[len(df) // 2 :], column] = value
        return df

    return table(change)


def run_json(change):
    def damage(path):
        path.write_text(json.dumps(change(json.loads(path.read_text()))))

    return damage


def another_runs(path):
    shutil.copy(path.parents[1] / SGD / "run.json", path)


# stage, file, damage, what the message says after the file's name
CONTENT = [
    ("train", "data", tensors(lambda d: torch.ones(3)), "holds a Tensor, expected a dict"),
    ("train", "data", tensors(lambda d: {k: v for k, v in d.items() if k != "test_x"}), "lacks ['test_x']"),
    ("train", "data", tensors(lambda d: {**d, "train_y": d["train_y"] + 10}), "labels outside 0..9"),
    ("train", "data", tensors(lambda d: {**d, "train_y": d["train_y"][:50]}), "expected 200 int64 labels"),
    ("train", "data", tensors(lambda d: {**d, "train_x": d["train_x"][:, :, :8]}), "expected float N×1×16×16"),
    ("train", "data", tensors(lambda d: {**d, "test_x": d["test_x"] * float("nan")}), "test_x holds non-finite pixels"),
    ("lyapunov", "data", tensors(lambda d: {**d, "train_y": d["train_y"].float()}), "expected 200 int64 labels"),
    ("train", "data", lambda p: torch.save({"a": np.arange(3)}, p), "holds objects other than tensors"),
    ("fits", f"ensembles/{SGD}/distances.parquet", set_value("distance", np.nan), "column 'distance' holds"),
    ("fits", f"ensembles/{SGD}/distances.parquet", set_value("distance", np.inf), "column 'distance' holds"),
    ("fits", f"ensembles/{SGD}/distances.parquet", set_value("distance", "far"), "column 'distance' holds str values"),
    ("fits", f"ensembles/{SGD}/distances.parquet", table(lambda df: df.drop(columns="strategy")), "lacks column(s) ['strategy']"),
    ("fits", f"ensembles/{SGD}/distances.parquet", table(lambda df: df.iloc[:0]), "has no rows"),
    ("fits", f"lyapunov/{SGD}/exponents.parquet", set_value("lambda_1", np.nan), "column 'lambda_1' holds"),
    ("fits", f"lyapunov/{SGD}/exponents.parquet", table(lambda df: df.iloc[:0]), "has no rows"),
    ("figures curves", f"train/{NEG}/steps.parquet", set_value("acc", np.nan), "column 'acc' holds"),
    ("figures curves", f"train/{NEG}/run.json", another_runs, f"belongs to run '{SGD}', not to '{NEG}'"),
    ("figures curves", f"train/{NEG}/run.json", run_json(lambda d: [d]), "holds a JSON list"),
    ("figures spectrum", f"train/{NEG}/steps.parquet", table(lambda df: df.drop(columns="n_negative")), "lacks column(s) ['n_negative']"),
    ("figures validation", f"train/{NEG}/epochs.parquet", set_value("val_loss", np.inf), "column 'val_loss' holds"),
    ("figures spectra", f"train/{SGD}/spectra.parquet", set_value("eigenvalue", np.nan), "column 'eigenvalue' holds"),
    ("figures spectra", f"train/{SGD}/spectra.parquet", table(lambda df: df.iloc[:0]), "has no rows"),
    ("figures exponents", f"lyapunov/{SGD}/exponents.parquet", set_value("lambda_N", np.nan), "column 'lambda_N' holds"),
    ("figures divergence", f"ensembles/{SGD}/distances.parquet", table(lambda df: df.assign(eps=df["eps"] * 2)), "no rows for strategy"),
    ("figures fit", f"fits/{SGD}/fits.parquet", table(lambda df: df[df["strategy"] != "random"]), "no rows for strategy random"),
    ("figures sweep", f"ensembles/{SGD}/members.parquet", table(lambda df: df.iloc[:0]), "has no rows"),
    ("figures bounds", f"fits/{SGD}/bounds.parquet", set_value("upper", "high"), "column 'upper' holds str values"),
    ("report", f"train/{NEG}/run.json", another_runs, f"belongs to run '{SGD}'"),
    ("report", f"train/{NEG}/run.json", run_json(lambda d: {**d, "result": {}}), "its 'result' lacks ['steps'"),
    ("report", f"train/{NEG}/epochs.parquet", set_value("val_acc", np.nan), "column 'val_acc' holds"),
    ("report", f"train/{NEG}/epochs.parquet", table(lambda df: df.iloc[:0]), "has no rows"),
    ("claims", f"train/{NEG}/run.json", another_runs, f"belongs to run '{SGD}'"),
    ("claims", f"train/{NEG}/run.json", run_json(lambda d: {k: v for k, v in d.items() if k != "settings"}), "lacks ['settings']"),
    ("claims", f"train/{NEG}/epochs.parquet", set_value("train_acc", np.nan), "column 'train_acc' holds"),
    ("claims", f"train/{NEG}/epochs.parquet", set_value("train_loss", "low"), "column 'train_loss' holds str values"),
    ("claims", f"train/{SGD}/steps.parquet", set_value("grad_frac_negative", np.inf), "column 'grad_frac_negative' holds"),
    ("claims", f"train/{SGD}/steps.parquet", table(lambda df: df.drop(columns="n_positive_chaotic")), "lacks column(s) ['n_positive_chaotic']"),
    ("claims", f"lyapunov/{SGD}/exponents.parquet", set_value("lambda_1", np.nan), "column 'lambda_1' holds"),
    ("claims", f"ensembles/{SGD}/distances.parquet", set_value("distance", np.nan), "column 'distance' holds"),
    ("claims", f"ensembles/{SGD}/distances.parquet", table(lambda df: df[df["eps"] != float(EPS)]), "no rows for eps 0.1"),
    ("claims", f"fits/{SGD}/fits.parquet", set_value("r2", "good"), "column 'r2' holds str values"),
]  # fmt: skip


@pytest.mark.parametrize(
    "stage, file, damage, says",
    CONTENT,
    ids=[f"{s}:{f.split('/')[-1]}:{m[:24]}" for s, f, _, m in CONTENT],
)
def test_an_input_of_the_wrong_content_fails_naming_the_file(
    made, tmp_path, capsys, stage, file, damage, says
):
    rc, errors, path, out = run_stage(stage, made, tmp_path, damage, file, capsys)
    assert rc == 1
    assert len(errors) == 1, errors
    assert f"{path}: " in errors[0] and says in errors[0], errors[0]
    if "holds" in says and "column" in says and "str" not in says:
        assert "non-finite value(s)" in errors[0] and "diverged" in errors[0]
    assert not out.exists() or not any(out.iterdir())


def test_nan_where_it_means_something_is_no_error(made, tmp_path, capsys):
    """An upper bound e^{λ1 t}ε may overflow; an empty subspace has no similarity."""

    def damage(path):
        set_value("upper", np.inf)(path)
        subspaces = path.parents[2] / "lyapunov" / SGD / "subspaces.parquet"
        set_value("similarity_chaotic", np.nan)(subspaces)

    for stage in ("figures fit", "figures bounds", "figures subspaces"):
        rc, errors, _, _ = run_stage(
            stage, made, tmp_path / stage, damage, f"fits/{SGD}/bounds.parquet", capsys
        )
        assert (rc, errors) == (0, []), stage


# --- archives ------------------------------------------------------------------------------


def rewrite_manifest(packed, change):
    """A copy of the archive with its manifest's bytes changed."""
    out = packed.with_name("changed.tar.gz")
    with tarfile.open(packed) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            blob = src.extractfile(member).read()
            if member.name == archive.MANIFEST:
                blob = change(blob)
                member.size = len(blob)
            dst.addfile(member, io.BytesIO(blob))
    return out


def manifest(change):
    return lambda blob: json.dumps(change(json.loads(blob))).encode()


ARCHIVES = {
    "truncated": (lambda p: (truncated(p), p)[1], "corrupt or unreadable archive"),
    "empty": (lambda p: (empty(p), p)[1], "corrupt or unreadable archive"),
    "garbage": (lambda p: (garbage(p), p)[1], "corrupt or unreadable archive"),
    "manifest not JSON": (
        lambda p: rewrite_manifest(p, lambda b: b"{\xff"),
        f"its {archive.MANIFEST} is not JSON",
    ),
    "manifest a list": (
        lambda p: rewrite_manifest(p, manifest(lambda m: [m])),
        f"its {archive.MANIFEST} is damaged",
    ),
    "manifest without files": (
        lambda p: rewrite_manifest(p, manifest(lambda m: {"root": m["root"]})),
        f"its {archive.MANIFEST} is damaged",
    ),
    "manifest without checksums": (
        lambda p: rewrite_manifest(
            p, manifest(lambda m: {**m, "files": {k: {} for k in m["files"]}})
        ),
        f"its {archive.MANIFEST} is damaged",
    ),
}


@pytest.mark.parametrize("case", list(ARCHIVES))
def test_a_damaged_archive_fails_naming_it(made, tmp_path, capsys, case):
    packed = tmp_path / "results.tar.gz"
    assert archive.main(["export", str(packed), "--results", str(made["results"])]) == 0
    damage, says = ARCHIVES[case]
    bad = damage(packed)
    capsys.readouterr()
    target = tmp_path / "elsewhere" / "results"
    assert archive.main(["import", str(bad), "--results", str(target)]) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}: {says}" in err and "Traceback" not in err
    assert not target.exists()


def test_identical_tensors_are_identical_bytes_wherever_saved(tmp_path):
    obj = {"w": torch.arange(12.0).reshape(3, 4), "n": 3, "name": "x"}
    save_tensors(obj, tmp_path / "a.pt")
    save_tensors(obj, tmp_path / "sub" / "other-name.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "sub" / "other-name.pt").read_bytes()


def test_an_archive_imported_over_identical_results_reports_no_conflict(made, tmp_path, capsys):
    """Two checkouts that trained the same run hold the same bytes, final.pt included."""
    folders = []
    for name in ("first", "second"):
        out = tmp_path / name / "results" / "train" / NEG
        argv = settings(NEG, variant="cgd-negative").to_args()
        argv += ["--data", str(made["data"]), "--no-progress"]
        argv += outputs(run_outputs.OUTPUTS, out)
        assert train.main(argv) == 0
        folders.append(out)
    assert (folders[0] / "final").read_bytes() == (folders[1] / "final").read_bytes()
    # run.json records the wall time and host: the one file of a run that differs by nature
    shutil.copy(folders[0] / "info", folders[1] / "info")
    packed = tmp_path / "first.tar.gz"
    first, second = (f.parents[1] for f in folders)
    assert archive.main(["export", str(packed), "--results", str(first), "--stages", "train"]) == 0
    capsys.readouterr()
    assert archive.main(["import", str(packed), "--results", str(second)]) == 0
    assert "differ" not in capsys.readouterr().err


# --- planning ------------------------------------------------------------------------------


def config(onsets, readouts=2, train_size=100, **lyap):
    return validate_config(
        {
            "training": {"train_size": train_size, "batch_size": 8, "epochs": 2},
            "experiments": [
                {"name": "e", "variants": ["sgd", "cgd-chaotic"], "onsets": onsets, "seeds": [0]}
            ],
            "lyapunov": {"runs": [{"experiment": "e", "variants": ["sgd"]}], "readouts": readouts},
        }
    )


def test_the_run_length_is_the_training_stages():
    runs, _ = plan.expand_runs(config([0]))
    assert train_steps(runs["usps_mlp-relu20_sgd_m0_s0"]) == 13 * 2  # ⌈100 / 8⌉ x 2
    runs, _ = plan.expand_runs(config([0], train_size=0))  # all of USPS's 7291
    assert train_steps(runs["usps_mlp-relu20_sgd_m0_s0"]) == 912 * 2
    runs, _ = plan.expand_runs(config([0], train_size=7291))  # all there are
    assert train_steps(runs["usps_mlp-relu20_sgd_m0_s0"]) == 912 * 2
    with pytest.raises(ValueError, match="training.train_size: 7292 is more than the 7291"):
        config([0], train_size=7292)  # more than there are: refused with the config


def test_an_onset_at_or_past_the_end_of_its_run_is_refused():
    runs, _ = plan.expand_runs(config([25]))  # the last step: CGD prunes once
    assert runs["usps_mlp-relu20_cgd-chaotic_on25_m0_s0"].onset == 25
    with pytest.raises(ValueError) as err:
        plan.expand_runs(config([10, 26]))
    message = str(err.value)
    assert message.startswith("experiments[e].onsets: onset 26 is at or past the end of run")
    assert "26 steps (100 images / batch 8 x 2 epochs)" in message


def test_more_lyapunov_readouts_than_steps_are_refused():
    plan.plan_runs(config([0], readouts=26))
    with pytest.raises(ValueError, match=r"lyapunov.readouts: 27 readouts, but run usps_mlp-relu20"
                       r"_sgd_m0_s0 has only 26 steps \(100 images"):  # fmt: skip
        plan.plan_runs(config([0], readouts=27))


@pytest.mark.parametrize("path", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_configs_plan(path):
    plan.plan_runs(validate_config(yaml.safe_load(path.read_text())))
