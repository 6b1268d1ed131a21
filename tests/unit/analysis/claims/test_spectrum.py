"""Claims 3, 4, 12 and 13 (Sec. 4.1, Sec. 4.2, App. B.2) on hand-made spectra with known
answers.

Every criterion is tested on both sides of its threshold: reversing any comparison in
``chaosgd.analysis.claims.spectrum`` turns a test here red."""

from __future__ import annotations

import numpy as np
import pytest

from chaosgd.analysis.claims.results import Results
from chaosgd.analysis.claims.spectrum import (
    claim_hessian_norm,
    claim_negative_steps,
    claim_spectrum,
)

from support.claims import NOT_RUN, NOT_SUPPORTED, SUPPORTED, fake_run, verdicts

N_STEPS = 20


def _counts(values) -> np.ndarray:
    """A (first, last) pair moves linearly over the steps; anything else is per step."""
    values = np.asarray(values, dtype=float)
    return np.linspace(*values, N_STEPS) if values.shape == (2,) else values


def spectrum(
    n_chaotic=0.0,
    neg=(30, 10),
    pos=(200, 240),
    frac=(0.6, 0.2),
    cos=(0.02, 0.01),
    lam_min=-1.0,
    lam_max=5.0,
):
    """Per-step spectrum columns over 20 steps: counts moving linearly from the first to the
    second value (or given per step); the reference convention adds half the null eigenvalues
    (of N = 500) to each side. ``lam_min`` / ``lam_max``: a constant or per step."""
    negs, poss = _counts(neg), _counts(pos)
    half_null = (500 - negs - poss) / 2
    return {
        "n_positive_chaotic": np.full(N_STEPS, n_chaotic),
        "n_negative": negs,
        "n_positive": poss,
        "grad_frac_positive": np.full(N_STEPS, frac[0]),
        "grad_frac_negative": np.full(N_STEPS, frac[1]),
        "ref_n_negative": negs + half_null,
        "ref_n_positive": poss + half_null,
        "ref_cos_positive": np.full(N_STEPS, cos[0]),
        "ref_cos_negative": np.full(N_STEPS, cos[1]),
        "lambda_min": np.broadcast_to(lam_min, N_STEPS).astype(float),
        "lambda_max": np.broadcast_to(lam_max, N_STEPS).astype(float),
    }


def sgd_runs(root, specs):
    """One SGD run recording the spectrum per entry of ``specs`` (seed = its index)."""
    return [fake_run(root, f"sgd{s}", "sgd", s, spectrum=spec) for s, spec in enumerate(specs)]


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, [SUPPORTED, SUPPORTED, SUPPORTED]),
        ({"n_chaotic": 1.0}, [NOT_SUPPORTED, SUPPORTED, SUPPORTED]),
        ({"neg": (10, 30)}, [SUPPORTED, NOT_SUPPORTED, SUPPORTED]),  # negative share rises
        # the positive count falls, the negative one faster: the positive share rises all the
        # same, and among the nonzero eigenvalues that is the claim
        ({"pos": (240, 200)}, [SUPPORTED, SUPPORTED, SUPPORTED]),
        ({"frac": (0.2, 0.6)}, [SUPPORTED, SUPPORTED, NOT_SUPPORTED]),  # more negative overlap
    ],
)
def test_spectrum_claims_on_both_sides(tmp_path, changes, expected):
    runs = sgd_runs(tmp_path, [spectrum(**changes)] * 2)
    rows = claim_spectrum(Results(tmp_path), {"e": runs})
    assert [r.claim for r in rows] == [3, 3, 4]
    assert verdicts(rows) == expected
    assert "reference code's convention" in rows[1].detail
    assert "reference code's convention" in rows[2].detail


