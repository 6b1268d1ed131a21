"""Claims 1, 2 and 8 (Sec. 4.1, Fig. 1–2, App. B.1) on hand-made runs with known answers.

Every criterion is tested on both sides of its threshold: reversing any comparison in
``chaosgd.analysis.claims.training`` turns a test here red."""

from __future__ import annotations

import numpy as np
import pytest

from chaosgd.analysis.claims.results import Results
from chaosgd.analysis.claims.training import claim_onsets, claim_pruning, claim_validation

from support.claims import NOT_SUPPORTED, SUPPORTED, fake_run, verdicts


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
