"""The claims on the finite-time Lyapunov spectrum of SGD runs and of CGD (Sec. 2.5, 4.2, App.
C.1, C.2).

5. Sec. 4.2, App. C.1: the finite-time exponents are "above 0 at the beginning of the training
   and converge against 0". Above 0: the stretch ln σ1(t) = λ1(t)·t keeps growing beyond the
   first exact readout (step 1): its smallest excess over max(ln σ1(t₁), 0) at the later exact
   readouts above ``POSITIVE_MARGIN`` × neutral_tol (lower end over seeds). One step of local
   chaos (Theorem 2.1) makes λ1·t > 0 for any negative Hessian eigenvalue, so λ1·t > 0 alone
   says nothing about the dynamics over many steps. Approaching 0: over the late exact readouts
   (t ≥ T/2, T the last), the least-squares slope of ln λ1 on ln t below ``LATE_SLOPE`` (−1/2;
   upper end over seeds).
9. Sec. 4.2, App. C.2: the chaotic Lyapunov subspace stabilises: for the latest reference time
   t₀ with later readouts, the similarity s of the chaotic subspaces at t₀ and later covers at
   least ``SUBSPACE_SHARE`` (1/2) of the way from the larger b of its baselines (random
   subspaces of its dimensions; random index sets of the same bases) to identical,
   (s − b)/(1 − b), at every later readout (lower end).
16. App. C.2: the non-chaotic subspace stabilises: claim 9's criterion on the non-chaotic
    subspaces (λ < 0).
19. Theorem 2.2 (Sec. 2.5): pruning the chaotic eigenspace leaves no exponentially diverging
    orbit: CGD-chaotic from step 0 without momentum, the largest λ1·t over the exact readouts at
    most ``POSITIVE_MARGIN`` × neutral_tol (upper end over seeds).
"""

from __future__ import annotations

import math

import numpy as np

from chaosgd.analysis.claims.results import Results
from chaosgd.analysis.claims.verdicts import (
    HIGH,
    LOW,
    Claim,
    fmt_values,
    mean_ci,
    measured_claim,
    not_run_claim,
)
from chaosgd.engine.exponents import EXACT_METHODS, TOPK_METHODS, exact_readouts
from chaosgd.planning.config import schema_default
from chaosgd.planning.tables import EXPONENTS, SUBSPACES

POSITIVE_MARGIN = 100.0  # λ1·t above this many neutral_tol: more than an untouched direction
# the Lyapunov stage's default (config lyapunov.neutral_tol), from the schema: the two cannot drift
NEUTRAL_TOL = schema_default("lyapunov", "neutral_tol")
# "stabilise": the subspaces at t₀ and later closer to identical than to chance, (s − b)/(1 − b)
SUBSPACE_SHARE = 0.5
# "converge against 0": ln λ1 on ln t over the late readouts falls faster than this. A λ1
# levelling off at c > 0 gives a slope → 0, a stretch ln σ1 growing like √t (a random walk's)
# −1/2, a bounded stretch −1: only a stretch growing slower than a random walk's passes.
LATE_SLOPE = -0.5
CGD_CHAOTIC = "cgd-chaotic"  # Theorem 2.2's prune set: every |1 − ηλ| > 1 removed


def _readouts(res: Results, run: str) -> tuple[np.ndarray, np.ndarray]:
    """The steps and λ1 of a Lyapunov run's exact (SVD) readouts, in step order: of the whole
    map, or of its k leading vectors (lyapunov.topk), whose λ̂1 ≤ λ1 (:meth:`Results.lyapunov_topk`).
    """
    e = res.table(
        "lyapunov",
        run,
        EXPONENTS.name,
        [EXPONENTS.step, EXPONENTS.method, EXPONENTS.lambda_1, EXPONENTS.lambda_N],
        finite=[EXPONENTS.step, EXPONENTS.lambda_1, EXPONENTS.lambda_N],
    )
    path = e.attrs["path"]
    e = exact_readouts(e, EXACT_METHODS + TOPK_METHODS)
    if e.empty:
        raise ValueError(f"{path}: no exact (SVD) readout; delete it and rerun")
    return e["step"].to_numpy(dtype=float), e["lambda_1"].to_numpy(dtype=float)


