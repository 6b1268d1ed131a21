"""Hand-made training runs and verdict lists for the claim tests (chaosgd.analysis.claims)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from chaosgd.planning.tables import BOUNDS
from chaosgd.planning.vocab import strategies_for
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
    steps=None,
):
    """A training run's run.json, epochs.parquet and steps.parquet (``spectrum``: extra per-step
    columns, which also marks the run as recording the spectrum; ``steps``: extra per-step
    columns that do not, such as a CGD run's ``n_pruned``)."""
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
    extra = {**(spectrum or {}), **(steps or {})}
    n = len(next(iter(extra.values()))) if extra else 10
    losses = step_losses if step_losses is not None else np.linspace(2, loss, n)
    table = pd.DataFrame({"step": np.arange(len(losses)), "loss": losses})
    for col, values in extra.items():
        table[col] = values
    write_parquet(table, folder / "steps.parquet")
    return run


def verdicts(rows, claim=None):
    """The verdicts of ``rows`` (of claim ``claim`` only, if given), in order."""
    return [r.verdict for r in rows if claim is None or r.claim == claim]


# --- a reference run with perturbed ensembles, fits and bounds (claims 6, 7, 10, 11, 17, 18) ---

STRATEGIES = ["max_chaos", "max_convergence", "chaotic", "nonchaotic", "random"]


# the default bounds table: e^{λN t} ≈ 1 after one step (d ≈ ε, no evidence), 0.2 at step 5
# where the map has contracted fivefold (the informative readout), vacuous at the end
BOUNDS_ROWS = ((1, 0.99), (5, 0.2), (10, 1e-5))


def per_direction(value, strategies=STRATEGIES):
    return list(value) if isinstance(value, (list, tuple)) else [value] * len(strategies)


def curve_of(distance_max, growing):
    """A distance curve over steps 0–10 rising linearly to ``distance_max``: d² = αt² + βt +
    ε² exactly, with ε = 0.1·``distance_max`` (0.1 by default); ``growing`` "before": rising
    until the accuracy converged at step 5, then falling; "flat": then constant; False: flat
    throughout."""
    steps = np.arange(11)
    curve = distance_max * (0.1 + 0.9 * steps / 10)  # exactly distance_max at the end
    if growing == "before":
        curve = np.where(steps <= 5, curve, curve[5] - 0.001 * (steps - 5))
    elif growing == "flat":
        curve = np.where(steps <= 5, curve, curve[5])
    elif not growing:
        curve = 0.1 + 0 * curve
    return steps, curve


def fake_reference(
    root,
    alpha=None,
    alpha_se=1e-8,
    beta=None,
    r2=0.99,
    upper=1.0,
    upper_between=1.5,
    between_steps=10,
    lower=2.0,
    lower_log_max=-0.01,
    growing=True,
    distance_max=1.0,
    hidden=20,
    accs=None,
    bounds=BOUNDS_ROWS,
    topk=0,
):
    """A reference run with ensembles, fits and bounds; per-direction values may be lists of 5
    (of 3 with ``topk``).

    α and β default to the curve's own (the fit is exact); ``bounds``: (step, e^{λN t}) pairs
    of the lower bound against the curve's distance at those steps, or (step, e^{λN t}, d).
    ``topk`` k > 0: the reference's Lyapunov run followed its k leading exponents (``topk_svd``
    readouts) and the ensembles have the strategies those give."""
    strategies = list(strategies_for(topk))
    run = fake_run(root, "ref", "sgd", 0, hidden=hidden)
    step = np.array([1, 5, 10])
    write_parquet(
        pd.DataFrame(
            {
                "step": step,
                "method": "topk_svd" if topk else "svd",
                "lambda_1": 0.1 / step,
                "lambda_N": -0.1 / step,
            }
        ),
        root / "lyapunov" / run / "exponents.parquet",
    )
    write_parquet(  # converged at step 5 of 10
        pd.DataFrame(
            {
                "step": [0, 5, 10],
                "train_acc": [0.1, 0.9, 0.9],
                "train_loss": 0.3,
                "val_acc": 0.8,
                "val_loss": 0.4,
            }
        ),
        root / "train" / run / "epochs.parquet",
    )
    maxima = per_direction(distance_max, strategies)
    growth = per_direction(growing, strategies)
    curves = [curve_of(m, g) for m, g in zip(maxima, growth)]
    write_parquet(
        pd.DataFrame(
            {
                "dtype": "float32",
                "strategy": np.repeat(strategies, 11),
                "eps": 0.1,
                "step": np.concatenate([t for t, _ in curves]),
                "distance": np.concatenate([d for _, d in curves]),
            }
        ),
        root / "ensembles" / run / "distances.parquet",
    )
    m = np.asarray(maxima, dtype=float)
    write_parquet(
        pd.DataFrame(
            {
                "dtype": "float32",
                "strategy": strategies,
                "eps": 0.1,
                "alpha": 0.0081 * m**2 if alpha is None else alpha,
                "beta": 0.018 * m**2 if beta is None else beta,
                "alpha_se": alpha_se,
                "r2": r2,
                "bound_steps": len(bounds),
                "upper_margin": upper,
                "lower_margin": lower,
                "lower_log_max": lower_log_max,
                "upper_margin_steps": upper_between,
                "upper_steps": between_steps,
            }
        ),
        root / "fits" / run / "fits.parquet",
    )
    rows = []
    for strategy, (_, d) in zip(strategies, curves):
        for step, share, *distance in bounds:
            rows.append(
                {
                    "dtype": "float32",
                    "strategy": strategy,
                    "eps": 0.1,
                    "step": step,
                    "distance": distance[0] if distance else d[step],
                    "lower": share * 0.1,
                    "upper": np.inf,
                }
            )
    kinds = {"dtype": str, "strategy": str, "eps": float, "step": np.int64}
    kinds.update(distance=float, lower=float, upper=float)
    write_parquet(
        pd.DataFrame(rows, columns=list(BOUNDS.columns)).astype(kinds),
        root / "fits" / run / "bounds.parquet",
    )
    accs = accs if accs is not None else {0.1: 0.89, 1.0: 0.88, 10.0: 0.5}
    members = [{"dtype": "float32", "strategy": "reference", "eps": 0.0, "train_acc": 0.9}]
    members += [
        {"dtype": "float32", "strategy": s, "eps": e, "train_acc": a}
        for e, a in accs.items()
        for s in strategies
    ]
    members = pd.DataFrame(members).assign(val_acc=lambda df: df["train_acc"] - 0.05)
    write_parquet(members, root / "ensembles" / run / "members.parquet")
    return {run: "fig"}
