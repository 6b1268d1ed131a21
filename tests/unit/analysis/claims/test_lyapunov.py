"""Claims 5, 9, 16 and 19 (Sec. 2.5, 4.2, App. C.1, C.2) on hand-made exponents and subspaces.

Every criterion is tested on both sides of its threshold and on a counter-example built to be
false: reversing any comparison in ``chaosgd.analysis.claims.lyapunov`` turns a test here red."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from chaosgd.analysis.claims.lyapunov import (
    LATE_SLOPE,
    claim_exponents,
    claim_nonchaotic_subspaces,
    claim_pruned_chaos,
    claim_subspaces,
)
from chaosgd.analysis.claims.results import Results
from chaosgd.runs.artifacts import write_json, write_parquet

from support.claims import NOT_RUN, NOT_SUPPORTED, SUPPORTED, fake_run, verdicts

STEPS = np.array([1, 2, 4, 8, 16, 100, 200, 300, 400])  # late readouts (t ≥ 200): 200, 300, 400
T = STEPS.astype(float)
MARGIN = 100 * 1e-8  # POSITIVE_MARGIN × the default neutral_tol


def fake_exponents(root, run, lam1, steps=STEPS):
    rows = pd.DataFrame(
        {"step": steps, "method": "svd", "lambda_1": lam1, "lambda_N": -np.abs(lam1) - 1e-3}
    )
    write_parquet(rows, root / "lyapunov" / run / "exponents.parquet")


def lyapunov_reference(root, lam1, steps=STEPS, seeds=1, variant="sgd", prefix="ref", onset=0):
    """Lyapunov runs of one experiment; ``lam1`` is one λ1 curve for all seeds or one per seed."""
    per_seed = lam1 if isinstance(lam1, list) and np.ndim(lam1[0]) else [lam1] * seeds
    runs = []
    for s, lam in enumerate(per_seed):
        runs.append(fake_run(root, f"{prefix}{s}", variant, s, onset=onset))
        fake_exponents(root, f"{prefix}{s}", lam, steps)
    return {"e": runs}


def set_momentum(root, run, momentum):
    path = root / "train" / run / "run.json"
    info = json.loads(path.read_text())
    info["settings"]["momentum"] = momentum
    write_json(info, path)


# --- claim 5: above 0 beyond the first step ------------------------------------------------------


def test_exponents_that_start_above_0_and_approach_it(tmp_path):
    lyap = lyapunov_reference(tmp_path, 0.01 * T**-0.7, seeds=2)
    above, approach = claim_exponents(Results(tmp_path), lyap)
    assert (above.claim, approach.claim) == (5, 5)
    assert (above.verdict, approach.verdict) == (SUPPORTED, SUPPORTED)
    # λ1 t = 0.01 t^0.3: its smallest growth past step 1 is at step 2
    assert above.value == pytest.approx(0.01 * (2**0.3 - 1))
    assert approach.value == pytest.approx(-0.7) and approach.n == 2
    assert above.threshold.startswith("lower end > 1e-06")
    assert approach.threshold == "upper end < -0.5"
    assert "step 1: λ1·t = 0.01" in above.detail and "not step 1" not in above.detail
    assert "steps 200–400 (3)" in approach.detail


def test_a_constant_stretch_is_not_above_0_beyond_the_first_step(tmp_path):
    """λ1 = c/t: one step's stretch and nothing after it. λ1 t > 0 at every readout (the old
    criterion passed it), but nothing grows past the first step."""
    lyap = lyapunov_reference(tmp_path, 0.01 / T, seeds=2)
    above, approach = claim_exponents(Results(tmp_path), lyap)
    assert above.verdict == NOT_SUPPORTED and abs(above.value) < 1e-15
    assert approach.verdict == SUPPORTED  # a bounded stretch: slope −1, approaching 0


@pytest.mark.parametrize(
    "growth, neutral_tol, expected",
    [
        (2 * MARGIN, 1e-8, SUPPORTED),
        (0.5 * MARGIN, 1e-8, NOT_SUPPORTED),  # grows, but less than 100 neutral_tol
        (0.5 * MARGIN, 1e-10, SUPPORTED),  # the margin scales with the configured neutral_tol
        (-MARGIN, 1e-10, NOT_SUPPORTED),  # shrinks below the first step's stretch
    ],
)
def test_growth_beyond_the_first_step_on_both_sides_of_the_margin(
    tmp_path, growth, neutral_tol, expected
):
    stretch = np.full(T.size, 0.01 + growth)
    stretch[0] = 0.01
    lyap = lyapunov_reference(tmp_path, stretch / T)
    above, _ = claim_exponents(Results(tmp_path), lyap, neutral_tol=neutral_tol)
    assert above.verdict == expected and above.value == pytest.approx(growth, abs=1e-15)


def test_growth_of_exactly_the_margin_is_not_above_it(tmp_path):
    """Steps that are powers of 2: λ1·t comes back exactly as written."""
    steps = 2 ** np.arange(9)
    stretch = np.full(steps.size, 100 * 1e-8)
    stretch[0] = 0.0
    lyap = lyapunov_reference(tmp_path, stretch / steps, steps=steps)
    above, _ = claim_exponents(Results(tmp_path), lyap)
    assert above.value == 100 * 1e-8 and above.verdict == NOT_SUPPORTED


def test_every_later_readout_counts_not_the_best(tmp_path):
    """A stretch that grows and falls back to the first step's level at one readout."""
    stretch = 0.01 * T**0.3
    stretch[6] = 0.01
    lyap = lyapunov_reference(tmp_path, stretch / T)
    above, _ = claim_exponents(Results(tmp_path), lyap)
    assert above.verdict == NOT_SUPPORTED


