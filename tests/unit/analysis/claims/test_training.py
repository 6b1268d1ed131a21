"""Claims 1, 2, 8, 14 and 15 (Sec. 4.1, Fig. 1–2, App. B.1) on hand-made runs with known
answers.

Every criterion is tested on both sides of its threshold: reversing any comparison in
``chaosgd.analysis.claims.training`` turns a test here red."""

from __future__ import annotations

import numpy as np
import pytest

from chaosgd.analysis.claims.results import Results
from chaosgd.analysis.claims.training import (
    claim_coincide,
    claim_onsets,
    claim_pruning,
    claim_selections,
    claim_validation,
)

from support.claims import NOT_RUN, NOT_SUPPORTED, SUPPORTED, fake_run, verdicts


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
    fn = claim_pruning if claim == 1 else claim_validation
    rows = fn(Results(tmp_path), {"e": runs})
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
    assert verdicts(claim_pruning(Results(tmp_path), {"e": runs})) == [SUPPORTED]
    assert verdicts(claim_validation(Results(tmp_path), {"e": runs})) == [NOT_SUPPORTED]


def test_onset_claims_need_identical_steps_before_the_onset(tmp_path):
    base = np.linspace(2, 0.5, 20)
    later = base.copy()
    later[9:] += 0.2  # the loss at the onset step comes before the first pruned update
    runs = [fake_run(tmp_path, f"sgd{s}", "sgd", s, step_losses=base) for s in range(3)]
    runs += [
        fake_run(tmp_path, f"c{s}", "cgd-chaotic", s, onset=8, step_losses=later) for s in range(3)
    ]
    (row,) = claim_onsets(Results(tmp_path), {"e": runs})
    assert row.verdict == SUPPORTED and row.value == pytest.approx(0.2 * 11 / 12)
    assert row.threshold == "lower end > 0"
    early = later.copy()
    early[3] += 1e-9  # differs before the onset: not the same batches/initialization
    fake_run(tmp_path, "c1", "cgd-chaotic", 1, onset=8, step_losses=early)
    (row,) = claim_onsets(Results(tmp_path), {"e": runs})
    assert row.verdict == NOT_SUPPORTED and "identical before the onset: False" in row.detail


def test_onset_claims_fail_when_pruning_learns_faster(tmp_path):
    base = np.linspace(2, 0.5, 20)
    faster = base.copy()
    faster[9:] -= 0.1
    runs = [fake_run(tmp_path, f"sgd{s}", "sgd", s, step_losses=base) for s in range(3)]
    runs += [
        fake_run(tmp_path, f"c{s}", "cgd-chaotic", s, onset=8, step_losses=faster) for s in range(3)
    ]
    (row,) = claim_onsets(Results(tmp_path), {"e": runs})
    assert row.verdict == NOT_SUPPORTED and row.value < 0


def coincide_runs(root, diffs, sgd=True):
    """SGD (0.9), CGD-negative (0.5) and CGD-chaotic runs, one seed per entry of ``diffs``: the
    chaotic run's final training accuracy that much above the negative one's (binary fractions,
    so that the thresholds compare exact numbers)."""
    runs = []
    for seed, d in enumerate(diffs):
        if sgd:
            runs.append(fake_run(root, f"sgd{seed}", "sgd", seed, acc=0.9, loss=0.25))
        runs.append(fake_run(root, f"neg{seed}", "cgd-negative", seed, acc=0.5, loss=1.5))
        runs.append(fake_run(root, f"cha{seed}", "cgd-chaotic", seed, acc=0.5 + d, loss=1.25))
    return runs


@pytest.mark.parametrize(
    "diffs, expected",
    [
        ((0.0, 0.03125), SUPPORTED),
        ((-0.03125, 0.03125), SUPPORTED),
        ((0.0, 0.0625), NOT_SUPPORTED),  # one seed 0.0625 above: beyond LITTLE
        ((-0.0625, 0.0), NOT_SUPPORTED),  # one seed 0.0625 below
        ((0.2, 0.2), NOT_SUPPORTED),  # counter-example: chaotic pruning far less harmful
        ((-0.2, -0.2), NOT_SUPPORTED),  # and far more
    ],
)
def test_negative_and_chaotic_pruning_coincide_on_both_sides(tmp_path, diffs, expected):
    (row,) = claim_coincide(Results(tmp_path), {"e": coincide_runs(tmp_path, diffs)})
    assert row.claim == 14 and row.verdict == expected
    assert row.threshold == "lower end ≥ −0.05, upper end ≤ 0.05"
    assert (row.low, row.high) == (pytest.approx(min(diffs)), pytest.approx(max(diffs)))
    assert "Sec. 4.1, Fig. 1" in row.statement
    assert "training loss CGD-chaotic minus CGD-negative: -0.25" in row.detail


def test_coinciding_pruning_needs_sgd_runs_of_the_same_seeds(tmp_path):
    runs = coincide_runs(tmp_path, (0.0, 0.0), sgd=False)
    (row,) = claim_coincide(Results(tmp_path), {"e": runs})
    assert row.verdict == NOT_RUN and "same seeds" in row.detail


