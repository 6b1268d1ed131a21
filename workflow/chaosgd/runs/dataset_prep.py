"""Preparing a dataset: obtain USPS or FashionMNIST, verify, bring to its side, normalize, describe.

What the datasets stage writes: ``<name>.pt`` holds ``train_x``/``test_x`` (float32,
N×1×S×S, normalized by the training set's mean and std) and ``train_y``/``test_y`` (int64);
``<name>.json`` records where every source file came from, its sha256, sample and per-class
counts, the image shape, the normalization and the resize method (``resize``, described, and
``resize_mode``).

The side S is the config's ``datasets.<name>.image_side``: 16 by default (the paper's, Sec. 3),
or a dataset's native size (FashionMNIST's 28, :attr:`chaosgd.planning.vocab.Dataset.sides`),
which keeps its images as they are. Images larger than S (FashionMNIST's 28×28 at 16) are
resized bilinearly, with antialiasing (``antialias``) or, as the authors' code did and the
config does by default (``reference``), without it (torchvision 0.12's
``transforms.Resize(16)`` on a tensor, which did not antialias tensors), bit for bit. Without
antialiasing each output pixel interpolates only the 2×2 input pixels nearest its centre, so
detail finer than the 16×16 grid aliases; on FashionMNIST the two differ by 0.026 per pixel on
average (of [0, 1]; 0.094 after normalization), while the class means move by 0.008
(docs/departures.md).

Sources are looked for in this order: the configured local folder, the download cache, then
the mirrors (if downloading is allowed). Every file is checked against a published checksum
before it is used:

- FashionMNIST: the md5 of the *decompressed* IDX payload. Debian's ``dataset-fashion-mnist``
  re-compressed the upstream ``.gz`` files (their md5 differs from torchvision's list) but the
  payload is byte-identical, so the payload checksum accepts both and still catches corruption.
- USPS: torchvision's md5 of the LIBSVM ``.bz2`` files.

A checksum override (a private mirror) admits other files, so what they hold is checked too
(:func:`load_raw`): images of the dataset's size (the IDX header's H×W, USPS's 256 features per
line), at least one per split, as many labels as images, labels 0..9, every class in the
training split, finite USPS pixels in [-1, 1]. The stage checks its tensors again before
writing them (:func:`check_prepared`).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import urllib.error
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.datasets.utils import download_url

from chaosgd import __version__
from chaosgd.planning.vocab import DATASETS, IMAGE_SIDE, N_CLASSES, RESIZE_MODES
from chaosgd.runs.artifacts import atomic_path, file_digest


@dataclass(frozen=True)
class FileSpec:
    """One source file of a dataset: its role, name on disk and on the mirror, and published md5."""

    role: str  # train_images, train_labels, test_images, test_labels, train, test
    name: str  # file name on disk and on the mirror
    md5: str  # published checksum (of the payload for .gz files, of the file otherwise)
    payload_checksum: bool  # True: md5 is of the decompressed content


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset this stage can prepare: its source files, download mirrors, native image size."""

    name: str
    title: str
    files: tuple[FileSpec, ...]
    mirrors: tuple[str, ...]
    native_size: int


_FMNIST_PAYLOAD_MD5 = {
    "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
}
_FMNIST_ROLES = ("train_images", "train_labels", "test_images", "test_labels")

SPECS: dict[str, DatasetSpec] = {
    "fmnist": DatasetSpec(
        name="fmnist",
        title=DATASETS["fmnist"].title,
        files=tuple(
            FileSpec(role, fname, _FMNIST_PAYLOAD_MD5[fname], True)
            for role, (fname, _) in zip(
                _FMNIST_ROLES, torchvision.datasets.FashionMNIST.resources, strict=True
            )
        ),
        mirrors=tuple(torchvision.datasets.FashionMNIST.mirrors),
        native_size=28,
    ),
    "usps": DatasetSpec(
        name="usps",
        title=DATASETS["usps"].title,
        files=tuple(
            FileSpec(split, fname, md5, False)
            for split, (_, fname, md5) in torchvision.datasets.USPS.split_list.items()
        ),
        mirrors=(torchvision.datasets.USPS.split_list["train"][0].rsplit("/", 1)[0] + "/",),
        native_size=16,
    ),
}


class DatasetError(RuntimeError):
    """A dataset could not be obtained or failed verification; the message says what to do."""


@dataclass
class Source:
    """Where one verified source file came from, as recorded in the manifest."""

    role: str
    file: str
    path: str
    origin: str  # "local", "cache" or "download"
    url: str | None
    md5: str  # verified against the published checksum
    md5_of: str  # "file" or "decompressed content"
    sha256: str  # of the file as found
    bytes: int


