"""The claims on the divergence of perturbed ensembles around a reference run (Sec. 4.2,
Fig. 3, App. C.5); how far they go is :mod:`chaosgd.analysis.claims.scale`.

6. Sec. 4.2, Fig. 3: perturbed models keep diverging, linearly: in d² = αt² + βt + ε², α −
   ``SIGNIFICANT`` (2) standard errors > 0 (a random walk, α = 0, does not pass) for at least
   ``LINEAR_FRACTION`` (0.8) of the directions, and the distance at the end above the distance
   when the reference's training accuracy had converged, for as many. Main ε, reference dtype.
7. Sec. 4.2, App. C.5: the Lyapunov bounds e^{λN t}ε ≤ d(t) ≤ e^{λ1 t}ε hold (main ε): the
   upper bound's worst margin min ln(e^{λ1 t}ε / d) ≥ 0 over the exact readout steps and
   directions; the lower bound's likewise, and holding where it says something: at one readout
   at least where the map has contracted its most contracting direction at least twofold but
   the bound is not vacuous, ``VACUOUS`` (0.01) ≤ e^{λN t} ≤ ``CONTRACTED`` (0.5). Early, Y ≈ I
   and d ≈ ε ≈ e^{λN t}ε is a first-order identity; late, the bound is a tiny share of ε.
17. Fig. 3a: the divergence increases after convergence of the training accuracy across all
    perturbation directions: per direction the distance at the end over the distance when the
    reference's training accuracy had converged, > 1 for every direction (main ε).
18. Fig. 3b: the divergence can be approximated through √(αt² + βt + ε²) within the observed
    time range: per direction the fits stage's fit against the recorded distances, root mean
    square relative deviation at most ``FIT_RMS`` (0.1) for every direction (main ε).

Around a top-k Lyapunov reference (``lyapunov.topk``) the ensembles have the three directions its
k leading vectors give (:func:`chaosgd.planning.vocab.strategies_for`): claims 6, 17 and 18 are
measured over those, and say which of Fig. 3a's directions were not run and why. Claim 7 is not
run: no exact readout gives λN, and λ̂1 ≤ λ1 makes e^{λ̂1 t}ε no upper bound to fail.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from chaosgd.analysis.claims.results import (
    FIT_COLUMNS,
    FIT_NUMBERS,
    NO_ENSEMBLES,
    Results,
    distances,
    reference_dtype,
    rows_for,
)
from chaosgd.analysis.claims.verdicts import Claim, not_run_claim, single_claim
from chaosgd.planning.tables import BOUNDS, FITS
from chaosgd.planning.vocab import STRATEGIES, TOPK_ABSENT

SIGNIFICANT = 2.0  # standard errors of α: "linear divergence beyond its uncertainty"
LINEAR_FRACTION = 0.8  # of the perturbation directions diverging linearly (4 of 5)
CONVERGED = 0.01  # training accuracy within this of its final value counts as converged
VACUOUS = 0.01  # a lower bound e^{λN t}ε below this share of ε says nothing
# a lower bound e^{λN t}ε above this share of ε follows from d ≈ ε while Y ≈ I (to first order):
# informative readouts have contracted the most contracting direction at least twofold
CONTRACTED = 0.5
FIT_RMS = 0.1  # "approximated through" (Fig. 3b): root mean square relative deviation at most


# why claim 7 is not run around a top-k reference
TOPK_BOUNDS = (
    "lyapunov.topk: the reference's Lyapunov run followed its k leading exponents only; the "
    "lower bound needs λN, which they do not give, and their λ̂1 ≤ λ1 puts e^{λ̂1 t}ε below the "
    "upper bound e^{λ1 t}ε, so a distance above it would not refute the bound; both need the "
    "exact map (lyapunov.topk: 0)"
)


def _directions_run(res: Results, ref: str, d: pd.DataFrame) -> str:
    """What a claim over "the directions" says of those it was measured on: "" for all of
    Fig. 3a's five; else which were not run, and around a top-k reference why."""
    absent = [s for s in STRATEGIES if s not in set(d["strategy"])]
    if not absent:
        return ""
    why = TOPK_ABSENT if res.lyapunov_topk(ref) else "not in the ensembles' results"
    return (
        f"; over the {len(STRATEGIES) - len(absent)} directions run of Fig. 3a's "
        f"{len(STRATEGIES)}: {', '.join(absent)} not run ({why})"
    )