def selection_runs(root, accs, seeds=(0, 1, 2), n_pruned=None):
    """SGD runs (0.9) and one CGD run per variant in ``accs`` (variant -> final training
    accuracy) and seed, ± 0.01 over seeds; ``n_pruned``: variant -> pruned directions per step."""
    runs = []
    for seed in seeds:
        noise = (0.0, 0.01, -0.01)[seed % 3]
        runs.append(fake_run(root, f"sgd{seed}", "sgd", seed, acc=0.9))
        for variant, acc in accs.items():
            steps = None
            if n_pruned and variant in n_pruned:
                steps = {"n_pruned": np.full(10, n_pruned[variant])}
            runs.append(
                fake_run(root, f"{variant}_{seed}", variant, seed, acc=acc + noise, steps=steps)
            )
    return runs


@pytest.mark.parametrize(
    "neg, pos, rand, expected",
    [
        # negative top-10 costs 0.3, positive 0.05, negative random-10 0.1
        (0.6, 0.85, 0.8, [SUPPORTED, SUPPORTED]),
        # the negative selection costs less than the positive one
        (0.88, 0.85, 0.8, [NOT_SUPPORTED, NOT_SUPPORTED]),
        # random-10 costs more than top-10
        (0.6, 0.85, 0.5, [SUPPORTED, NOT_SUPPORTED]),
    ],
)
def test_selection_claims_on_both_sides(tmp_path, neg, pos, rand, expected):
    accs = {"cgd-negative-top10": neg, "cgd-positive-top10": pos, "cgd-negative-random10": rand}
    rows = claim_selections(Results(tmp_path), {"e": selection_runs(tmp_path, accs)})
    assert [r.claim for r in rows] == [15, 15] and verdicts(rows) == expected
    ordering, top_random = rows
    assert ordering.quantity.endswith("cgd-negative-top10 minus cgd-positive-top10")
    assert ordering.value == pytest.approx(pos - neg) and ordering.n == 3
    assert top_random.quantity.endswith("cgd-negative-top10 minus cgd-negative-random10")
    assert top_random.value == pytest.approx(rand - neg)
    assert {r.threshold for r in rows} == {"lower end > 0"}
    assert "reports no result" in ordering.statement and "Sec. 4.1" in ordering.statement


def test_equal_selections_support_no_ordering(tmp_path):
    """The boundary: the same accuracy for every selection gives gaps that differ by exactly 0,
    which is no ordering; k at least the set's size makes top-k and random-k the same run."""
    accs = {"cgd-chaotic-top5": 0.5, "cgd-positive-top5": 0.5, "cgd-chaotic-random5": 0.5}
    n_pruned = {"cgd-chaotic-top5": 3, "cgd-chaotic-random5": 3}
    runs = selection_runs(tmp_path, accs, seeds=(0, 1), n_pruned=n_pruned)
    rows = claim_selections(Results(tmp_path), {"e": runs})
    assert verdicts(rows) == [NOT_SUPPORTED, NOT_SUPPORTED]
    assert [r.value for r in rows] == [0, 0] and [r.high for r in rows] == [0, 0]
    assert "top-5 3, 3, random-5 3, 3" in rows[1].detail
    assert "both prune the whole set" in rows[1].detail


def test_selection_claims_read_each_selection_and_k_apart(tmp_path):
    accs = {
        "cgd-negative-top10": 0.6,
        "cgd-positive-top10": 0.85,
        "cgd-negative-random10": 0.8,
        "cgd-positive-random10": 0.88,
        "cgd-negative-top20": 0.5,  # no positive top-20 and no random-20: no row
        "cgd-negative-top10-noise": 0.1,  # noise variants change more than the selection
        "cgd-negative": 0.4,  # the full set is claim 1's
    }
    runs = selection_runs(tmp_path, accs, n_pruned={"cgd-negative-top10": 10})
    runs += [fake_run(tmp_path, f"late{s}", "cgd-positive-top20", s, onset=5) for s in range(3)]
    rows = claim_selections(Results(tmp_path), {"e": runs})
    assert [r.quantity.split(", ")[-1] for r in rows] == [
        "cgd-negative-random10 minus cgd-positive-random10",
        "cgd-negative-top10 minus cgd-positive-top10",
        "cgd-negative-top10 minus cgd-negative-random10",
    ]
    assert verdicts(rows) == [SUPPORTED] * 3
    assert rows[0].value == pytest.approx(0.08)
    # the random-10 runs' steps tables lack n_pruned here
    assert "top-10 10, 10, 10, random-10 not recorded" in rows[2].detail


def test_selection_claims_not_run_without_pairs(tmp_path):
    runs = selection_runs(tmp_path, {"cgd-negative-top10": 0.6, "cgd-positive-random10": 0.8})
    (row,) = claim_selections(Results(tmp_path), {"e": runs})
    assert row.claim == 15 and row.verdict == NOT_RUN and "SGD runs of the same seeds" in row.detail


@pytest.mark.parametrize("negative, chaotic", [(0.1, 0.05), (0.05, 0.1)])
def test_pruning_that_differs_by_exactly_little_still_coincides(tmp_path, negative, chaotic):
    """The boundaries: a difference of exactly ∓0.05 (0.05 − 0.1 is -0.05 in floating point)."""
    runs = []
    for seed in range(2):
        runs.append(fake_run(tmp_path, f"sgd{seed}", "sgd", seed, acc=0.9))
        runs.append(fake_run(tmp_path, f"neg{seed}", "cgd-negative", seed, acc=negative))
        runs.append(fake_run(tmp_path, f"cha{seed}", "cgd-chaotic", seed, acc=chaotic))
    (row,) = claim_coincide(Results(tmp_path), {"e": runs})
    assert abs(row.value) == 0.05 and row.verdict == SUPPORTED
