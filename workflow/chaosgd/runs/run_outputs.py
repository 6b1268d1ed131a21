"""What a training job leaves: its five outputs, the environment it ran in, and the options
that name its files.

:func:`write_outputs` writes a run's training outputs (:data:`OUTPUT_FILES`): ``steps.parquet``,
``epochs.parquet`` (full training-set and validation loss / accuracy, at the start and
``evals_per_epoch`` times per epoch), ``spectra.parquet`` (the minibatch Hessian's nonzero
eigenvalues at those steps, App. B.2; no rows for a run without the spectrum: the rules'
outputs are fixed), ``final.pt`` (the final state dict) and ``run.json`` (settings, versions,
device, timings), the last one last, so that its presence marks a complete run. Timings live in
``run.json`` only, so that the Parquet files of a rerun are identical.
"""

from __future__ import annotations

import argparse
import platform
import socket

import numpy as np
import pandas as pd
import torch

from chaosgd import __version__
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.tables import EPOCHS, SPECTRA, STEPS
from chaosgd.runs.artifacts import save_tensors, write_json, write_parquet
from chaosgd.runs.trainer import Result


def environment(device: torch.device) -> dict:
    """Versions, device, host and thread count the run used, for ``run.json``."""
    import matplotlib
    import scipy
    import snakemake

    return {
        "chaosgd": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "matplotlib": matplotlib.__version__,
        "snakemake": snakemake.__version__,
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "host": socket.gethostname(),
        "threads": torch.get_num_threads(),
    }


def write_outputs(result: Result, settings: RunSettings, device: torch.device, out: dict) -> None:
    """Write the run's five outputs, run.json last (its presence marks a complete run)."""
    write_parquet(result.steps, out["steps"], STEPS)
    write_parquet(result.epochs, out["epochs"], EPOCHS)
    write_parquet(result.spectra, out["spectra"], SPECTRA)
    save_tensors(result.state_dict, out["final"])
    write_json(
        {
            "run_id": settings.run_id,
            "settings": settings.as_dict(),
            "result": result.info,
            "environment": environment(device),
        },
        out["info"],
    )


def add_io_arguments(parser: argparse.ArgumentParser, outputs: tuple[str, ...]) -> None:
    """Add the file options to ``parser``: the dataset, one ``--out-<name>`` per output, the
    checkpoint, torch threads and the progress bar.
    """
    io = parser.add_argument_group("files")
    io.add_argument("--data", required=True, help="prepared dataset (results/datasets/<name>.pt)")
    for name in outputs:
        io.add_argument(f"--out-{name}", required=True, help=f"output: {name}")
    io.add_argument("--checkpoint", default=None, help="resumable checkpoint file")
    io.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    io.add_argument("--no-progress", action="store_true", help="no progress bar")


OUTPUT_FILES = {
    "steps": STEPS.filename,
    "epochs": EPOCHS.filename,
    "spectra": SPECTRA.filename,
    "final": "final.pt",
    "info": "run.json",
}
OUTPUTS = tuple(OUTPUT_FILES)