def _converged_step(res: Results, run: str) -> int:
    ep = res.table("train", run, "epochs", finite=["step", "train_acc"])
    final = ep["train_acc"].iloc[-1]
    return int(ep.loc[ep["train_acc"] >= final - CONVERGED, "step"].iloc[0])


def _after_convergence(
    d: pd.DataFrame, t_conv: int, path: str
) -> dict[str, tuple[int, float, float]]:
    """Per direction of one ε's distance curves: the first recorded step from ``t_conv`` on,
    the distance there and the distance at the end."""
    out = {}
    for strategy, curve in d.groupby("strategy"):
        curve = curve.sort_values("step")
        after = curve[curve["step"] >= t_conv]
        if after.empty:
            raise ValueError(
                f"{path}: the {strategy} curve ends at step {int(curve['step'].iloc[-1])}, "
                f"before the reference converged (step {t_conv}); the ensembles ran with other "
                "settings"
            )
        out[str(strategy)] = (
            int(after["step"].iloc[0]),
            float(after["distance"].iloc[0]),
            float(curve["distance"].iloc[-1]),
        )
    return out


def _bounds(res: Results, ref: str, eps: float, dtype: str) -> pd.DataFrame:
    """The distance and the lower Lyapunov bound at every exact readout of the ε curves in
    ``dtype``; no rows where no recorded step met an exact readout. The upper bound is not read:
    it overflows to inf, a true bound."""
    columns = [BOUNDS.dtype, BOUNDS.strategy, BOUNDS.eps, BOUNDS.step, BOUNDS.distance]
    table = res.table(
        BOUNDS.stage,
        ref,
        BOUNDS.name,
        columns + [BOUNDS.lower],
        finite=[BOUNDS.eps, BOUNDS.step, BOUNDS.distance, BOUNDS.lower],
        nonempty=False,
    )
    return table[(table["eps"] == eps) & (table["dtype"] == dtype)].sort_values(
        ["strategy", "step"], kind="stable"
    )


