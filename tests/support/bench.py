"""``python -m chaosgd.tools.bench`` run in-process for the tests: its output captured, and torch's
thread count restored after (the commands set it from ``--threads``, which would leak into the
tests that follow)."""

from __future__ import annotations

import contextlib
import io

import torch

from chaosgd.tools.bench import cli


def run_bench(argv: list[str]) -> tuple[int, str, str]:
    """Run ``cli.main(argv)``; return its exit status, stdout and stderr."""
    threads = torch.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(argv)
    finally:
        torch.set_num_threads(threads)
    return rc, out.getvalue(), err.getvalue()
