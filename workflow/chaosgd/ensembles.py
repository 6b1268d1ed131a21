"""Ensembles stage: perturbed copies of a reference run, trained in lockstep (Fig. 3a, App. C.3/C.4).

Reads the reference run's final Lyapunov spectrum (``results/lyapunov/<run>/spectrum_final.pt``),
builds the perturbation directions and the members (reference + every strategy × ε,
:mod:`chaosgd.runs.perturbations`: five strategies, or around a top-k Lyapunov run the three its
k leading vectors give, which ``info`` records) and trains each configured dtype as one lockstep ensemble
(:func:`chaosgd.runs.lockstep.run_ensemble`). Each dtype (float32, float64) is a separate ensemble
with its own reference member: the two references are different trajectories, and comparing each
dtype against its own reference is what separates round-off from dynamics for small ε (App. C.4's
open question).

Writes ``distances.parquet`` (long: one row per dtype × strategy × ε × recorded step),
``members.parquet`` (one row per member, final evaluation) and an info JSON with timings: seconds
per step of the ensemble, of one model trained alone the ordinary way (``nn.Module`` +
``torch.optim.SGD``, a few hundred steps measured in the same job), and their ratio.

With ``--checkpoint`` the job writes the ensembles' state every ``checkpoint_every`` steps (the
reference run's setting), after each dtype, and on SIGTERM / SIGINT at the next step boundary
before exiting with status 143 / 130; a rerun resumes from it (:mod:`chaosgd.runs.recovery`) and
writes the same tables as an uninterrupted run (the info JSON's timings aside).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path

import pandas as pd
import torch

from chaosgd.engine.exponents import EXACT_METHODS, TOPK_METHODS, exact_readouts
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.tables import DISTANCES, MEMBERS
from chaosgd.planning.vocab import DTYPES
from chaosgd.runs import recovery
from chaosgd.runs.artifacts import (
    explain,
    load_tensors,
    read_parquet,
    write_json,
    write_parquet,
)
from chaosgd.runs.data import load_data
from chaosgd.runs.ensemble_backends import BACKENDS
from chaosgd.runs.lockstep import run_ensemble, time_single_model
from chaosgd.runs.perturbations import (
    SPECTRUM_KEYS,
    check_reference,
    directions,
    plan_members,
    spectrum_topk,
)
from chaosgd.runs.run_outputs import environment
from chaosgd.runs.trainer import TrainingError, select_device


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
    io.add_argument(
        "--checkpoint",
        default=None,
        help="resumable checkpoint file, written every --checkpoint-every steps of the run's "
        "settings and on SIGTERM / SIGINT",
    )
    io.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    io.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _fingerprint(settings: RunSettings, args, dtypes: list[str], extra: list[int]) -> dict:
    """What an ensembles checkpoint must match: the reference's settings (but
    ``checkpoint_every``), the ensemble settings, digests of the dataset and of the reference's
    spectrum (the directions and θ(0) come from it), and the stage's code."""
    run = {k: v for k, v in settings.as_dict().items() if k != "checkpoint_every"}
    ensemble = {
        "eps": [float(e) for e in args.eps],
        "dtypes": list(dtypes),
        "direction_seed": args.direction_seed,
        "record_every": args.record_every,
        "extra_steps": sorted(int(s) for s in extra),
        "backend": args.backend,
    }
    inputs = {
        "data": recovery.input_digest(args.data),
        "spectrum": recovery.input_digest(args.spectrum_file),
    }
    return recovery.fingerprint({"run": run, "ensemble": ensemble, "inputs": inputs}, "ensembles")


def _save(path: Path, fingerprint: dict, states: dict, dtype: str, state: dict) -> None:
    """Checkpoint callback of one dtype's ensemble: one file holds every dtype's latest state."""
    states[dtype] = state
    recovery.save_checkpoint({"fingerprint": fingerprint, "states": states}, path)


