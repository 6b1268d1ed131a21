"""How the benchmarks time: wall-clock seconds of a call with the device drained before and after,
their median, the machine's load, and the synthetic minibatches they time on."""

from __future__ import annotations

import math
import os
import statistics
import time

import torch

__all__ = ["sync", "timed", "median", "load1", "synthetic_batches"]


def sync(device: torch.device) -> None:
    """Wait for ``device`` to finish its queued work (CUDA runs asynchronously; the CPU does not)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    """Call ``fn()``; return its result and the seconds it took on ``device``.

    The device is drained before the clock starts (so earlier work is not counted) and before it
    stops (so the call's own queued kernels are).
    """
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def median(xs) -> float:
    """The median of ``xs``, NaN when there is none (a part that timed nothing shows as NaN)."""
    return statistics.median(xs) if xs else math.nan


def load1() -> float:
    """The one-minute load average (NaN where the OS has none): timings on a busy machine are
    slower, so the headers print it beside them."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def synthetic_batches(batch: int, seed: int, dev: torch.device):
    """Return ``next_batch() -> (x, y)``: minibatches (with replacement) from a fixed pool of
    64·batch synthetic standardised 16×16 images (standard normal pixels), random labels."""
    data_gen = torch.Generator().manual_seed(seed + 2)
    pool_x = torch.randn(64 * batch, 1, 16, 16, generator=data_gen).to(dev)
    pool_y = torch.randint(0, 10, (64 * batch,), generator=data_gen).to(dev)

    def next_batch():
        idx = torch.randint(0, pool_x.shape[0], (batch,), generator=data_gen).to(dev)
        return pool_x[idx], pool_y[idx]

    return next_batch