def _payload(path: Path, spec: FileSpec) -> bytes:
    """The bytes the checksum is defined on (decompressed for payload checksums)."""
    raw = path.read_bytes()
    if not spec.payload_checksum:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: corrupt or truncated gzip file ({exc})") from None


def verify(path: Path, spec: FileSpec, expected_md5: str) -> str:
    """Check ``path`` against ``expected_md5``; return the md5 or raise naming the file."""
    md5 = hashlib.md5(_payload(path, spec)).hexdigest()
    if md5 != expected_md5:
        what = "decompressed content" if spec.payload_checksum else "file"
        raise DatasetError(
            f"checksum mismatch for {path}: md5 of the {what} is {md5}, expected "
            f"{expected_md5}. The file is corrupt, truncated or not the published one; "
            "delete it and run again."
        )
    return md5


def _download(url: str, dest: Path, spec: FileSpec, expected_md5: str) -> None:
    """Download ``url`` to ``dest`` through a temporary name, verified before the rename."""
    with atomic_path(dest) as tmp:
        # download_url skips files that exist, and mkstemp created this one.
        tmp.unlink()
        # torchvision checks the md5 itself only for whole files; payload checksums are ours.
        download_url(url, str(tmp.parent), tmp.name, md5=None, max_redirect_hops=5)
        verify(tmp, spec, expected_md5)


def obtain(
    spec: DatasetSpec,
    local_dir: str | None,
    cache_dir: str,
    mirrors: list[str] | None,
    allow_download: bool,
    md5_overrides: dict[str, str] | None = None,
) -> dict[str, Source]:
    """Find, download if needed, and verify every file of ``spec``; keyed by role."""
    md5_overrides = dict(md5_overrides or {})
    unknown = set(md5_overrides) - {f.name for f in spec.files}
    if unknown:
        raise DatasetError(
            f"{spec.name}: checksum override for unknown file(s) {sorted(unknown)}; "
            f"files are {[f.name for f in spec.files]}"
        )
    mirrors = list(mirrors) if mirrors else list(spec.mirrors)
    cache = Path(cache_dir)
    sources: dict[str, Source] = {}
    for fspec in spec.files:
        expected = md5_overrides.get(fspec.name, fspec.md5)
        tried: list[str] = []
        found: tuple[Path, str, str | None] | None = None
        candidates = [(Path(local_dir) / fspec.name, "local")] if local_dir else []
        candidates.append((cache / fspec.name, "cache"))
        for path, origin in candidates:
            if path.is_file():
                verify(path, fspec, expected)
                found = (path, origin, None)
                break
            tried.append(f"{origin} file {path} (not found)")
        if found is None and not allow_download:
            tried.append("download (disabled by config)")
        if found is None and allow_download:
            for mirror in mirrors:
                url = mirror.rstrip("/") + "/" + fspec.name
                try:
                    _download(url, cache / fspec.name, fspec, expected)
                except DatasetError:
                    raise
                except (OSError, urllib.error.URLError, RuntimeError, ValueError) as exc:
                    tried.append(f"download {url} ({type(exc).__name__}: {exc})")
                    continue
                found = (cache / fspec.name, "download", url)
                break
        if found is None:
            raise DatasetError(_unavailable_message(spec, fspec, tried))
        path, origin, url = found
        sources[fspec.role] = Source(
            role=fspec.role,
            file=fspec.name,
            path=str(path.resolve()),
            origin=origin,
            url=url,
            md5=expected,
            md5_of="decompressed content" if fspec.payload_checksum else "file",
            sha256=file_digest(path, "sha256"),
            bytes=path.stat().st_size,
        )
    return sources


def _unavailable_message(spec: DatasetSpec, fspec: FileSpec, tried: list[str]) -> str:
    names = ", ".join(f.name for f in spec.files)
    hint = {
        "fmnist": "On Debian/Ubuntu `apt-get install dataset-fashion-mnist` installs them in "
        "/usr/share/datasets/fashion-mnist (the default local_dir).",
        "usps": "They are published at "
        + spec.mirrors[0]
        + " (copy them from a machine with internet access).",
    }[spec.name]
    return (
        f"dataset '{spec.name}' ({spec.title}) is not available: could not obtain "
        f"{fspec.name}. Tried: " + "; ".join(tried) + ". "
        f"To run offline, put the files {names} in a folder and set "
        f"datasets.{spec.name}.local_dir to it in the config. {hint}"
    )


