"""Claims: the statistics and the verdict rules, on hand-made results with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from chaosgd import claims
from chaosgd.io import write_json, write_parquet


def test_mean_ci_matches_the_textbook_t_interval():
    st = claims.mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(n)
    assert (st.mean, st.n) == (2.0, 3)
    assert st.ci_low == pytest.approx(2 - half) and st.ci_high == pytest.approx(2 + half)
    assert (st.low, st.high) == (st.ci_low, st.ci_high)
    two = claims.mean_ci([0.4, 0.6])
    assert (two.low, two.high) == (0.4, 0.6)  # below 3 seeds: every seed must show it
    one = claims.mean_ci([0.5, float("nan")])
    assert one.n == 1 and math.isnan(one.ci_low) and one.low == 0.5


def fake_run(root, run, variant, seed, onset=0, acc=0.9, loss=0.3, step_losses=None):
    folder = root / "train" / run
    settings = {
        "run_id": run,
        "variant": variant,
        "seed": seed,
        "momentum": 0.0,
        "onset": onset,
        "dtype": "float32",
    }
    write_json(
        {
            "settings": settings,
            "environment": {"device": "cpu", "device_name": "x"},
            "result": {"wall_seconds": 1.0},
        },
        folder / "run.json",
    )
    write_parquet(
        pd.DataFrame({"step": [0, 10], "train_acc": [0.1, acc], "train_loss": [2.3, loss]}),
        folder / "epochs.parquet",
    )
    losses = step_losses if step_losses is not None else np.linspace(2, loss, 10)
    write_parquet(
        pd.DataFrame({"step": np.arange(len(losses)), "loss": losses}), folder / "steps.parquet"
    )
    return run


def test_pruning_claims(tmp_path):
    runs = []
    for seed, noise in enumerate((0.0, 0.01, -0.01)):
        runs.append(fake_run(tmp_path, f"sgd{seed}", "sgd", seed, acc=0.9 + noise, loss=0.3))
        runs.append(
            fake_run(tmp_path, f"neg{seed}", "cgd-negative", seed, acc=0.5 + noise, loss=1.5)
        )
        runs.append(
            fake_run(tmp_path, f"pos{seed}", "cgd-positive", seed, acc=0.85 - noise, loss=0.4)
        )
    rows = claims.claim_pruning(claims.Results(tmp_path), {"e": runs})
    assert [r.verdict for r in rows] == ["supported", "supported"]
    assert rows[0].value == pytest.approx(0.4) and rows[0].n == 3
    # a gap of 0.05 is not "far lower"
    for seed in range(3):
        fake_run(tmp_path, f"neg{seed}", "cgd-negative", seed, acc=0.85, loss=0.5)
    rows = claims.claim_pruning(claims.Results(tmp_path), {"e": runs})
    assert [r.verdict for r in rows] == ["not supported", "not supported"]


def test_onset_claims_need_identical_steps_before_the_onset(tmp_path):
    base = np.linspace(2, 0.5, 20)
    later = base.copy()
    later[9:] += 0.2  # the loss at the onset step comes before the first pruned update
    runs = [fake_run(tmp_path, f"sgd{s}", "sgd", s, step_losses=base) for s in range(3)]
    runs += [
        fake_run(tmp_path, f"c{s}", "cgd-chaotic", s, onset=8, step_losses=later) for s in range(3)
    ]
    (row,) = claims.claim_onsets(claims.Results(tmp_path), {"e": runs})
    assert row.verdict == "supported" and row.value == pytest.approx(0.2 * 11 / 12)
    early = later.copy()
    early[3] += 1e-9  # differs before the onset: not the same batches/initialization
    fake_run(tmp_path, "c1", "cgd-chaotic", 1, onset=8, step_losses=early)
    (row,) = claims.claim_onsets(claims.Results(tmp_path), {"e": runs})
    assert row.verdict == "not supported" and "identical before the onset: False" in row.detail


def test_claims_not_run_without_matching_runs(tmp_path):
    runs = [fake_run(tmp_path, "sgd0", "sgd", 0)]
    assert claims.claim_pruning(claims.Results(tmp_path), {"e": runs})[0].verdict == "not run"
    assert claims.claim_onsets(claims.Results(tmp_path), {"e": runs})[0].verdict == "not run"
    assert claims.claim_exponents(claims.Results(tmp_path), {})[0].verdict == "not run"
    table = claims.markdown(pd.DataFrame([vars(claims.Claim(5, "s", "-", "q"))]), "context")
    assert table.startswith("context") and "| 5 | s | - | q |" in table
