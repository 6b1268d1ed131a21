"""What defines one training run, and its command-line form.

A run is dataset × model × activation × optimizer variant × pruning onset × momentum × seed,
plus the training settings. The planner (``chaosgd.plan``) builds :class:`RunSettings` from the
config; the stages that train (``chaosgd.train`` and the stages built on it) parse them back
from the command line. Kept free of torch so that the Snakefile imports it quickly.

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
import re
from dataclasses import dataclass, fields
from typing import Any

VARIANT_RE = re.compile(
    r"^(?:sgd|cgd-(?P<set>chaotic|negative|positive)(?:-(?P<sel>top|random)(?P<k>[1-9][0-9]*))?"
    r"(?P<noise>-noise)?)$"
)
PRUNE_SETS = ("chaotic", "negative", "positive")
DTYPES = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")
CURVATURE_METHODS = ("auto", "dense", "lowrank")


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
        m = VARIANT_RE.match(name)
        if not m:
            raise ValueError(
                f"unknown optimizer variant {name!r}: expected 'sgd' or "
                "'cgd-<chaotic|negative|positive>[-top<k>|-random<k>][-noise]'"
            )
        if name == "sgd":
            return cls(name=name, optimizer="sgd")
        selection = {None: "all", "top": "top_k", "random": "random_k"}[m["sel"]]
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
    "dataset": "dataset name (usps or fmnist)",
    "model": "mlp or cnn",
    "activation": "relu or sigmoid",
    "hidden": "hidden units of the MLP (ignored by the CNN)",
    "variant": "optimizer variant: sgd or cgd-<set>[-top<k>|-random<k>][-noise]",
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


@dataclass(frozen=True)
class RunSettings:
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

    def __post_init__(self) -> None:
        Variant.parse(self.variant)
        checks = {
            "model": self.model in ("mlp", "cnn"),
            "activation": self.activation in ("relu", "sigmoid"),
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
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"run {self.run_id}: invalid " + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
            )

    @property
    def parsed_variant(self) -> Variant:
        return Variant.parse(self.variant)

    @property
    def needs_spectrum(self) -> bool:
        return self.spectrum or self.parsed_variant.optimizer == "cgd"

    def to_args(self) -> list[str]:
        """The command-line arguments that :func:`from_args` parses back."""
        args = []
        for f in fields(self):
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if f.type == "bool":
                args.append(flag if value else "--no-" + flag[2:])
            else:
                args += [flag, repr(value) if isinstance(value, float) else str(value)]
        return args

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("run settings")
        for f in fields(RunSettings):
            flag = "--" + f.name.replace("_", "-")
            kind = {"int": int, "float": float, "str": str}.get(f.type)
            if f.type == "bool":
                group.add_argument(
                    flag, action=argparse.BooleanOptionalAction, required=True, help=HELP[f.name]
                )
            else:
                group.add_argument(flag, type=kind, required=True, help=HELP[f.name])

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> "RunSettings":
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls)})
