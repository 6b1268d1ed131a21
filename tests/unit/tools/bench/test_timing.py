"""chaosgd.tools.bench.timing: what every benchmark times with."""

import math

import torch

from chaosgd.tools.bench.timing import median, synthetic_batches, timed


def test_timed_returns_the_result_and_the_seconds():
    out, seconds = timed(lambda: 42, torch.device("cpu"))
    assert out == 42 and 0 <= seconds < 60


def test_median_of_nothing_is_nan():
    assert math.isnan(median([]))
    assert median([3.0, 1.0, 2.0]) == 2.0


def test_synthetic_batches_repeat_with_the_seed():
    a, b = synthetic_batches(4, 0, torch.device("cpu")), synthetic_batches(
        4, 0, torch.device("cpu")
    )
    (xa, ya), (xb, yb) = a(), b()
    assert xa.shape == (4, 1, 16, 16) and ya.shape == (4,)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a()[0], xa)  # the next batch is another draw
