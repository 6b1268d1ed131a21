"""The data of a run: the prepared dataset, its subsets, the batch order, the initial model.

The seed of a run fixes its initialization (:func:`initial_model`) and its batch order
(:func:`epoch_order`, :func:`batches`), so the variants of one seed, the perturbed ensemble
members and the Lyapunov run of the same settings all see the same batches in the same order:
every trainer reads them here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from chaosgd.engine.models import build_model
from chaosgd.planning.run_settings import RunSettings
from chaosgd.planning.schedule import steps_per_epoch
from chaosgd.planning.vocab import IMAGE_SIDE
from chaosgd.runs.artifacts import UnreadableFile, load_tensors


@dataclass
class Data:
    """A prepared dataset on the run's device: images (training dtype) and int64 labels of the
    training and test splits; sample and per-class counts in ``info``.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    info: dict = field(default_factory=dict)


def _subset(n: int, size: int, generator: torch.Generator) -> torch.Tensor | None:
    if size == 0 or size >= n:
        return None
    return torch.randperm(n, generator=generator)[:size].sort().values


# a damaged prepared dataset is remade by the datasets stage from its verified sources
REPREPARE = "delete it and rerun to prepare it again"
SPLITS = ("train_x", "train_y", "test_x", "test_y")


def _check_data(blob: dict, path: str | Path, side: int = IMAGE_SIDE) -> None:
    """Raise :class:`chaosgd.runs.artifacts.UnreadableFile` unless ``blob`` holds what the datasets stage
    writes: N×1×``side``×``side`` finite float images and N int64 labels in 0..9 per split."""
    for split in ("train", "test"):
        x, y = blob[f"{split}_x"], blob[f"{split}_y"]
        if not (torch.is_tensor(x) and torch.is_tensor(y)):
            problem = f"{split}_x and {split}_y must be tensors"
        elif not x.is_floating_point() or tuple(x.shape[1:]) != (1, side, side):
            problem = f"{split}_x is {x.dtype} {tuple(x.shape)}, expected float N×1×{side}×{side}"
        elif y.dtype != torch.int64 or y.dim() != 1 or len(y) != len(x) or len(y) == 0:
            problem = (
                f"{split}_y is {y.dtype} {tuple(y.shape)}, expected {len(x)} int64 labels "
                f"(one per image of {split}_x)"
            )
        elif int(y.min()) < 0 or int(y.max()) > 9:
            problem = f"{split}_y holds labels outside 0..9 ({int(y.min())}..{int(y.max())})"
        elif not bool(torch.isfinite(x).all()):
            problem = f"{split}_x holds non-finite pixels"
        else:
            continue
        raise UnreadableFile(path, problem, REPREPARE)


def load_data(path: str | Path, settings: RunSettings, device: torch.device) -> Data:
    """The prepared dataset, subsampled as configured, on ``device`` in the training dtype.

    Raises :class:`chaosgd.runs.artifacts.UnreadableFile` naming the file when it is missing, damaged or
    not a prepared dataset.
    """
    blob = load_tensors(path, keys=SPLITS, remedy=REPREPARE)
    # a dataset prepared at another side than the run's config says (its image_side changed
    # since) would feed the model images of the wrong size
    _check_data(blob, path, settings.image_side)
    gen = torch.Generator().manual_seed(settings.subset_seed)
    parts = {}
    for split, size in (("train", settings.train_size), ("test", settings.test_size)):
        x, y = blob[f"{split}_x"], blob[f"{split}_y"]
        idx = _subset(len(y), size, gen)
        if idx is not None:
            x, y = x[idx], y[idx]
        parts[f"{split}_x"] = x.to(device=device, dtype=getattr(torch, settings.dtype))
        parts[f"{split}_y"] = y.to(device)
    info = {
        "train_samples": int(len(parts["train_y"])),
        "test_samples": int(len(parts["test_y"])),
        "train_per_class": torch.bincount(parts["train_y"].cpu(), minlength=10).tolist(),
    }
    return Data(**parts, info=info)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The batch order of one epoch: a permutation fixed by (seed, epoch), on the CPU."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def initial_model(settings: RunSettings, dtype: str, device: torch.device) -> torch.nn.Module:
    """The run's model at initialization: PyTorch's default initialization under its seed."""
    torch.manual_seed(settings.seed)
    model = build_model(
        settings.model,
        settings.activation,
        settings.hidden,
        image_side=settings.image_side,
        depth=settings.depth,
    )
    return model.to(device=device, dtype=getattr(torch, dtype))


def recorded_model(settings: Mapping) -> torch.nn.Module:
    """A model of the architecture and size a run recorded (``run.json``'s settings), freshly
    initialized: what the analyses measure a run's scale against (App. A.8). Records made
    before the image side and depth were settings were of 16×16 images and the paper's
    networks, whose depth is fixed."""
    return build_model(
        settings["model"],
        settings["activation"],
        int(settings["hidden"]),
        image_side=int(settings.get("image_side", IMAGE_SIDE)),
        depth=settings.get("depth"),
    )


def batches(n: int, settings: RunSettings, start: int = 0) -> Iterator[tuple[int, torch.Tensor]]:
    """(step, CPU index tensor of the batch) of every step of the run from ``start`` on: epoch
    by epoch in :func:`epoch_order`, the last batch of an epoch possibly smaller."""
    per_epoch = steps_per_epoch(n, settings.batch_size)
    bs = settings.batch_size
    for epoch in range(start // per_epoch, settings.epochs):
        order = epoch_order(n, settings.seed, epoch)
        for within in range(max(0, start - epoch * per_epoch), per_epoch):
            yield epoch * per_epoch + within, order[within * bs : (within + 1) * bs]
