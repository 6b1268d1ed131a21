"""Claims 6, 7, 17 and 18 (Sec. 4.2, Fig. 3, App. C.5) on hand-made ensembles.

Every criterion is tested on both sides of its threshold and on a counter-example built to be
false: reversing any comparison in ``chaosgd.analysis.claims.divergence`` turns a test here
red."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from chaosgd import fits
from chaosgd.analysis.claims.divergence import (
    TOPK_BOUNDS,
    claim_divergence,
    claim_fit_shape,
    claim_growth,
)
from chaosgd.analysis.claims.results import Results
from chaosgd.planning.vocab import TOPK_ABSENT
from chaosgd.runs.artifacts import write_parquet

from support.claims import (
    NOT_RUN,
    NOT_SUPPORTED,
    STRATEGIES,
    SUPPORTED,
    curve_of,
    fake_reference,
)
from support.fits import diffusing_distances


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, SUPPORTED),
        ({"alpha_se": 0.005}, NOT_SUPPORTED),  # α = 0.0081 within 2 standard errors of 0
        ({"alpha_se": 0.004}, SUPPORTED),
        ({"alpha": [1e-6, 1e-6, 1e-6, 0.0, 0.0]}, NOT_SUPPORTED),  # 3 of 5 directions
        ({"alpha": [1e-6, 1e-6, 1e-6, 1e-6, 0.0]}, SUPPORTED),  # 4 of 5
        ({"growing": False}, NOT_SUPPORTED),  # not diverging
        ({"growing": "before"}, NOT_SUPPORTED),  # no longer diverging after convergence
        ({"r2": 0.2}, SUPPORTED),  # R² alone decides nothing
    ],
)
def test_divergence_claim_on_both_sides(tmp_path, changes, expected):
    refs = fake_reference(tmp_path, **changes)
    linear = claim_divergence(Results(tmp_path), refs, 0.1)[0]
    assert linear.claim == 6 and linear.verdict == expected
    assert linear.threshold == "≥ 0.8"


def divergence_from_fits(root, curves):
    """fits.parquet made by the fits stage from synthetic distance curves, one per direction."""
    refs = fake_reference(root)
    rows = []
    for strategy, (t, d) in zip(STRATEGIES, curves):
        rows.append(
            pd.DataFrame(
                {
                    "dtype": "float32",
                    "strategy": strategy,
                    "eps": 0.1,
                    "step": t.astype(np.int64),
                    "distance": d,
                }
            )
        )
    dist = pd.concat(rows, ignore_index=True)
    write_parquet(dist, root / "ensembles" / "ref" / "distances.parquet")
    table, bounds = fits.fit_table(dist)  # without exponents: no bounds
    write_parquet(table, root / "fits" / "ref" / "fits.parquet")
    write_parquet(bounds, root / "fits" / "ref" / "bounds.parquet")
    write_parquet(  # converged at step 1000 of 4000
        pd.DataFrame(
            {
                "step": [0, 1000, 4000],
                "train_acc": [0.1, 0.9, 0.9],
                "train_loss": 0.3,
                "val_acc": 0.8,
                "val_loss": 0.4,
            }
        ),
        root / "train" / "ref" / "epochs.parquet",
    )
    return claim_divergence(Results(root), refs, 0.1) + claim_fit_shape(Results(root), refs, 0.1)


def test_a_random_walk_is_not_linear_divergence(tmp_path):
    """Diffusion alone (α = 0, β > 0), as the fits stage fits it: not supported, though its
    distances grow after convergence and the model fits them well."""
    curves = [diffusing_distances(seed) for seed in range(5)]
    linear, upper, lower, _ = divergence_from_fits(tmp_path, curves)
    assert linear.verdict == NOT_SUPPORTED and linear.value <= 0.2
    assert "growing after convergence True" in linear.detail  # growing all the same
    # the bounds without exact readouts: NaN margins, never support
    assert upper.verdict == lower.verdict == NOT_SUPPORTED and math.isnan(upper.value)
    assert "informative readouts: none (no exact readout step)" in lower.detail


def test_linear_divergence_passes(tmp_path):
    curves = [diffusing_distances(seed, drift=1.0) for seed in range(5)]
    linear, _, _, _ = divergence_from_fits(tmp_path, curves)
    assert linear.verdict == SUPPORTED and linear.value == 1.0


# the upper bound's margins of fake_reference: at the readouts, and between them
DEFAULTS = (("upper", 1.0), ("upper_between", 1.5))


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, (SUPPORTED, SUPPORTED)),
        ({"upper": [1.0, 1.0, -0.1, 1.0, 1.0]}, (NOT_SUPPORTED, SUPPORTED)),
        # holds at the readouts, fails between them (λ1(t) at the recorded steps)
        ({"upper_between": [1.5, 1.5, 1.5, -0.1, 1.5]}, (NOT_SUPPORTED, SUPPORTED)),
        ({"upper_between": [1.5, 1.5, 1.5, 0.0, 1.5]}, (SUPPORTED, SUPPORTED)),
        ({"lower": [1.0, -0.1, 1.0, 1.0, 1.0]}, (SUPPORTED, NOT_SUPPORTED)),
        ({"lower_log_max": -20.0}, (SUPPORTED, SUPPORTED)),  # reported, the bounds table decides
    ],
)
def test_bounds_claim_on_both_sides(tmp_path, changes, expected):
    refs = fake_reference(tmp_path, **changes)
    _, upper, lower = claim_divergence(Results(tmp_path), refs, 0.1)
    assert upper.value == min(min(np.atleast_1d(changes.get(k, d))) for k, d in DEFAULTS)
    assert (upper.claim, lower.claim) == (7, 7)
    assert (upper.verdict, lower.verdict) == expected
    assert upper.threshold == "≥ 0"
    assert lower.threshold == "≥ 0, and holding at a readout with 0.01 ≤ e^{λN t} ≤ 0.5"


@pytest.mark.parametrize(
    "bounds, expected",
    [
        # e^{λN t} ≈ 1 after one step (d ≈ ε follows to first order) and vacuous later: the
        # bound holds everywhere and says nothing
        (((1, 0.99), (2, 0.9), (10, 1e-5)), NOT_SUPPORTED),
        (((1, 0.99), (5, 0.2), (10, 1e-5)), SUPPORTED),  # holds where it is informative
        (((1, 0.99), (5, 0.2, 0.015), (10, 1e-5)), NOT_SUPPORTED),  # fails there: d < 0.02
        (((1, 0.99), (5, 0.2, 0.2 * 0.1), (10, 1e-5)), SUPPORTED),  # d = the bound: holds
        (((1, 0.99), (5, 0.5)), SUPPORTED),  # contracted twofold: informative
        (((1, 0.99), (5, 0.6)), NOT_SUPPORTED),  # not yet
        (((5, 0.01), (10, 1e-5)), SUPPORTED),  # a hundredth of ε: not vacuous yet
        (((5, 0.005), (10, 1e-5)), NOT_SUPPORTED),  # vacuous
        ((), NOT_SUPPORTED),  # no exact readout step met a recorded one
    ],
)
def test_lower_bound_must_hold_where_it_is_informative(tmp_path, bounds, expected):
    """fits.parquet says the lower bound held at every readout (margin 2); whether it held
    where it says something comes from bounds.parquet."""
    refs = fake_reference(tmp_path, bounds=bounds)
    _, _, lower = claim_divergence(Results(tmp_path), refs, 0.1)
    assert lower.verdict == expected and lower.value == 2.0
    if expected == SUPPORTED:
        assert "max_chaos step 5: e^{λN t}" in lower.detail
    elif bounds and all(share > 0.5 or share < 0.01 for _, share, *_ in bounds):
        assert "informative readouts: none (e^{λN t} from" in lower.detail


def test_lower_bound_informative_readouts_are_those_of_the_main_eps(tmp_path):
    refs = fake_reference(tmp_path)
    path = tmp_path / "fits" / "ref" / "bounds.parquet"
    b = pd.read_parquet(path)
    b.loc[b["step"] == 5, "eps"] = 1.0  # the informative readouts belong to another ε
    write_parquet(b, path)
    _, _, lower = claim_divergence(Results(tmp_path), refs, 0.1)
    assert lower.verdict == NOT_SUPPORTED


@pytest.mark.parametrize("nan_in", ["r2", "upper", "lower", "lower_log_max"])
def test_nan_fit_or_bound_margins_fail_their_criterion_rather_than_being_skipped(tmp_path, nan_in):
    """A curve without variance has no R², one without an exact readout step no bound margins:
    numbers the fits stage writes as NaN, which a NaN-skipping minimum would ignore. The largest
    λN t is reported only."""
    values = {nan_in: [1.0, 1.0, math.nan, 1.0, 1.0]}
    refs = fake_reference(tmp_path, **values)
    linear, upper, lower = claim_divergence(Results(tmp_path), refs, 0.1)
    assert linear.verdict == SUPPORTED  # R² is reported, not a criterion
    assert upper.verdict == (NOT_SUPPORTED if nan_in == "upper" else SUPPORTED)
    assert lower.verdict == (NOT_SUPPORTED if nan_in == "lower" else SUPPORTED)


# --- claim 17: growing after convergence, every direction ---------------------------------------


@pytest.mark.parametrize(
    "growing, expected",
    [
        (True, SUPPORTED),
        ([True, True, True, True, "before"], NOT_SUPPORTED),  # 4 of 5: claim 6 passes
        ([True, True, True, True, "flat"], NOT_SUPPORTED),  # level after convergence: ratio 1
        (False, NOT_SUPPORTED),
    ],
)
def test_growth_claim_on_every_direction(tmp_path, growing, expected):
    refs = fake_reference(tmp_path, growing=growing)
    (row,) = claim_growth(Results(tmp_path), refs, 0.1)
    assert row.claim == 17 and row.verdict == expected and row.threshold == "> 1"
    assert "converged at step 5" in row.detail
    if growing is True:
        assert row.value == pytest.approx(1.0 / 0.55)  # d from 0.55 at step 5 to 1.0
    if isinstance(growing, list):
        linear = claim_divergence(Results(tmp_path), refs, 0.1)[0]
        assert linear.verdict == SUPPORTED  # claim 6 asks this of 80 % of the directions
        assert row.value <= 1.0


def test_growth_claim_needs_curves_past_convergence(tmp_path):
    refs = fake_reference(tmp_path)
    path = tmp_path / "ensembles" / "ref" / "distances.parquet"
    d = pd.read_parquet(path)
    write_parquet(d[d["step"] < 5], path)
    with pytest.raises(ValueError, match="before the reference converged"):
        claim_growth(Results(tmp_path), refs, 0.1)


# --- claim 18: √(αt² + βt + ε²) approximates the divergence ------------------------------------


def test_fit_shape_claim_on_the_fitted_model(tmp_path):
    (row,) = claim_fit_shape(Results(tmp_path), fake_reference(tmp_path), 0.1)
    assert row.claim == 18 and row.verdict == SUPPORTED and row.value == pytest.approx(0, abs=1e-12)
    assert row.threshold == "≤ 0.1"


@pytest.mark.parametrize("factor, expected", [(1.3, SUPPORTED), (1.4, NOT_SUPPORTED)])
def test_fit_shape_claim_on_both_sides(tmp_path, factor, expected):
    """One direction's α off by ``factor``: its deviation, computed here, on either side of
    0.1."""
    alpha = [0.0081] * 4 + [0.0081 * factor]
    (row,) = claim_fit_shape(Results(tmp_path), fake_reference(tmp_path, alpha=alpha), 0.1)
    t, d = curve_of(1.0, True)
    fitted = np.sqrt(alpha[-1] * t**2 + 0.018 * t + 0.01)
    rms = float(np.sqrt(np.mean(((fitted - d) / d) ** 2)))
    assert (rms <= 0.1) == (expected == SUPPORTED)
    assert row.verdict == expected and row.value == pytest.approx(rms)


def test_a_saturating_divergence_is_not_approximated(tmp_path):
    """d = ε + (1 − e^{−t/τ}), fitted by least squares of d² as the fits stage does: the model
    cannot follow a curve that levels off."""
    t = np.arange(0, 4001, 10, dtype=np.float64)
    saturating = [(t, 0.1 + (1 - np.exp(-t / 500))) for _ in STRATEGIES]
    *_, shape = divergence_from_fits(tmp_path, saturating)
    assert shape.verdict == NOT_SUPPORTED and shape.value > 0.15


def test_the_model_with_noise_is_approximated(tmp_path):
    rng = np.random.default_rng(0)
    t = np.arange(0, 4001, 10, dtype=np.float64)
    true = np.sqrt((0.9 / 4000) ** 2 * t**2 + t / 4000 + 0.01)
    noisy = [(t, true * (1 + 0.02 * rng.standard_normal(t.size))) for _ in STRATEGIES]
    *_, shape = divergence_from_fits(tmp_path, noisy)
    assert shape.verdict == SUPPORTED and 0.01 < shape.value < 0.03


def test_fit_shape_claim_needs_a_fit_per_direction(tmp_path):
    refs = fake_reference(tmp_path)
    path = tmp_path / "fits" / "ref" / "fits.parquet"
    write_parquet(pd.read_parquet(path).iloc[:4], path)
    with pytest.raises(ValueError, match="fitted directions"):
        claim_fit_shape(Results(tmp_path), refs, 0.1)


def test_ensemble_claims_not_run_without_references(tmp_path):
    for check, claim in ((claim_growth, 17), (claim_fit_shape, 18)):
        (row,) = check(Results(tmp_path), {}, 0.1)
        assert row.claim == claim and row.verdict == NOT_RUN and row.threshold


def test_upper_bound_at_the_readouts_alone_without_lambda1_between(tmp_path):
    """Fits made without λ1(t) between readouts (upper_steps 0, the margin NaN) are judged at
    the readouts, and the detail says so; with it, the worse of the two decides."""
    refs = fake_reference(tmp_path, upper_between=math.nan, between_steps=0)
    _, upper, _ = claim_divergence(Results(tmp_path), refs, 0.1)
    assert upper.verdict == SUPPORTED and upper.value == 1.0
    assert "no λ1 between readouts" in upper.detail
    refs = fake_reference(tmp_path, upper_between=0.5)
    _, upper, _ = claim_divergence(Results(tmp_path), refs, 0.1)
    assert upper.value == 0.5 and "10 recorded steps with λ1(t)" in upper.detail


# --- around a top-k Lyapunov reference: three directions, claim 7 not run --------------------

TOPK = 8  # the reference's Lyapunov run followed its 8 leading exponents


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, SUPPORTED),
        ({"alpha": [1e-6, 1e-6, 0.0]}, NOT_SUPPORTED),  # 2 of 3 < 80 %
        ({"alpha_se": 0.005}, NOT_SUPPORTED),  # α within 2 standard errors of 0
        ({"growing": [True, True, "before"]}, NOT_SUPPORTED),
    ],
)
def test_divergence_claim_over_the_three_directions_of_a_topk_reference(
    tmp_path, changes, expected
):
    refs = fake_reference(tmp_path, topk=TOPK, **changes)
    linear = claim_divergence(Results(tmp_path), refs, 0.1)[0]
    assert linear.claim == 6 and linear.verdict == expected
    assert "over the 3 directions run of Fig. 3a's 5: max_convergence, nonchaotic not run" in (
        linear.quantity
    )
    assert TOPK_ABSENT in linear.quantity
    assert "max_convergence" not in linear.detail and "chaotic: α/se" in linear.detail


@pytest.mark.parametrize(
    "changes", [{}, {"upper": -1.0}, {"lower": -1.0}, {"upper_between": -1.0}, {"bounds": ()}]
)
def test_bounds_claim_is_not_run_around_a_topk_reference(tmp_path, changes):
    """Whatever the fits stage's margins (around a top-k map it finds no exact readout: NaN),
    neither bound is judged: λN is not known, and e^{λ̂1 t}ε lies below e^{λ1 t}ε."""
    refs = fake_reference(tmp_path, topk=TOPK, **changes)
    _, upper, lower = claim_divergence(Results(tmp_path), refs, 0.1)
    assert (upper.claim, lower.claim) == (7, 7)
    assert upper.verdict == lower.verdict == NOT_RUN
    assert upper.detail == lower.detail == TOPK_BOUNDS
    assert "upper" in upper.statement and "lower" in lower.statement
    assert upper.experiment == lower.experiment == "fig"
    # the exact map's reference with the same margins is judged
    exact = fake_reference(tmp_path, **changes)
    assert NOT_RUN not in [r.verdict for r in claim_divergence(Results(tmp_path), exact, 0.1)]


@pytest.mark.parametrize(
    "growing, expected",
    [
        (True, SUPPORTED),
        ([True, True, "before"], NOT_SUPPORTED),
        ([True, "flat", True], NOT_SUPPORTED),
    ],
)
def test_growth_claim_over_the_three_directions_of_a_topk_reference(tmp_path, growing, expected):
    refs = fake_reference(tmp_path, topk=TOPK, growing=growing)
    (row,) = claim_growth(Results(tmp_path), refs, 0.1)
    assert row.claim == 17 and row.verdict == expected
    assert "max_convergence, nonchaotic not run" in row.quantity
    assert "max_convergence" not in row.detail and "random:" in row.detail


@pytest.mark.parametrize("factor, expected", [(1.3, SUPPORTED), (1.4, NOT_SUPPORTED)])
def test_fit_shape_claim_over_the_three_directions_of_a_topk_reference(tmp_path, factor, expected):
    alpha = [0.0081] * 2 + [0.0081 * factor]
    refs = fake_reference(tmp_path, topk=TOPK, alpha=alpha)
    (row,) = claim_fit_shape(Results(tmp_path), refs, 0.1)
    assert row.claim == 18 and row.verdict == expected
    assert "max_convergence, nonchaotic not run" in row.quantity
    named = [d.split(" ")[0] for d in row.detail.removeprefix("per direction: ").split("; ")]
    assert named == ["chaotic", "max_chaos", "random"]


def test_directions_missing_without_a_topk_reference_are_named_as_such(tmp_path):
    """Ensembles that lack a direction around an exact map (results of another kind): named
    as absent from the results, not put down to lyapunov.topk."""
    refs = fake_reference(tmp_path)
    for stage, name in (("ensembles", "distances"), ("fits", "fits")):
        path = tmp_path / stage / "ref" / f"{name}.parquet"
        t = pd.read_parquet(path)
        write_parquet(t[t["strategy"] != "nonchaotic"], path)
    (row,) = claim_growth(Results(tmp_path), refs, 0.1)
    assert row.verdict == SUPPORTED
    assert "over the 4 directions run of Fig. 3a's 5: nonchaotic not run (not in the " in (
        row.quantity
    )
    assert TOPK_ABSENT not in row.quantity