def _sgd_runs(res: Results, runs: list[str]) -> list[str]:
    return [r for r in runs if res.settings(r)["variant"] == "sgd"]


def late_slope(t, lam) -> tuple[float, int]:
    """Least-squares slope of ln λ1 against ln t over the late readouts (t ≥ T/2, T the last)
    and their number; NaN where a late λ1 is not > 0 or fewer than 2 distinct late steps."""
    t, lam = np.asarray(t, dtype=float), np.asarray(lam, dtype=float)
    late = t >= t.max() / 2
    t, lam = t[late], lam[late]
    n = int(t.size)
    if n < 2 or np.unique(t).size < 2 or not (lam > 0).all():
        return math.nan, n
    return float(np.polyfit(np.log(t), np.log(lam), 1)[0]), n


def claim_exponents(
    res: Results, lyapunov: dict[str, list[str]], neutral_tol: float = NEUTRAL_TOL
) -> list[Claim]:
    """Claim 5 (Sec. 4.2, App. C.1): finite-time Lyapunov exponents start > 0 and approach 0.

    SGD runs of the Lyapunov stage, exact readouts. Above 0: the stretch ln σ1(t) = λ1(t)·t at
    every exact readout after the first exceeds max(ln σ1(t₁), 0) by more than
    ``POSITIVE_MARGIN`` × ``neutral_tol`` (lower end over seeds). A bare λ1·t > 0 would test
    nothing: directions no Hessian touched keep σ = 1, and after one step any negative
    eigenvalue gives ln σ1 ≈ η|λ| (Theorem 2.1); a stretch that stops growing (λ1 = c/t) does
    not pass. Approaching 0: the slope of ln λ1 on ln t over the readouts with t ≥ T/2, below
    ``LATE_SLOPE`` (upper end over seeds); the early fall of λ1 would make a fit over all
    readouts negative even for a λ1 levelling off above 0.
    """
    margin = POSITIVE_MARGIN * neutral_tol
    above = (
        "the finite-time Lyapunov exponents are above 0 beyond the first step (Sec. 4.2, App. C.1)"
    )
    above_quantity = "smallest ln σ1(t) − max(ln σ1(t₁), 0) over the later exact readouts"
    above_threshold = f"{LOW} > {margin:.3g} ({POSITIVE_MARGIN:g} × neutral_tol)"
    above_criterion = (
        "the stretch ln σ1 = λ1·t at every exact readout after the first (t₁, step 1) above "
        f"ln σ1(t₁) and above 0, {LOW} of the smallest excess > {POSITIVE_MARGIN:g} × "
        f"neutral_tol ({neutral_tol:g}): growing past what one step's local chaos gives "
        "(Theorem 2.1)"
    )
    approach = (
        "the finite-time Lyapunov exponents converge towards 0 as training progresses "
        "(Sec. 4.2, App. C.1)"
    )
    approach_quantity = "slope of ln λ1 on ln t over the exact readouts with t ≥ T/2"
    approach_threshold = f"{HIGH} < {LATE_SLOPE:g}"
    approach_criterion = (
        "least-squares slope of ln λ1 on ln t per seed over the late exact readouts (t ≥ T/2, T "
        f"the last), {HIGH} < {LATE_SLOPE:g}: a λ1 levelling off at c > 0 gives → 0, a stretch "
        "growing like √t −1/2, a bounded one −1"
    )
    rows = []
    for exp, runs in lyapunov.items():
        runs = _sgd_runs(res, runs)
        if not runs:
            continue
        excess, firsts, slopes, counts, lates = [], [], [], [], []
        for r in runs:
            t, lam = _readouts(res, r)
            stretch = lam * t
            first = f"step {int(t[0])}: λ1·t = {stretch[0]:.3g}"
            if t[0] != 1:
                first += " (the first exact readout, not step 1: the baseline all the same)"
            firsts.append(first)
            # the baseline is never below 0: a stretch that recovers from a contraction is not
            # "above 0" until it is above 0
            base = max(float(stretch[0]), 0.0)
            excess.append(float((stretch[1:] - base).min()) if t.size > 1 else math.nan)
            slope, n = late_slope(t, lam)
            slopes.append(slope)
            counts.append(n)
            late = t[t >= t.max() / 2]
            lates.append(f"steps {int(late[0])}–{int(late[-1])} ({n})")
        if all(np.isfinite(excess)):
            st = mean_ci(excess)
            rows.append(
                measured_claim(
                    claim=5,
                    statement=above,
                    experiment=exp,
                    quantity=above_quantity,
                    stat=st,
                    ok=st.low > margin,
                    threshold=above_threshold,
                    criterion=above_criterion,
                    detail="first exact readout: " + "; ".join(firsts),
                )
            )
        else:
            rows.append(
                not_run_claim(
                    claim=5,
                    statement=above,
                    quantity=above_quantity,
                    threshold=above_threshold,
                    criterion=above_criterion,
                    why=(
                        "a single exact readout: nothing after the first to compare it with "
                        "(lyapunov.readouts, lyapunov.early_readouts)"
                    ),
                    experiment=exp,
                )
            )
        if min(counts) < 2:
            rows.append(
                not_run_claim(
                    claim=5,
                    statement=approach,
                    quantity=approach_quantity,
                    threshold=approach_threshold,
                    criterion=approach_criterion,
                    why=(
                        f"{min(counts)} exact readout(s) with t ≥ T/2; the late slope needs 2 "
                        "or more (lyapunov.readouts)"
                    ),
                    experiment=exp,
                )
            )
            continue
        st = mean_ci(slopes)
        rows.append(
            measured_claim(
                claim=5,
                statement=approach,
                experiment=exp,
                quantity=approach_quantity,
                stat=st,
                ok=st.high < LATE_SLOPE,
                threshold=approach_threshold,
                criterion=approach_criterion,
                detail=f"late readouts per seed: {'; '.join(lates)}",
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=5,
                statement="finite-time exponents start > 0 and approach 0 (App. C.1)",
                quantity="λ1 over training",
                threshold=f"{above_threshold}; {approach_threshold}",
                criterion="see claim 5 in the module docstring",
                why="no SGD run has a tangent map (lyapunov.runs)",
            )
        )
    return rows


