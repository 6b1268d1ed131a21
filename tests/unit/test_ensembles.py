"""Ensembles stage: its command line end to end, its tables, and errors that leave no outputs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from chaosgd import fits
from chaosgd.planning.run_settings import RunSettings
from chaosgd.runs import perturbations

from support.runs import (
    ENSEMBLE_BASE,
    ensembles_cli,
    small_ensemble,
    write_spectrum,
)

STEPS = 26
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_thread")


def settings(**changes) -> RunSettings:
    return RunSettings(**{**ENSEMBLE_BASE, **changes})


DIST_COLUMNS = {
    "dtype": "str",
    "strategy": "str",
    "eps": "float64",
    "step": "int64",
    "distance": "float64",
    "distance_along": "float64",
    "dist_1_weight": "float64",
    "dist_1_bias": "float64",
    "dist_3_weight": "float64",
    "dist_3_bias": "float64",
    "loss": "float64",
    "acc": "float64",
}


MEMBER_COLUMNS = {
    "dtype": "str",
    "strategy": "str",
    "eps": "float64",
    "train_loss": "float64",
    "train_acc": "float64",
    "val_loss": "float64",
    "val_acc": "float64",
    "final_distance": "float64",
}


def test_cli_end_to_end(tmp_path, fmnist_pt):
    s = small_ensemble(momentum=0.0)
    spectrum = write_spectrum(tmp_path / "spectrum_final.pt", s)
    # exact readouts at 7 and 13 are recorded despite --record-every 4; a Benettin row is not
    exponents = pd.DataFrame(
        {
            "step": [7, 9, 13],
            "method": ["svd", "benettin", "svd_deflated"],
            "lambda_1": [1e-2, 1e-2, 1e-2],
            "lambda_N": [-1e-2, -1e-2, -1e-2],
        }
    )
    exponents.to_parquet(tmp_path / "exponents.parquet", index=False)
    extra = ["--eps", "0.1", "1", "--dtypes", "float32", "float64", "--record-every", "4"]
    extra += ["--baseline-steps", "20", "--direction-seed", "7"]
    extra += ["--exponents", str(tmp_path / "exponents.parquet")]
    rc, out = ensembles_cli(s, fmnist_pt, spectrum, tmp_path / "ens", *extra)
    assert rc == 0
    dist = pd.read_parquet(out["distances"])
    members = pd.read_parquet(out["members"])
    info = json.loads(out["info"].read_text())
    assert {c: str(t) for c, t in dist.dtypes.items()} == DIST_COLUMNS
    assert {c: str(t) for c, t in members.dtypes.items()} == MEMBER_COLUMNS
    steps = [0, 4, 7, 8, 12, 13, 16, 20, 24, 26]
    assert len(dist) == 2 * 5 * 2 * len(steps)
    for _, curve in dist.groupby(["dtype", "strategy", "eps"]):
        assert curve["step"].tolist() == steps
        assert abs(curve["distance"].iloc[0] - curve["eps"].iloc[0]) < 1e-5 * curve["eps"].iloc[0]
        assert np.isnan(curve["loss"].iloc[-1]) and np.isfinite(curve["loss"].iloc[:-1]).all()
    assert set(dist.strategy) == set(perturbations.STRATEGIES)
    assert len(members) == 2 * 11
    assert (members.groupby("dtype")["strategy"].first() == "reference").all()
    assert (members[members.strategy == "reference"]["final_distance"] == 0).all()
    last = dist[dist.step == 26].set_index(["dtype", "strategy", "eps"])["distance"]
    pert = members[members.strategy != "reference"].set_index(["dtype", "strategy", "eps"])[
        "final_distance"
    ]
    pd.testing.assert_series_equal(pert.sort_index(), last.sort_index(), check_names=False)
    assert info["run_id"] == "ref" and info["dtypes"] == ["float32", "float64"]
    for run in info["ensembles"]:
        assert run["members"] == 11 and run["steps"] == 26 and run["backend"] == "mlp"
        assert run["seconds_per_step"] > 0 and run["single_seconds_per_step"] > 0
        assert run["ratio"] == pytest.approx(
            run["seconds_per_step"] / run["single_seconds_per_step"]
        )
    assert info["environment"]["device"] == "cpu" and "torch" in info["environment"]

    # the fits stage reads these outputs as they are
    rc = fits.main(
        ["--distances", str(out["distances"]), "--exponents", str(tmp_path / "exponents.parquet")]
        + [
            "--out-fits",
            str(tmp_path / "fits.parquet"),
            "--out-bounds",
            str(tmp_path / "b.parquet"),
        ]
    )
    assert rc == 0
    fitted = pd.read_parquet(tmp_path / "fits.parquet")
    assert len(fitted) == 20 and (fitted["bound_steps"] == 2).all() and (fitted["n"] == 10).all()


def errors(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return [line for line in err if line.startswith("error:")]


@pytest.mark.parametrize(
    "case", ["cgd", "other-seed", "other-run", "empty-chaotic", "negative-eps", "record-every"]
)
def test_cli_errors_leave_no_outputs(tmp_path, fmnist_pt, capsys, case):
    s = small_ensemble()
    spectrum_settings, kw, extra = s, {}, ["--eps", "0.1"]
    if case == "cgd":
        s = small_ensemble(variant="cgd-negative")
    elif case == "other-seed":
        spectrum_settings = small_ensemble(seed=4)
    elif case == "other-run":
        spectrum_settings = small_ensemble(run_id="someone-else")
    elif case == "empty-chaotic":
        kw = dict(n_pos=0)
    elif case == "negative-eps":
        extra = ["--eps", "0.1", "-1"]
    elif case == "record-every":
        extra += ["--record-every", "0"]
    spectrum = write_spectrum(tmp_path / "spectrum_final.pt", spectrum_settings, **kw)
    rc, out = ensembles_cli(s, fmnist_pt, spectrum, tmp_path / "ens", *extra)
    assert rc == 1
    lines = errors(capsys)
    assert len(lines) == 1, lines
    assert not (tmp_path / "ens").exists() or not any((tmp_path / "ens").iterdir())
    if case == "cgd":
        assert "plain SGD" in lines[0] and "run ref" in lines[0]
    if case == "empty-chaotic":
        assert "'chaotic'" in lines[0]


def test_ensembles_around_a_topk_lyapunov_run_end_to_end(tmp_path, fmnist_pt):
    """The Lyapunov stage with --topk, then this stage on its spectrum_final.pt (N×k vectors):
    the members of the three strategies its k leading vectors give, recorded as such, and the
    fits stage fits them (no exact readout: no bounds at the readouts, λ̂1 between)."""
    from chaosgd import lyapunov
    from chaosgd.runs import run_outputs
    from chaosgd.runs.artifacts import load_tensors

    from support.runs import lyap_args

    s = small_ensemble(momentum=0.0, train_size=48, epochs=2, lr=0.05)
    folder = tmp_path / "lyap"
    folder.mkdir()
    files = {**run_outputs.OUTPUT_FILES, **lyapunov.LYAP_OUTPUTS}
    lyap = {k: folder / name for k, name in files.items()}
    args = s.to_args() + lyap_args(topk=6) + ["--data", str(fmnist_pt), "--no-progress"]
    args += [a for k, p in lyap.items() for a in (f"--out-{k}", str(p))]
    assert lyapunov.main(args) == 0
    spectrum = load_tensors(lyap["spectrum"])
    assert spectrum["topk"] == 6 and spectrum["vectors"].shape == (1078, 6)
    assert spectrum["n_chaotic"] >= 1  # the chaotic combination has a subspace to draw from

    extra = ["--eps", "0.1", "1", "--dtypes", "float64", "--baseline-steps", "5"]
    extra += ["--exponents", str(lyap["exponents"]), "--direction-seed", "2"]
    rc, out = ensembles_cli(s, fmnist_pt, lyap["spectrum"], tmp_path / "ens", *extra)
    assert rc == 0
    topk = ["max_chaos", "chaotic", "random"]
    dist = pd.read_parquet(out["distances"])
    members = pd.read_parquet(out["members"])
    info = json.loads(out["info"].read_text())
    assert sorted(set(dist.strategy)) == sorted(topk)
    assert list(members.strategy) == ["reference"] + [s for s in topk for _ in range(2)]
    assert info["strategies"] == topk and info["spectrum"]["topk"] == 6
    assert info["ensembles"][0]["members"] == 1 + 3 * 2
    # the directions are those of the spectrum: max chaos along its top vector
    dirs = perturbations.directions(spectrum, torch.Generator().manual_seed(2))
    first = dist[(dist.strategy == "max_chaos") & (dist.step == 1)]
    along = first["distance_along"] / first["distance"]
    assert list(dirs) == topk and (along > 0.5).all()

    fitted = tmp_path / "fits"
    rc = fits.main(
        [
            "--distances", str(out["distances"]), "--exponents", str(lyap["exponents"]),
            "--lambda1", str(lyap["lambda1"]), "--out-fits", str(fitted / "fits.parquet"),
            "--out-bounds", str(fitted / "bounds.parquet"),
        ]
    )  # fmt: skip
    assert rc == 0
    table = pd.read_parquet(fitted / "fits.parquet")
    assert sorted(set(table.strategy)) == sorted(topk) and len(table) == 3 * 2
    assert (table["bound_steps"] == 0).all() and (table["upper_steps"] > 0).all()
