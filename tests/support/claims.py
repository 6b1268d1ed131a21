"""Hand-made training runs and verdict lists for the claim tests (chaosgd.analysis.claims)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from chaosgd.runs.artifacts import write_json, write_parquet

# spelled out, not imported: the table's words are part of what the tests check
SUPPORTED, NOT_SUPPORTED, NOT_RUN = "supported", "not supported", "not run"


def fake_run(
    root,
    run,
    variant,
    seed,
    onset=0,
    acc=0.9,
    loss=0.3,
    val_acc=None,
    val_loss=None,
    step_losses=None,
    spectrum=None,
    hidden=4,
):
    """A training run's run.json, epochs.parquet and steps.parquet (``spectrum``: extra per-step
    columns, which also marks the run as recording the spectrum)."""
    folder = root / "train" / run
    settings = {
        "run_id": run,
        "variant": variant,
        "seed": seed,
        "momentum": 0.0,
        "onset": onset,
        "dtype": "float32",
        "spectrum": spectrum is not None,
        "model": "mlp",
        "activation": "relu",
        "hidden": hidden,
    }
    write_json(
        {
            "run_id": run,
            "settings": settings,
            "environment": {"device": "cpu", "device_name": "x"},
            "result": {"wall_seconds": 1.0},
        },
        folder / "run.json",
    )
    val_acc = acc - 0.02 if val_acc is None else val_acc
    val_loss = loss + 0.05 if val_loss is None else val_loss
    write_parquet(
        pd.DataFrame(
            {
                "step": [0, 10],
                "train_acc": [0.1, acc],
                "train_loss": [2.3, loss],
                "val_acc": [0.1, val_acc],
                "val_loss": [2.3, val_loss],
            }
        ),
        folder / "epochs.parquet",
    )
    n = len(next(iter(spectrum.values()))) if spectrum else 10
    losses = step_losses if step_losses is not None else np.linspace(2, loss, n)
    steps = pd.DataFrame({"step": np.arange(len(losses)), "loss": losses})
    for col, values in (spectrum or {}).items():
        steps[col] = values
    write_parquet(steps, folder / "steps.parquet")
    return run


def verdicts(rows, claim=None):
    """The verdicts of ``rows`` (of claim ``claim`` only, if given), in order."""
    return [r.verdict for r in rows if claim is None or r.claim == claim]