def test_a_stretch_below_0_is_not_above_0_though_it_grows(tmp_path):
    """ln σ1 = −0.5 after one step, −0.1 later: past the first step, but still contracting."""
    stretch = np.full(T.size, -0.1)
    stretch[0] = -0.5
    lyap = lyapunov_reference(tmp_path, stretch / T)
    above, _ = claim_exponents(Results(tmp_path), lyap)
    assert above.verdict == NOT_SUPPORTED and above.value == pytest.approx(-0.1)


def test_two_seeds_need_both(tmp_path):
    lyap = lyapunov_reference(tmp_path, [0.01 * T**-0.7, 0.01 / T])
    above, _ = claim_exponents(Results(tmp_path), lyap)
    assert above.verdict == NOT_SUPPORTED and above.n == 2


def test_a_first_exact_readout_after_step_1_is_named_and_used(tmp_path):
    steps = STEPS + 4
    lyap = lyapunov_reference(tmp_path, 0.01 * (steps.astype(float)) ** -0.7, steps=steps)
    above, _ = claim_exponents(Results(tmp_path), lyap)
    assert above.verdict == SUPPORTED
    assert "step 5: λ1·t" in above.detail and "not step 1" in above.detail


def test_only_exact_readouts_count(tmp_path):
    lyap = lyapunov_reference(tmp_path, 0.01 * T**-0.7)
    path = tmp_path / "lyapunov" / "ref0" / "exponents.parquet"
    rows = pd.read_parquet(path)
    rows.loc[0, "method"] = "benettin"  # an estimate of 1 at step 1: ignored, step 2 is the base
    rows.loc[0, "lambda_1"] = 1.0
    write_parquet(rows, path)
    above, _ = claim_exponents(Results(tmp_path), lyap)
    assert above.verdict == SUPPORTED and "step 2: λ1·t" in above.detail
    assert above.value == pytest.approx(0.01 * (4**0.3 - 2**0.3))


def test_a_single_exact_readout_is_not_run(tmp_path):
    lyap = lyapunov_reference(tmp_path, [0.01], steps=np.array([400]))
    above, approach = claim_exponents(Results(tmp_path), lyap)
    assert (above.verdict, approach.verdict) == (NOT_RUN, NOT_RUN)
    assert "lyapunov.readouts" in above.detail and "lyapunov.readouts" in approach.detail


# --- claim 5: approaching 0 over the late readouts -----------------------------------------------


