"""Helpers the engine tests share."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def single_thread():
    """Small products gain nothing from threads and suffer badly on a shared, busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def image_batch(n, seed):
    """``n`` random 16×16 one-channel images and labels of 10 classes, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)
