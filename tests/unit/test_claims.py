"""Claims stage: the command line reads the results, refuses bad ones, and writes the table.

The claims themselves, on hand-made results, are tested in ``tests/unit/analysis/claims/``."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd

from chaosgd import claims

from support.claims import fake_run
from support.workflow import REPO


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
        "claim",
        "statement",
        "experiment",
        "quantity",
        "value",
        "interval",
        "low",
        "high",
        "seed_values",
        "ci_low",
        "ci_high",
        "n",
        "threshold",
        "verdict",
        "criterion",
        "detail",
    ]
    assert "threshold" in out["html"].read_text()


def test_the_stage_runs_as_a_module_with_the_rules_options():
    """``python -m chaosgd.claims``, as workflow/rules/claims.smk runs it."""
    out = subprocess.run(
        [sys.executable, "-m", "chaosgd.claims", "--help"],
        cwd=REPO / "workflow",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in ("--results", "--group", "--lyapunov", "--reference", "--main-eps"):
        assert option in out
    for option in ("--neutral-tol", "--config-name", "--out-table", "--out-markdown", "--out-html"):
        assert option in out
