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
14. Sec. 4.1, Fig. 1: pruning the full negative spectrum coincides with pruning the full chaotic
    one: final training accuracy CGD-chaotic minus CGD-negative, paired by seed, within
    ± ``LITTLE`` (lower end ≥ −0.05, upper end ≤ 0.05).
15. Sec. 4.1 names two selections within a prune set ("filter only the k largest by absolute
    value or prune k at random") and reports no result for them: the project's test of claim 1's
    ordering on them. Per selection and k, the accuracy gap to SGD of the negative (chaotic)
    selection minus the positive one's, lower end > ``SELECTION_MARGIN`` (0); per set and k,
    the top-k gap minus the random-k gap, lower end > ``SELECTION_MARGIN``.
"""

from __future__ import annotations

import numpy as np

from chaosgd.analysis.claims.results import Results
from chaosgd.analysis.claims.verdicts import (
    HIGH,
    LOW,
    Claim,
    Stat,
    fmt_stat,
    fmt_values,
    mean_ci,
    measured_claim,
    not_run_claim,
)
from chaosgd.planning.vocab import VARIANT_RE

FAR = 0.1  # "far lower" accuracy: at least this much below SGD (Fig. 1)
# "costs little" / "slightly lower": at most this much below SGD; and (claim 14) "coincide":
# at most this far apart
LITTLE = 0.05
# claim 1's ordering carried to the selections of Sec. 4.1 ("filter only the k largest by
# absolute value or prune k at random"): the paper gives no size for them, so any margin above 0
SELECTION_MARGIN = 0.0


def _by_seed(res: Results, runs: list[str], variant: str, onset: int = 0) -> dict[tuple, str]:
    """(seed, momentum) -> run of this variant and onset (sort the keys for seed order)."""
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
            pairs = sorted(k for k in cgd if k in sgd)
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
                pairs = sorted(k for k in cgd if k in sgd)
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


def _acc_gaps(res: Results, sgd: dict, cgd: dict, keys: list) -> list[float]:
    """Final training accuracy, SGD minus CGD, for each (seed, momentum) of ``keys``."""
    return [res.final(sgd[k])["train_acc"] - res.final(cgd[k])["train_acc"] for k in keys]


def claim_coincide(res: Results, groups: dict[str, list[str]]) -> list[Claim]:
    """Claim 14 (Sec. 4.1, Fig. 1): pruning the full negative spectrum coincides with pruning the
    full chaotic spectrum.

    Per experiment with SGD, CGD-chaotic and CGD-negative runs of the same seeds (onset 0, full
    sets): final training accuracy CGD-chaotic minus CGD-negative, paired by seed, lower end ≥
    −``LITTLE`` and upper end ≤ ``LITTLE``; the loss difference and both gaps to SGD beside.
    """
    statement = (
        "pruning the full negative spectrum coincides with pruning the full chaotic spectrum "
        "(Sec. 4.1, Fig. 1)"
    )
    quantity = "final training accuracy, CGD-chaotic minus CGD-negative"
    threshold = f"{LOW} ≥ −{LITTLE:g}, {HIGH} ≤ {LITTLE:g}"
    criterion = f"paired by seed, {LOW} ≥ −{LITTLE} and {HIGH} ≤ {LITTLE}"
    rows = []
    for exp, runs in groups.items():
        sgd = _by_seed(res, runs, "sgd")
        chaotic = _by_seed(res, runs, "cgd-chaotic")
        negative = _by_seed(res, runs, "cgd-negative")
        keys = sorted(k for k in chaotic if k in negative and k in sgd)
        if not keys:
            continue
        acc = mean_ci(
            [res.final(chaotic[k])["train_acc"] - res.final(negative[k])["train_acc"] for k in keys]
        )
        loss = mean_ci(
            [
                res.final(chaotic[k])["train_loss"] - res.final(negative[k])["train_loss"]
                for k in keys
            ]
        )
        rows.append(
            measured_claim(
                claim=14,
                statement=statement,
                experiment=exp,
                quantity=quantity,
                stat=acc,
                ok=acc.low >= -LITTLE and acc.high <= LITTLE,
                threshold=threshold,
                criterion=criterion,
                detail=(
                    f"training loss CGD-chaotic minus CGD-negative: {fmt_stat(loss)}; accuracy "
                    f"SGD minus CGD-chaotic: {fmt_stat(mean_ci(_acc_gaps(res, sgd, chaotic, keys)))}"
                    f", SGD minus CGD-negative: "
                    f"{fmt_stat(mean_ci(_acc_gaps(res, sgd, negative, keys)))}"
                ),
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=14,
                statement=statement,
                quantity=quantity,
                threshold=threshold,
                criterion=criterion,
                why="no experiment has SGD, CGD-chaotic and CGD-negative runs of the same seeds",
            )
        )
    return rows


def _selections(res: Results, runs: list[str]) -> dict[tuple[str, str, int], dict[tuple, str]]:
    """(prune set, selection, k) -> {(seed, momentum): run} of the top-k / random-k CGD runs
    with onset 0 (the noise variants change more than the selection: left out)."""
    out: dict[tuple[str, str, int], dict[tuple, str]] = {}
    for r in runs:
        s = res.settings(r)
        m = VARIANT_RE.match(s["variant"])
        if s["onset"] != 0 or m is None or not m["sel"] or m["noise"]:
            continue
        out.setdefault((m["set"], m["sel"], int(m["k"])), {})[(s["seed"], s["momentum"])] = r
    return out


def _mean_pruned(res: Results, runs: list[str]) -> str:
    """Mean pruned directions per step of ``runs``, per run, where their steps tables have it."""
    means = []
    for r in runs:
        if "n_pruned" not in res.columns("train", r, "steps"):
            return "not recorded"
        means.append(float(res.table("train", r, "steps", ["n_pruned"])["n_pruned"].mean()))
    return fmt_values(means)


def _selection_row(exp: str, statement: str, quantity: str, diff: Stat, detail: str) -> Claim:
    return measured_claim(
        claim=15,
        statement=statement,
        experiment=exp,
        quantity=quantity,
        stat=diff,
        ok=diff.low > SELECTION_MARGIN,
        threshold=f"{LOW} > {SELECTION_MARGIN:g}",
        criterion=f"difference of the gaps to SGD, paired by seed, {LOW} > {SELECTION_MARGIN:g}",
        detail=detail,
    )


def claim_selections(res: Results, groups: dict[str, list[str]]) -> list[Claim]:
    """Claim 15 (Sec. 4.1's selections): claim 1's ordering on the top-k and random-k selections.

    The paper names the selections ("filter only the k largest by absolute value or prune k at
    random") but reports no result for them; this is the project's test. Per experiment,
    selection and k with a negative (or chaotic) and a positive variant beside SGD runs of the
    same seeds: the final training accuracy gap to SGD of the negative (chaotic) selection minus
    the positive one's, lower end > ``SELECTION_MARGIN``. Per experiment, set (negative,
    chaotic) and k with both selections: the top-k gap minus the random-k gap, lower end >
    ``SELECTION_MARGIN``.
    """
    paper = (
        "the project's test of claim 1's ordering on the selections Sec. 4.1 names ('filter "
        "only the k largest by absolute value or prune k at random') but reports no result for"
    )
    rows = []
    for exp, runs in groups.items():
        sgd = _by_seed(res, runs, "sgd")
        sel = _selections(res, runs)
        for kind, k in sorted({(kind, k) for _, kind, k in sel}):
            positive = sel.get(("positive", kind, k), {})
            for prune in ("negative", "chaotic"):
                cgd = sel.get((prune, kind, k), {})
                keys = sorted(key for key in cgd if key in positive and key in sgd)
                if not keys:
                    continue
                gap = _acc_gaps(res, sgd, cgd, keys)
                pos = _acc_gaps(res, sgd, positive, keys)
                name = f"cgd-{prune}-{kind}{k}"
                rows.append(
                    _selection_row(
                        exp,
                        f"pruning {kind}-{k} of the {prune} spectrum costs more training "
                        f"accuracy than {kind}-{k} of the positive ({paper})",
                        f"final training accuracy gap to SGD, {name} minus "
                        f"cgd-positive-{kind}{k}",
                        mean_ci([a - b for a, b in zip(gap, pos)]),
                        f"SGD minus {name}: {fmt_stat(mean_ci(gap))}; SGD minus "
                        f"cgd-positive-{kind}{k}: {fmt_stat(mean_ci(pos))}",
                    )
                )
        for prune, k in sorted({(prune, k) for prune, _, k in sel if prune != "positive"}):
            top, rand = sel.get((prune, "top", k), {}), sel.get((prune, "random", k), {})
            keys = sorted(key for key in top if key in rand and key in sgd)
            if not keys:
                continue
            gap_top = _acc_gaps(res, sgd, top, keys)
            gap_rand = _acc_gaps(res, sgd, rand, keys)
            rows.append(
                _selection_row(
                    exp,
                    f"the {k} largest |λ| of the {prune} spectrum carry more of its weight than "
                    f"{k} random ones ({paper})",
                    f"final training accuracy gap to SGD, cgd-{prune}-top{k} minus "
                    f"cgd-{prune}-random{k}",
                    mean_ci([a - b for a, b in zip(gap_top, gap_rand)]),
                    f"SGD minus top-{k}: {fmt_stat(mean_ci(gap_top))}; SGD minus random-{k}: "
                    f"{fmt_stat(mean_ci(gap_rand))}; pruned directions per step (mean, per "
                    f"seed): top-{k} {_mean_pruned(res, [top[key] for key in keys])}, "
                    f"random-{k} {_mean_pruned(res, [rand[key] for key in keys])}; where k is "
                    f"at least the set's size both prune the whole set and cannot differ",
                )
            )
    if not rows:
        rows.append(
            not_run_claim(
                claim=15,
                statement=(
                    "claim 1's ordering holds on the top-k and random-k selections: negative "
                    f"(chaotic) above positive, top-k above random-k ({paper})"
                ),
                quantity="final training accuracy gaps to SGD, differences",
                threshold=f"{LOW} > {SELECTION_MARGIN:g}",
                criterion="paired by seed with SGD; difference of the gaps above 0",
                why=(
                    "no experiment has top-k / random-k CGD runs of a negative (chaotic) and "
                    "the positive set, or of both selections, beside SGD runs of the same seeds"
                ),
            )
        )
    return rows
