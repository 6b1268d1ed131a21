"""The step schedule of a run: how many steps it takes, when it is evaluated and its spectrum
kept, when its exact readouts fall, and which steps its perturbed ensembles record.

The one home of these counts: the planner (run lengths, onsets, readouts), the job costs, the
trainer, the lockstep ensembles and the Lyapunov readouts all read them here. Pure Python, so
that the Snakefile can plan without torch or numpy.
"""

from __future__ import annotations

import math

from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.vocab import DATASETS


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Optimizer steps of one epoch: every image once, the last batch possibly smaller."""
    if n_images < 1 or batch_size < 1:
        raise ValueError(f"steps_per_epoch: {n_images} images, batch {batch_size}")
    return math.ceil(n_images / batch_size)


def run_steps(n_images: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps of a run: ⌈images / batch⌉ per epoch × epochs."""
    return steps_per_epoch(n_images, batch_size) * epochs


def train_images(settings: RunSettings) -> int:
    """The run's training images: its ``train_size`` subset, or the whole training set."""
    total = DATASETS[settings.dataset].train_size
    return min(settings.train_size, total) if settings.train_size else total


def train_steps(settings: RunSettings) -> int:
    """The run's optimizer steps, from its settings and its dataset's size."""
    return run_steps(train_images(settings), settings.batch_size, settings.epochs)


def eval_steps(steps_per_epoch: int, epochs: int, per_epoch: int) -> list[int]:
    """The steps after which the whole training and validation sets are evaluated (the rows of
    ``epochs.parquet``): 0, and ``per_epoch`` times per epoch, the last at the end of the run."""
    points = {0}
    for e in range(epochs):
        for k in range(1, per_epoch + 1):
            points.add(e * steps_per_epoch + round(k * steps_per_epoch / per_epoch))
    return sorted(points)


def spectrum_steps(steps_per_epoch: int, epochs: int, per_epoch: int) -> list[int]:
    """The steps whose Hessian eigenvalues ``spectra.parquet`` keeps (App. B.2's distributions
    over training): the evaluation steps (:func:`eval_steps`), whose parameters the step's
    minibatch Hessian is taken at; the end of the run has no batch left, so its last step
    stands in for it."""
    total = steps_per_epoch * epochs
    return sorted({min(s, total - 1) for s in eval_steps(steps_per_epoch, epochs, per_epoch)})


def _geomspace(start: float, stop: float, num: int) -> list[float]:
    """``num`` log-spaced values from ``start`` to ``stop`` inclusive (numpy's geomspace)."""
    if num == 1:
        return [float(start)]
    ratio = (stop / start) ** (1 / (num - 1))
    return [start * ratio**k for k in range(num - 1)] + [float(stop)]


def readout_steps(
    total: int, readouts: int, early: int = 0, anchors: tuple[int, ...] = ()
) -> list[int]:
    """The exact readouts' steps: ``readouts`` evenly spaced over ``total`` (the last one at
    ``total``), ``early`` more log-spaced from step 1 up to the first of those, so that the start
    of training, where App. C.1's exponents are above 0, is resolved, and the ``anchors`` within
    the run (App. C.2's reference times t₀)."""
    if total < 1 or readouts < 1 or early < 0:
        raise ValueError(f"readout_steps: total {total}, readouts {readouts}, early {early}")
    steps = {max(1, round(k * total / readouts)) for k in range(1, readouts + 1)}
    if early:
        first = min(steps)
        steps |= {int(round(v)) for v in _geomspace(1, first, early + 1)[:-1]}
    steps |= {int(a) for a in anchors if 1 <= int(a) <= total}
    return sorted(steps)


def anchor_steps(anchors, total: int) -> list[int]:
    """App. C.2's reference times t₀ clipped to a run of ``total`` steps (the reference code's
    10 and 10⁴ steps; one past the end becomes the last step), distinct and ascending."""
    return sorted({min(max(1, int(a)), total) for a in anchors})


def record_steps(total: int, every: int, extra=()) -> list[int]:
    """States recorded: 0, every ``every``-th step, the ``extra`` steps within 0..total (e.g. the
    Lyapunov readout steps, where the fits stage checks the bounds) and the final state."""
    if every < 1:
        raise ValueError(f"record_every must be a positive integer, got {every}")
    extra = {int(e) for e in extra if 0 <= int(e) <= total}
    return sorted(set(range(0, total + 1, every)) | extra | {total})