def test_the_negative_share_is_the_one_statement_of_claim_3(tmp_path):
    """The counts grow in proportion (the rank doubles halfway): the share does not move, so
    neither "falls" nor "rises" holds, though the positive count rises by 100."""
    neg, pos = np.repeat([10, 20], N_STEPS // 2), np.repeat([100, 200], N_STEPS // 2)
    rows = claim_spectrum(
        Results(tmp_path), {"e": sgd_runs(tmp_path, [spectrum(neg=neg, pos=pos)])}
    )
    assert rows[1].value == 0 and rows[1].verdict == NOT_SUPPORTED
    assert rows[1].threshold == "upper end < 0"
    assert "absolute counts, last minus first tenth: negative 10" in rows[1].detail
    assert "positive 100" in rows[1].detail


def test_claim_3_is_not_fooled_by_the_reference_counts(tmp_path):
    """Counter-example: in the reference convention (all N, null ones split evenly) the negative
    count falls 205 → 165 and the positive rises 295 → 335, only because the rank grows; among
    the nonzero eigenvalues the negative share rises from 10/110 to 30/230."""
    spec = spectrum(neg=(10, 30), pos=(100, 200))
    rows = claim_spectrum(Results(tmp_path), {"e": sgd_runs(tmp_path, [spec, spec])})
    assert rows[1].value > 0 and rows[1].verdict == NOT_SUPPORTED
    assert "which would be supported" in rows[1].detail


def test_spectrum_claims_report_the_reference_convention(tmp_path):
    """The reference's counts include the null eigenvalues split evenly: as the rank grows they
    fall on both sides; its mean |cos| can disagree with the energy fractions. Both are
    reported, neither decides."""
    runs = sgd_runs(tmp_path, [spectrum(cos=(0.01, 0.02))] * 2)
    rows = claim_spectrum(Results(tmp_path), {"e": runs})
    assert verdicts(rows) == [SUPPORTED] * 3
    # over 20 steps, last 2 minus first 2: negative -18.9, positive +37.9; rank +18.9, so each
    # side of the reference's count loses 9.47 null eigenvalues
    first = np.mean([30 / 230, (30 - 20 / 19) / (230 + 20 / 19)])
    last = np.mean([10 / 250, (10 + 20 / 19) / (250 - 20 / 19)])
    assert rows[1].value == pytest.approx(last - first)
    assert (
        "absolute counts, last minus first tenth: negative -18.9 [-18.9, -18.9]" in rows[1].detail
    )
    assert "split evenly): negative -28.4 [-28.4, -28.4] (seed range), positive 28.4" in (
        rows[1].detail
    )
    assert "which would be supported" in rows[1].detail
    assert "-0.01 [-0.01, -0.01] (seed range), which would be not supported" in rows[2].detail


def test_spectrum_claims_not_run_without_a_spectrum(tmp_path):
    runs = [fake_run(tmp_path, "sgd0", "sgd", 0)]
    for fn, claims in (
        (claim_spectrum, [3, 4]),
        (claim_negative_steps, [12]),
        (claim_hessian_norm, [13]),
    ):
        rows = fn(Results(tmp_path), {"e": runs})
        assert [r.claim for r in rows] == claims and set(verdicts(rows)) == {NOT_RUN}
        assert all("training.spectrum: false" in r.detail for r in rows)


@pytest.mark.parametrize(
    "fewest, expected",
    [
        ((10, 10), SUPPORTED),
        ((1, 5), SUPPORTED),  # one negative eigenvalue is one locally chaotic direction
        ((0, 5), NOT_SUPPORTED),  # one step of one seed without any
    ],
)
def test_negative_eigenvalues_at_every_step_on_both_sides(tmp_path, fewest, expected):
    specs = []
    for low in fewest:
        neg = np.linspace(30, 10, N_STEPS)
        neg[7] = low  # a single step
        specs.append(spectrum(neg=neg))
    (row,) = claim_negative_steps(Results(tmp_path), {"e": sgd_runs(tmp_path, specs)})
    assert row.claim == 12 and row.verdict == expected
    assert (row.low, row.interval, row.threshold) == (min(fewest), "seed range", "lower end ≥ 1")
    assert "Sec. 4.1" in row.statement and "Theorem 2.1" in row.statement
    assert f"steps with fewer than 1: {sum(f < 1 for f in fewest)} of 40" in row.detail


def test_negative_eigenvalues_at_every_step_fails_with_one_empty_step_in_every_seed(tmp_path):
    neg = np.linspace(30, 10, N_STEPS)
    neg[-1] = 0
    runs = sgd_runs(tmp_path, [spectrum(neg=neg)] * 3)
    (row,) = claim_negative_steps(Results(tmp_path), {"e": runs})
    assert row.verdict == NOT_SUPPORTED and row.value == 0 and row.interval == "95% CI"


def tenths(levels):
    """‖H‖₂ per step as λmax, constant over each tenth (2 steps) at ``levels``."""
    return np.repeat(np.asarray(levels, dtype=float), N_STEPS // 10)


@pytest.mark.parametrize(
    "last, expected",
    [
        (5.0, SUPPORTED),
        (1.1, SUPPORTED),
        (1.0, SUPPORTED),  # exactly a tenth of the peak: not fallen by an order of magnitude
        (0.9, NOT_SUPPORTED),
    ],
)
def test_the_hessian_norm_claim_on_both_sides(tmp_path, last, expected):
    """The peak tenth is 10 (the second), the last tenth ``last``."""
    lam_max = tenths([6, 10, 8, 7, 6, 5, 5, 5, 5, last])
    runs = sgd_runs(tmp_path, [spectrum(lam_min=-0.5, lam_max=lam_max)] * 2)
    (row,) = claim_hessian_norm(Results(tmp_path), {"e": runs})
    assert row.claim == 13 and row.verdict == expected
    assert row.value == pytest.approx(last / 10) and row.threshold == "lower end ≥ 0.1"
    assert "the peak tenth's: 10, 10" in row.detail


def test_a_hessian_decaying_to_zero_is_not_supported(tmp_path):
    """Counter-example: ‖H‖₂ decays exponentially to 1e-3 of its start."""
    decay = 10.0 * np.logspace(0, -3, N_STEPS)
    runs = sgd_runs(tmp_path, [spectrum(lam_min=-decay / 2, lam_max=decay)] * 3)
    (row,) = claim_hessian_norm(Results(tmp_path), {"e": runs})
    assert row.verdict == NOT_SUPPORTED and row.value < 0.01


@pytest.mark.parametrize(
    "lam_min, lam_max, expected",
    [
        # the negative end carries the norm while λmax decays: |λmin| counts
        (-5.0, 10.0 * np.logspace(0, -3, N_STEPS), SUPPORTED),
        # the positive end carries it while λmin decays to 0
        (-10.0 * np.logspace(0, -3, N_STEPS), 5.0, SUPPORTED),
        (-10.0 * np.logspace(0, -3, N_STEPS), 10.0 * np.logspace(0, -3, N_STEPS), NOT_SUPPORTED),
    ],
)
def test_the_hessian_norm_is_the_larger_end_of_the_spectrum(tmp_path, lam_min, lam_max, expected):
    runs = sgd_runs(tmp_path, [spectrum(lam_min=lam_min, lam_max=lam_max)] * 2)
    (row,) = claim_hessian_norm(Results(tmp_path), {"e": runs})
    assert row.verdict == expected


def test_experiments_sharing_their_sgd_runs_are_measured_once(tmp_path):
    runs = sgd_runs(tmp_path, [spectrum()] * 2)
    groups = {"a": runs, "b": list(reversed(runs))}
    for fn in (claim_spectrum, claim_negative_steps, claim_hessian_norm):
        assert {r.experiment for r in fn(Results(tmp_path), groups)} == {"a"}


def test_a_hessian_zero_throughout_supports_nothing(tmp_path):
    runs = sgd_runs(tmp_path, [spectrum(lam_min=0.0, lam_max=0.0)] * 2)
    (row,) = claim_hessian_norm(Results(tmp_path), {"e": runs})
    assert row.verdict == NOT_SUPPORTED and "non-finite" in row.detail
