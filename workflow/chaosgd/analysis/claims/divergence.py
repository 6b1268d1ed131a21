"""The claims on perturbed ensembles around a reference run (Sec. 4.2, Fig. 3, App. C.3–C.5,
App. A.8).

6. Sec. 4.2, Fig. 3: perturbed models keep diverging, linearly: in d² = αt² + βt + ε², α −
   ``SIGNIFICANT`` (2) standard errors > 0 (a random walk, α = 0, does not pass) for at least
   ``LINEAR_FRACTION`` (0.8) of the directions, and the distance at the end above the distance
   when the reference's training accuracy had converged, for as many. Main ε, reference dtype.
7. Sec. 4.2, App. C.5: the Lyapunov bounds e^{λN t}ε ≤ d(t) ≤ e^{λ1 t}ε hold (main ε): the
   upper bound's worst margin min ln(e^{λ1 t}ε / d) ≥ 0 over the exact readout steps and
   directions; the lower bound's likewise, and not vacuous: e^{λN t} ≥ ``VACUOUS`` (0.01) at one
   readout at least (a bound of a hundredth of ε or less says nothing about d).
10. Sec. 4.2, App. C.3: perturbations up to ε = 7.5 reach a similar performance: every member's
    final training accuracy at most ``SIMILAR`` (0.05) below the reference's; from ε = 10 on
    it drops: mean over those members more than ``SIMILAR`` below.
11. Sec. 4.2, App. A.8: the maximal divergence (main ε) stays below the expected distance of two
    default initializations, √E‖θ₁ − θ₂‖² (4.515 for the paper's MLP; the paper writes 6.38,
    √2 times that).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from chaosgd.analysis.claims.results import DISTANCE_COLUMNS, FIT_COLUMNS, FIT_NUMBERS, Results
from chaosgd.analysis.claims.verdicts import Claim, fmt_values, not_run_claim, single_claim
from chaosgd.engine.models import build_model, init_distance

SIGNIFICANT = 2.0  # standard errors of α: "linear divergence beyond its uncertainty"
LINEAR_FRACTION = 0.8  # of the perturbation directions diverging linearly (4 of 5)
CONVERGED = 0.01  # training accuracy within this of its final value counts as converged
VACUOUS = 0.01  # a lower bound e^{λN t}ε below this share of ε says nothing
SIMILAR_UP_TO, DROP_FROM = 7.5, 10.0  # the ε of App. C.3's "similar" and "drop"
SIMILAR = 0.05  # "similar performance": final accuracy at most this below the reference's

NO_ENSEMBLES = "no ensembles (ensembles.enabled, or no Lyapunov run of plain SGD)"


def _converged_step(res: Results, run: str) -> int:
    ep = res.table("train", run, "epochs", finite=["step", "train_acc"])
    final = ep["train_acc"].iloc[-1]
    return int(ep.loc[ep["train_acc"] >= final - CONVERGED, "step"].iloc[0])


def _reference_dtype(res: Results, ref: str, table: pd.DataFrame) -> str:
    """The reference's own training dtype if its ensemble ran in it, else the first one run."""
    dtype = res.settings(ref)["dtype"]
    return dtype if dtype in set(table["dtype"]) else str(table["dtype"].iloc[0])


def _rows_for(table: pd.DataFrame, eps: float, dtype: str) -> pd.DataFrame:
    chosen = table[(table["eps"] == eps) & (table["dtype"] == dtype)]
    if chosen.empty:
        raise ValueError(
            f"{table.attrs['path']}: no rows for eps {eps:g} in {dtype} (it has eps "
            f"{sorted(set(table['eps']))}); the ensembles ran with other settings"
        )
    return chosen


def _distances(res: Results, ref: str) -> pd.DataFrame:
    return res.table(
        "ensembles", ref, "distances", DISTANCE_COLUMNS, finite=["eps", "step", "distance"]
    )