def test_an_exponent_levelling_off_above_0_does_not_approach_0(tmp_path):
    """λ1 = c + a/t with c dominating late: the early fall makes a fit over all readouts after
    the first pass (the old criterion: its 95 % interval below 0), the late readouts do not."""
    lam1 = 1e-3 + 0.05 / T
    old = stats.linregress(np.log(T[1:]), np.log(lam1[1:]))
    assert old.slope + stats.t.ppf(0.975, T.size - 3) * old.stderr < 0  # the old rule passed
    lyap = lyapunov_reference(tmp_path, lam1, seeds=2)
    above, approach = claim_exponents(Results(tmp_path), lyap)
    assert above.verdict == SUPPORTED
    assert approach.verdict == NOT_SUPPORTED and -0.3 < approach.value < 0


@pytest.mark.parametrize(
    "power, expected",
    [
        (-0.55, SUPPORTED),
        (-0.45, NOT_SUPPORTED),  # a stretch growing faster than a random walk's √t
        (0.0, NOT_SUPPORTED),  # persistent chaos
        (0.2, NOT_SUPPORTED),
    ],
)
def test_late_slope_on_both_sides_of_minus_one_half(tmp_path, power, expected):
    lyap = lyapunov_reference(tmp_path, 0.01 * T**power)
    _, approach = claim_exponents(Results(tmp_path), lyap)
    assert approach.verdict == expected and approach.value == pytest.approx(power)
    assert LATE_SLOPE == -0.5


def test_late_slope_only_reads_the_late_readouts(tmp_path):
    """Flat early, falling fast late: only the late part decides."""
    lam1 = np.where(T < 200, 0.01, 0.01 * (T / 200) ** -2.0)
    lyap = lyapunov_reference(tmp_path, lam1)
    _, approach = claim_exponents(Results(tmp_path), lyap)
    assert approach.verdict == SUPPORTED and approach.value == pytest.approx(-2.0)


@pytest.mark.parametrize(
    "powers, expected",
    [
        ([-0.7, -0.3], NOT_SUPPORTED),  # 2 seeds: the worse one decides
        ([-0.7, -0.72], SUPPORTED),
        ([-0.9, -0.6, -0.55], NOT_SUPPORTED),  # 3 seeds: every one below, the CI's end is not
        ([-0.7, -0.71, -0.69], SUPPORTED),
    ],
)
def test_late_slope_over_seeds_uses_the_upper_end(tmp_path, powers, expected):
    lyap = lyapunov_reference(tmp_path, [0.01 * T**p for p in powers])
    _, approach = claim_exponents(Results(tmp_path), lyap)
    assert approach.verdict == expected and approach.n == len(powers)
    if len(powers) == 2:
        assert approach.high == pytest.approx(max(powers))


@pytest.mark.parametrize("last", [-1e-4, 0.0])
def test_a_late_exponent_not_above_0_does_not_approach_0(tmp_path, last):
    """ln λ1 has no value there: NaN, never support (λ1 = 0 is not "approaching" 0 by a slope)."""
    lam1 = 0.01 * T**-0.7
    lam1[-1] = last
    lyap = lyapunov_reference(tmp_path, lam1)
    _, approach = claim_exponents(Results(tmp_path), lyap)
    assert approach.verdict == NOT_SUPPORTED


def test_the_readout_at_half_the_last_step_is_late(tmp_path):
    steps = np.array([1, 2, 4, 50, 100])  # late: 50 and 100
    lyap = lyapunov_reference(tmp_path, 0.01 * steps.astype(float) ** -0.7, steps=steps)
    _, approach = claim_exponents(Results(tmp_path), lyap)
    assert approach.verdict == SUPPORTED and "steps 50–100 (2)" in approach.detail


def test_late_slope_not_run_with_a_single_late_readout(tmp_path):
    steps = np.array([1, 2, 4, 8, 100])  # only step 100 is at t ≥ 50
    lyap = lyapunov_reference(tmp_path, 0.01 * steps.astype(float) ** -0.7, steps=steps)
    above, approach = claim_exponents(Results(tmp_path), lyap)
    assert above.verdict == SUPPORTED
    assert approach.verdict == NOT_RUN and "lyapunov.readouts" in approach.detail
    assert "1 exact readout(s) with t ≥ T/2" in approach.detail