def claim_divergence(res: Results, references: dict[str, str], eps: float) -> list[Claim]:
    """Claims 6 and 7 (Sec. 4.2, Fig. 3, App. C.5): linear divergence, and the Lyapunov bounds.

    For each reference run (labelled by ``references``) and ε = ``eps`` in the reference's
    dtype. Claim 6: α − ``SIGNIFICANT`` se(α) > 0 in d² = αt² + βt + ε² (the fits stage's
    standard error treats the residuals as a random walk, so diffusion alone does not pass) for
    at least ``LINEAR_FRACTION`` of the directions, and for as many the distance at the end above
    the distance when the reference's training accuracy had converged. Claim 7: the upper
    bound's worst log margin ≥ 0; the lower bound's too (both from ``fits.parquet``), and the
    lower bound holding at one informative readout at least (``bounds.parquet``):
    ``VACUOUS`` ≤ e^{λN t} ≤ ``CONTRACTED``.
    """
    rows = []
    for ref, label in references.items():
        dist = distances(res, ref)
        fits = res.table(
            "fits",
            ref,
            "fits",
            FIT_COLUMNS + FIT_NUMBERS,
            finite=FIT_COLUMNS[2:],
            numeric=FIT_NUMBERS,
        )
        dtype = reference_dtype(res, ref, dist)
        d, f = rows_for(dist, eps, dtype), rows_for(fits, eps, dtype)
        run = _directions_run(res, ref, d)
        t_conv = _converged_step(res, ref)
        growing = {
            k: end > conv
            for k, (_, conv, end) in _after_convergence(d, t_conv, dist.attrs["path"]).items()
        }
        f = f.sort_values("strategy")
        alpha, se = f["alpha"].to_numpy(dtype=float), f["alpha_se"].to_numpy(dtype=float)
        linear = alpha - SIGNIFICANT * se > 0
        need = math.ceil(LINEAR_FRACTION * len(f) - 1e-9)
        share = float(linear.mean())
        per_direction = "; ".join(
            f"{s}: α/se {a / e if e > 0 else math.inf:.3g}, growing after convergence "
            f"{growing.get(s)}, R² {r2:.3f}"
            for s, a, e, r2 in zip(f["strategy"], alpha, se, f["r2"])
        )
        rows.append(
            single_claim(
                claim=6,
                statement=(
                    "perturbed models keep diverging linearly after the training accuracy "
                    "converged (Sec. 4.2, Fig. 3)"
                ),
                experiment=label,
                quantity=(
                    f"share of the directions with α − {SIGNIFICANT:g} se(α) > 0 "
                    f"(ε = {eps:g}, {dtype}{run})"
                ),
                value=share,
                ok=linear.sum() >= need and sum(growing.values()) >= need,
                threshold=f"≥ {LINEAR_FRACTION:g}",
                criterion=(
                    f"d² = αt² + βt + ε²: α more than {SIGNIFICANT:g} standard errors above 0 "
                    "(its error treats the residuals as a random walk: diffusion alone, α = 0, "
                    f"does not pass) for ≥ {LINEAR_FRACTION:.0%} of the directions, and the "
                    "distance at the end above the distance at convergence for as many; R² is "
                    "reported, not used"
                ),
                detail=f"converged at step {t_conv}; {per_direction}",
            )
        )
        if res.lyapunov_topk(ref):
            rows += _bounds_not_run(eps, label)
            continue
        # numpy, not pandas: a NaN margin (no exact readout step) must fail, not be skipped
        at_readouts = float(np.min(f["upper_margin"].to_numpy(dtype=float)))
        lower = float(np.min(f["lower_margin"].to_numpy(dtype=float)))
        lamn_t_max = float(np.max(f["lower_log_max"].to_numpy(dtype=float)))
        steps = int(f["bound_steps"].min())
        # between readouts too where the Lyapunov stage recorded λ1 (lyapunov.lambda1_every):
        # the paper draws the bound at every step (Fig. 3b)
        between = int(f["upper_steps"].min())
        upper = at_readouts
        if between > 0:
            upper = min(upper, float(np.min(f["upper_margin_steps"].to_numpy(dtype=float))))
            where = (
                f"{steps} exact readout steps and {between} recorded steps with λ1(t) per "
                "direction"
            )
        else:
            where = f"{steps} exact readout steps per direction (no λ1 between readouts)"
        # capped: e^m overflows a float from m ≈ 709.8 on
        tightness = math.exp(min(upper, 700.0)) if np.isfinite(upper) else math.nan
        rows.append(
            single_claim(
                claim=7,
                statement=(
                    f"the upper Lyapunov bound d(t) ≤ e^{{λ1 t}}ε holds for ε = {eps:g} "
                    "(Sec. 4.2, App. C.5)"
                ),
                experiment=label,
                quantity=(
                    "worst ln(e^{λ1 t}ε / d(t)) over the exact readouts, the recorded steps with "
                    "λ1(t), and the directions"
                ),
                value=upper,
                ok=upper >= 0,
                threshold="≥ 0",
                criterion=(
                    "the bound at every exact readout step and every recorded step where the "
                    "Lyapunov stage computed λ1(t), for every direction (log margin ≥ 0)"
                ),
                detail=(
                    f"{where}; at the readouts alone the worst margin is {at_readouts:.3g}; a "
                    f"margin of m means the bound is e^m = {tightness:.3g} times the distance "
                    "where it is tightest"
                ),
            )
        )
        b = _bounds(res, ref, eps, dtype)
        bound = b["lower"].to_numpy(dtype=float)
        share = bound / eps
        within = (share >= VACUOUS) & (share <= CONTRACTED)
        with np.errstate(divide="ignore"):  # d = 0 is a margin of −inf: the bound fails
            margins = np.log(b["distance"].to_numpy(dtype=float)[within] / bound[within])
        held = bool((margins >= 0).any())
        if within.any():
            found = "; ".join(
                f"{s} step {int(t)}: e^{{λN t}} {e:.3g}, margin {m:.3g}"
                for s, t, e, m in zip(
                    b["strategy"][within], b["step"][within], share[within], margins
                )
            )
        else:
            spread = (
                f"e^{{λN t}} from {share.min():.3g} to {share.max():.3g}"
                if share.size
                else "no exact readout step"
            )
            found = f"none ({spread})"
        rows.append(
            single_claim(
                claim=7,
                statement=(
                    f"the lower Lyapunov bound e^{{λN t}}ε ≤ d(t) holds for ε = {eps:g} and says "
                    "something (Sec. 4.2, App. C.5)"
                ),
                experiment=label,
                quantity="worst ln(d(t) / e^{λN t}ε) over exact readout steps and directions",
                value=lower,
                ok=lower >= 0 and held,
                threshold=(
                    f"≥ 0, and holding at a readout with {VACUOUS:g} ≤ e^{{λN t}} ≤ "
                    f"{CONTRACTED:g}"
                ),
                criterion=(
                    "the bound at every exact readout step, for every direction (log margin ≥ 0); "
                    "and holding at one informative readout at least, where the tangent map has "
                    f"contracted its most contracting direction at least {1 / CONTRACTED:g}-fold "
                    f"(e^{{λN t}} ≤ {CONTRACTED:g}: earlier, Y ≈ I and d ≈ ε ≈ e^{{λN t}}ε hold to "
                    f"first order, which is no evidence) and the bound is not vacuous (e^{{λN t}} "
                    f"≥ {VACUOUS:g}: below, it holds whatever d does)"
                ),
                detail=(
                    f"informative readouts: {found}; largest λN t over all readouts "
                    f"{lamn_t_max:.3g} (fits.parquet)"
                ),
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=6,
                statement="perturbed models keep diverging linearly (Fig. 3)",
                quantity="α against se(α)",
                threshold=f"≥ {LINEAR_FRACTION:g}",
                criterion="α − 2 se(α) > 0 for ≥ 80 % of the directions",
                why=NO_ENSEMBLES,
            )
        )
        rows.append(
            not_run_claim(
                claim=7,
                statement="the Lyapunov bounds hold (App. C.5)",
                quantity="log margins of the bounds",
                threshold="≥ 0",
                criterion=_BOUNDS_CRITERION,
                why=NO_ENSEMBLES,
            )
        )
    return rows


