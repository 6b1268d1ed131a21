"""Shared fixtures, and the test tiers.

Tests under ``tests/workflow/`` run the real pipeline through Snakemake (minutes each): they are
marked ``workflow``; unit tests of several seconds are marked ``slow``, so that
``pytest -m "not workflow and not slow"`` is the fast tier. Helpers the tests
share live in ``tests/support/``; no test file imports another.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.workflow import FMNIST_DIR, REPO

WORKFLOW_TESTS = Path(__file__).resolve().parent / "workflow"


def pytest_collection_modifyitems(items):
    for item in items:
        if WORKFLOW_TESTS in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.workflow)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"FashionMNIST not found in {FMNIST_DIR}: apt-get install dataset-fashion-mnist "
            "(.ci/run does)"
        )
    return FMNIST_DIR


@pytest.fixture(scope="session")
def fmnist_pt(tmp_path_factory, fmnist_dir) -> Path:
    """FashionMNIST prepared by the datasets stage (once per test session)."""
    from chaosgd import datasets

    out = tmp_path_factory.mktemp("prepared") / "fmnist.pt"
    rc = datasets.main(
        [
            "fmnist",
            "--out",
            str(out),
            "--manifest",
            str(out.with_suffix(".json")),
            "--local-dir",
            str(fmnist_dir),
            "--no-download",
            "--cache-dir",
            str(out.parent / "cache"),
            # the config's default (the paper's): without antialiasing, as the reference code
            "--resize",
            "reference",
        ]
    )
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def one_thread():
    """Run a module single-threaded: on a shared 2-core machine the many small two-thread
    LAPACK calls (QR, eigh) of the curvature tests are much slower under contention."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