def claim_divergence(res: Results, references: dict[str, str], eps: float) -> list[Claim]:
    """Claims 6 and 7 (Sec. 4.2, Fig. 3, App. C.5): linear divergence, and the Lyapunov bounds.

    For each reference run (labelled by ``references``) and ε = ``eps`` in the reference's
    dtype. Claim 6: α − ``SIGNIFICANT`` se(α) > 0 in d² = αt² + βt + ε² (the fits stage's
    standard error treats the residuals as a random walk, so diffusion alone does not pass) for
    at least ``LINEAR_FRACTION`` of the directions, and for as many the distance at the end above
    the distance when the reference's training accuracy had converged. Claim 7: the upper
    bound's worst log margin ≥ 0; the lower bound's too, and e^{λN t} ≥ ``VACUOUS`` at one
    readout at least.
    """
    rows = []
    for ref, label in references.items():
        dist = _distances(res, ref)
        fits = res.table(
            "fits",
            ref,
            "fits",
            FIT_COLUMNS + FIT_NUMBERS,
            finite=FIT_COLUMNS[2:],
            numeric=FIT_NUMBERS,
        )
        dtype = _reference_dtype(res, ref, dist)
        d, f = _rows_for(dist, eps, dtype), _rows_for(fits, eps, dtype)
        t_conv = _converged_step(res, ref)
        growing = {}
        for strategy, curve in d.groupby("strategy"):
            curve = curve.sort_values("step")
            after = curve.loc[curve["step"] >= t_conv, "distance"]
            if after.empty:
                raise ValueError(
                    f"{dist.attrs['path']}: the {strategy} curve ends at step "
                    f"{int(curve['step'].iloc[-1])}, before the reference converged (step "
                    f"{t_conv}); the ensembles ran with other settings"
                )
            growing[strategy] = bool(curve["distance"].iloc[-1] > after.iloc[0])
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
                    f"(ε = {eps:g}, {dtype})"
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
        # numpy, not pandas: a NaN margin (no exact readout step) must fail, not be skipped
        upper = float(np.min(f["upper_margin"].to_numpy(dtype=float)))
        lower = float(np.min(f["lower_margin"].to_numpy(dtype=float)))
        informative = float(np.max(f["lower_log_max"].to_numpy(dtype=float)))
        steps = int(f["bound_steps"].min())
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
                quantity="worst ln(e^{λ1 t}ε / d(t)) over exact readout steps and directions",
                value=upper,
                ok=upper >= 0,
                threshold="≥ 0",
                criterion=(
                    "the bound at every exact readout step, for every direction (log margin ≥ 0)"
                ),
                detail=(
                    f"{steps} exact readout steps per direction; a margin of m means the bound is "
                    f"e^m = {tightness:.3g} times the distance where it is tightest"
                ),
            )
        )
        useful = np.isfinite(informative) and informative >= math.log(VACUOUS)
        vacuous = "" if useful else f": vacuous at every readout (λN t < ln {VACUOUS:g})"
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
                ok=lower >= 0 and useful,
                threshold=f"≥ 0, with e^{{λN t}} ≥ {VACUOUS:g} at one readout",
                criterion=(
                    "the bound at every exact readout step, for every direction (log margin ≥ 0); "
                    f"and not vacuous: where e^{{λN t}} < {VACUOUS:g} the bound is below a "
                    "hundredth of ε and holds whatever d does, which is no evidence"
                ),
                detail=(
                    f"largest lower bound e^{{λN t}} = {math.exp(informative) if useful else 0:.3g}"
                    f"·ε (max λN t = {informative:.3g}){vacuous}"
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
                criterion="both bounds at every exact readout step, the lower one not vacuous",
                why=NO_ENSEMBLES,
            )
        )
    return rows


