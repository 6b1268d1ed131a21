"""What defines one training run, and its command-line form.

A run is dataset × model (with its width and depth) × activation × optimizer variant × pruning
onset × momentum × seed, plus the training settings and its dataset's image side. The planner
(``chaosgd.planning.plan``) builds :class:`RunSettings` from the config; the stages that train
(``chaosgd.train`` and the stages built on it) parse them back from the command line. Kept free of torch so that the Snakefile imports it quickly.

Optimizer variants are short names:

``sgd``
    plain SGD (momentum as configured).
``cgd-<set>[-top<k>|-random<k>][-noise]``
    chaos-sensitive gradient descent pruning the ``chaotic`` (|1 − ηλ| > 1), ``negative``
    (λ < 0) or ``positive`` (λ > 0) Hessian eigenspace: all of it, the ``k`` largest
    (``top``), or ``k`` at random (``random``); ``-noise`` replaces the pruned components by
    Gaussian noise instead of dropping them.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from chaosgd.planning.vocab import (
    ACTIVATIONS,
    ARCHITECTURES,
    CURVATURE_METHODS,
    DATASETS,
    DEVICES,
    DTYPES,
    IMAGE_SIDE,
    PRUNE_SETS,
    SELECTIONS,
    VARIANT_RE,
)


@dataclass(frozen=True)
class Variant:
    """An optimizer variant, parsed from its name."""

    name: str
    optimizer: str  # "sgd" or "cgd"
    prune_set: str | None = None
    selection: str = "all"  # "all", "top_k" or "random_k"
    k: int | None = None
    noise: bool = False

    @classmethod
    def parse(cls, name: str) -> "Variant":
        """Parse a variant name (``sgd`` or ``cgd-<set>[-top<k>|-random<k>][-noise]``); raise
        ``ValueError`` for any other name.
        """
        m = VARIANT_RE.match(name)
        if not m:
            raise ValueError(
                f"unknown optimizer variant {name!r}: expected 'sgd' or "
                f"'cgd-<{'|'.join(PRUNE_SETS)}>[-top<k>|-random<k>][-noise]'"
            )
        if name == "sgd":
            return cls(name=name, optimizer="sgd")
        selection = SELECTIONS[m["sel"] or ""]
        return cls(
            name=name,
            optimizer="cgd",
            prune_set=m["set"],
            selection=selection,
            k=int(m["k"]) if m["k"] else None,
            noise=bool(m["noise"]),
        )


# help texts of the fields, shown by ``python -m chaosgd.train --help``
HELP = {
    "run_id": "name of the run (the results folder name)",
    "dataset": f"dataset name ({' or '.join(DATASETS)})",
    "model": " or ".join(ARCHITECTURES),
    "activation": " or ".join(ACTIVATIONS),
    "hidden": "hidden units of the MLP, base width of the ResNet (ignored by the CNN)",
    "depth": "depth of a model that takes one (the ResNet: 6n + 2); none for the MLP and CNN",
    "image_side": "side of the dataset's prepared images (16, or 28 for FashionMNIST as is)",
    "variant": f"optimizer variant: sgd or cgd-<{'|'.join(PRUNE_SETS)}>[-top<k>|-random<k>][-noise]",
    "onset": "CGD prunes from this step on (plain SGD before it)",
    "momentum": "SGD momentum (PyTorch convention)",
    "seed": "fixes the initialization and the batch order",
    "lr": "learning rate",
    "batch_size": "minibatch size",
    "epochs": "passes over the (sub)sampled training set",
    "dtype": "training dtype (the curvature engine always works in float64)",
    "train_size": "use this many training images (a fixed random subset); 0 = all",
    "test_size": "use this many test images for validation; 0 = all",
    "subset_seed": "seed of the training/test subsets (the same for every run)",
    "evals_per_epoch": "full train/validation evaluations per epoch",
    "spectrum": "compute the Hessian spectrum at every step of SGD runs (CGD always does)",
    "curvature": "eigensolver: auto, dense (the reference method) or lowrank",
    "noise_scale": "std of the noise of -noise variants; 0 = the mean absolute gradient entry",
    "checkpoint_every": "write a resumable checkpoint every this many steps",
    "device": "auto (CUDA when present), cpu or cuda (fails without a GPU)",
}


# How each setting reaches a run. The run id (the results folder, chaosgd.planning.plan.run_id) must tell
# apart every two runs of one config, so every setting that can differ between them is in it:
#   name      the run id itself
#   identity  an experiment's own key, always spelled in the run id
#   override  a training setting an experiment may override; spelled in the run id (RUN_ID_SUFFIX)
#             whenever the experiment's value differs from the training section's
#   recorded  a training setting an experiment may override that changes what a run records, not
#             its trajectory: runs that differ only here are one run, recording what any asks
#   shared    one value for all runs of a config (the training section's, or the top level's),
#             or for all runs on one dataset (its datasets.<name> block's: PER_DATASET)
# A new field of RunSettings without a role here is an error at import time.
ROLES = {
    "run_id": "name",
    "dataset": "identity",
    "model": "identity",
    "activation": "identity",
    "hidden": "identity",
    "depth": "identity",
    "variant": "identity",
    "onset": "identity",
    "momentum": "identity",
    "seed": "identity",
    "lr": "override",
    "batch_size": "override",
    "epochs": "override",
    "dtype": "override",
    "train_size": "override",
    "spectrum": "recorded",
    "test_size": "shared",
    "subset_seed": "shared",
    "evals_per_epoch": "shared",
    "curvature": "shared",
    "noise_scale": "shared",
    "checkpoint_every": "shared",
    "device": "shared",
    "image_side": "shared",
}
# Shared settings that cannot change a result: how often a checkpoint is written, and the device
# (CPU and CUDA agree to round-off, docs/cluster-and-gpu.md). The rules pass them untracked
# (chaosgd.planning.plan.Untracked), so changing them reruns no job.
UNTRACKED = ("checkpoint_every", "device")
# how an overridden setting is spelled in the run id
RUN_ID_SUFFIX = {
    "lr": lambda v: f"lr{v:g}",
    "batch_size": lambda v: f"b{v}",
    "epochs": lambda v: f"ep{v}",
    "dtype": lambda v: {"float32": "f32", "float64": "f64"}[v],
    "train_size": lambda v: f"n{v}",
}
# shared settings that live at the config's top level rather than in its training section
TOP_LEVEL = ("device",)
# shared settings of the runs on one dataset, from its datasets.<name> block: the images' side
# shapes the data and the model (the MLP's input), so the planner reads it where the datasets
# stage does, and run.json records it
PER_DATASET = ("image_side",)
# fields added after results were first made, and the value every run had before them: a
# run.json that lacks one records that value (chaosgd.planning.stale compares it so)
LEGACY = {"image_side": IMAGE_SIDE, "depth": None}


@dataclass(frozen=True)
class RunSettings:
    """Everything that defines one training run; validated on construction (``ValueError``).

    Field meanings are in :data:`HELP`, how each reaches the run id in :data:`ROLES`.
    ``depth`` of ``None`` is the architecture's default depth where it takes one (and must be
    ``None`` where it does not); ``image_side`` and ``depth`` have defaults, the paper's 16×16
    images and fixed depths, so that code building settings for the paper's networks need not
    name them.
    """

    run_id: str
    dataset: str
    model: str
    activation: str
    hidden: int
    variant: str
    onset: int
    momentum: float
    seed: int
    lr: float
    batch_size: int
    epochs: int
    dtype: str
    train_size: int
    test_size: int
    subset_seed: int
    evals_per_epoch: int
    spectrum: bool
    curvature: str
    noise_scale: float
    checkpoint_every: int
    device: str
    # keyword-only so that they can have defaults; declared after ``device`` so that run.json
    # and the command line keep the fields before them in their order
    image_side: int = field(default=IMAGE_SIDE, kw_only=True)
    depth: int | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        Variant.parse(self.variant)
        arch = ARCHITECTURES.get(self.model)
        if arch is not None and arch.uses_depth and self.depth is None:
            # one spelling of the default depth, so that a run asked for with depth null and one
            # asked for with the default's value are one run
            object.__setattr__(self, "depth", arch.depth)
        checks = {
            "model": self.model in ARCHITECTURES,
            "activation": self.activation in ACTIVATIONS,
            "dtype": self.dtype in DTYPES,
            "device": self.device in DEVICES,
            "curvature": self.curvature in CURVATURE_METHODS,
            "hidden": self.hidden >= 1,
            "onset": self.onset >= 0,
            "momentum": 0 <= self.momentum < 1,
            "lr": self.lr > 0,
            "batch_size": self.batch_size >= 1,
            "epochs": self.epochs >= 1,
            "train_size": self.train_size >= 0,
            "test_size": self.test_size >= 0,
            "evals_per_epoch": self.evals_per_epoch >= 1,
            "noise_scale": self.noise_scale >= 0,
            "checkpoint_every": self.checkpoint_every >= 1,
            "image_side": self.image_side >= 1,
            "depth": arch is None or arch.uses_depth or self.depth is None,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"run {self.run_id}: invalid " + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
            )
        try:
            arch.layers(self.hidden, side=self.image_side, depth=self.depth)
        except ValueError as exc:
            raise ValueError(f"run {self.run_id}: {exc}") from None

    @property
    def parsed_variant(self) -> Variant:
        """The optimizer variant, parsed."""
        return Variant.parse(self.variant)

    @property
    def needs_spectrum(self) -> bool:
        """Whether every step needs the Hessian eigenpairs: with ``spectrum``, and for CGD."""
        return self.spectrum or self.parsed_variant.optimizer == "cgd"

    def to_args(self, only: tuple[str, ...] | None = None, skip: tuple[str, ...] = ()) -> list[str]:
        """The command-line arguments that :meth:`from_namespace` parses back (of the fields
        ``only``, if given, less those in ``skip``)."""
        args = []
        for f in fields(self):
            if (only is not None and f.name not in only) or f.name in skip:
                continue
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if f.type == "bool":
                args.append(flag if value else "--no-" + flag[2:])
            elif value is None:
                args += [flag, NONE]
            else:
                args += [flag, repr(value) if isinstance(value, float) else str(value)]
        return args

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (field order kept), as recorded in ``run.json``."""
        return dataclasses.asdict(self)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add one required option per field to ``parser`` (``--x`` / ``--no-x`` for booleans)."""
        group = parser.add_argument_group("run settings")
        for f in fields(RunSettings):
            flag = "--" + f.name.replace("_", "-")
            if f.type == "bool":
                group.add_argument(
                    flag, action=argparse.BooleanOptionalAction, required=True, help=HELP[f.name]
                )
            else:
                kind = {"int": int, "float": float, "str": str, "int | None": _optional_int}
                group.add_argument(flag, type=kind[f.type], required=True, help=HELP[f.name])

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> "RunSettings":
        """The settings from options parsed with :meth:`add_arguments`."""
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls)})


# how an unset optional setting (a depth of None) is spelled on the command line
NONE = "none"


def _optional_int(text: str) -> int | None:
    return None if text == NONE else int(text)


def _check_roles() -> None:
    names = [f.name for f in fields(RunSettings)]
    unknown = set(ROLES.values()) - {"name", "identity", "override", "recorded", "shared"}
    missing, extra = set(names) - set(ROLES), set(ROLES) - set(names)
    overrides = {k for k, role in ROLES.items() if role == "override"}
    if unknown or missing or extra or overrides != set(RUN_ID_SUFFIX) or set(HELP) != set(names):
        raise RuntimeError(
            "chaosgd.planning.run_settings: every RunSettings field needs a role in ROLES, a help text in HELP "
            "and, for overrides, a RUN_ID_SUFFIX spelling: "
            f"missing {sorted(missing)}, extra {sorted(extra)}, unknown roles {sorted(unknown)}"
        )


_check_roles()
