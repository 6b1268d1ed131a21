"""The claims on how far perturbed models go (Sec. 4.2, App. C.3, App. A.8).

10. Sec. 4.2, App. C.3: perturbations up to ε = 7.5 reach a similar performance: every member's
    final training accuracy at most ``SIMILAR`` (0.05) below the reference's; from ε = 10 on
    it drops: mean over those members more than ``SIMILAR`` below.
11. Sec. 4.2, App. A.8: the maximal divergence ("empirically ≈ 1 in Figure 3 (a)") lies in
    range of the expected distance of two default initializations: per direction its largest
    distance (main ε) within ``AROUND`` (0.5) decades of 1, and below √E‖θ₁ − θ₂‖² (4.515 for
    the paper's MLP; the paper writes 6.38, √2 times that).
"""

from __future__ import annotations

import math

import numpy as np

from chaosgd.analysis.claims.results import (
    NO_ENSEMBLES,
    Results,
    distances,
    reference_dtype,
    rows_for,
)
from chaosgd.analysis.claims.verdicts import Claim, fmt_values, not_run_claim, single_claim
from chaosgd.engine.models import init_distance
from chaosgd.runs.data import recorded_model

SIMILAR_UP_TO, DROP_FROM = 7.5, 10.0  # the ε of App. C.3's "similar" and "drop"
SIMILAR = 0.05  # "similar performance": final accuracy at most this below the reference's
AROUND = 0.5  # "≈ 1" (Sec. 4.2, Fig. 3a): a maximal divergence within half a decade of 1


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
        dtype = reference_dtype(res, ref, members)
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
    """Claim 11 (Sec. 4.2, App. A.8): the maximal divergence, "empirically ≈ 1 in Figure 3 (a)",
    lies in range of the expected distance of two default initializations.

    At ε = ``eps`` in the reference's dtype, per direction its largest distance over the
    recorded steps: each within ``AROUND`` decades of 1 (the value: the largest |log10 d_max|),
    and each below √E‖θ₁ − θ₂‖² of the reference's model
    (:func:`chaosgd.engine.models.init_distance`). A bare "below the initialization distance"
    would pass distances that never grew from ε = 0.1.
    """
    statement = (
        "the maximal divergence (≈ 1 in Fig. 3a) lies in range of the expected distance of two "
        "default initializations (Sec. 4.2, App. A.8; the paper's 6.38 for its MLP is √2 times "
        "√E‖θ₁ − θ₂‖² = 4.515)"
    )
    rows = []
    for ref, label in references.items():
        dist = distances(res, ref)
        dtype = reference_dtype(res, ref, dist)
        d = rows_for(dist, eps, dtype)
        s = res.settings(ref)
        scale = init_distance(recorded_model(s))
        peaks = d.loc[d.groupby("strategy")["distance"].idxmax()].sort_values("strategy")
        d_max = peaks["distance"].to_numpy(dtype=float)
        with np.errstate(divide="ignore"):  # a distance of 0 is infinitely far from 1
            decades = float(np.max(np.abs(np.log10(d_max))))
        below = bool((d_max < scale).all())
        rows.append(
            single_claim(
                claim=11,
                statement=statement,
                experiment=label,
                quantity=(
                    f"largest |log10| of a direction's maximal distance (ε = {eps:g}, {dtype})"
                ),
                value=decades,
                ok=decades <= AROUND and below,
                threshold=f"≤ {AROUND:g}, and every maximum < {scale:.4g}",
                criterion=(
                    f'every direction\'s largest distance within {AROUND:g} decades of 1 ("≈ 1") '
                    f"and below √E‖θ₁ − θ₂‖² = {scale:.4g} for two default initializations of "
                    f"{s['model']} ({s['activation']}, hidden {s['hidden']})"
                ),
                detail=(
                    "per direction: "
                    + "; ".join(
                        f"{k} {v:.3g} at step {int(t)}"
                        for k, v, t in zip(peaks["strategy"], d_max, peaks["step"])
                    )
                    + f"; the paper's figure would be {math.sqrt(2) * scale:.4g} (√2 times)"
                ),
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=11,
                statement=statement,
                quantity="largest distance per direction",
                threshold=f"≤ {AROUND:g} decades from 1, < √E‖θ₁ − θ₂‖²",
                criterion="",
                why=NO_ENSEMBLES,
            )
        )
    return rows
