"""The results the claims read: a run's settings and tables under ``results/<stage>/<run>/``,
and the columns each claim needs of them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from chaosgd.runs.artifacts import read_parquet, read_run_info

# the settings the claims read from a run's run.json
SETTINGS = (
    "variant",
    "onset",
    "seed",
    "momentum",
    "dtype",
    "spectrum",
    "model",
    "activation",
    "hidden",
)
# the per-step spectrum columns of claims 3 and 4, in both counting conventions
SPECTRUM_COLUMNS = [
    "step",
    "n_positive_chaotic",
    "n_negative",
    "n_positive",
    "grad_frac_positive",
    "grad_frac_negative",
    "ref_n_negative",
    "ref_n_positive",
    "ref_cos_positive",
    "ref_cos_negative",
]
# App. C.2's subspace table (chaosgd.engine.exponents.stability_row), the columns claim 9 reads
SUBSPACE_COLUMNS = ["t0", "step", "dim0_chaotic", "dim_chaotic"]
SUBSPACE_SIMILARITIES = ["similarity_chaotic", "baseline_chaotic", "random_chaotic"]
# the ensembles stage's distance curves, the columns claims 6, 7 and 11 read
DISTANCE_COLUMNS = ["dtype", "strategy", "eps", "step", "distance"]
# the fits stage's table, the columns claims 6 and 7 read
FIT_COLUMNS = ["dtype", "strategy", "eps", "alpha", "alpha_se", "bound_steps"]
# NaN where it means something (no variance: no R²; no exact readout step: no bound margins),
# never skipped: a NaN fails its criterion
FIT_NUMBERS = ["r2", "upper_margin", "lower_margin", "lower_log_max"]


class Results:
    """Reads a run's tables from ``results/<stage>/<run>/``.

    Every file is checked as it is read (:mod:`chaosgd.runs.artifacts`): a missing, damaged or
    foreign file, or NaN / inf where a verdict needs a number, stops the stage with an error
    naming the file and the column; a verdict is never computed from such data.
    """

    def __init__(self, root: Path):
        self.root = root
        self._settings: dict[str, dict] = {}

    def settings(self, run: str) -> dict:
        """The settings a training run was made with (from its ``run.json``), cached per run."""
        if run not in self._settings:
            path = self.root / "train" / run / "run.json"
            self._settings[run] = read_run_info(path, run, SETTINGS)["settings"]
        return self._settings[run]

    def table(
        self,
        stage: str,
        run: str,
        name: str,
        columns=None,
        finite=None,
        numeric=(),
        nonempty=True,
    ) -> pd.DataFrame:
        """Read table ``<stage>/<run>/<name>.parquet`` (only ``columns``, if given); it must have
        rows (unless not ``nonempty``), and ``finite`` (default: ``columns``) finite numbers,
        ``numeric`` numbers."""
        finite = columns if finite is None else finite
        path = self.root / stage / run / f"{name}.parquet"
        return read_parquet(path, columns, finite=finite or (), numeric=numeric, nonempty=nonempty)

    def final(self, run: str) -> pd.Series:
        """The last row of a training run's per-epoch table: final training and validation
        accuracy and loss."""
        columns = ["step", "train_acc", "train_loss", "val_acc", "val_loss"]
        return self.table("train", run, "epochs", finite=columns).iloc[-1]
