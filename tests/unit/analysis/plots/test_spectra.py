"""App. B.2's eigenvalue distributions over training: what the histograms and the density draw
is the runs' kept eigenvalues, binned on a symmetric-log axis and averaged over the pooled runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chaosgd.analysis.plots import spectra
from chaosgd.analysis.plots.loading import load_runs
from chaosgd.runs.artifacts import UnreadableFile

from support.figures import NEG, SGD, SPECTRA_STEPS, curve, fake_results, fake_run
from support.figures import draw as draw_kind


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return fake_results(tmp_path_factory.mktemp("figures") / "results")


def draw(results, out_dir, runs=None) -> pd.DataFrame:
    return draw_kind(results, out_dir, "spectra", spectra.plot_spectra, runs)


def pooled_counts(results, runs, edges) -> dict[int, np.ndarray]:
    """Mean count per run in each bin, step by step, from the files."""
    tables = [pd.read_parquet(results / "train" / r / "spectra.parquet") for r in runs]
    both = pd.concat(tables)
    return {
        int(s): np.histogram(g["eigenvalue"], edges)[0] / len(runs) for s, g in both.groupby("step")
    }


def test_the_bins_are_even_on_the_symmetric_log_axis_and_cover_everything():
    values = np.array([-3e-4, -2.0, 1e-7, 5e-3, 40.0])
    edges, centres, linthresh = spectra.symlog_bins(values, 200.0, bins=20)
    # the decade below the 1 % quantile of |λ| (1.2e-5, interpolated between 1e-7 and 3e-4)
    assert linthresh == 1e-5
    assert edges[0] == -1e3 and edges[-1] == 1e3 and 0.0 in edges  # 2/η = 200 inside
    np.testing.assert_allclose(edges, -edges[::-1])
    assert len(edges) == 21 and len(centres) == 20
    assert np.histogram(values, edges)[0].sum() == len(values)
    # equal widths in the axis' own coordinates
    from matplotlib.scale import SymmetricalLogTransform

    scaled = SymmetricalLogTransform(10, linthresh, spectra.LINSCALE).transform(edges)
    np.testing.assert_allclose(np.diff(scaled), np.diff(scaled)[0], rtol=1e-9)
    assert np.all((edges[:-1] < centres) & (centres < edges[1:]))


def test_histograms_and_density_are_the_pooled_sgd_counts(results, tmp_path):
    data = draw(results, tmp_path)
    assert set(data["panel"]) == {"histogram", "density"}
    pooled = pd.concat([pd.read_parquet(results / "train" / r / "spectra.parquet") for r in SGD])
    edges, centres, _ = spectra.symlog_bins(pooled["eigenvalue"].to_numpy(), 2 / 0.01)
    counts = pooled_counts(results, SGD, edges)
    # (a): six steps from the first to the last, every bin
    drawn = sorted(s for s in set(data.loc[data["panel"] == "histogram", "series"]) if s != "2/eta")
    assert drawn == sorted(f"step {s}" for s in SPECTRA_STEPS)
    for step in SPECTRA_STEPS:
        c = curve(data, "histogram", f"step {step}")
        np.testing.assert_allclose(c["x"], centres)
        np.testing.assert_allclose(c["y"], counts[step])
        # (b): every recorded step, the bins that hold eigenvalues
        d = curve(data, "density", f"step {step}")
        kept = counts[step] > 0
        np.testing.assert_allclose(d["x"], centres[kept])
        np.testing.assert_allclose(d["y"], counts[step][kept])
        assert d["y"].sum() == pytest.approx(len(pooled[pooled["step"] == step]) / len(SGD))
    line = curve(data, "histogram", "2/eta")
    assert (line["x"] == 200.0).all()


def test_histograms_pick_six_steps_spread_over_training(tmp_path):
    root = tmp_path / "results"
    rng = np.random.default_rng(1)
    fake_run(root, "long", "sgd", 0, 0.0, rng)
    many = pd.DataFrame(
        {"step": np.repeat(np.arange(0, 41) * 10, 3), "eigenvalue": np.tile([-0.1, 1.0, 5.0], 41)}
    )
    many.to_parquet(root / "train" / "long" / "spectra.parquet", index=False)
    data = draw(root, tmp_path, runs=["long"])
    hist = {s for s in data.loc[data["panel"] == "histogram", "series"] if s != "2/eta"}
    assert hist == {f"step {s}" for s in (0, 80, 160, 240, 320, 400)}
    assert data.loc[data["panel"] == "density", "series"].nunique() == 41


def test_sgd_without_the_spectrum_pools_the_first_condition_that_has_it(tmp_path):
    root = tmp_path / "results"
    rng = np.random.default_rng(2)
    fake_run(root, "plain", "sgd", 0, 0.0, rng, spectrum=False)
    fake_run(root, "neg", "cgd-negative", 0, 0.0, rng, spectrum=False)
    key, members = spectra.pooled(load_runs(root, ["plain", "neg"]))
    assert key[0] == "cgd-negative" and [m.run_id for m in members] == ["neg"]
    fig, _ = spectra.plot_spectra(load_runs(root, ["plain", "neg"]), "f")
    assert "CGD negative" in fig.texts[0].get_text()
    spectra.style.plt.close(fig)
    with pytest.raises(ValueError, match="no run recorded the Hessian spectrum"):
        spectra.plot_spectra(load_runs(root, ["plain"]), "f")


def test_a_run_without_its_spectra_fails_naming_the_file(results, tmp_path):
    # a run trained before spectra.parquet existed
    root = tmp_path / "results"
    fake_run(root, "old", "sgd", 0, 0.0, np.random.default_rng(3))
    path = root / "train" / "old" / "spectra.parquet"
    path.unlink()
    with pytest.raises(UnreadableFile, match=f"{path}: no such file"):
        spectra.plot_spectra(load_runs(root, ["old"]), "f")
    # one that should have kept eigenvalues and kept none
    pd.DataFrame({"step": np.array([], dtype=np.int64), "eigenvalue": []}).to_parquet(path)
    with pytest.raises(UnreadableFile, match=f"{path}: has no rows"):
        spectra.plot_spectra(load_runs(root, ["old"]), "f")


def test_cgd_runs_are_not_pooled_with_sgd(results, tmp_path):
    data = draw(results, tmp_path, runs=SGD + NEG)
    pooled = pd.concat([pd.read_parquet(results / "train" / r / "spectra.parquet") for r in SGD])
    total = data.loc[data["panel"] == "density", "y"].sum()
    assert total == pytest.approx(len(pooled) / len(SGD))
