"""The results a figure reads: training runs named by their run ids, their settings from
``run.json`` and their tables from every stage's folder, checked for what the figures draw, and
the figure title that names them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from chaosgd.planning.vocab import ARCHITECTURES, DATASETS
from chaosgd.runs.artifacts import read_parquet, read_run_info

# what the figures read from each table: (columns that must be there, those of them that must
# hold finite numbers). A NaN or inf elsewhere means something: an empty Lyapunov subspace has
# no similarity, a curve without an exact readout step no bound fractions, and e^{λ1 t}ε may
# overflow. A NaN where a number is drawn would leave a silent gap in the figure.
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "steps": (("step", "acc", "loss"), ("step", "acc", "loss")),
    "epochs": (
        ("step", "epoch", "train_acc", "train_loss", "val_acc", "val_loss"),
        ("step", "epoch", "train_acc", "train_loss", "val_acc", "val_loss"),
    ),
    "spectra": (("step", "eigenvalue"), ("step", "eigenvalue")),
    "exponents": (
        ("step", "lambda_1", "lambda_N", "n_positive", "n_negative"),
        ("step", "lambda_1", "lambda_N", "n_positive", "n_negative"),
    ),
    "lambda1": (("step", "lambda_1"), ("step", "lambda_1")),
    "subspaces": (
        ("step", "similarity_chaotic", "similarity_nonchaotic", "dim_chaotic", "dim_nonchaotic"),
        ("step", "dim_chaotic", "dim_nonchaotic"),
    ),
    "distances": (("dtype", "strategy", "eps", "step", "distance"), ("eps", "step", "distance")),
    "fits": (
        ("dtype", "strategy", "eps", "alpha", "beta", "r2", "lower_bound_holds"),
        ("eps", "alpha", "beta"),
    ),
    "bounds": (
        ("dtype", "strategy", "eps", "step", "distance", "lower", "upper"),
        ("eps", "step", "distance"),
    ),
    "members": (
        ("dtype", "strategy", "eps", "train_acc", "val_acc"),
        ("eps", "train_acc", "val_acc"),
    ),
}
# the settings the figures read from a run's run.json
SETTINGS = (
    "run_id", "dataset", "model", "activation", "hidden", "variant", "onset", "momentum", "seed",
    "lr", "batch_size", "dtype", "spectrum",
)  # fmt: skip


@dataclass
class Run:
    """A training run: its settings (from ``run.json``) and the results folder with its tables."""

    settings: dict
    results: Path

    @property
    def run_id(self) -> str:
        """The run's id, its folder name in every stage."""
        return self.settings["run_id"]

    @property
    def condition(self) -> tuple[str, int, float]:
        """(variant, onset, momentum): what the run's seeds are averaged over."""
        s = self.settings
        return (s["variant"], s["onset"], s["momentum"])

    def path(self, name: str, stage: str = "train") -> Path:
        """The run's table ``<results>/<stage>/<run_id>/<name>.parquet``."""
        return self.results / stage / self.run_id / f"{name}.parquet"

    def table(
        self, name: str, columns: list[str] | None = None, stage: str = "train"
    ) -> pd.DataFrame:
        """Read the run's table ``<stage>/<run_id>/<name>.parquet`` (only ``columns``, if given).

        The columns the figures draw (``columns``, else those of :data:`TABLES`) must be there
        and hold numbers (finite ones where :data:`TABLES` says), and the table rows; else
        :class:`chaosgd.runs.artifacts.UnreadableFile` names the file.
        """
        required, finite = TABLES[name]
        path = self.path(name, stage)
        if columns is not None:
            return read_parquet(path, columns=columns, finite=columns, nonempty=True)
        numeric = [c for c in required if c not in ("dtype", "strategy")]
        return read_parquet(path, require=required, finite=finite, numeric=numeric, nonempty=True)


def load_runs(results: str | Path, run_ids: list[str]) -> list[Run]:
    """The runs ``run_ids`` with their settings read from ``<results>/train/<run>/run.json``."""
    if not run_ids:
        raise ValueError("no runs given")
    results = Path(results)
    return [
        Run(read_run_info(results / "train" / rid / "run.json", rid, SETTINGS)["settings"], results)
        for rid in run_ids
    ]


def dataset_title(settings: dict) -> str:
    """The dataset's title (e.g. "FashionMNIST"), else its key as the run names it."""
    known = DATASETS.get(settings["dataset"])
    return known.title if known else settings["dataset"]


def title(runs: list[Run], name: str) -> str:
    """The figure's title: name, dataset, architecture, lr, batch size, number of seeds."""
    s = runs[0].settings
    arch = f"{ARCHITECTURES[s['model']].title}-{s['activation']}"
    if ARCHITECTURES[s["model"]].uses_hidden:
        arch += f" (h={s['hidden']})"
    seeds = sorted({r.settings["seed"] for r in runs})
    where = f"{dataset_title(s)}, {arch}, lr {s['lr']:g}, batch {s['batch_size']}"
    return f"{name}: {where}, {len(seeds)} seed(s)"