def _subspace_columns(kind: str) -> tuple[list[str], list[str]]:
    """App. C.2's columns of one kind of subspace (``SUBSPACE_KINDS``): the finite ones (steps
    and dimensions) and the similarities (NaN for an empty subspace)."""
    finite = [SUBSPACES.t0, SUBSPACES.step] + [
        getattr(SUBSPACES, f"{part}_{kind}") for part in ("dim0", "dim")
    ]
    similarities = [
        getattr(SUBSPACES, f"{part}_{kind}") for part in ("similarity", "baseline", "random")
    ]
    return finite, similarities


def _subspace_claim(
    res: Results, lyapunov: dict[str, list[str]], claim: int, kind: str, paper: str
) -> list[Claim]:
    """Claims 9 (``kind`` "chaotic") and 16 ("nonchaotic"): the ``kind`` Lyapunov subspace
    stabilises (App. C.2), in the SGD runs of the Lyapunov stage.

    For the latest reference time t₀ with later readouts, the similarity s of the subspaces at t₀
    and later against the larger b of its two baselines (random subspaces of the same
    dimensions, max(d₀, d)/N; random index sets of the same two bases), as the share of the way
    from chance to identical it covers, (s − b)/(1 − b), at its smallest over the later
    readouts: at least ``SUBSPACE_SHARE`` (lower end over seeds). A share, not a difference: the
    non-chaotic subspace holds almost every direction, its baseline is close to 1, and no
    difference could exceed a fixed margin. An empty subspace has no similarity (NaN), one of
    every direction no room above chance (b = 1): neither supports anything.
    """
    name = kind.replace("nonchaotic", "non-chaotic")
    finite, similarities = _subspace_columns(kind)
    similarity, baseline, rand = similarities
    statement = f"the {name} Lyapunov subspace stabilises towards the end ({paper})"
    quantity = (
        f"similarity s of the {name} subspaces at t₀ and later above the larger baseline b, "
        "(s − b)/(1 − b)"
    )
    threshold = f"{LOW} ≥ {SUBSPACE_SHARE:g}"
    criterion = (
        "latest t₀ with later readouts: the smallest over them of (s − b)/(1 − b), s = "
        "‖V₀ᵀV‖²/min(dim) and b = max(baseline, random index sets): the share of the way from "
        f"chance to identical, {LOW} ≥ {SUBSPACE_SHARE:g}"
    )
    rows = []
    for exp, runs in lyapunov.items():
        runs = _sgd_runs(res, runs)
        if not runs:
            continue
        excess, details = [], []
        for r in runs:
            s = res.table(
                "lyapunov",
                r,
                SUBSPACES.name,
                finite + similarities,
                finite=finite,
                numeric=similarities,
                nonempty=False,
            )
            s = s[s["step"] > s["t0"]]
            if s.empty:
                excess = []
                break
            t0 = int(s["t0"].max())
            late = s[s["t0"] == t0].sort_values("step")
            base = np.maximum(late[baseline], late[rand])
            # numpy, not pandas: an empty subspace's NaN must fail, not be skipped
            room = (1.0 - base).to_numpy(dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):  # b = 1: no room, NaN fails
                gap = (late[similarity] - base).to_numpy(dtype=float) / np.where(
                    room > 0, room, np.nan
                )
            excess.append(float(gap.min()) if np.isfinite(gap).all() else math.nan)
            details.append(
                f"t₀ = {t0}: steps {late['step'].iloc[0]}–{late['step'].iloc[-1]}, similarity "
                f"{fmt_values(late[similarity])} against baselines {fmt_values(base)} "
                f"({name} dimension {int(late[f'dim0_{kind}'].iloc[0])} at t₀)"
            )
        if not excess:
            rows.append(
                not_run_claim(
                    claim=claim,
                    statement=statement,
                    quantity=quantity,
                    threshold=threshold,
                    criterion=criterion,
                    why="no exact readout after a reference time t₀ (lyapunov.anchors, readouts)",
                    experiment=exp,
                )
            )
            continue
        st = mean_ci(excess)
        rows.append(
            measured_claim(
                claim=claim,
                statement=statement,
                experiment=exp,
                quantity=quantity,
                stat=st,
                ok=st.low >= SUBSPACE_SHARE,
                threshold=threshold,
                criterion=criterion,
                detail="; ".join(details),
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=claim,
                statement=statement,
                quantity=quantity,
                threshold=threshold,
                criterion=criterion,
                why="no SGD run has a tangent map (lyapunov.runs)",
            )
        )
    return rows


