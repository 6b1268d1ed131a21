"""Claims 3 and 4 (App. B.2) on hand-made spectra with known answers.

Every criterion is tested on both sides of its threshold: reversing any comparison in
``chaosgd.analysis.claims.spectrum`` turns a test here red."""

from __future__ import annotations

import numpy as np
import pytest

from chaosgd.analysis.claims.results import Results
from chaosgd.analysis.claims.spectrum import claim_spectrum

from support.claims import NOT_SUPPORTED, SUPPORTED, fake_run, verdicts


def spectrum(n_chaotic=0.0, neg=(30, 10), pos=(200, 240), frac=(0.6, 0.2), cos=(0.02, 0.01)):
    """Per-step spectrum columns over 20 steps: counts moving linearly from the first to the
    second value; the reference convention adds half the null eigenvalues (of N = 500) to
    each side."""
    n = 20
    negs, poss = np.linspace(*neg, n), np.linspace(*pos, n)
    half_null = (500 - negs - poss) / 2
    return {
        "n_positive_chaotic": np.full(n, n_chaotic),
        "n_negative": negs,
        "n_positive": poss,
        "grad_frac_positive": np.full(n, frac[0]),
        "grad_frac_negative": np.full(n, frac[1]),
        "ref_n_negative": negs + half_null,
        "ref_n_positive": poss + half_null,
        "ref_cos_positive": np.full(n, cos[0]),
        "ref_cos_negative": np.full(n, cos[1]),
    }


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, [SUPPORTED, SUPPORTED, SUPPORTED]),
        ({"n_chaotic": 1.0}, [NOT_SUPPORTED, SUPPORTED, SUPPORTED]),
        ({"neg": (10, 30)}, [SUPPORTED, NOT_SUPPORTED, SUPPORTED]),  # negative count rises
        ({"pos": (240, 200)}, [SUPPORTED, NOT_SUPPORTED, SUPPORTED]),  # positive count falls
        ({"frac": (0.2, 0.6)}, [SUPPORTED, SUPPORTED, NOT_SUPPORTED]),  # more negative overlap
    ],
)
def test_spectrum_claims_on_both_sides(tmp_path, changes, expected):
    runs = [fake_run(tmp_path, f"sgd{s}", "sgd", s, spectrum=spectrum(**changes)) for s in range(2)]
    rows = claim_spectrum(Results(tmp_path), {"e": runs})
    assert [r.claim for r in rows] == [3, 3, 4]
    assert verdicts(rows) == expected
    assert "reference code's convention" in rows[1].detail
    assert "reference code's convention" in rows[2].detail


def test_spectrum_claims_report_the_reference_convention(tmp_path):
    """The reference's counts include the null eigenvalues split evenly: as the rank grows they
    fall on both sides; its mean |cos| can disagree with the energy fractions. Both are
    reported, neither decides."""
    spec = spectrum(cos=(0.01, 0.02))
    runs = [fake_run(tmp_path, f"sgd{s}", "sgd", s, spectrum=spec) for s in range(2)]
    rows = claim_spectrum(Results(tmp_path), {"e": runs})
    assert verdicts(rows) == [SUPPORTED] * 3
    # over 20 steps, last 2 minus first 2: negative -18.9, positive +37.9; rank +18.9, so each
    # side of the reference's count loses 9.47 null eigenvalues
    assert rows[1].value == pytest.approx(-18 * 20 / 19)
    assert "split evenly): negative -28.4 [-28.4, -28.4], positive 28.4" in rows[1].detail
    assert "which would be supported" in rows[1].detail
    assert "-0.01 [-0.01, -0.01], which would be not supported" in rows[2].detail
