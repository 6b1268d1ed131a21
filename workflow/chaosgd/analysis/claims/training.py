"""The claims on training with a pruned spectrum (Sec. 4.1, Fig. 1–2, App. B.1).

1. Fig. 1, Sec. 4.1: pruning the negative or the chaotic spectrum ends with far lower training
   accuracy: SGD minus CGD, paired by seed, lower end ≥ ``FAR`` (0.1), and a higher loss (lower
   end > 0). Pruning the positive spectrum costs little: SGD minus CGD-positive, upper end ≤
   ``LITTLE`` (0.05), and below the negative spectrum's gap (its upper end under that gap's
   lower end).
2. Fig. 2: a later pruning onset slows learning from the onset on: the training loss identical
   to SGD's up to the onset, and its mean from the onset on above SGD's (lower end > 0).
8. App. B.1: validation follows training: claim 1's accuracy criteria on the final validation
   accuracy.
"""

from __future__ import annotations

import numpy as np

from chaosgd.analysis.claims.results import Results
from chaosgd.analysis.claims.verdicts import (
    HIGH,
    LOW,
    Claim,
    fmt_stat,
    mean_ci,
    measured_claim,
    not_run_claim,
)

FAR = 0.1  # "far lower" accuracy: at least this much below SGD (Fig. 1)
LITTLE = 0.05  # "costs little" / "slightly lower": at most this much below SGD


def _by_seed(res: Results, runs: list[str], variant: str, onset: int = 0) -> dict[tuple, str]:
    """(seed, momentum) -> run of this variant and onset."""
    out = {}
    for r in runs:
        s = res.settings(r)
        if s["variant"] == variant and s["onset"] == onset:
            out[(s["seed"], s["momentum"])] = r
    return out


def _pruning(
    res: Results, groups: dict[str, list[str]], claim: int, split: str, paper: str
) -> list[Claim]:
    """Claims 1 (``split`` "train") and 8 ("val"): final accuracy of each CGD prune set against
    SGD, paired by seed."""
    acc_col, loss_col = f"{split}_acc", f"{split}_loss"
    what = "training" if split == "train" else "validation"
    rows = []
    for exp, runs in groups.items():
        sgd = _by_seed(res, runs, "sgd")
        gaps = {}
        for prune in ("negative", "chaotic", "positive"):
            cgd = _by_seed(res, runs, f"cgd-{prune}")
            pairs = [k for k in cgd if k in sgd]
            if not pairs:
                continue
            a = [res.final(sgd[k])[acc_col] - res.final(cgd[k])[acc_col] for k in pairs]
            b = [res.final(cgd[k])[loss_col] - res.final(sgd[k])[loss_col] for k in pairs]
            gaps[prune] = (mean_ci(a), mean_ci(b))
        for prune in ("negative", "chaotic"):
            if prune not in gaps:
                continue
            acc, loss = gaps[prune]
            rows.append(
                measured_claim(
                    claim=claim,
                    statement=(
                        f"pruning the {prune} spectrum ends with far lower {what} accuracy "
                        f"and higher loss than SGD ({paper})"
                    ),
                    experiment=exp,
                    quantity=f"final {what} accuracy, SGD minus CGD-{prune}",
                    stat=acc,
                    ok=acc.low >= FAR and loss.low > 0,
                    threshold=f"{LOW} ≥ {FAR:g}",
                    criterion=f"accuracy gap, {LOW} ≥ {FAR}; {what} loss CGD minus SGD, {LOW} > 0",
                    detail=f"{what} loss CGD-{prune} minus SGD: {fmt_stat(loss)}",
                    also=(loss,),
                )
            )
        if "positive" in gaps:
            pos = gaps["positive"][0]
            rows.append(
                measured_claim(
                    claim=claim,
                    statement=(
                        f"pruning the positive spectrum costs little {what} accuracy ({paper})"
                    ),
                    experiment=exp,
                    quantity=f"final {what} accuracy, SGD minus CGD-positive",
                    stat=pos,
                    ok=pos.high <= LITTLE,
                    threshold=f"{HIGH} ≤ {LITTLE:g}",
                    criterion=f"accuracy gap to SGD, {HIGH} ≤ {LITTLE}",
                )
            )
            if "negative" in gaps:
                neg = gaps["negative"][0]
                rows.append(
                    measured_claim(
                        claim=claim,
                        statement=(
                            f"pruning the positive spectrum costs far less {what} accuracy "
                            f"than the negative ({paper})"
                        ),
                        experiment=exp,
                        quantity=f"final {what} accuracy, SGD minus CGD-positive",
                        stat=pos,
                        ok=pos.high < neg.low,
                        threshold=f"{HIGH} < {LOW} of SGD minus CGD-negative ({fmt_stat(neg)})",
                        criterion=f"the positive gap's {HIGH} below the negative gap's {LOW}",
                        detail=f"SGD minus CGD-negative: {fmt_stat(neg)}",
                        also=(neg,),
                    )
                )
    if not rows:
        rows.append(
            not_run_claim(
                claim=claim,
                statement=(
                    f"pruning the negative or chaotic spectrum cripples {what}; positive "
                    f"costs little ({paper})"
                ),
                quantity=f"final {what} accuracy gaps to SGD",
                threshold=f"{LOW} ≥ {FAR:g} (negative, chaotic); {HIGH} ≤ {LITTLE:g} (positive)",
                criterion="paired SGD and CGD runs",
                why="no experiment has SGD and CGD runs of the same seeds",
            )
        )
    return rows


