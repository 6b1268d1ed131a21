"""``python -m chaosgd.tools.bench ensembles``: the lockstep ensemble of the ensembles stage against
one MLP trained alone the ordinary way, on the same synthetic batches."""

from __future__ import annotations

import statistics
import sys

import torch

from chaosgd.engine.models import flat_params
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.vocab import STRATEGIES
from chaosgd.runs.data import Data, initial_model
from chaosgd.runs.lockstep import run_ensemble, time_single_model
from chaosgd.tools.bench.options import model_arguments, setup, write_json
from chaosgd.tools.bench.timing import load1

__all__ = ["bench_ensembles", "command"]


def bench_ensembles(
    eps_counts=(1, 5, 11),
    dtypes=("float32", "float64"),
    steps: int = 912,
    device: str = "cpu",
    activation: str = "relu",
    hidden: int = 20,
    batch: int = 8,
    lr: float = 1e-3,
    record_every: int = 10,
    repeats: int = 3,
    seed: int = 0,
) -> list[dict]:
    """Run the ensembles benchmark; one row per (dtype, members), the single model first.

    The data are ``steps · batch`` synthetic N(0,1) 16×16 images with random labels, one epoch:
    the cost depends only on the shapes. The directions are random unit vectors (the stage's come
    from a Lyapunov spectrum; the cost does not depend on them).
    """
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed + 2)
    n = steps * batch
    rows = []
    for dtype in dtypes:
        settings = RunSettings(
            run_id="bench", dataset="synthetic", model="mlp", activation=activation,
            hidden=hidden, variant="sgd", onset=0, momentum=0.0, seed=seed, lr=lr,
            batch_size=batch, epochs=1, dtype=dtype, train_size=0, test_size=0, subset_seed=0,
            evals_per_epoch=1, spectrum=False, curvature="auto", noise_scale=0.0,
            checkpoint_every=steps, device=device,
        )  # fmt: skip
        as_dtype = getattr(torch, dtype)
        data = Data(
            train_x=torch.randn(n, 1, 16, 16, generator=gen).to(dev, as_dtype),
            train_y=torch.randint(0, 10, (n,), generator=gen).to(dev),
            test_x=torch.randn(256, 1, 16, 16, generator=gen).to(dev, as_dtype),
            test_y=torch.randint(0, 10, (256,), generator=gen).to(dev),
        )
        theta0 = flat_params(initial_model(settings, "float32", torch.device("cpu")))
        dirs = {
            s: torch.nn.functional.normalize(
                torch.randn(theta0.numel(), generator=gen, dtype=torch.float64), dim=0
            )
            for s in STRATEGIES
        }
        single: list[float] = []
        ens: dict[int, list[float]] = {k: [] for k in eps_counts}
        for _ in range(max(1, repeats)):
            sec, _ = time_single_model(settings, data, dtype, dev, steps)
            single.append(sec)
            for k in eps_counts:
                eps = [float(e) for e in torch.logspace(-3, 1, k, dtype=torch.float64)]
                res = run_ensemble(
                    settings, data, theta0, dirs, eps, dtype, dev, record_every=record_every
                )
                ens[k].append(res.info["seconds_per_step"])
                backend = res.info["backend"]
        one = statistics.median(single)
        common = dict(dtype=dtype, device=str(dev), steps=steps, n_params=theta0.numel())
        rows.append(dict(common, what="one model", members=1, median_s=one, ratio=1.0))
        for k in eps_counts:
            med = statistics.median(ens[k])
            rows.append(
                dict(
                    common,
                    what=f"ensemble ({backend})",
                    members=1 + len(STRATEGIES) * k,
                    median_s=med,
                    ratio=med / one,
                    spread=[min(ens[k]) / one, max(ens[k]) / one],
                )
            )
    return rows


def _print_table(rows, out=None):
    out = sys.stdout if out is None else out
    head = f"{'dtype':<8} {'what':<17} {'members':>7} {'ms/step':>8} {'x one':>6}  (min-max)"
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        spread = "-" if "spread" not in r else "{:.2f}-{:.2f}".format(*r["spread"])
        print(
            f"{r['dtype']:<8} {r['what']:<17} {r['members']:>7} {1e3 * r['median_s']:>8.3f} "
            f"{r['ratio']:>6.2f}  {spread}",
            file=out,
        )


def command(args) -> int:
    """Run ``python -m chaosgd.tools.bench ensembles``; print the table, return the exit status."""
    status = setup(args)
    if status is not None:
        return status
    rows = bench_ensembles(
        **model_arguments(args),
        eps_counts=args.eps_counts,
        dtypes=args.dtype,
        steps=args.steps,
        lr=args.lr,
        record_every=args.record_every,
        repeats=args.repeats,
    )
    print(
        f"# chaosgd.tools.bench ensembles: device={args.device} threads={torch.get_num_threads()} "
        f"N={rows[0]['n_params']} (MLP 256→{args.hidden}→10) batch={args.batch} "
        f"steps={args.steps} record_every={args.record_every} repeats={args.repeats} "
        f"load1={load1():.2f}"
    )
    print(
        "# one model: nn.Module + torch.optim.SGD; ensemble: 1 + 5·k members in lockstep, "
        "distances recorded; x one: median ensemble / median one model (min-max over repeats)"
    )
    _print_table(rows)
    write_json(args, rows)
    return 0
