"""Claims 5 and 9 (Sec. 4.2, App. C.1, C.2) on hand-made exponents and subspaces.

Every criterion is tested on both sides of its threshold: reversing any comparison in
``chaosgd.analysis.claims.lyapunov`` turns a test here red."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from chaosgd.analysis.claims.lyapunov import claim_exponents, claim_subspaces
from chaosgd.analysis.claims.results import Results
from chaosgd.runs.artifacts import write_parquet

from support.claims import NOT_RUN, NOT_SUPPORTED, SUPPORTED, fake_run

STEPS = np.array([1, 2, 4, 8, 16, 100, 200, 300, 400])


def fake_exponents(root, run, lam1, steps=STEPS):
    rows = pd.DataFrame(
        {"step": steps, "method": "svd", "lambda_1": lam1, "lambda_N": -np.abs(lam1) - 1e-3}
    )
    write_parquet(rows, root / "lyapunov" / run / "exponents.parquet")


def lyapunov_reference(root, lam1, steps=STEPS, seeds=1):
    runs = []
    for s in range(seeds):
        runs.append(fake_run(root, f"ref{s}", "sgd", s))
        fake_exponents(root, f"ref{s}", lam1, steps)
    return {"e": runs}


# --- claim 5: the exponents ----------------------------------------------------------------------


def test_exponents_that_start_above_0_and_approach_it(tmp_path):
    lyap = lyapunov_reference(tmp_path, 0.01 * STEPS.astype(float) ** -0.7, seeds=2)
    positive, slope = claim_exponents(Results(tmp_path), lyap)
    assert (positive.verdict, slope.verdict) == (SUPPORTED, SUPPORTED)
    assert positive.value == pytest.approx(0.01)  # λ1 t = 0.01 t^0.3, smallest at step 1
    assert slope.value == pytest.approx(-0.7) and slope.n == 2
    assert f"{200 ** -0.7:.3g}, {200 ** -0.7:.3g}" in slope.detail  # λ1(400) / λ1(2)
    assert positive.threshold.startswith("lower end > 1e-06")


def test_exponents_that_do_not_approach_0(tmp_path):
    """Constant or growing λ1 (persistent chaos), or a noisy flat one: not approaching 0."""
    rng = np.random.default_rng(0)
    for lam1 in (
        np.full(STEPS.size, 0.01),
        0.001 * STEPS.astype(float) ** 0.2,
        0.01 * np.exp(0.3 * rng.standard_normal(STEPS.size)),
    ):
        lyap = lyapunov_reference(tmp_path, lam1)
        positive, slope = claim_exponents(Results(tmp_path), lyap)
        assert positive.verdict == SUPPORTED and slope.verdict == NOT_SUPPORTED


def test_exponents_at_the_neutral_level_are_not_above_0(tmp_path):
    """λ1 t of an untouched direction (≈ neutral_tol) is not "above 0"; the margin scales with
    the configured neutral_tol."""
    lam1 = 0.01 * STEPS.astype(float) ** -0.7
    lam1[0] = 1e-7  # λ1 t = 1e-7 at step 1: 10 neutral_tol, below the margin of 100
    lyap = lyapunov_reference(tmp_path, lam1)
    positive, slope = claim_exponents(Results(tmp_path), lyap)
    assert positive.verdict == NOT_SUPPORTED and positive.value == pytest.approx(1e-7)
    assert slope.verdict == SUPPORTED  # the first readout is not in the slope
    positive, _ = claim_exponents(Results(tmp_path), lyap, neutral_tol=1e-10)
    assert positive.verdict == SUPPORTED
    lam1[4] = -1e-4  # below 0 at step 16: fails both
    lyap = lyapunov_reference(tmp_path, lam1)
    positive, slope = claim_exponents(Results(tmp_path), lyap)
    assert (positive.verdict, slope.verdict) == (NOT_SUPPORTED, NOT_SUPPORTED)


def test_exponents_without_enough_readouts_for_a_slope(tmp_path):
    lyap = lyapunov_reference(tmp_path, [0.02, 0.01, 0.005], steps=np.array([1, 2, 3]))
    positive, slope = claim_exponents(Results(tmp_path), lyap)
    assert positive.verdict == SUPPORTED
    assert slope.verdict == NOT_RUN and "3 exact readouts" in slope.detail


def test_only_exact_readouts_count(tmp_path):
    lyap = lyapunov_reference(tmp_path, 0.01 * STEPS.astype(float) ** -0.7)
    path = tmp_path / "lyapunov" / "ref0" / "exponents.parquet"
    rows = pd.read_parquet(path)
    rows.loc[0, "method"] = "benettin"  # an estimate of 1e-10 at step 1: ignored
    rows.loc[0, "lambda_1"] = 1e-10
    write_parquet(rows, path)
    positive, _ = claim_exponents(Results(tmp_path), lyap)
    assert positive.verdict == SUPPORTED and positive.value > 0.01


# --- claim 9: subspaces --------------------------------------------------------------------------


def fake_subspaces(root, run, late, early=0.3, t0s=(10, 200), steps=(100, 200, 300, 400)):
    """App. C.2's table: similarity ``early`` against t₀ = 10 and ``late`` against t₀ = 200
    (baselines 0.3 and 0.35)."""
    rows = []
    for t0, sim in zip(t0s, (early, late)):
        for step in steps:
            if step < t0:  # the row at t₀ itself compares the basis with itself
                continue
            row = {"t0": t0, "step": step}
            for x in (
                "chaotic",
                "edge",
                "nonchaotic",
                "chaotic_vs_nonchaotic",
                "nonchaotic_vs_chaotic",
            ):
                row.update(
                    {
                        f"dim0_{x}": 40,
                        f"dim_{x}": 30,
                        f"similarity_{x}": sim,
                        f"baseline_{x}": 0.3,
                        f"random_{x}": 0.35,
                    }
                )
            rows.append(row)
    write_parquet(pd.DataFrame(rows), root / "lyapunov" / run / "subspaces.parquet")


@pytest.mark.parametrize(
    "late, early, expected",
    [
        (0.9, 0.3, SUPPORTED),  # stable late, whatever it was early
        (0.4, 0.9, NOT_SUPPORTED),  # only 0.05 above the larger baseline at the later t₀
        (math.nan, 0.9, NOT_SUPPORTED),  # an empty chaotic subspace
    ],
)
def test_subspace_claim_on_both_sides(tmp_path, late, early, expected):
    lyap = lyapunov_reference(tmp_path, 0.01 * STEPS.astype(float) ** -0.7, seeds=2)
    for run in lyap["e"]:
        fake_subspaces(tmp_path, run, late, early)
    (row,) = claim_subspaces(Results(tmp_path), lyap)
    assert row.claim == 9 and row.verdict == expected
    if np.isfinite(late):
        assert row.value == pytest.approx(late - 0.35)
    assert "t₀ = 200: steps 300–400" in row.detail


def test_subspace_claim_not_run_without_readouts_after_t0(tmp_path):
    lyap = lyapunov_reference(tmp_path, 0.01 * STEPS.astype(float) ** -0.7)
    fake_subspaces(tmp_path, "ref0", 0.9, t0s=(400,))
    (row,) = claim_subspaces(Results(tmp_path), lyap)
    assert row.verdict == NOT_RUN and row.threshold == "lower end ≥ 0.1"
