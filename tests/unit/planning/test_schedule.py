"""The step schedule: steps per run (one home for every stage) and the exact readouts (App. C.1,
C.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chaosgd.planning import schedule
from chaosgd.planning.run_settings import RunSettings

from support.runs import TRAIN_BASE


def test_steps_of_a_run():
    assert schedule.steps_per_epoch(7291, 8) == 912  # USPS: the last batch holds 3 images
    assert schedule.run_steps(7291, 8, 40) == 36480
    assert schedule.run_steps(96, 8, 2) == 24
    for bad in ((0, 8), (8, 0)):
        with pytest.raises(ValueError, match="steps_per_epoch"):
            schedule.steps_per_epoch(*bad)


def test_a_runs_steps_follow_its_dataset_and_subset():
    s = RunSettings(**{**TRAIN_BASE, "train_size": 100, "batch_size": 8, "epochs": 3})
    assert schedule.train_images(s) == 100 and schedule.train_steps(s) == 13 * 3
    whole = RunSettings(**{**TRAIN_BASE, "dataset": "usps", "train_size": 0, "epochs": 40})
    assert schedule.train_images(whole) == 7291 and schedule.train_steps(whole) == 36480
    # a subset larger than the dataset is the dataset
    big = RunSettings(**{**TRAIN_BASE, "dataset": "usps", "train_size": 10**6, "epochs": 1})
    assert schedule.train_images(big) == 7291


def test_readout_schedule_resolves_the_start():
    even = schedule.readout_steps(36480, 10)
    assert even[0] == 3648 and even[-1] == 36480 and len(even) == 10
    steps = schedule.readout_steps(36480, 10, early=6, anchors=(10, 10_000, 99_999))
    assert steps[0] == 1 and set(even) < set(steps)
    early = [s for s in steps if s < 3648]
    assert len(early) >= 6 and 10 in steps and 10_000 in steps and 99_999 not in steps
    ratios = np.diff(np.log(early[:6]))
    assert np.all(ratios > 0)  # log-spaced, increasing
    assert schedule.readout_steps(5, 10) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        schedule.readout_steps(0, 3)


def test_anchor_steps_are_clipped_to_the_run():
    assert schedule.anchor_steps([10, 10_000], 912) == [10, 912]
    assert schedule.anchor_steps([10, 10_000], 36480) == [10, 10_000]
    assert schedule.anchor_steps([0, 5, 5], 3) == [1, 3]


@pytest.mark.parametrize("total", [1, 2, 7, 100, 912, 3647, 36480, 300000])
@pytest.mark.parametrize("readouts, early", [(1, 0), (3, 1), (10, 6), (20, 10), (50, 20)])
def test_readout_steps_equal_numpys_log_spacing(total, readouts, early):
    """The pure-Python log spacing (the Snakefile plans without numpy) is numpy's geomspace."""
    steps = {max(1, round(k * total / readouts)) for k in range(1, readouts + 1)}
    if early:
        first = min(steps)
        steps |= {int(round(v)) for v in np.geomspace(1, first, early + 1)[:-1]}
    assert schedule.readout_steps(total, readouts, early) == sorted(steps)
    assert math.isclose(schedule._geomspace(1, 3647, 11)[5], np.geomspace(1, 3647, 11)[5])


def test_evaluation_and_spectrum_steps():
    # 12 steps per epoch, 2 epochs, 2 evaluations per epoch: the rows of epochs.parquet
    assert schedule.eval_steps(12, 2, 2) == [0, 6, 12, 18, 24]
    # the end of the run has no batch: its last step's Hessian stands in for it
    assert schedule.spectrum_steps(12, 2, 2) == [0, 6, 12, 18, 23]
    # the paper's config: USPS, 40 epochs, one evaluation each: 41 kept spectra
    assert len(schedule.spectrum_steps(912, 40, 1)) == 41
    assert schedule.spectrum_steps(912, 40, 1)[-1] == 36479
    # the quick demo's: 250 steps per epoch, 2 epochs, 4 evaluations each
    assert schedule.spectrum_steps(250, 2, 4) == [0, 62, 125, 188, 250, 312, 375, 438, 499]
    # one step per epoch: the last step stands in for the end only once
    assert schedule.spectrum_steps(1, 3, 1) == [0, 1, 2]