_BOUNDS_CRITERION = (
    "both bounds at every exact readout step, the lower one at an informative readout too "
    f"({VACUOUS:g} ≤ e^{{λN t}} ≤ {CONTRACTED:g})"
)


def _bounds_not_run(eps: float, label: str) -> list[Claim]:
    """Claim 7's two rows around a top-k reference: not run, with the reason."""
    return [
        not_run_claim(
            claim=7,
            statement=(
                f"the {which} Lyapunov bound {bound} holds for ε = {eps:g} (Sec. 4.2, App. C.5)"
            ),
            experiment=label,
            quantity=quantity,
            threshold="≥ 0",
            criterion=_BOUNDS_CRITERION,
            why=TOPK_BOUNDS,
        )
        for which, bound, quantity in (
            ("upper", "d(t) ≤ e^{λ1 t}ε", "worst ln(e^{λ1 t}ε / d(t))"),
            ("lower", "e^{λN t}ε ≤ d(t)", "worst ln(d(t) / e^{λN t}ε)"),
        )
    ]


def _ratio(end: float, conv: float) -> float:
    """end / conv; a distance that left 0 grew infinitely, one that stayed there not at all."""
    if conv > 0:
        return end / conv
    return math.inf if end > 0 else math.nan


def claim_growth(res: Results, references: dict[str, str], eps: float) -> list[Claim]:
    """Claim 17 (Fig. 3a): the divergence increases after convergence of the training accuracy
    across all perturbation directions.

    At ε = ``eps`` in the reference's dtype, per direction the distance at the end over the
    distance at the first recorded step from the reference's convergence on (as claim 6 finds
    it); the value is the smallest ratio, above 1 for every direction. Claim 6 asks this of
    ``LINEAR_FRACTION`` of them; the caption says all.
    """
    statement = (
        "the divergence increases after convergence of the training accuracy across all "
        "perturbation directions (Fig. 3a)"
    )
    rows = []
    for ref, label in references.items():
        dist = distances(res, ref)
        dtype = reference_dtype(res, ref, dist)
        d = rows_for(dist, eps, dtype)
        run = _directions_run(res, ref, d)
        t_conv = _converged_step(res, ref)
        after = _after_convergence(d, t_conv, dist.attrs["path"])
        ratios = {k: _ratio(end, conv) for k, (_, conv, end) in after.items()}
        # numpy, not the builtin: a NaN ratio must fail, not be skipped
        smallest = float(np.min(list(ratios.values())))
        rows.append(
            single_claim(
                claim=17,
                statement=statement,
                experiment=label,
                quantity=(
                    f"smallest ratio over the directions of the distance at the end to the "
                    f"distance at convergence (ε = {eps:g}, {dtype}{run})"
                ),
                value=smallest,
                ok=smallest > 1,
                threshold="> 1",
                criterion=(
                    "for every direction the distance at the end above the distance at the first "
                    "recorded step where the reference's training accuracy was within "
                    f"{CONVERGED:g} of its final value"
                ),
                detail=f"converged at step {t_conv}; "
                + "; ".join(
                    f"{k}: {conv:.3g} at step {step} to {end:.3g}, ratio {ratios[k]:.3g}"
                    for k, (step, conv, end) in sorted(after.items())
                ),
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=17,
                statement=statement,
                quantity="distance at the end over distance at convergence",
                threshold="> 1",
                criterion="every direction",
                why=NO_ENSEMBLES,
            )
        )
    return rows


