"""Ensembles stage: perturbed copies of a reference run, trained in lockstep (Fig. 3a, App. C.3/C.4).

Reads the reference run's final Lyapunov spectrum (``results/lyapunov/<run>/spectrum_final.pt``),
builds the five perturbation directions and the members (reference + every strategy × ε,
:mod:`chaosgd.perturbations`) and trains each configured dtype as one lockstep ensemble
(:func:`chaosgd.lockstep.run_ensemble`). Each dtype (float32, float64) is a separate ensemble
with its own reference member: the two references are different trajectories, and comparing each
dtype against its own reference is what separates round-off from dynamics for small ε (App. C.4's
open question).

Writes ``distances.parquet`` (long: one row per dtype × strategy × ε × recorded step),
``members.parquet`` (one row per member, final evaluation) and an info JSON with timings: seconds
per step of the ensemble, of one model trained alone the ordinary way (``nn.Module`` +
``torch.optim.SGD``, a few hundred steps measured in the same job), and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import pandas as pd
import torch

from chaosgd.exponents import exact_readouts
from chaosgd.io import load_tensors, read_parquet, write_json, write_parquet
from chaosgd.lockstep import BACKENDS, run_ensemble, time_single_model
from chaosgd.perturbations import check_reference, directions, plan_members
from chaosgd.settings import RunSettings
from chaosgd.training import TrainingError, environment, load_data, select_device
from chaosgd.vocab import DTYPES, STRATEGIES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.ensembles",
        description="Perturb a reference SGD run's initialization along its Lyapunov directions "
        "and train all perturbed copies in lockstep; record their distances to the reference.",
    )
    RunSettings.add_arguments(parser)
    ens = parser.add_argument_group("ensemble")
    # not --spectrum: that is the run settings' --spectrum/--no-spectrum flag
    ens.add_argument(
        "--spectrum-file",
        required=True,
        help="the reference's results/lyapunov/<run>/spectrum_final.pt",
    )
    ens.add_argument("--eps", type=float, nargs="+", required=True, help="perturbation sizes")
    ens.add_argument(
        "--dtypes",
        nargs="+",
        choices=DTYPES,
        default=None,
        help="one lockstep ensemble per dtype (default: the reference's dtype)",
    )
    ens.add_argument(
        "--direction-seed", type=int, default=0, help="seed of the random combinations"
    )
    ens.add_argument(
        "--record-every",
        type=int,
        default=1,
        help="record every this many steps (and 0 and the last)",
    )
    ens.add_argument(
        "--exponents",
        default=None,
        help="the reference's exponents.parquet: also record its exact-readout steps, "
        "so that a thinned record still lets the fits stage check the bounds there",
    )
    ens.add_argument("--backend", choices=BACKENDS, default="auto", help="batched gradient backend")
    ens.add_argument(
        "--baseline-steps",
        type=int,
        default=300,
        help="steps of one model trained alone, timed for the cost ratio",
    )
    io = parser.add_argument_group("files")
    io.add_argument("--data", required=True, help="prepared dataset (results/datasets/<name>.pt)")
    io.add_argument("--out-distances", required=True, help="output: distances.parquet")
    io.add_argument("--out-members", required=True, help="output: members.parquet")
    io.add_argument("--out-info", required=True, help="output: info JSON (timings)")
    io.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    io.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Train one reference's perturbed ensembles from the command line; 0 on success."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        settings = RunSettings.from_namespace(args)
        if args.record_every < 1:
            raise ValueError(f"--record-every must be a positive integer, got {args.record_every}")
        if args.baseline_steps < 1:
            raise ValueError(
                f"--baseline-steps must be a positive integer, got {args.baseline_steps}"
            )
        dtypes = args.dtypes or [settings.dtype]
        if len(set(dtypes)) != len(dtypes):
            raise ValueError(f"--dtypes must be distinct, got {dtypes}")
        plan_members(args.eps)
        spectrum = load_tensors(args.spectrum_file)
        theta0 = check_reference(settings, spectrum)
        dirs = directions(spectrum, torch.Generator().manual_seed(args.direction_seed))
        extra = ()
        if args.exponents:
            extra = exact_readouts(read_parquet(args.exponents))["step"].tolist()
        device = select_device(settings.device)
        tables, member_tables, runs = [], [], []
        for dtype in dtypes:
            s = dataclasses.replace(settings, dtype=dtype)
            data = load_data(args.data, s, device)
            single, timed = time_single_model(s, data, dtype, device, args.baseline_steps)
            res = run_ensemble(
                s,
                data,
                theta0,
                dirs,
                args.eps,
                dtype,
                device,
                record_every=args.record_every,
                backend=args.backend,
                progress=not args.no_progress,
                extra_steps=extra,
            )
            res.info["single_seconds_per_step"] = single
            res.info["single_steps_timed"] = timed
            res.info["ratio"] = res.info["seconds_per_step"] / single if single else None
            tables.append(res.distances)
            member_tables.append(res.members)
            runs.append(res.info)
    except (TrainingError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_parquet(pd.concat(tables, ignore_index=True), args.out_distances)
    write_parquet(pd.concat(member_tables, ignore_index=True), args.out_members)
    write_json(
        {
            "run_id": settings.run_id,
            "eps": [float(e) for e in args.eps],
            "dtypes": dtypes,
            "strategies": list(STRATEGIES),
            "direction_seed": args.direction_seed,
            "record_every": args.record_every,
            "spectrum": {
                k: cast(spectrum[k])
                for k, cast in (
                    ("t", int),
                    ("method", str),
                    ("neutral_tol", float),
                    ("n_chaotic", int),
                    ("n_nonchaotic", int),
                )
                if k in spectrum
            },
            "ensembles": runs,
            "settings": settings.as_dict(),
            "environment": environment(device),
        },
        args.out_info,
    )
    for run in runs:
        single = run["single_seconds_per_step"]
        baseline = (
            f"one model {single * 1e3:.3f} ms/step: ratio {run['ratio']:.2f}"
            if single
            else "no baseline"
        )
        print(
            f"{settings.run_id} {run['dtype']}: {run['members']} members x {run['steps']} steps, "
            f"{run['seconds_per_step'] * 1e3:.3f} ms/step ({run['backend']}); {baseline}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
