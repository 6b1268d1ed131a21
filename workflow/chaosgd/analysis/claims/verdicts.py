"""The verdict rules every claim shares, and the statistics they rest on.

For each claim of the paper, the measured quantity, its value over seeds with the interval the
verdict used and the per-seed values, the threshold the verdict compares it with, and a verdict:
``supported``, ``not supported`` or ``not run`` (the config produces nothing that could test
it). Every criterion can fail, and the tests in ``tests/unit/analysis/claims/`` put synthetic
results on each side of it. "Lower end" / "upper end" is the end of the 95 % Student-t CI from 3
seeds on; below that the interval is uninformative and the seed range stands in (every seed must
show the effect). A value that is not finite never supports a claim. Claims whose inputs the
config does not produce are ``not run``, never ``supported``.
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
# what kind of interval a verdict compared (Claim.interval): the table names it beside the bounds
CI, SEED_RANGE = "95% CI", "seed range"


@dataclass
class Claim:
    """One row of the claims table: a claim of the paper, the quantity measured and the verdict.

    ``value`` is the mean over ``n`` seeds (or ``n`` references); ``low`` / ``high`` the interval
    the verdict compared (:attr:`Stat.low` / :attr:`Stat.high`) and ``interval`` its kind
    (``CI`` from 3 seeds on, ``SEED_RANGE`` below, empty for a single measurement);
    ``seed_values`` the per-seed values in seed order, as text (Parquet stays flat);
    ``ci_low`` / ``ci_high`` the 95 % Student-t interval whatever the seeds (NaN below 2).
    ``threshold`` is what the verdict compared them with, ``criterion`` everything the verdict
    required, and ``detail`` the supporting numbers (or why not run).
    """

    claim: int
    statement: str
    experiment: str
    quantity: str
    value: float = math.nan
    interval: str = ""
    low: float = math.nan
    high: float = math.nan
    seed_values: str = ""
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
    alone (:func:`measured_claim`). ``values`` are all the per-seed values as given (in seed
    order where the caller passes them so), the non-finite ones included, for the table.
    """

    mean: float
    ci_low: float
    ci_high: float
    n: int
    min: float
    max: float
    dropped: int = 0
    values: tuple[float, ...] = ()

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

    @property
    def interval(self) -> str:
        """What kind of interval :attr:`low` / :attr:`high` are: ``CI``, ``SEED_RANGE`` (below 3
        seeds), or empty without a finite value."""
        if self.n == 0:
            return ""
        return CI if self.n >= 3 else SEED_RANGE


def mean_ci(values) -> Stat:
    """Mean and 95 % Student-t interval over seeds (NaN bounds for fewer than 2 values), of the
    finite values; how many were not is ``dropped``. ``values`` keeps them all, in order."""
    values = [float(v) for v in values]
    x = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    n, dropped = len(x), len(values) - len(x)
    if n == 0:
        return Stat(math.nan, math.nan, math.nan, 0, math.nan, math.nan, dropped, tuple(values))
    mean = float(x.mean())
    lo = hi = math.nan
    if n >= 2:
        half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
        lo, hi = mean - half, mean + half
    return Stat(mean, lo, hi, n, float(x.min()), float(x.max()), dropped, tuple(values))


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
    """A claim measured over seeds: ``stat``'s mean, the interval its verdict used and its
    per-seed values, ``supported`` if ``ok``.

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
        interval=stat.interval,
        low=stat.low,
        high=stat.high,
        seed_values=fmt_values(stat.values),
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
    """A stat for a claim's detail: its mean and the interval a verdict on it would use, named
    as in the table (so a detail never shows a CI where a verdict read the seed range)."""
    if not st.interval:
        return f"{st.mean:.3g}"
    return f"{st.mean:.3g} [{st.low:.3g}, {st.high:.3g}] ({st.interval})"


def fmt_values(values) -> str:
    """Numbers for a claim's detail, comma-separated, 3 significant digits."""
    return ", ".join(f"{v:.3g}" for v in values)