def test_claims_5_9_and_16_read_plain_sgd_only(tmp_path):
    lyap = lyapunov_reference(tmp_path, 0.01 * T**-0.7)
    cgd = lyapunov_reference(tmp_path, 1e-9 / T, variant="cgd-chaotic", prefix="cgd")
    fake_subspaces(tmp_path, "ref0", 0.9)
    fake_subspaces(tmp_path, "cgd0", 0.0)
    both = {"e": lyap["e"] + cgd["e"]}
    assert verdicts(claim_exponents(Results(tmp_path), both)) == [SUPPORTED, SUPPORTED]
    assert verdicts(claim_subspaces(Results(tmp_path), both)) == [SUPPORTED]
    assert verdicts(claim_nonchaotic_subspaces(Results(tmp_path), both)) == [SUPPORTED]
    (row,) = claim_exponents(Results(tmp_path), cgd)
    assert row.verdict == NOT_RUN and "lyapunov.runs" in row.detail


# --- claims 9 and 16: subspaces ------------------------------------------------------------------


KINDS = ("chaotic", "edge", "nonchaotic", "chaotic_vs_nonchaotic", "nonchaotic_vs_chaotic")


def fake_subspaces(
    root, run, late, early=0.3, t0s=(10, 200), steps=(100, 200, 300, 400), nonchaotic=None
):
    """App. C.2's table: similarity ``early`` against t₀ = 10 and ``late`` against t₀ = 200
    (baselines 0.3 and 0.35) for every kind, the non-chaotic one ``nonchaotic`` late if given."""
    rows = []
    for t0, sim in zip(t0s, (early, late)):
        for step in steps:
            if step < t0:  # the row at t₀ itself compares the basis with itself
                continue
            row = {"t0": t0, "step": step}
            for x in KINDS:
                own = x == "nonchaotic" and nonchaotic is not None and t0 == t0s[-1]
                row.update(
                    {
                        f"dim0_{x}": 40,
                        f"dim_{x}": 30,
                        f"similarity_{x}": nonchaotic if own else sim,
                        f"baseline_{x}": 0.3,
                        f"random_{x}": 0.35,
                    }
                )
            rows.append(row)
    write_parquet(pd.DataFrame(rows), root / "lyapunov" / run / "subspaces.parquet")


SUBSPACE_CLAIMS = [(claim_subspaces, 9, "chaotic"), (claim_nonchaotic_subspaces, 16, "non-chaotic")]


@pytest.mark.parametrize("check, claim, name", SUBSPACE_CLAIMS)
@pytest.mark.parametrize(
    "late, early, expected",
    [
        (0.9, 0.3, SUPPORTED),  # stable late, whatever it was early
        (0.68, 0.3, SUPPORTED),  # 0.508 of the way from the larger baseline 0.35 to 1
        (0.67, 0.9, NOT_SUPPORTED),  # only 0.492 of the way at the later t₀
        (math.nan, 0.9, NOT_SUPPORTED),  # an empty subspace
    ],
)
def test_subspace_claims_on_both_sides(tmp_path, check, claim, name, late, early, expected):
    lyap = lyapunov_reference(tmp_path, 0.01 * T**-0.7, seeds=2)
    for run in lyap["e"]:
        fake_subspaces(tmp_path, run, late, early)
    (row,) = check(Results(tmp_path), lyap)
    assert row.claim == claim and row.verdict == expected
    assert f"the {name} Lyapunov subspace stabilises" in row.statement
    if np.isfinite(late):
        assert row.value == pytest.approx((late - 0.35) / 0.65)
    assert "t₀ = 200: steps 300–400" in row.detail and f"{name} dimension 40" in row.detail