def claim_subspaces(res: Results, lyapunov: dict[str, list[str]]) -> list[Claim]:
    """Claim 9 (Sec. 4.2, App. C.2): the chaotic Lyapunov subspace stabilises
    (:func:`_subspace_claim`)."""
    return _subspace_claim(res, lyapunov, 9, "chaotic", "Sec. 4.2, App. C.2")


def claim_nonchaotic_subspaces(res: Results, lyapunov: dict[str, list[str]]) -> list[Claim]:
    """Claim 16 (App. C.2): the non-chaotic Lyapunov subspace stabilises, by claim 9's
    criterion (:func:`_subspace_claim`)."""
    return _subspace_claim(res, lyapunov, 16, "nonchaotic", "App. C.2")


def claim_pruned_chaos(
    res: Results, lyapunov: dict[str, list[str]], neutral_tol: float = NEUTRAL_TOL
) -> list[Claim]:
    """Claim 19 (Theorem 2.2, Sec. 2.5): pruning the chaotic eigenspace leaves no exponentially
    diverging orbit.

    Lyapunov runs of ``cgd-chaotic`` from step 0 without momentum: every factor I − ηH the
    tangent map keeps has |1 − ηλ| ≤ 1, so ‖Y(t)‖ ≤ 1 in exact arithmetic and the directions
    never touched keep λ = 0: the largest λ1·t over the exact readouts at most
    ``POSITIVE_MARGIN`` × ``neutral_tol`` (upper end over seeds). With momentum the tangent map
    is no such product (Eq. 8) and the theorem, stated for SGD, says nothing: those runs are
    left out. The SGD Lyapunov runs of the same experiment and seed are named for contrast.
    """
    margin = POSITIVE_MARGIN * neutral_tol
    statement = (
        "pruning the chaotic eigenspace leaves no exponentially diverging orbit: λ1 stays at 0 "
        "(Theorem 2.2, Sec. 2.5)"
    )
    quantity = f"largest λ1(t)·t = ln σ1 over the exact readouts ({CGD_CHAOTIC}, onset 0)"
    threshold = f"{HIGH} ≤ {margin:.3g} ({POSITIVE_MARGIN:g} × neutral_tol)"
    criterion = (
        f"{CGD_CHAOTIC} from step 0, no momentum: the largest ln σ1 = λ1·t over the exact "
        f"readouts, {HIGH} ≤ {POSITIVE_MARGIN:g} × neutral_tol ({neutral_tol:g}); every kept "
        "factor has |1 − ηλ| ≤ 1, so ‖Y(t)‖ ≤ 1 up to rounding"
    )
    rows = []
    for exp, runs in lyapunov.items():
        pruned = [
            r
            for r in runs
            if (s := res.settings(r))["variant"] == CGD_CHAOTIC
            and s["onset"] == 0
            and s["momentum"] == 0
        ]
        if not pruned:
            continue
        if any(res.lyapunov_topk(r) for r in pruned):
            rows.append(
                not_run_claim(
                    claim=19,
                    statement=statement,
                    experiment=exp,
                    quantity=quantity,
                    threshold=threshold,
                    criterion=criterion,
                    why=(
                        "lyapunov.topk: the k leading exponents bound λ1 from below only, and "
                        "an upper bound on λ1 needs the exact map (lyapunov.topk: 0)"
                    ),
                )
            )
            continue
        sgd = {res.settings(r)["seed"]: r for r in _sgd_runs(res, runs)}
        largest, contrast = [], []
        for r in sorted(pruned, key=lambda r: res.settings(r)["seed"]):
            t, lam = _readouts(res, r)
            largest.append(float((lam * t).max()))
            seed = res.settings(r)["seed"]
            if seed in sgd:
                t0, lam0 = _readouts(res, sgd[seed])
                contrast.append(f"seed {seed}: SGD's largest λ1·t {float((lam0 * t0).max()):.3g}")
        st = mean_ci(largest)
        rows.append(
            measured_claim(
                claim=19,
                statement=statement,
                experiment=exp,
                quantity=quantity,
                stat=st,
                ok=st.high <= margin,
                threshold=threshold,
                criterion=criterion,
                detail=(
                    "; ".join(contrast)
                    if contrast
                    else "no SGD Lyapunov run of the same seeds to contrast"
                ),
            )
        )
    if not rows:
        rows.append(
            not_run_claim(
                claim=19,
                statement=statement,
                quantity=quantity,
                threshold=threshold,
                criterion=criterion,
                why=(
                    f"no Lyapunov run of {CGD_CHAOTIC} from step 0 without momentum "
                    "(lyapunov.runs)"
                ),
            )
        )
    return rows