def claim_pruning(res: Results, groups: dict[str, list[str]]) -> list[Claim]:
    """Claim 1 (Fig. 1, Sec. 4.1): pruning the negative / chaotic spectrum cripples learning, the
    positive one costs little.

    Per experiment, final training accuracy and loss of each CGD prune set against SGD, paired by
    seed: negative and chaotic at least ``FAR`` below SGD, positive at most ``LITTLE`` below SGD
    and below the negative gap.
    """
    return _pruning(res, groups, 1, "train", "Fig. 1")


def claim_validation(res: Results, groups: dict[str, list[str]]) -> list[Claim]:
    """Claim 8 (App. B.1): the validation accuracy follows the training accuracy: claim 1's
    criteria on the final validation accuracy and loss."""
    return _pruning(res, groups, 8, "val", "App. B.1")


def claim_onsets(res: Results, groups: dict[str, list[str]]) -> list[Claim]:
    """Claim 2 (Fig. 2): later pruning onsets slow learning from the onset on.

    Per experiment, onset and variant: the training loss must equal SGD's up to the onset and its
    mean from the onset to the end must exceed SGD's, paired by seed.
    """
    rows = []
    for exp, runs in groups.items():
        sgd = _by_seed(res, runs, "sgd")
        onsets = sorted({res.settings(r)["onset"] for r in runs if res.settings(r)["onset"] > 0})
        for onset in onsets:
            for variant in sorted(
                {res.settings(r)["variant"] for r in runs if res.settings(r)["onset"] == onset}
            ):
                cgd = _by_seed(res, runs, variant, onset)
                pairs = [k for k in cgd if k in sgd]
                if not pairs:
                    continue
                diffs, identical = [], True
                for k in pairs:
                    a = res.table("train", sgd[k], "steps", ["step", "loss"])
                    b = res.table("train", cgd[k], "steps", ["step", "loss"])
                    # the same batches and initialization up to the onset, or the runs differ
                    # in more than the pruning
                    identical &= bool(
                        np.array_equal(a["loss"][: onset + 1], b["loss"][: onset + 1])
                    )
                    diffs.append(float(b["loss"][onset:].mean() - a["loss"][onset:].mean()))
                st = mean_ci(diffs)
                rows.append(
                    measured_claim(
                        claim=2,
                        statement=(
                            f"{variant} from step {onset} slows learning from the onset on "
                            "(Fig. 2)"
                        ),
                        experiment=exp,
                        quantity="mean training loss from the onset to the end, CGD minus SGD",
                        stat=st,
                        ok=identical and st.low > 0,
                        threshold=f"{LOW} > 0",
                        criterion=(
                            f"loss identical to SGD's up to the onset; the difference's {LOW} > 0"
                        ),
                        detail=f"identical before the onset: {identical}",
                    )
                )
    if not rows:
        rows.append(
            not_run_claim(
                claim=2,
                statement="later pruning onsets slow learning from the onset on (Fig. 2)",
                quantity="loss after the onset, CGD minus SGD",
                threshold=f"{LOW} > 0",
                criterion="identical up to the onset; loss difference above 0",
                why="no CGD runs with an onset > 0 beside SGD runs of the same seeds",
            )
        )
    return rows