def test_claim_16_reads_the_nonchaotic_columns(tmp_path):
    """Chaotic subspaces that do not stabilise beside non-chaotic ones that do, and the other
    way round: each claim reads its own columns."""
    lyap = lyapunov_reference(tmp_path, 0.01 * T**-0.7)
    for chaotic, nonchaotic in ((0.3, 0.9), (0.9, 0.3)):
        fake_subspaces(tmp_path, "ref0", chaotic, nonchaotic=nonchaotic)
        (row9,) = claim_subspaces(Results(tmp_path), lyap)
        (row16,) = claim_nonchaotic_subspaces(Results(tmp_path), lyap)
        assert row9.value == pytest.approx((chaotic - 0.35) / 0.65)
        assert row16.value == pytest.approx((nonchaotic - 0.35) / 0.65)
        assert (row9.verdict == SUPPORTED) == (chaotic > 0.5)
        assert (row16.verdict == SUPPORTED) == (nonchaotic > 0.5)


@pytest.mark.parametrize(
    "similarity, baseline, expected",
    [
        # the demo's non-chaotic subspace: 2063 of 2146 directions, its baseline close to 1; a
        # fixed difference above it could never be met, the share of the room can
        (0.998, 0.962, SUPPORTED),
        (0.97, 0.962, NOT_SUPPORTED),  # barely above chance: a fifth of the room
        (1.0, 1.0, NOT_SUPPORTED),  # every direction: no room above chance, nothing to show
    ],
)
def test_subspace_claims_measure_the_share_of_the_room_above_chance(
    tmp_path, similarity, baseline, expected
):
    lyap = lyapunov_reference(tmp_path, 0.01 * T**-0.7)
    fake_subspaces(tmp_path, "ref0", 0.3, nonchaotic=similarity)
    path = tmp_path / "lyapunov" / "ref0" / "subspaces.parquet"
    table = pd.read_parquet(path)
    late = table["t0"] == 200
    table.loc[late, ["baseline_nonchaotic", "random_nonchaotic"]] = baseline
    write_parquet(table, path)
    (row,) = claim_nonchaotic_subspaces(Results(tmp_path), lyap)
    assert row.verdict == expected


@pytest.mark.parametrize("check, claim, name", SUBSPACE_CLAIMS)
def test_subspace_claims_not_run_without_readouts_after_t0(tmp_path, check, claim, name):
    lyap = lyapunov_reference(tmp_path, 0.01 * T**-0.7)
    fake_subspaces(tmp_path, "ref0", 0.9, t0s=(400,))
    (row,) = check(Results(tmp_path), lyap)
    assert row.claim == claim and row.verdict == NOT_RUN and row.threshold == "lower end ≥ 0.5"
    (row,) = check(Results(tmp_path), {})
    assert row.claim == claim and row.verdict == NOT_RUN and "lyapunov.runs" in row.detail


# --- claim 19: Theorem 2.2, no exponentially diverging orbit under CGD-chaotic -------------------


def pruned_and_sgd(root, stretch, seeds=1, onset=0):
    """CGD-chaotic Lyapunov runs with the largest λ1 t ``stretch`` (one or one per seed) beside
    SGD runs of the same seeds (λ1 t up to 0.01·400^0.3)."""
    stretches = stretch if isinstance(stretch, list) else [stretch] * seeds
    # λ1 t rises to its largest value at the last readout, from 0 after one step
    curves = [s * (T - 1) / (T[-1] - 1) / T for s in stretches]
    cgd = lyapunov_reference(root, curves, variant="cgd-chaotic", prefix="cgd", onset=onset)
    sgd = lyapunov_reference(root, 0.01 * T**-0.7, seeds=len(stretches))
    return {"e": sgd["e"] + cgd["e"]}


