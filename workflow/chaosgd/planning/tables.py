"""The tables the stages write and read: where each lives under ``results/`` and its columns.

The one home of every table's file name and column names. Writers check a table against its
entry before writing it (:meth:`Table.check`), and readers name its columns through it
(``EPOCHS.train_acc`` is ``"train_acc"``, and a misspelt column is an ``AttributeError``
where it is written, not an empty plot later). Columns that only some runs have (the
curvature diagnostics of a run that records its spectrum, the reference code's conventions)
are ``optional``; column families named by their run (one distance per layer, one quantile per
configured level) are described, not listed. Torch-free, so that the planner reads it too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

RESULTS = "results"


@dataclass(frozen=True)
class Table:
    """One Parquet table of a run: ``results/<stage>/<run>/<name>.parquet``."""

    stage: str
    name: str
    columns: tuple[str, ...]  # every writer writes these
    description: str
    optional: tuple[str, ...] = ()  # written by some runs only

    def __post_init__(self):
        clash = {f.name for f in fields(self)} | set(dir(type(self)))
        taken = clash & (set(self.columns) | set(self.optional))
        if taken:
            raise ValueError(f"table {self.name}: column names {sorted(taken)} are attributes")

    def __getattr__(self, column: str) -> str:
        # only called for names that are not attributes: a column's name is itself
        if column in self.columns or column in self.optional:
            return column
        raise AttributeError(f"table {self.name!r} has no column {column!r}")

    @property
    def filename(self) -> str:
        """The file's name within the run's folder."""
        return f"{self.name}.parquet"

    def path(self, run: str = "{run}", results: str = RESULTS) -> str:
        """The run's table under ``results`` (``{run}``: the rules' wildcard)."""
        return f"{results}/{self.stage}/{run}/{self.filename}"

    def missing(self, present: Iterable[str]) -> list[str]:
        """The table's columns absent from ``present``."""
        have = set(present)
        return [c for c in self.columns if c not in have]

    def check(self, frame) -> None:
        """Raise ``ValueError`` naming the table and the columns a frame to be written lacks."""
        missing = self.missing(frame.columns)
        if missing:
            raise ValueError(f"{self.filename}: the writer left out columns {missing}")


# -- training (train and lyapunov stages) ------------------------------------------------------

STEPS = Table(
    "train",
    "steps",
    ("step", "epoch", "loss", "acc", "grad_norm", "update_norm"),
    "one row per optimizer step: the batch's loss and accuracy before the update, the gradient "
    "and update norms; with the spectrum, the Hessian's eigenvalue counts and extremes, the "
    "gradient's overlap with its eigenspaces (App. B.2) and what CGD pruned",
    optional=(
        "n_negative",
        "n_positive",
        "n_positive_chaotic",
        "n_chaotic",
        "rank",
        "lambda_min",
        "lambda_max",
        "grad_frac_positive",
        "grad_frac_negative",
        "grad_frac_null",
        "grad_frac_chaotic",
        "null_tol",
        "ref_n_negative",
        "ref_n_positive",
        "ref_cos_positive",
        "ref_cos_negative",
        "cos_lambda_max",
        "cos_lambda_min",
        "n_pruned",
        # curvature "topk" (chaosgd.engine.cgd.topk_diagnostics)
        "grad_frac_topk",
        "topk_residual",
        "topk_hvps",
    ),
)
EPOCHS = Table(
    "train",
    "epochs",
    ("step", "epoch", "train_loss", "train_acc", "val_loss", "val_acc"),
    "the whole training set's and the validation set's loss and accuracy, at the start and "
    "evals_per_epoch times per epoch",
)
SPECTRA = Table(
    "train",
    "spectra",
    ("step", "eigenvalue"),
    "one row per nonzero eigenvalue (|λ| above the curvature engine's null tolerance) of the "
    "minibatch Hessian at the evaluation steps (those of epochs, the end of the run by its last "
    "step): the distributions over training (App. B.2); no rows for a run without the spectrum",
)

# -- Lyapunov (App. C.1, C.2) ------------------------------------------------------------------

EXPONENTS = Table(
    "lyapunov",
    "exponents",
    ("step", "method", "lambda_1", "lambda_N", "n_positive", "n_negative", "n_neutral"),
    "one row per readout of the tangent map: the largest and smallest finite-time exponents, "
    "their counts by sign, and one column q<level> per configured quantile",
)
LAMBDA1 = Table(
    "lyapunov",
    "lambda1",
    ("step", "lambda_1", "iterations"),
    "one row per step: the largest finite-time exponent ln σ1(Y(t))/t from a Krylov iteration on "
    "YᵀY warm-started at the previous step's vector (exact to ~1e-10 in ln σ1), and the "
    "products with YᵀY it took; λN and the rest of the spectrum only at the readouts",
)
SUBSPACE_KINDS = ("chaotic", "edge", "nonchaotic", "chaotic_vs_nonchaotic", "nonchaotic_vs_chaotic")
SUBSPACES = Table(
    "lyapunov",
    "subspaces",
    ("t0", "step")
    + tuple(
        f"{part}_{kind}"
        for kind in SUBSPACE_KINDS
        for part in ("dim0", "dim", "similarity", "baseline", "random")
    ),
    "one row per (reference time t0, later readout): the dimensions of the Lyapunov subspaces "
    "at both, their similarity, and random baselines of the same dimensions (App. C.2)",
)

# -- perturbed ensembles (Fig. 3a, App. C.3, C.4) ----------------------------------------------

DISTANCES = Table(
    "ensembles",
    "distances",
    ("dtype", "strategy", "eps", "step", "distance", "distance_along", "loss", "acc"),
    "one row per perturbed member and recorded step: its distance to the reference, the part "
    "along the perturbation, one dist_<layer> column per parameter tensor, its batch loss and "
    "accuracy",
)
MEMBERS = Table(
    "ensembles",
    "members",
    (
        "dtype",
        "strategy",
        "eps",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "final_distance",
    ),
    "one row per member, the reference first: its final losses, accuracies and distance",
)

# -- divergence fits (Fig. 3b) -----------------------------------------------------------------

FITS = Table(
    "fits",
    "fits",
    (
        "dtype",
        "strategy",
        "eps",
        "alpha",
        "beta",
        "alpha_se",
        "beta_se",
        "r2",
        "r2_squared",
        "n",
        "constrained",
        "final_distance",
        "lower_bound_holds",
        "upper_bound_holds",
        "bound_steps",
        "upper_margin",
        "lower_margin",
        "lower_log_max",
        "upper_margin_steps",
        "upper_steps",
    ),
    "one row per distance curve: the fit of d(t) = sqrt(alpha t^2 + beta t + eps^2), its "
    "standard errors and R^2, and how the Lyapunov bounds held at the exact readouts and (the "
    "upper one, from lambda1) at every recorded step",
)
BOUNDS = Table(
    "fits",
    "bounds",
    ("dtype", "strategy", "eps", "step", "distance", "lower", "upper"),
    "one row per curve and exact readout: the distance and the Lyapunov bounds "
    "e^(lambda_N t) eps and e^(lambda_1 t) eps",
)

TABLES = {
    t.name: t
    for t in (
        STEPS,
        EPOCHS,
        SPECTRA,
        EXPONENTS,
        LAMBDA1,
        SUBSPACES,
        DISTANCES,
        MEMBERS,
        FITS,
        BOUNDS,
    )
}
