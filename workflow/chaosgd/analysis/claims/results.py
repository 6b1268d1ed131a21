"""The results the claims read: a run's settings and tables under ``results/<stage>/<run>/``,
and the columns each claim needs of them."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from chaosgd.engine.exponents import TOPK_METHODS
from chaosgd.planning.tables import EXPONENTS
from chaosgd.runs.artifacts import parquet_columns, read_parquet, read_run_info

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
# the per-step spectrum columns of claims 3, 4 and 12, in both counting conventions
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
# the per-step extremes of the spectrum, for ‖H‖₂ = max(|λmin|, λmax) (claim 13)
NORM_COLUMNS = ["step", "lambda_min", "lambda_max"]
# App. C.2's subspace table (chaosgd.engine.exponents.stability_row), the columns claim 9 reads
SUBSPACE_COLUMNS = ["t0", "step", "dim0_chaotic", "dim_chaotic"]
SUBSPACE_SIMILARITIES = ["similarity_chaotic", "baseline_chaotic", "random_chaotic"]
# the ensembles stage's distance curves, the columns claims 6, 7 and 11 read
DISTANCE_COLUMNS = ["dtype", "strategy", "eps", "step", "distance"]
# the fits stage's table, the columns claims 6 and 7 read
FIT_COLUMNS = ["dtype", "strategy", "eps", "alpha", "alpha_se", "bound_steps", "upper_steps"]
# NaN where it means something (no variance: no R²; no exact readout step: no bound margins),
# never skipped: a NaN fails its criterion
FIT_NUMBERS = [
    "r2",
    "upper_margin",
    "lower_margin",
    "lower_log_max",
    "upper_margin_steps",
]


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

    def lyapunov_topk(self, run: str) -> bool:
        """Whether a Lyapunov run followed only its k leading exponents (lyapunov.topk; its
        readouts are marked so): lower bounds of λ_i, no λN, no bottom of the spectrum."""
        e = self.table("lyapunov", run, EXPONENTS.name, [EXPONENTS.method], finite=[])
        return bool(e[EXPONENTS.method].isin(TOPK_METHODS).any())

    def columns(self, stage: str, run: str, name: str) -> list[str]:
        """The columns of table ``<stage>/<run>/<name>.parquet``, from its schema only: for
        numbers a claim reports where the table has them (older tables may lack a column)."""
        return parquet_columns(self.root / stage / run / f"{name}.parquet")


# why the claims on perturbed ensembles are not run
NO_ENSEMBLES = "no ensembles (ensembles.enabled, or no Lyapunov run of plain SGD)"


def reference_dtype(res: Results, ref: str, table: pd.DataFrame) -> str:
    """The reference's own training dtype if its ensemble ran in it, else the first one run."""
    dtype = res.settings(ref)["dtype"]
    return dtype if dtype in set(table["dtype"]) else str(table["dtype"].iloc[0])


def rows_for(table: pd.DataFrame, eps: float, dtype: str) -> pd.DataFrame:
    """The rows of one ε in one dtype of an ensembles or fits table; an error naming the file
    when there are none."""
    chosen = table[(table["eps"] == eps) & (table["dtype"] == dtype)]
    if chosen.empty:
        raise ValueError(
            f"{table.attrs['path']}: no rows for eps {eps:g} in {dtype} (it has eps "
            f"{sorted(set(table['eps']))}); the ensembles ran with other settings"
        )
    return chosen


def distances(res: Results, ref: str) -> pd.DataFrame:
    """A reference's distance curves (the ensembles stage's), the columns the claims read."""
    return res.table(
        "ensembles", ref, "distances", DISTANCE_COLUMNS, finite=["eps", "step", "distance"]
    )
