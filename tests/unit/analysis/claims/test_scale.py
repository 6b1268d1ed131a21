"""Claims 10 and 11 (Sec. 4.2, App. C.3, A.8) on hand-made ensembles.

Every criterion is tested on both sides of its threshold and on a counter-example built to be
false: reversing any comparison in ``chaosgd.analysis.claims.scale`` turns a test here red."""

from __future__ import annotations

import math

import pytest

from chaosgd.analysis.claims import scale as claims_scale
from chaosgd.analysis.claims.results import Results
from chaosgd.analysis.claims.scale import claim_scale, claim_sweep
from chaosgd.engine import models

from support.claims import (
    NOT_RUN,
    NOT_SUPPORTED,
    SUPPORTED,
    fake_reference,
    per_direction,
    verdicts,
)


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
    assert row.claim == 11 and row.verdict == SUPPORTED and row.value == pytest.approx(0.0)
    assert row.threshold == "≤ 0.5, and every maximum < 4.515"
    assert "6.38" in row.statement and "√2" in row.statement and "≈ 1" in row.statement
    assert "max_chaos 1 at step 10" in row.detail
    (row,) = claim_scale(Results(tmp_path), fake_reference(tmp_path, distance_max=4.6), 0.1)
    assert row.verdict == NOT_SUPPORTED
    # a smaller model, a smaller scale: the reference's own architecture counts
    refs = fake_reference(tmp_path, distance_max=4.0, hidden=4)
    (row,) = claim_scale(Results(tmp_path), refs, 0.1)
    small = models.init_distance(models.build_model("mlp", hidden=4))
    assert small < 4.0 and row.verdict == NOT_SUPPORTED and row.threshold.endswith(f"< {small:.4g}")


@pytest.mark.parametrize(
    "maxima, expected",
    [
        (1.0, SUPPORTED),
        ([1.0, 0.8, 1.2, 0.9, 0.05], NOT_SUPPORTED),  # one direction far below ≈ 1
        (0.01, NOT_SUPPORTED),  # never grew: below the initialization distance all the same
        ([3.1, 1, 1, 1, 1], SUPPORTED),  # 0.49 decades above 1
        ([10**0.5, 1, 1, 1, 1], SUPPORTED),  # half a decade exactly
        ([3.3, 1, 1, 1, 1], NOT_SUPPORTED),  # 0.52
        ([0.33, 1, 1, 1, 1], SUPPORTED),  # 0.48 below
        ([0.3, 1, 1, 1, 1], NOT_SUPPORTED),  # 0.52
    ],
)
def test_scale_claim_asks_for_about_1_in_every_direction(tmp_path, maxima, expected):
    refs = fake_reference(tmp_path, distance_max=maxima)
    (row,) = claim_scale(Results(tmp_path), refs, 0.1)
    worst = max(abs(math.log10(m)) for m in per_direction(maxima))
    assert row.verdict == expected and row.value == pytest.approx(worst)


def test_scale_claim_fails_above_the_initialization_distance(tmp_path, monkeypatch):
    """Within half a decade of 1 but above √E‖θ₁ − θ₂‖² (a model whose initializations lie 2
    apart): the second condition decides."""
    monkeypatch.setattr(claims_scale, "init_distance", lambda model: 2.0)
    (row,) = claim_scale(Results(tmp_path), fake_reference(tmp_path, distance_max=1.9), 0.1)
    assert row.verdict == SUPPORTED
    refs = fake_reference(tmp_path, distance_max=[1, 1, 2.1, 1, 1])
    (row,) = claim_scale(Results(tmp_path), refs, 0.1)
    assert row.value < 0.5 and row.verdict == NOT_SUPPORTED


def test_scale_claims_not_run_without_references(tmp_path):
    (row,) = claim_scale(Results(tmp_path), {}, 0.1)
    assert row.claim == 11 and row.verdict == NOT_RUN and row.threshold
    rows = claim_sweep(Results(tmp_path), {})
    assert {r.claim for r in rows} == {10} and set(verdicts(rows)) == {NOT_RUN}
