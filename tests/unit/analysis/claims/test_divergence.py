"""Claims 6, 7, 10 and 11 (Sec. 4.2, Fig. 3, App. C.3–C.5, A.8) on hand-made ensembles.

Every criterion is tested on both sides of its threshold: reversing any comparison in
``chaosgd.analysis.claims.divergence`` turns a test here red."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from chaosgd import fits
from chaosgd.analysis.claims.divergence import claim_divergence, claim_scale, claim_sweep
from chaosgd.analysis.claims.results import Results
from chaosgd.engine import models
from chaosgd.runs.artifacts import write_parquet

from support.claims import NOT_RUN, NOT_SUPPORTED, SUPPORTED, fake_run, verdicts
from support.fits import diffusing_distances

STRATEGIES = ["max_chaos", "max_convergence", "chaotic", "nonchaotic", "random"]


def fake_reference(
    root,
    alpha=1e-6,
    alpha_se=1e-8,
    r2=0.99,
    upper=1.0,
    lower=2.0,
    lower_log_max=-0.01,
    growing=True,
    distance_max=0.2,
    hidden=20,
    accs=None,
):
    """A reference run with ensembles and fits; per-direction values may be lists of 5."""
    run = fake_run(root, "ref", "sgd", 0, hidden=hidden)
    write_parquet(  # converged at step 5 of 10
        pd.DataFrame(
            {
                "step": [0, 5, 10],
                "train_acc": [0.1, 0.9, 0.9],
                "train_loss": 0.3,
                "val_acc": 0.8,
                "val_loss": 0.4,
            }
        ),
        root / "train" / run / "epochs.parquet",
    )
    steps = np.arange(11)
    curve = 0.1 + (distance_max - 0.1) * steps / 10
    if growing == "before":  # diverging until the accuracy converged at step 5, then not
        curve = np.where(steps <= 5, curve, curve[5] - 0.001 * (steps - 5))
    elif not growing:
        curve = 0.1 + 0 * steps
    write_parquet(
        pd.DataFrame(
            {
                "dtype": "float32",
                "strategy": np.repeat(STRATEGIES, len(steps)),
                "eps": 0.1,
                "step": np.tile(steps, len(STRATEGIES)),
                "distance": np.tile(curve, len(STRATEGIES)),
            }
        ),
        root / "ensembles" / run / "distances.parquet",
    )
    write_parquet(
        pd.DataFrame(
            {
                "dtype": "float32",
                "strategy": STRATEGIES,
                "eps": 0.1,
                "alpha": alpha,
                "alpha_se": alpha_se,
                "r2": r2,
                "bound_steps": 2,
                "upper_margin": upper,
                "lower_margin": lower,
                "lower_log_max": lower_log_max,
            }
        ),
        root / "fits" / run / "fits.parquet",
    )
    accs = accs if accs is not None else {0.1: 0.89, 1.0: 0.88, 10.0: 0.5}
    members = [{"dtype": "float32", "strategy": "reference", "eps": 0.0, "train_acc": 0.9}]
    members += [
        {"dtype": "float32", "strategy": s, "eps": e, "train_acc": a}
        for e, a in accs.items()
        for s in STRATEGIES
    ]
    members = pd.DataFrame(members).assign(val_acc=lambda df: df["train_acc"] - 0.05)
    write_parquet(members, root / "ensembles" / run / "members.parquet")
    return {run: "fig"}


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, SUPPORTED),
        ({"alpha_se": 1e-6}, NOT_SUPPORTED),  # α within 2 standard errors of 0
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
    table, _ = fits.fit_table(dist)
    write_parquet(table, root / "fits" / "ref" / "fits.parquet")
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
    return claim_divergence(Results(root), refs, 0.1)


def test_a_random_walk_is_not_linear_divergence(tmp_path):
    """Diffusion alone (α = 0, β > 0), as the fits stage fits it: not supported, though its
    distances grow after convergence and the model fits them well."""
    curves = [diffusing_distances(seed) for seed in range(5)]
    linear, upper, lower = divergence_from_fits(tmp_path, curves)
    assert linear.verdict == NOT_SUPPORTED and linear.value <= 0.2
    assert "growing after convergence True" in linear.detail  # growing all the same
    # the bounds without exact readouts: NaN margins, never support
    assert upper.verdict == lower.verdict == NOT_SUPPORTED and math.isnan(upper.value)


def test_linear_divergence_passes(tmp_path):
    curves = [diffusing_distances(seed, drift=1.0) for seed in range(5)]
    linear, _, _ = divergence_from_fits(tmp_path, curves)
    assert linear.verdict == SUPPORTED and linear.value == 1.0


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, (SUPPORTED, SUPPORTED)),
        ({"upper": [1.0, 1.0, -0.1, 1.0, 1.0]}, (NOT_SUPPORTED, SUPPORTED)),
        ({"lower": [1.0, -0.1, 1.0, 1.0, 1.0]}, (SUPPORTED, NOT_SUPPORTED)),
        # holds, but e^{λN t} ≤ e^-20 at every readout: a vacuous bound is no evidence
        ({"lower_log_max": -20.0}, (SUPPORTED, NOT_SUPPORTED)),
    ],
)
def test_bounds_claim_on_both_sides(tmp_path, changes, expected):
    refs = fake_reference(tmp_path, **changes)
    _, upper, lower = claim_divergence(Results(tmp_path), refs, 0.1)
    assert (upper.claim, lower.claim) == (7, 7)
    assert (upper.verdict, lower.verdict) == expected
    assert upper.threshold == "≥ 0" and "0.01" in lower.threshold
    if "lower_log_max" in changes:
        assert "vacuous at every readout" in lower.detail


@pytest.mark.parametrize("nan_in", ["r2", "upper", "lower", "lower_log_max"])
def test_nan_fit_or_bound_margins_fail_their_criterion_rather_than_being_skipped(tmp_path, nan_in):
    """A curve without variance has no R², one without an exact readout step no bound margins:
    numbers the fits stage writes as NaN, which a NaN-skipping minimum would ignore."""
    values = {nan_in: [1.0, 1.0, math.nan, 1.0, 1.0]}
    refs = fake_reference(tmp_path, **values)
    linear, upper, lower = claim_divergence(Results(tmp_path), refs, 0.1)
    assert linear.verdict == SUPPORTED  # R² is reported, not a criterion
    assert upper.verdict == (NOT_SUPPORTED if nan_in == "upper" else SUPPORTED)
    assert lower.verdict == (NOT_SUPPORTED if nan_in in ("lower", "lower_log_max") else SUPPORTED)


@pytest.mark.parametrize(
    "accs, expected",
    [
        ({0.1: 0.89, 7.5: 0.86, 10.0: 0.5}, [SUPPORTED, SUPPORTED]),
        ({0.1: 0.89, 7.5: 0.8, 10.0: 0.5}, [NOT_SUPPORTED, SUPPORTED]),  # 0.1 below at 7.5
        ({0.1: 0.89, 7.5: 0.86, 10.0: 0.88}, [SUPPORTED, NOT_SUPPORTED]),  # no drop at 10
        ({0.1: 0.89, 1.0: 0.88}, [SUPPORTED, NOT_RUN]),  # no ε ≥ 10 in the config
        ({10.0: 0.5}, [NOT_RUN, SUPPORTED]),
    ],
)
def test_sweep_claim_on_both_sides(tmp_path, accs, expected):
    refs = fake_reference(tmp_path, accs=accs)
    rows = claim_sweep(Results(tmp_path), refs)
    assert [r.claim for r in rows] == [10, 10]
    assert verdicts(rows) == expected
    assert [r.threshold for r in rows] == ["≤ 0.05", "> 0.05"]


def test_scale_claim_against_the_initialization_distance(tmp_path):
    scale = models.init_distance(models.build_model("mlp"))
    assert scale == pytest.approx(4.515, abs=1e-3)
    (row,) = claim_scale(Results(tmp_path), fake_reference(tmp_path), 0.1)
    assert row.claim == 11 and row.verdict == SUPPORTED and row.value == pytest.approx(0.2)
    assert row.threshold == "< 4.515" and "6.38" in row.statement and "√2" in row.statement
    (row,) = claim_scale(Results(tmp_path), fake_reference(tmp_path, distance_max=4.6), 0.1)
    assert row.verdict == NOT_SUPPORTED
    # a smaller model, a smaller scale: the reference's own architecture counts
    refs = fake_reference(tmp_path, distance_max=4.0, hidden=4)
    (row,) = claim_scale(Results(tmp_path), refs, 0.1)
    small = models.init_distance(models.build_model("mlp", hidden=4))
    assert small < 4.0 and row.verdict == NOT_SUPPORTED and row.threshold == f"< {small:.4g}"
