"""Training stage: one run of SGD or CGD, with the Hessian spectrum diagnostics of every step.

Writes, into the run's folder, the outputs of :func:`chaosgd.runs.run_outputs.write_outputs`:

- ``steps.parquet``: per step: batch loss and accuracy before the update, the gradient and
  update norms, and the curvature diagnostics (eigenvalue counts, extreme eigenvalues,
  gradient overlap with the positive / negative eigenspaces, what CGD pruned).
- ``epochs.parquet``: full training-set and validation loss / accuracy, at the start and
  ``evals_per_epoch`` times per epoch.
- ``spectra.parquet``: the minibatch Hessian's nonzero eigenvalues at the evaluation steps
  (those of ``epochs.parquet``, the end by the last step), App. B.2's distributions; no rows
  for a run without the spectrum.
- ``final.pt``: the final state dict (``torch.load(..., weights_only=True)``).
- ``run.json``: the resolved settings, package versions, device, wall time and steps/s.

The job resumes from its checkpoint when restarted (:class:`chaosgd.runs.trainer.Trainer`); on
SIGTERM or SIGINT it writes one at the next step boundary and exits with status 143 or 130.
"""

from __future__ import annotations

import argparse
import sys

import torch

from chaosgd.planning.run_settings import RunSettings
from chaosgd.runs import recovery
from chaosgd.runs.artifacts import explain
from chaosgd.runs.run_outputs import OUTPUTS, add_io_arguments, write_outputs
from chaosgd.runs.trainer import Trainer, TrainingError


def main(argv: list[str] | None = None) -> int:
    """Train one run from the command line; 0 on success, 1 with a one-line error, 128 + the
    signal's number when SIGTERM / SIGINT stopped it after writing its checkpoint."""
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.train",
        description="Train one run (SGD or CGD) with per-step Hessian spectrum diagnostics.",
    )
    RunSettings.add_arguments(parser)
    add_io_arguments(parser, OUTPUTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        settings = RunSettings.from_namespace(args)
        trainer = Trainer(
            settings, args.data, checkpoint=args.checkpoint, progress=not args.no_progress
        )
        result = trainer.run()
    except recovery.Interrupted as exc:
        print(exc.report(trainer.checkpoint), file=sys.stderr)
        return exc.exit_status
    except (TrainingError, ValueError, OSError) as exc:  # a checkpoint write: ArtifactWriteError
        print(f"error: {explain(exc)}", file=sys.stderr)
        return 1
    out = {k: getattr(args, f"out_{k}") for k in OUTPUTS}
    try:
        write_outputs(result, settings, trainer.device, out)
        if trainer.checkpoint is not None:
            trainer.checkpoint.unlink(missing_ok=True)
    except OSError as exc:  # the writers' ArtifactWriteError; a plain one is the unlink's
        print(f"error: {explain(exc, 'removing')}", file=sys.stderr)
        return 1
    info = result.info
    print(
        f"{settings.run_id}: {info['steps']} steps, final batch loss "
        f"{result.steps['loss'].iloc[-1]:.4f}, validation accuracy "
        f"{result.epochs['val_acc'].iloc[-1]:.4f}, {info['steps_per_second']:.1f} steps/s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
