"""The verdict rules every claim shares, and the statistics they rest on.

For each claim of the paper, the measured quantity, its value with a 95 % confidence interval
over seeds (Student's t; none with a single seed), the threshold the verdict compares it with,
and a verdict: ``supported``, ``not supported`` or ``not run`` (the config produces nothing
that could test it). Every criterion can fail, and the tests in ``tests/unit/analysis/claims/``
put synthetic results on each side of it. "Lower end" / "upper end" is the end of the 95 % CI
from 3 seeds on; below that the interval is uninformative and the smallest / largest seed
stands in (every seed must show the effect). A value that is not finite never supports a claim.
Claims whose inputs the config does not produce are ``not run``, never ``supported``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats

SUPPORTED, NOT_SUPPORTED, NOT_RUN = "supported", "not supported", "not run"

# below 3 seeds the bound a criterion refers to is the worst seed (see Stat.low)
LOW, HIGH = "lower end", "upper end"


@dataclass
class Claim:
    """One row of the claims table: a claim of the paper, the quantity measured and the verdict.

    ``value`` / ``ci_low`` / ``ci_high`` are the mean and 95 % interval over ``n`` seeds (or
    ``n`` references); ``threshold`` is what the verdict compared them with, ``criterion``
    everything the verdict required, and ``detail`` the supporting numbers (or why not run).
    """

    claim: int
    statement: str
    experiment: str
    quantity: str
    value: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    n: int = 0
    threshold: str = ""
    verdict: str = NOT_RUN
    criterion: str = ""
    detail: str = ""


@dataclass
class Stat:
    """A quantity over seeds: mean, 95 % Student-t interval, and the per-seed extremes.

    ``dropped`` counts the non-finite values left out; a verdict never rests on the others
    alone (:func:`measured_claim`).
    """

    mean: float
    ci_low: float
    ci_high: float
    n: int
    min: float
    max: float
    dropped: int = 0

    @property
    def low(self) -> float:
        """What a verdict compares: the interval's lower end from 3 seeds on; below that the
        interval is uninformative (t = 12.7 for 2 seeds) and every seed must show the effect."""
        return self.ci_low if self.n >= 3 else self.min

    @property
    def high(self) -> float:
        """What a verdict compares from above: the interval's upper end from 3 seeds on, else the
        largest seed (see :attr:`low`)."""
        return self.ci_high if self.n >= 3 else self.max


def mean_ci(values) -> Stat:
    """Mean and 95 % Student-t interval over seeds (NaN bounds for fewer than 2 values), of the
    finite values; how many were not is ``dropped``."""
    values = [float(v) for v in values]
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    n, dropped = len(x), len(values) - len(x)
    if n == 0:
        return Stat(math.nan, math.nan, math.nan, 0, math.nan, math.nan, dropped)
    mean = float(x.mean())
    lo = hi = math.nan
    if n >= 2:
        half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
        lo, hi = mean - half, mean + half
    return Stat(mean, lo, hi, n, float(x.min()), float(x.max()), dropped)


def measured_claim(
    *,
    claim: int,
    statement: str,
    experiment: str,
    quantity: str,
    stat: Stat,
    ok: bool,
    threshold: str,
    criterion: str,
    detail: str = "",
    also: Iterable[Stat] = (),
) -> Claim:
    """A claim measured over seeds: ``stat``'s mean and interval, ``supported`` if ``ok``.

    Never ``supported`` when ``stat`` or a stat it also rests on (``also``) left out non-finite
    values: the seeds that remain are not the experiment."""
    dropped = sum(s.dropped for s in (stat, *also))
    if dropped or stat.n == 0:
        ok = False
        detail = _join(
            detail,
            f"{dropped} non-finite value(s) over seeds: no verdict of support from the others",
        )
    return Claim(
        claim=claim,
        statement=statement,
        experiment=experiment,
        quantity=quantity,
        value=stat.mean,
        ci_low=stat.ci_low,
        ci_high=stat.ci_high,
        n=stat.n,
        threshold=threshold,
        verdict=SUPPORTED if ok else NOT_SUPPORTED,
        criterion=criterion,
        detail=detail,
    )


def single_claim(
    *,
    claim: int,
    statement: str,
    experiment: str,
    quantity: str,
    value: float,
    ok: bool,
    threshold: str,
    criterion: str,
    detail: str = "",
) -> Claim:
    """A claim measured once (one reference run): supported only with a finite value."""
    value = float(value)
    if not np.isfinite(value):
        ok = False
        detail = _join(detail, "the value is not finite: no verdict of support")
    return Claim(
        claim=claim,
        statement=statement,
        experiment=experiment,
        quantity=quantity,
        value=value,
        n=1,
        threshold=threshold,
        verdict=SUPPORTED if ok else NOT_SUPPORTED,
        criterion=criterion,
        detail=detail,
    )


def not_run_claim(
    *,
    claim: int,
    statement: str,
    quantity: str,
    threshold: str,
    criterion: str,
    why: str,
    experiment: str = "-",
) -> Claim:
    """A claim the config produced nothing to test with; its criterion is stated all the same."""
    return Claim(
        claim=claim,
        statement=statement,
        experiment=experiment,
        quantity=quantity,
        threshold=threshold,
        verdict=NOT_RUN,
        criterion=criterion,
        detail=why,
    )


def _join(detail: str, more: str) -> str:
    return f"{detail}; {more}" if detail else more


def fmt_stat(st: Stat) -> str:
    """A stat for a claim's detail: its mean, and its interval where it has one."""
    ci = f" [{st.ci_low:.3g}, {st.ci_high:.3g}]" if np.isfinite(st.ci_low) else ""
    return f"{st.mean:.3g}{ci}"


def fmt_values(values) -> str:
    """Numbers for a claim's detail, comma-separated, 3 significant digits."""
    return ", ".join(f"{v:.3g}" for v in values)