def _read_idx(data: bytes, path: str, expected_ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (the MNIST format)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    if ndim != expected_ndim:
        raise DatasetError(f"{path}: IDX file has {ndim} dimensions, expected {expected_ndim}")
    if len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: IDX header is truncated")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise DatasetError(f"{path}: IDX payload size does not match its header {dims}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


USPS_FEATURES = IMAGE_SIDE * IMAGE_SIDE  # one LIBSVM feature per pixel of a 16×16 image


def _read_libsvm(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N×16×16) and int64 labels 0..9 of a USPS LIBSVM ``.bz2`` file.

    The arithmetic is torchvision's ``USPS`` (the reference code's loader), so that valid files
    give its bytes exactly; the checks before it name the line where a file is not USPS's
    (torchvision would stop on a numpy error, or wrap an out-of-range value silently).
    """
    try:
        with bz2.open(path) as fp:
            lines = [line.decode() for line in fp.readlines()]
    except (OSError, EOFError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise DatasetError(f"{path}: corrupt or truncated bz2 file ({exc})") from None
    rows = [(number, line.split()) for number, line in enumerate(lines, 1) if line.strip()]
    raw_labels = []
    for number, row in rows:
        if len(row) - 1 != USPS_FEATURES:
            raise DatasetError(
                f"{path}: line {number} has {len(row) - 1} features, expected "
                f"{USPS_FEATURES} ({IMAGE_SIDE}x{IMAGE_SIDE} pixels)"
            )
        try:
            raw_labels.append(int(row[0]))
        except ValueError:
            raise DatasetError(
                f"{path}: line {number}: label {row[0]!r} is not an integer"
            ) from None
    # torchvision reads the value after the last ':' and ignores the feature's index
    values = [[x.split(":")[-1] for x in row[1:]] for _, row in rows]
    try:
        pixels = np.asarray(values, dtype=np.float32).reshape((-1, IMAGE_SIDE, IMAGE_SIDE))
    except ValueError:
        where = next(
            (
                f"line {number}: pixel {j} is {x!r}, not a number"
                for (number, _), row in zip(rows, values)
                for j, x in enumerate(row, 1)
                if not _is_number(x)
            ),
            "its pixel values are not numbers",
        )
        raise DatasetError(f"{path}: {where}") from None
    scaled = (pixels + 1) / 2 * 255
    # what astype(uint8) keeps: truncation towards zero into 0..255; beyond it values wrap
    bad = ~np.isfinite(scaled) | (scaled <= -1) | (scaled >= 256)
    if bad.any():
        i = int(np.flatnonzero(bad.reshape(len(rows), -1).any(axis=1))[0])
        j = int(np.flatnonzero(bad[i].reshape(-1))[0])
        raise DatasetError(
            f"{path}: line {rows[i][0]}: pixel {j + 1} is {pixels[i].reshape(-1)[j]}; USPS "
            "pixel values are finite numbers in [-1, 1]"
        )
    labels = np.asarray(raw_labels, dtype=np.int64) - 1
    outside = np.flatnonzero((labels < 0) | (labels >= N_CLASSES))
    if outside.size:
        i = int(outside[0])
        raise DatasetError(
            f"{path}: line {rows[i][0]}: label {raw_labels[i]} is outside 1..{N_CLASSES} "
            "(USPS numbers its classes from 1)"
        )
    return scaled.astype(dtype=np.uint8), labels


def _is_number(text: str) -> bool:
    try:
        np.float32(text)
    except ValueError:
        return False
    return True


def _check_split(
    spec: DatasetSpec, images: np.ndarray, labels: np.ndarray, image_file: str, label_file: str
) -> None:
    """Refuse a split whose images are not the dataset's size, that holds no image, whose
    image and label counts differ or whose labels leave 0..9; the message names the file."""
    side = spec.native_size
    if images.ndim != 3 or images.shape[1:] != (side, side):
        size = "x".join(str(d) for d in images.shape[1:])
        raise DatasetError(
            f"{image_file}: images are {size} as its header says, expected {side}x{side} "
            f"({spec.title}); the file is not {spec.title}'s"
        )
    if len(images) == 0:
        raise DatasetError(f"{image_file}: holds no images; the file is empty or not the dataset's")
    if len(images) != len(labels):
        raise DatasetError(
            f"{image_file} holds {len(images)} images but {label_file} holds {len(labels)} "
            "labels; the two files must be the same split of the same release"
        )
    outside = np.flatnonzero((labels < 0) | (labels >= N_CLASSES))
    if outside.size:
        i = int(outside[0])
        raise DatasetError(
            f"{label_file}: label {int(labels[i])} at index {i} is outside 0..{N_CLASSES - 1}"
        )


def _check_classes(labels: np.ndarray, label_file: str) -> None:
    """Refuse a training split without an example of every class: the paper trains on all 10."""
    missing = np.flatnonzero(np.bincount(labels, minlength=N_CLASSES) == 0)
    if missing.size:
        classes = ", ".join(str(c) for c in missing)
        raise DatasetError(
            f"{label_file}: the training split has no image of class {classes}; the paper "
            f"trains on all {N_CLASSES} classes, so the file is incomplete or not the dataset's"
        )


def load_raw(
    spec: DatasetSpec, sources: dict[str, Source]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """uint8 images (N×H×W) and int64 labels for train and test, each split checked: H×W the
    dataset's, at least one image, as many labels as images, labels in 0..9, every class in
    the training split."""
    if spec.name == "fmnist":
        arrays = {}
        for fspec in spec.files:
            src = sources[fspec.role]
            ndim = 3 if fspec.role.endswith("images") else 1
            arrays[fspec.role] = _read_idx(_payload(Path(src.path), fspec), src.path, ndim)
        splits = [
            (
                arrays[f"{split}_images"],
                arrays[f"{split}_labels"].astype(np.int64),
                sources[f"{split}_images"].path,
                sources[f"{split}_labels"].path,
            )
            for split in ("train", "test")
        ]
    elif spec.name == "usps":
        splits = []
        for split in ("train", "test"):
            path = sources[split].path
            splits.append((*_read_libsvm(Path(path)), path, path))
    else:  # pragma: no cover - SPECS and this function list the same names
        raise DatasetError(f"unknown dataset {spec.name!r}")
    for images, labels, image_file, label_file in splits:
        _check_split(spec, images, labels, image_file, label_file)
    _check_classes(splits[0][1], splits[0][3])
    (train_img, train_lab, _, _), (test_img, test_lab, _, _) = splits
    return train_img, train_lab, test_img, test_lab


def to_side(images: np.ndarray, mode: str, side: int) -> torch.Tensor:
    """uint8 N×H×W → float32 N×1×``side``×``side`` in [0, 1]; larger images are resized
    bilinearly, with antialiasing (``mode="antialias"``) or without (``"reference"``, the
    authors' code), images of that side kept as they are."""
    if mode not in RESIZE_MODES:
        raise DatasetError(f"resize mode must be one of {', '.join(RESIZE_MODES)}; got {mode!r}")
    if min(images.shape[-2:]) < side:
        # upsampling would invent pixels the dataset never had
        raise DatasetError(
            f"images of {images.shape[-2]}x{images.shape[-1]} cannot give {side}x{side}"
        )
    # the same [0, 1] floats as torchvision's ToTensor, which the reference resized
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    if x.shape[-2:] != (side, side):
        x = F.interpolate(
            x,
            size=(side, side),
            mode="bilinear",
            antialias=mode == "antialias",
            align_corners=False,
        )
    return x.contiguous()


def to_16x16(images: np.ndarray, mode: str) -> torch.Tensor:
    """:func:`to_side` at the paper's 16×16 (Sec. 3)."""
    return to_side(images, mode, IMAGE_SIDE)


def describe_resize(native_size: int, mode: str, side: int = IMAGE_SIDE) -> str:
    """The manifest's account of how the images were brought to ``side``×``side``."""
    if native_size == side:
        return f"none (native {side}x{side})"
    how = {
        "antialias": "bilinear with anti-aliasing (torch.nn.functional.interpolate, "
        "antialias=True, align_corners=False)",
        "reference": "bilinear without anti-aliasing, as the reference code "
        "(torchvision 0.12 transforms.Resize on tensors = torch.nn.functional.interpolate, "
        "antialias=False, align_corners=False)",
    }[mode]
    return f"{native_size}x{native_size} -> {side}x{side}, {how} on [0, 1] floats"


def check_side(spec: DatasetSpec, side: int) -> int:
    """``side`` if the dataset is prepared at it (:attr:`chaosgd.planning.vocab.Dataset.sides`),
    else a :class:`DatasetError` naming the config key."""
    sides = DATASETS[spec.name].sides
    if side not in sides:
        raise DatasetError(
            f"datasets.{spec.name}.image_side: {spec.title} is prepared at "
            + " or ".join(f"{s}x{s}" for s in sides)
            + f", not {side}x{side}"
        )
    return side


def prepare(
    spec: DatasetSpec, sources: dict[str, Source], resize: str, side: int = IMAGE_SIDE
) -> tuple[dict, dict]:
    """Build the tensors and the manifest from verified sources (``resize``: a resize mode,
    ``side``: the images' side, one of the dataset's)."""
    check_side(spec, side)
    train_img, train_lab, test_img, test_lab = load_raw(spec, sources)
    train_x, test_x = to_side(train_img, resize, side), to_side(test_img, resize, side)
    mean = train_x.double().mean().item()
    std = train_x.double().std().item()
    # one grey level everywhere (whose std is rounding error): nothing to normalize by; 1e-6 is
    # far below one grey level (1/255) over a single pixel of a single image
    if std <= 1e-6:  # NaN, a bug rather than the file's fault, is left to check_prepared
        train_file = sources["train_images" if "train_images" in sources else "train"].path
        raise DatasetError(
            f"{train_file}: every training pixel has the same value, so the images cannot be "
            "normalized; the file is not the dataset's"
        )
    train_x = ((train_x - mean) / std).float()
    test_x = ((test_x - mean) / std).float()
    train_y = torch.from_numpy(train_lab.astype(np.int64))
    test_y = torch.from_numpy(test_lab.astype(np.int64))
    tensors = {
        "train_x": train_x,
        "train_y": train_y,
        "test_x": test_x,
        "test_y": test_y,
        "mean": mean,
        "std": std,
    }
    manifest = {
        "dataset": spec.name,
        "title": spec.title,
        "sources": [asdict(s) for s in sources.values()],
        "image_shape": [1, side, side],
        "resize": describe_resize(spec.native_size, resize, side),
        # null where nothing was resized: the mode then had no effect on the data
        "resize_mode": None if spec.native_size == side else resize,
        "normalization": {"mean": mean, "std": std, "computed_on": "train, all pixels"},
        "splits": {
            split: {
                "samples": int(y.numel()),
                "per_class": torch.bincount(y, minlength=10).tolist(),
            }
            for split, y in (("train", train_y), ("test", test_y))
        },
        "created_by": {
            "chaosgd": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
        },
    }
    return tensors, manifest


def check_prepared(tensors: dict, manifest: dict, side: int = IMAGE_SIDE) -> list[str]:
    """What is wrong with prepared data before it is written (empty when nothing is): the
    shapes (N×1×``side``×``side`` images, N labels; the manifest's image shape), dtypes
    (float32, int64), finiteness, labels in 0..9, the training images' normalization to mean 0
    and std 1, and the manifest's counts."""
    problems = []
    shape = (1, side, side)
    if tuple(manifest.get("image_shape", ())) != shape:
        problems.append(
            f"the manifest's image shape is {manifest.get('image_shape')}, not {list(shape)}"
        )
    for split in ("train", "test"):
        x, y = tensors.get(f"{split}_x"), tensors.get(f"{split}_y")
        if not (torch.is_tensor(x) and torch.is_tensor(y)):
            problems.append(f"{split}_x or {split}_y is missing or not a tensor")
            continue
        if x.dtype != torch.float32 or x.ndim != 4 or tuple(x.shape[1:]) != shape:
            problems.append(
                f"{split}_x is {x.dtype} {tuple(x.shape)}, expected float32 "
                f"(N, {', '.join(map(str, shape))})"
            )
        if y.dtype != torch.int64 or y.ndim != 1 or len(y) != len(x):
            problems.append(f"{split}_y is {y.dtype} {tuple(y.shape)}, expected int64 ({len(x)},)")
        if len(x) == 0:
            problems.append(f"{split}_x holds no images")
        elif not torch.isfinite(x).all():
            problems.append(f"{split}_x holds non-finite values")
        if y.numel() and (y.min() < 0 or y.max() >= N_CLASSES):
            problems.append(f"{split}_y holds labels outside 0..{N_CLASSES - 1}")
        if manifest["splits"][split]["samples"] != len(y):
            problems.append(
                f"the manifest counts {manifest['splits'][split]['samples']} {split} samples, "
                f"the tensors {len(y)}"
            )
    train_x = tensors.get("train_x")
    if not problems:
        # float32 rounding of normalized values moves these by about 1e-7, a bug by far more
        mean, std = train_x.double().mean().item(), train_x.double().std().item()
        if abs(mean) > 1e-3 or abs(std - 1) > 1e-3:
            problems.append(f"train_x has mean {mean:.4g} and std {std:.4g}, expected 0 and 1")
    return problems
