"""The statistics and the verdict rules every claim shares."""

from __future__ import annotations

import math

import pytest

from chaosgd.analysis.claims.verdicts import fmt_stat, mean_ci, measured_claim, single_claim

from support.claims import NOT_SUPPORTED, SUPPORTED


def test_mean_ci_matches_the_textbook_t_interval():
    st = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(n)
    assert (st.mean, st.n) == (2.0, 3)
    assert st.ci_low == pytest.approx(2 - half) and st.ci_high == pytest.approx(2 + half)
    assert (st.low, st.high) == (st.ci_low, st.ci_high)
    two = mean_ci([0.4, 0.6])
    assert (two.low, two.high) == (0.4, 0.6)  # below 3 seeds: every seed must show it
    one = mean_ci([0.5, float("nan")])
    assert one.n == 1 and math.isnan(one.ci_low) and one.low == 0.5


def measured(st, criterion="c", also=()):
    """Claim 1 measured as ``st``, its criterion met."""
    return measured_claim(
        claim=1,
        statement="s",
        experiment="e",
        quantity="q",
        stat=st,
        ok=True,
        threshold="> 0",
        criterion=criterion,
        also=also,
    )


def test_a_stat_that_left_out_non_finite_values_supports_nothing():
    st = mean_ci([0.5, 0.6, float("inf")])
    assert (st.n, st.dropped) == (2, 1)
    row = measured(st, "criterion")
    assert row.verdict == NOT_SUPPORTED and "1 non-finite value(s)" in row.detail
    clean = mean_ci([0.5, 0.6])
    assert measured(clean).verdict == SUPPORTED
    assert measured(clean, also=(st,)).verdict == NOT_SUPPORTED
    once = single_claim(
        claim=6,
        statement="s",
        experiment="e",
        quantity="q",
        value=math.nan,
        ok=True,
        threshold="≥ 0",
        criterion="c",
    )
    assert once.verdict == NOT_SUPPORTED


def test_a_claim_carries_the_interval_its_verdict_used_and_the_seed_values():
    """Below 3 seeds the Student-t interval is not what the verdict read: the row says so."""
    two = measured(mean_ci([0.5, 0.3]))
    assert (two.low, two.high, two.interval) == (0.3, 0.5, "seed range")
    assert two.seed_values == "0.5, 0.3"  # as given: the claims pass them in seed order
    assert two.ci_low < 0 < 0.3  # the CI crosses where the seed range does not
    three = measured(mean_ci([0.4, 0.41, 0.39]))
    assert three.interval == "95% CI" and (three.low, three.high) == (three.ci_low, three.ci_high)
    assert measured(mean_ci([0.5, math.nan])).seed_values == "0.5, nan"
    empty = measured(mean_ci([]))
    assert empty.interval == "" and empty.n == 0 and math.isnan(empty.low)
    once = single_claim(
        claim=6,
        statement="s",
        experiment="e",
        quantity="q",
        value=0.5,
        ok=True,
        threshold="≥ 0",
        criterion="c",
    )
    assert (once.interval, once.seed_values, once.n) == ("", "", 1) and math.isnan(once.high)


def test_a_detail_names_the_interval_a_verdict_on_it_would_use():
    assert fmt_stat(mean_ci([0.3, 0.5])) == "0.4 [0.3, 0.5] (seed range)"
    assert fmt_stat(mean_ci([1.0, 2.0, 3.0])) == "2 [-0.484, 4.48] (95% CI)"
    assert fmt_stat(mean_ci([0.25])) == "0.25 [0.25, 0.25] (seed range)"
    assert fmt_stat(mean_ci([])) == "nan"