def claim_sweep(res: Results, references: dict[str, str]) -> list[Claim]:
    """Claim 10 (Sec. 4.2, App. C.3): perturbed members reach a similar final accuracy up to
    ε = ``SIMILAR_UP_TO`` (at most ``SIMILAR`` below the reference, every member) and drop from
    ε = ``DROP_FROM`` on (on average more than ``SIMILAR`` below); each part is ``not run``
    where the config has no such ε. The reference's dtype, final training accuracy."""
    similar_text = (
        f"perturbations up to ε = {SIMILAR_UP_TO:g} reach a similar final accuracy "
        "(Sec. 4.2, App. C.3)"
    )
    drop_text = f"from ε = {DROP_FROM:g} on the final accuracy drops (Sec. 4.2, App. C.3)"
    rows = []
    for ref, label in references.items():
        cols = ["dtype", "strategy", "eps", "train_acc", "val_acc"]
        members = res.table("ensembles", ref, "members", cols, finite=cols[2:])
        dtype = _reference_dtype(res, ref, members)
        m = members[members["dtype"] == dtype]
        base = m[m["eps"] == 0.0]
        if len(base) != 1:
            raise ValueError(
                f"{members.attrs['path']}: {len(base)} unperturbed (ε = 0) members in {dtype}, "
                "expected the reference alone"
            )
        acc, val = float(base["train_acc"].iloc[0]), float(base["val_acc"].iloc[0])
        m = m.assign(drop=acc - m["train_acc"], val_drop=val - m["val_acc"])
        small = m[(m["eps"] > 0) & (m["eps"] <= SIMILAR_UP_TO)]
        large = m[m["eps"] >= DROP_FROM]
        quantity = "reference's final training accuracy minus the members'"
        if small.empty:
            rows.append(
                not_run_claim(
                    claim=10,
                    statement=similar_text,
                    quantity=quantity,
                    threshold=f"≤ {SIMILAR:g}",
                    criterion=f"every member with ε ≤ {SIMILAR_UP_TO:g} at most {SIMILAR} below",
                    why=f"the config has no ε ≤ {SIMILAR_UP_TO:g} (ensembles.eps)",
                    experiment=label,
                )
            )
        else:
            worst = float(small["drop"].max())
            tested = fmt_values(sorted(set(small["eps"])))
            rows.append(
                single_claim(
                    claim=10,
                    statement=similar_text,
                    experiment=label,
                    quantity=(
                        f"largest drop, ε ≤ {SIMILAR_UP_TO:g} (tested up to "
                        f"{small['eps'].max():g})"
                    ),
                    value=worst,
                    ok=worst <= SIMILAR,
                    threshold=f"≤ {SIMILAR:g}",
                    criterion=(
                        f"every member with ε ≤ {SIMILAR_UP_TO:g} at most {SIMILAR} below the "
                        "reference's final training accuracy"
                    ),
                    detail=(
                        f"reference accuracy {acc:.3g}; largest validation drop "
                        f"{float(small['val_drop'].max()):.3g}; ε tested {tested}"
                    ),
                )
            )
        if large.empty:
            rows.append(
                not_run_claim(
                    claim=10,
                    statement=drop_text,
                    quantity=quantity,
                    threshold=f"> {SIMILAR:g}",
                    criterion=(
                        f"mean over the members with ε ≥ {DROP_FROM:g} more than {SIMILAR} below"
                    ),
                    why=f"the config has no ε ≥ {DROP_FROM:g} (ensembles.eps)",
                    experiment=label,
                )
            )
        else:
            mean = float(large["drop"].mean())
            rows.append(
                single_claim(
                    claim=10,
                    statement=drop_text,
                    experiment=label,
                    quantity=f"mean drop, ε ≥ {DROP_FROM:g}",
                    value=mean,
                    ok=mean > SIMILAR,
                    threshold=f"> {SIMILAR:g}",
                    criterion=(
                        f"mean over the members with ε ≥ {DROP_FROM:g} more than {SIMILAR} below "
                        "the reference's final training accuracy"
                    ),
                    detail=(
                        f"reference accuracy {acc:.3g}; per member {fmt_values(large['drop'])}; "
                        f"mean validation drop {float(large['val_drop'].mean()):.3g}"
                    ),
                )
            )
    if not rows:
        for statement, threshold in (
            (similar_text, f"≤ {SIMILAR:g}"),
            (drop_text, f"> {SIMILAR:g}"),
        ):
            rows.append(
                not_run_claim(
                    claim=10,
                    statement=statement,
                    quantity="final accuracy drop",
                    threshold=threshold,
                    criterion="",
                    why=NO_ENSEMBLES,
                )
            )
    return rows


def claim_scale(res: Results, references: dict[str, str], eps: float) -> list[Claim]:
    """Claim 11 (Sec. 4.2, App. A.8): the maximal divergence at ε = ``eps`` (reference dtype,
    every direction and recorded step) stays below √E‖θ₁ − θ₂‖², the distance of two default
    initializations of the reference's model (:func:`chaosgd.engine.models.init_distance`)."""
    statement = (
        "the maximal divergence stays below the expected distance of two default "
        "initializations (Sec. 4.2, App. A.8; the paper's 6.38 for its MLP is √2 times "
        "√E‖θ₁ − θ₂‖² = 4.515)"
    )
    rows = []
    for ref, label in references.items():
        dist = _distances(res, ref)
        dtype = _reference_dtype(res, ref, dist)
        d = _rows_for(dist, eps, dtype)
        s = res.settings(ref)
        scale = init_distance(build_model(s["model"], s["activation"], int(s["hidden"])))
        worst = d.loc[d["distance"].idxmax()]
        rows.append(
            single_claim(
                claim=11,
                statement=statement,
                experiment=label,
                quantity=f"largest distance to the reference (ε = {eps:g}, {dtype})",
                value=float(worst["distance"]),
                ok=float(worst["distance"]) < scale,
                threshold=f"< {scale:.4g}",
                criterion=(
                    f"below √E‖θ₁ − θ₂‖² = {scale:.4g} for two default initializations of "
                    f"{s['model']} ({s['activation']}, hidden {s['hidden']})"
                ),
                detail=(
                    f"at step {int(worst['step'])}, direction {worst['strategy']}; the paper's "
                    f"figure would be {math.sqrt(2) * scale:.4g} (√2 times)"
                ),
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=11,
                statement=statement,
                quantity="largest distance",
                threshold="< √E‖θ₁ − θ₂‖²",
                criterion="",
                why=NO_ENSEMBLES,
            )
        )
    return rows