def main(argv: list[str] | None = None) -> int:
    """Train one reference's perturbed ensembles from the command line; 0 on success, 1 with a
    one-line error, 128 + the signal's number when SIGTERM / SIGINT stopped it after writing
    its checkpoint (``--checkpoint``: a rerun resumes from it)."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    try:
        with recovery.stop_on_signals() as stop:
            return _run(args, checkpoint, stop)
    except recovery.Interrupted as exc:
        print(exc.report(checkpoint), file=sys.stderr)
        return exc.exit_status
    except recovery.UnusableCheckpoint as exc:
        try:
            moved = f"set aside as {recovery.set_aside(checkpoint)}, a rerun starts over"
        except OSError as move_error:  # ArtifactWriteError: it names what to do
            moved = f"and it could not be set aside ({move_error})"
        print(
            f"error: checkpoint {checkpoint} does not fit this job ({exc}); {moved}",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:  # the outputs' ArtifactWriteError; a plain one is the unlink's
        print(f"error: {explain(exc, 'removing')}", file=sys.stderr)
        return 1


def _run(args, checkpoint: Path | None, stop: recovery.StopFlag) -> int:
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
        spectrum = load_tensors(args.spectrum_file, keys=SPECTRUM_KEYS)
        try:
            theta0 = check_reference(settings, spectrum)
            dirs = directions(spectrum, torch.Generator().manual_seed(args.direction_seed))
        except ValueError as exc:  # its content, not its bytes: name the file all the same
            raise ValueError(f"{args.spectrum_file}: {exc}") from None
        extra = ()
        if args.exponents:
            table = read_parquet(
                args.exponents,
                require=["step", "method"],
                numeric=["step"],
                finite=["step"],
                nonempty=True,
            )
            # the readouts of the k leading exponents too (lyapunov.topk)
            extra = exact_readouts(table, EXACT_METHODS + TOPK_METHODS)["step"].tolist()
        device = select_device(settings.device)
        states: dict = {}
        if checkpoint is not None:
            fingerprint = _fingerprint(settings, args, dtypes, extra)
            saved = recovery.load_checkpoint(checkpoint, fingerprint, device)
            if saved is not None:
                states = saved.get("states")
                if not isinstance(states, dict) or not all(
                    isinstance(s, dict) and "step" in s for s in states.values()
                ):
                    raise recovery.UnusableCheckpoint("it holds no per-dtype ensemble states")
                where = ", ".join(f"{d} at step {s['step']}" for d, s in states.items())
                print(f"resuming {settings.run_id} from {checkpoint}: {where}", file=sys.stderr)
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
                checkpoint=(
                    None
                    if checkpoint is None
                    else functools.partial(_save, checkpoint, fingerprint, states, dtype)
                ),
                checkpoint_every=settings.checkpoint_every,
                stop=stop,
                resume=states.get(dtype),
            )
            res.info["single_seconds_per_step"] = single
            res.info["single_steps_timed"] = timed
            res.info["ratio"] = res.info["seconds_per_step"] / single if single else None
            tables.append(res.distances)
            member_tables.append(res.members)
            runs.append(res.info)
    except (TrainingError, ValueError, OSError) as exc:  # a checkpoint write: ArtifactWriteError
        print(f"error: {explain(exc)}", file=sys.stderr)
        return 1
    write_parquet(pd.concat(tables, ignore_index=True), args.out_distances, DISTANCES)
    write_parquet(pd.concat(member_tables, ignore_index=True), args.out_members, MEMBERS)
    write_json(
        {
            "run_id": settings.run_id,
            "eps": [float(e) for e in args.eps],
            "dtypes": dtypes,
            "strategies": list(dirs),
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
            }
            | {"topk": spectrum_topk(spectrum)},
            "ensembles": runs,
            "settings": settings.as_dict(),
            "environment": environment(device),
        },
        args.out_info,
    )
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
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