def claim_fit_shape(res: Results, references: dict[str, str], eps: float) -> list[Claim]:
    """Claim 18 (Fig. 3b, Sec. 4.2 Eq. 15): the divergence can be approximated through
    √(αt² + βt + ε²) within the observed time range.

    At ε = ``eps`` in the reference's dtype, per direction the fits stage's α and β (with the
    nominal ε it fitted with) evaluated at the recorded steps against the distances: the root
    mean square of |d_fit − d| / d, at most ``FIT_RMS`` for every direction. R² is no measure
    of this: a saturating curve fits d² with a high R² and misses d by far at its ends.
    """
    statement = (
        "the divergence can be approximated through √(αt² + βt) within the observed time range "
        "(Fig. 3b)"
    )
    rows = []
    for ref, label in references.items():
        dist = distances(res, ref)
        cols = [FITS.dtype, FITS.strategy, FITS.eps, FITS.alpha, FITS.beta]
        fits = res.table(FITS.stage, ref, FITS.name, cols, finite=cols[2:])
        dtype = reference_dtype(res, ref, dist)
        d, f = rows_for(dist, eps, dtype), rows_for(fits, eps, dtype)
        run = _directions_run(res, ref, d)
        if set(d["strategy"]) != set(f["strategy"]):
            raise ValueError(
                f"{fits.attrs['path']}: fitted directions {sorted(set(f['strategy']))} differ "
                f"from the distance curves' {sorted(set(d['strategy']))} at eps {eps:g} in "
                f"{dtype}; rerun the fits"
            )
        deviation = {}
        for fit in f.itertuples():
            curve = d[d["strategy"] == fit.strategy]
            t = curve["step"].to_numpy(dtype=float)
            observed = curve["distance"].to_numpy(dtype=float)
            # as FitResult.predict: clipped at 0 under the root
            fitted = np.sqrt(np.maximum(fit.alpha * t**2 + fit.beta * t + fit.eps**2, 0.0))
            with np.errstate(divide="ignore", invalid="ignore"):  # d = 0: no relative deviation
                rel = (fitted - observed) / observed
            deviation[str(fit.strategy)] = float(np.sqrt(np.mean(rel**2)))
        # numpy, not min/max builtins: a NaN deviation must fail, not be skipped
        worst = float(np.max(list(deviation.values())))
        rows.append(
            single_claim(
                claim=18,
                statement=statement,
                experiment=label,
                quantity=(
                    "largest root mean square relative deviation of the fitted √(αt² + βt + ε²) "
                    f"from the distances over the directions (ε = {eps:g}, {dtype}{run})"
                ),
                value=worst,
                ok=worst <= FIT_RMS,
                threshold=f"≤ {FIT_RMS:g}",
                criterion=(
                    "the fits stage's d(t) = √(αt² + βt + ε²) at every recorded step, "
                    f"√mean(((d_fit − d)/d)²) ≤ {FIT_RMS:g} for every direction"
                ),
                detail="per direction: "
                + "; ".join(f"{k} {v:.3g}" for k, v in sorted(deviation.items())),
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=18,
                statement=statement,
                quantity="relative deviation of the fit",
                threshold=f"≤ {FIT_RMS:g}",
                criterion="every direction",
                why=NO_ENSEMBLES,
            )
        )
    return rows