@pytest.mark.parametrize(
    "stretch, neutral_tol, expected",
    [
        (1e-12, 1e-8, SUPPORTED),  # rounding: nothing diverges
        (0.5 * MARGIN, 1e-8, SUPPORTED),
        (2 * MARGIN, 1e-8, NOT_SUPPORTED),
        (0.5 * MARGIN, 1e-10, NOT_SUPPORTED),  # the margin scales with neutral_tol
        (0.3, 1e-8, NOT_SUPPORTED),  # an SGD-like stretch, labelled cgd-chaotic
    ],
)
def test_pruned_chaos_on_both_sides(tmp_path, stretch, neutral_tol, expected):
    lyap = pruned_and_sgd(tmp_path, stretch)
    (row,) = claim_pruned_chaos(Results(tmp_path), lyap, neutral_tol=neutral_tol)
    assert row.claim == 19 and row.verdict == expected
    assert row.value == pytest.approx(stretch)
    assert row.threshold.startswith("upper end ≤ ")
    assert f"seed 0: SGD's largest λ1·t {0.01 * 400**0.3:.3g}" in row.detail


def test_pruned_chaos_needs_every_seed(tmp_path):
    lyap = pruned_and_sgd(tmp_path, [1e-12, 0.3])
    (row,) = claim_pruned_chaos(Results(tmp_path), lyap)
    assert row.verdict == NOT_SUPPORTED and row.n == 2 and row.high == pytest.approx(0.3)


def test_pruned_chaos_without_sgd_contrast(tmp_path):
    cgd = lyapunov_reference(tmp_path, 1e-12 / T, variant="cgd-chaotic", prefix="cgd")
    (row,) = claim_pruned_chaos(Results(tmp_path), cgd)
    assert row.verdict == SUPPORTED and "no SGD Lyapunov run" in row.detail


@pytest.mark.parametrize("case", ["sgd only", "onset", "momentum", "selection"])
def test_pruned_chaos_not_run_without_a_full_cgd_chaotic_run_from_step_0(tmp_path, case):
    """Only cgd-chaotic itself, from step 0, without momentum, is Theorem 2.2's setting."""
    if case == "sgd only":
        lyap = lyapunov_reference(tmp_path, 0.01 * T**-0.7)
    elif case == "onset":
        lyap = pruned_and_sgd(tmp_path, 1e-12, onset=100)
    elif case == "momentum":
        lyap = pruned_and_sgd(tmp_path, 1e-12)
        set_momentum(tmp_path, "cgd0", 0.9)
    else:
        lyap = lyapunov_reference(tmp_path, 1e-12 / T, variant="cgd-chaotic-top10", prefix="cgd")
    (row,) = claim_pruned_chaos(Results(tmp_path), lyap)
    assert row.claim == 19 and row.verdict == NOT_RUN and "lyapunov.runs" in row.detail


def _as_topk(root, run):
    path = root / "lyapunov" / run / "exponents.parquet"
    rows = pd.read_parquet(path)
    rows["method"] = "topk_svd"
    write_parquet(rows, path)


def test_the_leading_exponents_of_a_topk_map_test_claim_5(tmp_path):
    """λ̂1 ≤ λ1: a stretch that grows in the lower bound grows in λ1 (sound for "above 0")."""
    lyap = lyapunov_reference(tmp_path, 0.01 * T**-0.7)
    _as_topk(tmp_path, "ref0")
    above, approach = claim_exponents(Results(tmp_path), lyap)
    assert (above.verdict, approach.verdict) == (SUPPORTED, SUPPORTED)
    assert above.value == pytest.approx(0.01 * (2**0.3 - 1))


@pytest.mark.parametrize("stretch", [1e-12, 0.3])
def test_a_topk_map_cannot_bound_lambda_1_from_above_for_claim_19(tmp_path, stretch):
    """Claim 19 is an upper bound on λ1; λ̂1 ≤ λ1 cannot give one, on either side."""
    lyap = pruned_and_sgd(tmp_path, stretch)
    _as_topk(tmp_path, "cgd0")
    (row,) = claim_pruned_chaos(Results(tmp_path), lyap)
    assert row.verdict == NOT_RUN and "lyapunov.topk" in row.detail
    # the same numbers from the exact map are measured
    path = tmp_path / "lyapunov" / "cgd0" / "exponents.parquet"
    rows = pd.read_parquet(path)
    rows["method"] = "svd"
    write_parquet(rows, path)
    (row,) = claim_pruned_chaos(Results(tmp_path), lyap)
    assert row.verdict == (SUPPORTED if stretch < MARGIN else NOT_SUPPORTED)
