"""Claims: the statistics and the verdict rules, on hand-made results with known answers.

Every criterion is tested on both sides of its threshold: reversing any comparison in
``chaosgd.claims`` turns a test here red."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from chaosgd import claims, fits, models
from chaosgd.io import write_json, write_parquet
from test_fits import diffusing_distances

STRATEGIES = ["max_chaos", "max_convergence", "chaotic", "nonchaotic", "random"]
SUPPORTED, NOT_SUPPORTED, NOT_RUN = "supported", "not supported", "not run"


def test_mean_ci_matches_the_textbook_t_interval():
    st = claims.mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(n)
    assert (st.mean, st.n) == (2.0, 3)
    assert st.ci_low == pytest.approx(2 - half) and st.ci_high == pytest.approx(2 + half)
    assert (st.low, st.high) == (st.ci_low, st.ci_high)
    two = claims.mean_ci([0.4, 0.6])
    assert (two.low, two.high) == (0.4, 0.6)  # below 3 seeds: every seed must show it
    one = claims.mean_ci([0.5, float("nan")])
    assert one.n == 1 and math.isnan(one.ci_low) and one.low == 0.5


def fake_run(
    root, run, variant, seed, onset=0, acc=0.9, loss=0.3, val_acc=None, val_loss=None,
    step_losses=None, spectrum=None, hidden=4,
):  # fmt: skip
    """A training run's run.json, epochs.parquet and steps.parquet (``spectrum``: extra per-step
    columns, which also marks the run as recording the spectrum)."""
    folder = root / "train" / run
    settings = {
        "run_id": run, "variant": variant, "seed": seed, "momentum": 0.0, "onset": onset,
        "dtype": "float32", "spectrum": spectrum is not None, "model": "mlp",
        "activation": "relu", "hidden": hidden,
    }  # fmt: skip
    write_json(
        {
            "run_id": run,
            "settings": settings,
            "environment": {"device": "cpu", "device_name": "x"},
            "result": {"wall_seconds": 1.0},
        },
        folder / "run.json",
    )
    val_acc = acc - 0.02 if val_acc is None else val_acc
    val_loss = loss + 0.05 if val_loss is None else val_loss
    write_parquet(
        pd.DataFrame(
            {
                "step": [0, 10],
                "train_acc": [0.1, acc],
                "train_loss": [2.3, loss],
                "val_acc": [0.1, val_acc],
                "val_loss": [2.3, val_loss],
            }
        ),
        folder / "epochs.parquet",
    )
    n = len(next(iter(spectrum.values()))) if spectrum else 10
    losses = step_losses if step_losses is not None else np.linspace(2, loss, n)
    steps = pd.DataFrame({"step": np.arange(len(losses)), "loss": losses})
    for col, values in (spectrum or {}).items():
        steps[col] = values
    write_parquet(steps, folder / "steps.parquet")
    return run


def verdicts(rows, claim=None):
    return [r.verdict for r in rows if claim is None or r.claim == claim]


# --- claims 1 and 8: pruning ------------------------------------------------------------------


def pruning_runs(root, neg_gap, neg_loss_gap, pos_gap, split="train"):
    """SGD, CGD-negative and CGD-positive runs of 3 seeds; the CGD runs ``neg_gap`` /
    ``pos_gap`` below SGD in the accuracy of ``split`` (± 0.01 over seeds)."""
    runs = []
    for seed, noise in enumerate((0.0, 0.01, -0.01)):
        runs.append(fake_run(root, f"sgd{seed}", "sgd", seed, acc=0.9, val_acc=0.88))
        for name, variant, gap, loss in (
            ("neg", "cgd-negative", neg_gap, 0.3 + neg_loss_gap),
            ("pos", "cgd-positive", pos_gap, 0.35),
        ):
            if split == "train":
                kw = {"acc": 0.9 - gap + noise, "loss": loss}
            else:
                kw = {"val_acc": 0.88 - gap + noise, "val_loss": loss + 0.05}
            runs.append(fake_run(root, f"{name}{seed}", variant, seed, **kw))
    return runs


@pytest.mark.parametrize("split, claim", [("train", 1), ("val", 8)])
@pytest.mark.parametrize(
    "neg_gap, neg_loss_gap, pos_gap, expected",
    [
        # negative far below SGD, positive close to it and far above negative
        (0.4, 1.0, 0.02, [SUPPORTED, SUPPORTED, SUPPORTED]),
        # a gap of 0.05 is not "far lower"; the positive gap is then no smaller than it
        (0.05, 1.0, 0.02, [NOT_SUPPORTED, SUPPORTED, NOT_SUPPORTED]),
        # far lower accuracy but a lower loss than SGD: not what Fig. 1 shows
        (0.4, -0.2, 0.02, [NOT_SUPPORTED, SUPPORTED, SUPPORTED]),
        # positive pruning 0.1 below SGD does not "cost little", though less than negative
        (0.4, 1.0, 0.1, [SUPPORTED, NOT_SUPPORTED, SUPPORTED]),
    ],
)
def test_pruning_claims_on_both_sides(
    tmp_path, split, claim, neg_gap, neg_loss_gap, pos_gap, expected
):
    runs = pruning_runs(tmp_path, neg_gap, neg_loss_gap, pos_gap, split)
    fn = claims.claim_pruning if claim == 1 else claims.claim_validation
    rows = fn(claims.Results(tmp_path), {"e": runs})
    assert [r.claim for r in rows] == [claim] * 3
    assert verdicts(rows) == expected
    assert rows[0].value == pytest.approx(neg_gap) and rows[0].n == 3
    assert rows[1].value == pytest.approx(pos_gap)
    assert rows[0].threshold == "lower end ≥ 0.1" and rows[1].threshold == "upper end ≤ 0.05"
    what = "training" if split == "train" else "validation"
    assert what in rows[0].statement and what in rows[0].quantity


def test_validation_claims_read_the_validation_accuracy(tmp_path):
    """Training far apart, validation alike: claim 1 is supported, claim 8 is not."""
    runs = [fake_run(tmp_path, f"sgd{s}", "sgd", s, acc=0.9, val_acc=0.6) for s in range(3)]
    runs += [
        fake_run(tmp_path, f"neg{s}", "cgd-negative", s, acc=0.5, loss=1.5, val_acc=0.6 - s / 100)
        for s in range(3)
    ]
    assert verdicts(claims.claim_pruning(claims.Results(tmp_path), {"e": runs})) == [SUPPORTED]
    assert verdicts(claims.claim_validation(claims.Results(tmp_path), {"e": runs})) == [
        NOT_SUPPORTED
    ]


# --- claim 2: onsets ---------------------------------------------------------------------------


def test_onset_claims_need_identical_steps_before_the_onset(tmp_path):
    base = np.linspace(2, 0.5, 20)
    later = base.copy()
    later[9:] += 0.2  # the loss at the onset step comes before the first pruned update
    runs = [fake_run(tmp_path, f"sgd{s}", "sgd", s, step_losses=base) for s in range(3)]
    runs += [
        fake_run(tmp_path, f"c{s}", "cgd-chaotic", s, onset=8, step_losses=later) for s in range(3)
    ]
    (row,) = claims.claim_onsets(claims.Results(tmp_path), {"e": runs})
    assert row.verdict == SUPPORTED and row.value == pytest.approx(0.2 * 11 / 12)
    assert row.threshold == "lower end > 0"
    early = later.copy()
    early[3] += 1e-9  # differs before the onset: not the same batches/initialization
    fake_run(tmp_path, "c1", "cgd-chaotic", 1, onset=8, step_losses=early)
    (row,) = claims.claim_onsets(claims.Results(tmp_path), {"e": runs})
    assert row.verdict == NOT_SUPPORTED and "identical before the onset: False" in row.detail


def test_onset_claims_fail_when_pruning_learns_faster(tmp_path):
    base = np.linspace(2, 0.5, 20)
    faster = base.copy()
    faster[9:] -= 0.1
    runs = [fake_run(tmp_path, f"sgd{s}", "sgd", s, step_losses=base) for s in range(3)]
    runs += [
        fake_run(tmp_path, f"c{s}", "cgd-chaotic", s, onset=8, step_losses=faster) for s in range(3)
    ]
    (row,) = claims.claim_onsets(claims.Results(tmp_path), {"e": runs})
    assert row.verdict == NOT_SUPPORTED and row.value < 0


# --- claims 3 and 4: the Hessian spectrum ------------------------------------------------------


def spectrum(n_chaotic=0.0, neg=(30, 10), pos=(200, 240), frac=(0.6, 0.2), cos=(0.02, 0.01)):
    """Per-step spectrum columns over 20 steps: counts moving linearly from the first to the
    second value; the reference convention adds half the null eigenvalues (of N = 500) to
    each side."""
    n = 20
    negs, poss = np.linspace(*neg, n), np.linspace(*pos, n)
    half_null = (500 - negs - poss) / 2
    return {
        "n_positive_chaotic": np.full(n, n_chaotic),
        "n_negative": negs,
        "n_positive": poss,
        "grad_frac_positive": np.full(n, frac[0]),
        "grad_frac_negative": np.full(n, frac[1]),
        "ref_n_negative": negs + half_null,
        "ref_n_positive": poss + half_null,
        "ref_cos_positive": np.full(n, cos[0]),
        "ref_cos_negative": np.full(n, cos[1]),
    }


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, [SUPPORTED, SUPPORTED, SUPPORTED]),
        ({"n_chaotic": 1.0}, [NOT_SUPPORTED, SUPPORTED, SUPPORTED]),
        ({"neg": (10, 30)}, [SUPPORTED, NOT_SUPPORTED, SUPPORTED]),  # negative count rises
        ({"pos": (240, 200)}, [SUPPORTED, NOT_SUPPORTED, SUPPORTED]),  # positive count falls
        ({"frac": (0.2, 0.6)}, [SUPPORTED, SUPPORTED, NOT_SUPPORTED]),  # more negative overlap
    ],
)
def test_spectrum_claims_on_both_sides(tmp_path, changes, expected):
    runs = [fake_run(tmp_path, f"sgd{s}", "sgd", s, spectrum=spectrum(**changes)) for s in range(2)]
    rows = claims.claim_spectrum(claims.Results(tmp_path), {"e": runs})
    assert [r.claim for r in rows] == [3, 3, 4]
    assert verdicts(rows) == expected
    assert "reference code's convention" in rows[1].detail
    assert "reference code's convention" in rows[2].detail


def test_spectrum_claims_report_the_reference_convention(tmp_path):
    """The reference's counts include the null eigenvalues split evenly: as the rank grows they
    fall on both sides; its mean |cos| can disagree with the energy fractions. Both are
    reported, neither decides."""
    spec = spectrum(cos=(0.01, 0.02))
    runs = [fake_run(tmp_path, f"sgd{s}", "sgd", s, spectrum=spec) for s in range(2)]
    rows = claims.claim_spectrum(claims.Results(tmp_path), {"e": runs})
    assert verdicts(rows) == [SUPPORTED] * 3
    # over 20 steps, last 2 minus first 2: negative -18.9, positive +37.9; rank +18.9, so each
    # side of the reference's count loses 9.47 null eigenvalues
    assert rows[1].value == pytest.approx(-18 * 20 / 19)
    assert "split evenly): negative -28.4 [-28.4, -28.4], positive 28.4" in rows[1].detail
    assert "which would be supported" in rows[1].detail
    assert "-0.01 [-0.01, -0.01], which would be not supported" in rows[2].detail


# --- claim 5: the exponents ----------------------------------------------------------------------


STEPS = np.array([1, 2, 4, 8, 16, 100, 200, 300, 400])


def fake_exponents(root, run, lam1, steps=STEPS):
    rows = pd.DataFrame(
        {"step": steps, "method": "svd", "lambda_1": lam1, "lambda_N": -np.abs(lam1) - 1e-3}
    )
    write_parquet(rows, root / "lyapunov" / run / "exponents.parquet")


def lyapunov_reference(root, lam1, steps=STEPS, seeds=1):
    runs = []
    for s in range(seeds):
        runs.append(fake_run(root, f"ref{s}", "sgd", s))
        fake_exponents(root, f"ref{s}", lam1, steps)
    return {"e": runs}


def test_exponents_that_start_above_0_and_approach_it(tmp_path):
    lyap = lyapunov_reference(tmp_path, 0.01 * STEPS.astype(float) ** -0.7, seeds=2)
    positive, slope = claims.claim_exponents(claims.Results(tmp_path), lyap)
    assert (positive.verdict, slope.verdict) == (SUPPORTED, SUPPORTED)
    assert positive.value == pytest.approx(0.01)  # λ1 t = 0.01 t^0.3, smallest at step 1
    assert slope.value == pytest.approx(-0.7) and slope.n == 2
    assert f"{200 ** -0.7:.3g}, {200 ** -0.7:.3g}" in slope.detail  # λ1(400) / λ1(2)
    assert positive.threshold.startswith("lower end > 1e-06")


def test_exponents_that_do_not_approach_0(tmp_path):
    """Constant or growing λ1 (persistent chaos), or a noisy flat one: not approaching 0."""
    rng = np.random.default_rng(0)
    for lam1 in (
        np.full(STEPS.size, 0.01),
        0.001 * STEPS.astype(float) ** 0.2,
        0.01 * np.exp(0.3 * rng.standard_normal(STEPS.size)),
    ):
        lyap = lyapunov_reference(tmp_path, lam1)
        positive, slope = claims.claim_exponents(claims.Results(tmp_path), lyap)
        assert positive.verdict == SUPPORTED and slope.verdict == NOT_SUPPORTED


def test_exponents_at_the_neutral_level_are_not_above_0(tmp_path):
    """λ1 t of an untouched direction (≈ neutral_tol) is not "above 0"; the margin scales with
    the configured neutral_tol."""
    lam1 = 0.01 * STEPS.astype(float) ** -0.7
    lam1[0] = 1e-7  # λ1 t = 1e-7 at step 1: 10 neutral_tol, below the margin of 100
    lyap = lyapunov_reference(tmp_path, lam1)
    positive, slope = claims.claim_exponents(claims.Results(tmp_path), lyap)
    assert positive.verdict == NOT_SUPPORTED and positive.value == pytest.approx(1e-7)
    assert slope.verdict == SUPPORTED  # the first readout is not in the slope
    positive, _ = claims.claim_exponents(claims.Results(tmp_path), lyap, neutral_tol=1e-10)
    assert positive.verdict == SUPPORTED
    lam1[4] = -1e-4  # below 0 at step 16: fails both
    lyap = lyapunov_reference(tmp_path, lam1)
    positive, slope = claims.claim_exponents(claims.Results(tmp_path), lyap)
    assert (positive.verdict, slope.verdict) == (NOT_SUPPORTED, NOT_SUPPORTED)


def test_exponents_without_enough_readouts_for_a_slope(tmp_path):
    lyap = lyapunov_reference(tmp_path, [0.02, 0.01, 0.005], steps=np.array([1, 2, 3]))
    positive, slope = claims.claim_exponents(claims.Results(tmp_path), lyap)
    assert positive.verdict == SUPPORTED
    assert slope.verdict == NOT_RUN and "3 exact readouts" in slope.detail


def test_only_exact_readouts_count(tmp_path):
    lyap = lyapunov_reference(tmp_path, 0.01 * STEPS.astype(float) ** -0.7)
    path = tmp_path / "lyapunov" / "ref0" / "exponents.parquet"
    rows = pd.read_parquet(path)
    rows.loc[0, "method"] = "benettin"  # an estimate of 1e-10 at step 1: ignored
    rows.loc[0, "lambda_1"] = 1e-10
    write_parquet(rows, path)
    positive, _ = claims.claim_exponents(claims.Results(tmp_path), lyap)
    assert positive.verdict == SUPPORTED and positive.value > 0.01


# --- claim 9: subspaces --------------------------------------------------------------------------


def fake_subspaces(root, run, late, early=0.3, t0s=(10, 200), steps=(100, 200, 300, 400)):
    """App. C.2's table: similarity ``early`` against t₀ = 10 and ``late`` against t₀ = 200
    (baselines 0.3 and 0.35)."""
    rows = []
    for t0, sim in zip(t0s, (early, late)):
        for step in steps:
            if step < t0:  # the row at t₀ itself compares the basis with itself
                continue
            row = {"t0": t0, "step": step}
            for x in ("chaotic", "edge", "nonchaotic", "chaotic_vs_nonchaotic",
                      "nonchaotic_vs_chaotic"):  # fmt: skip
                row.update(
                    {
                        f"dim0_{x}": 40, f"dim_{x}": 30, f"similarity_{x}": sim,
                        f"baseline_{x}": 0.3, f"random_{x}": 0.35,
                    }
                )  # fmt: skip
            rows.append(row)
    write_parquet(pd.DataFrame(rows), root / "lyapunov" / run / "subspaces.parquet")


@pytest.mark.parametrize(
    "late, early, expected",
    [
        (0.9, 0.3, SUPPORTED),  # stable late, whatever it was early
        (0.4, 0.9, NOT_SUPPORTED),  # only 0.05 above the larger baseline at the later t₀
        (math.nan, 0.9, NOT_SUPPORTED),  # an empty chaotic subspace
    ],
)
def test_subspace_claim_on_both_sides(tmp_path, late, early, expected):
    lyap = lyapunov_reference(tmp_path, 0.01 * STEPS.astype(float) ** -0.7, seeds=2)
    for run in lyap["e"]:
        fake_subspaces(tmp_path, run, late, early)
    (row,) = claims.claim_subspaces(claims.Results(tmp_path), lyap)
    assert row.claim == 9 and row.verdict == expected
    if np.isfinite(late):
        assert row.value == pytest.approx(late - 0.35)
    assert "t₀ = 200: steps 300–400" in row.detail


def test_subspace_claim_not_run_without_readouts_after_t0(tmp_path):
    lyap = lyapunov_reference(tmp_path, 0.01 * STEPS.astype(float) ** -0.7)
    fake_subspaces(tmp_path, "ref0", 0.9, t0s=(400,))
    (row,) = claims.claim_subspaces(claims.Results(tmp_path), lyap)
    assert row.verdict == NOT_RUN and row.threshold == "lower end ≥ 0.1"


# --- claims 6, 7, 10, 11: the perturbed ensembles ------------------------------------------------


def fake_reference(
    root, alpha=1e-6, alpha_se=1e-8, r2=0.99, upper=1.0, lower=2.0, lower_log_max=-0.01,
    growing=True, distance_max=0.2, hidden=20, accs=None,
):  # fmt: skip
    """A reference run with ensembles and fits; per-direction values may be lists of 5."""
    run = fake_run(root, "ref", "sgd", 0, hidden=hidden)
    write_parquet(  # converged at step 5 of 10
        pd.DataFrame(
            {
                "step": [0, 5, 10], "train_acc": [0.1, 0.9, 0.9], "train_loss": 0.3,
                "val_acc": 0.8, "val_loss": 0.4,
            }
        ),
        root / "train" / run / "epochs.parquet",
    )  # fmt: skip
    steps = np.arange(11)
    curve = 0.1 + (distance_max - 0.1) * steps / 10
    if growing == "before":  # diverging until the accuracy converged at step 5, then not
        curve = np.where(steps <= 5, curve, curve[5] - 0.001 * (steps - 5))
    elif not growing:
        curve = 0.1 + 0 * steps
    write_parquet(
        pd.DataFrame(
            {
                "dtype": "float32",
                "strategy": np.repeat(STRATEGIES, len(steps)),
                "eps": 0.1,
                "step": np.tile(steps, len(STRATEGIES)),
                "distance": np.tile(curve, len(STRATEGIES)),
            }
        ),
        root / "ensembles" / run / "distances.parquet",
    )
    write_parquet(
        pd.DataFrame(
            {
                "dtype": "float32", "strategy": STRATEGIES, "eps": 0.1, "alpha": alpha,
                "alpha_se": alpha_se, "r2": r2, "bound_steps": 2, "upper_margin": upper,
                "lower_margin": lower, "lower_log_max": lower_log_max,
            }
        ),
        root / "fits" / run / "fits.parquet",
    )  # fmt: skip
    accs = accs if accs is not None else {0.1: 0.89, 1.0: 0.88, 10.0: 0.5}
    members = [{"dtype": "float32", "strategy": "reference", "eps": 0.0, "train_acc": 0.9}]
    members += [
        {"dtype": "float32", "strategy": s, "eps": e, "train_acc": a}
        for e, a in accs.items()
        for s in STRATEGIES
    ]
    members = pd.DataFrame(members).assign(val_acc=lambda df: df["train_acc"] - 0.05)
    write_parquet(members, root / "ensembles" / run / "members.parquet")
    return {run: "fig"}


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, SUPPORTED),
        ({"alpha_se": 1e-6}, NOT_SUPPORTED),  # α within 2 standard errors of 0
        ({"alpha": [1e-6, 1e-6, 1e-6, 0.0, 0.0]}, NOT_SUPPORTED),  # 3 of 5 directions
        ({"alpha": [1e-6, 1e-6, 1e-6, 1e-6, 0.0]}, SUPPORTED),  # 4 of 5
        ({"growing": False}, NOT_SUPPORTED),  # not diverging
        ({"growing": "before"}, NOT_SUPPORTED),  # no longer diverging after convergence
        ({"r2": 0.2}, SUPPORTED),  # R² alone decides nothing
    ],
)
def test_divergence_claim_on_both_sides(tmp_path, changes, expected):
    refs = fake_reference(tmp_path, **changes)
    linear = claims.claim_divergence(claims.Results(tmp_path), refs, 0.1)[0]
    assert linear.claim == 6 and linear.verdict == expected
    assert linear.threshold == "≥ 0.8"


def divergence_from_fits(root, curves):
    """fits.parquet made by the fits stage from synthetic distance curves, one per direction."""
    refs = fake_reference(root)
    rows = []
    for strategy, (t, d) in zip(STRATEGIES, curves):
        rows.append(pd.DataFrame({"dtype": "float32", "strategy": strategy, "eps": 0.1,
                                  "step": t.astype(np.int64), "distance": d}))  # fmt: skip
    dist = pd.concat(rows, ignore_index=True)
    write_parquet(dist, root / "ensembles" / "ref" / "distances.parquet")
    table, _ = fits.fit_table(dist)
    write_parquet(table, root / "fits" / "ref" / "fits.parquet")
    write_parquet(  # converged at step 1000 of 4000
        pd.DataFrame(
            {
                "step": [0, 1000, 4000], "train_acc": [0.1, 0.9, 0.9], "train_loss": 0.3,
                "val_acc": 0.8, "val_loss": 0.4,
            }
        ),
        root / "train" / "ref" / "epochs.parquet",
    )  # fmt: skip
    return claims.claim_divergence(claims.Results(root), refs, 0.1)


def test_a_random_walk_is_not_linear_divergence(tmp_path):
    """Diffusion alone (α = 0, β > 0), as the fits stage fits it: not supported, though its
    distances grow after convergence and the model fits them well."""
    curves = [diffusing_distances(seed) for seed in range(5)]
    linear, upper, lower = divergence_from_fits(tmp_path, curves)
    assert linear.verdict == NOT_SUPPORTED and linear.value <= 0.2
    assert "growing after convergence True" in linear.detail  # growing all the same
    # the bounds without exact readouts: NaN margins, never support
    assert upper.verdict == lower.verdict == NOT_SUPPORTED and math.isnan(upper.value)


def test_linear_divergence_passes(tmp_path):
    curves = [diffusing_distances(seed, drift=1.0) for seed in range(5)]
    linear, _, _ = divergence_from_fits(tmp_path, curves)
    assert linear.verdict == SUPPORTED and linear.value == 1.0


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, (SUPPORTED, SUPPORTED)),
        ({"upper": [1.0, 1.0, -0.1, 1.0, 1.0]}, (NOT_SUPPORTED, SUPPORTED)),
        ({"lower": [1.0, -0.1, 1.0, 1.0, 1.0]}, (SUPPORTED, NOT_SUPPORTED)),
        # holds, but e^{λN t} ≤ e^-20 at every readout: a vacuous bound is no evidence
        ({"lower_log_max": -20.0}, (SUPPORTED, NOT_SUPPORTED)),
    ],
)
def test_bounds_claim_on_both_sides(tmp_path, changes, expected):
    refs = fake_reference(tmp_path, **changes)
    _, upper, lower = claims.claim_divergence(claims.Results(tmp_path), refs, 0.1)
    assert (upper.claim, lower.claim) == (7, 7)
    assert (upper.verdict, lower.verdict) == expected
    assert upper.threshold == "≥ 0" and "0.01" in lower.threshold
    if "lower_log_max" in changes:
        assert "vacuous at every readout" in lower.detail


@pytest.mark.parametrize("nan_in", ["r2", "upper", "lower", "lower_log_max"])
def test_nan_fit_or_bound_margins_fail_their_criterion_rather_than_being_skipped(tmp_path, nan_in):
    """A curve without variance has no R², one without an exact readout step no bound margins:
    numbers the fits stage writes as NaN, which a NaN-skipping minimum would ignore."""
    values = {nan_in: [1.0, 1.0, math.nan, 1.0, 1.0]}
    refs = fake_reference(tmp_path, **values)
    linear, upper, lower = claims.claim_divergence(claims.Results(tmp_path), refs, 0.1)
    assert linear.verdict == SUPPORTED  # R² is reported, not a criterion
    assert upper.verdict == (NOT_SUPPORTED if nan_in == "upper" else SUPPORTED)
    assert lower.verdict == (NOT_SUPPORTED if nan_in in ("lower", "lower_log_max") else SUPPORTED)


@pytest.mark.parametrize(
    "accs, expected",
    [
        ({0.1: 0.89, 7.5: 0.86, 10.0: 0.5}, [SUPPORTED, SUPPORTED]),
        ({0.1: 0.89, 7.5: 0.8, 10.0: 0.5}, [NOT_SUPPORTED, SUPPORTED]),  # 0.1 below at 7.5
        ({0.1: 0.89, 7.5: 0.86, 10.0: 0.88}, [SUPPORTED, NOT_SUPPORTED]),  # no drop at 10
        ({0.1: 0.89, 1.0: 0.88}, [SUPPORTED, NOT_RUN]),  # no ε ≥ 10 in the config
        ({10.0: 0.5}, [NOT_RUN, SUPPORTED]),
    ],
)
def test_sweep_claim_on_both_sides(tmp_path, accs, expected):
    refs = fake_reference(tmp_path, accs=accs)
    rows = claims.claim_sweep(claims.Results(tmp_path), refs)
    assert [r.claim for r in rows] == [10, 10]
    assert verdicts(rows) == expected
    assert [r.threshold for r in rows] == ["≤ 0.05", "> 0.05"]


def test_scale_claim_against_the_initialization_distance(tmp_path):
    scale = models.init_distance(models.build_model("mlp"))
    assert scale == pytest.approx(4.515, abs=1e-3)
    (row,) = claims.claim_scale(claims.Results(tmp_path), fake_reference(tmp_path), 0.1)
    assert row.claim == 11 and row.verdict == SUPPORTED and row.value == pytest.approx(0.2)
    assert row.threshold == "< 4.515" and "6.38" in row.statement and "√2" in row.statement
    (row,) = claims.claim_scale(
        claims.Results(tmp_path), fake_reference(tmp_path, distance_max=4.6), 0.1
    )
    assert row.verdict == NOT_SUPPORTED
    # a smaller model, a smaller scale: the reference's own architecture counts
    refs = fake_reference(tmp_path, distance_max=4.0, hidden=4)
    (row,) = claims.claim_scale(claims.Results(tmp_path), refs, 0.1)
    small = models.init_distance(models.build_model("mlp", hidden=4))
    assert small < 4.0 and row.verdict == NOT_SUPPORTED and row.threshold == f"< {small:.4g}"


# --- not run, non-finite inputs, the command line ------------------------------------------------


def test_claims_not_run_without_matching_runs(tmp_path):
    runs = [fake_run(tmp_path, "sgd0", "sgd", 0)]
    df = claims.check_claims(tmp_path, {"e": runs}, {}, {}, 0.1)
    assert sorted(set(df["claim"])) == list(range(1, 12))
    assert set(df["verdict"]) == {NOT_RUN}
    assert (df["threshold"] != "").all() and (df["detail"] != "").all()
    table = claims.markdown(df, "context")
    assert table.startswith("context") and "| threshold | verdict |" in table
    assert "| 5 | finite-time exponents" in table


def test_a_non_finite_input_is_refused_naming_file_and_column(tmp_path, capsys):
    """A seed with NaN would drop out of the statistics and the others decide the verdict."""
    runs = []
    for seed in range(3):
        runs.append(fake_run(tmp_path, f"sgd{seed}", "sgd", seed, acc=0.9, loss=0.3))
        acc = math.nan if seed == 1 else 0.5
        runs.append(fake_run(tmp_path, f"neg{seed}", "cgd-negative", seed, acc=acc, loss=1.5))
    out = {k: tmp_path / "claims" / f"claims.{k}" for k in ("parquet", "md", "html")}
    argv = ["--results", str(tmp_path), f"--group=e={','.join(runs)}", "--main-eps", "0.1"]
    argv += ["--out-table", str(out["parquet"]), "--out-markdown", str(out["md"])]
    argv += ["--out-html", str(out["html"])]
    assert claims.main(argv) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'train' / 'neg1' / 'epochs.parquet'}: column 'train_acc' holds 1" in err
    assert "non-finite" in err and not any(p.exists() for p in out.values())
    fake_run(tmp_path, "neg1", "cgd-negative", 1, acc=0.5, loss=1.5)
    assert claims.main(argv) == 0
    assert "**supported**" in out["md"].read_text()
    table = pd.read_parquet(out["parquet"])
    assert list(table.columns) == [
        "claim", "statement", "experiment", "quantity", "value", "ci_low", "ci_high", "n",
        "threshold", "verdict", "criterion", "detail",
    ]  # fmt: skip
    assert "threshold" in out["html"].read_text()


def test_a_stat_that_left_out_non_finite_values_supports_nothing():
    st = claims.mean_ci([0.5, 0.6, float("inf")])
    assert (st.n, st.dropped) == (2, 1)
    row = claims._claim(1, "s", "e", "q", st, True, "> 0", "criterion")
    assert row.verdict == NOT_SUPPORTED and "1 non-finite value(s)" in row.detail
    clean = claims.mean_ci([0.5, 0.6])
    assert claims._claim(1, "s", "e", "q", clean, True, "> 0", "c").verdict == SUPPORTED
    assert (
        claims._claim(1, "s", "e", "q", clean, True, "> 0", "c", also=(st,)).verdict
        == NOT_SUPPORTED
    )
    assert claims._single(6, "s", "e", "q", math.nan, True, "≥ 0", "c").verdict == NOT_SUPPORTED
