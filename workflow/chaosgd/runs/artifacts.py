"""Reading and writing the pipeline's artifacts.

Every writer here is atomic: it writes to a hidden temporary file beside the target and renames
it into place only once the content is complete, so a killed job never leaves a file that looks
finished. Tensors are read back with ``weights_only=True`` and arrays with
``allow_pickle=False``: results shared between people are data, never code.

Every reader raises :class:`UnreadableFile` (a ``ValueError``) naming the file and what is wrong
with it (missing, empty, truncated, not of its format, lacking a key or column, non-finite
values where numbers must be finite), so that each stage's ``main`` turns any bad input into
one line and exit status 1 instead of a traceback that names no file.

Every writer raises :class:`ArtifactWriteError` (an ``OSError``) when the system refuses the
write (a full disk, a read-only or foreign folder, an over-long name), naming the file, the
operation and what to do, after removing its temporary file: the previous complete file, if
any, is untouched. :func:`explain` words any other ``OSError`` the same way.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.parquet as pq
import torch

from chaosgd.planning.tables import Table

# what to do about a damaged result: every file the pipeline reads is remade by its rule
REMAKE = "delete it and rerun to make it again"


class UnreadableFile(ValueError):
    """An input file is missing, empty, truncated, not of its format, or holds what its reader
    cannot use; the message names the file, what is wrong and (``remedy``) what to do.
    """

    def __init__(self, path: str | os.PathLike, problem: str, remedy: str | None = REMAKE):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}" + (f"; {remedy}" if remedy else ""))


def _existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (the folder whose mode or disk matters)."""
    path = Path(os.path.abspath(path))
    # os.path.exists, not Path.exists: it is False, not an error, for an over-long name
    while not os.path.exists(path) and path != path.parent:
        path = path.parent
    return path


def _mount(path: Path) -> Path:
    """The mount point of the file system that holds ``path``."""
    path = _existing(path)
    while not os.path.ismount(path):
        path = path.parent
    return path


def _name_bytes(path: Path) -> tuple[str, int]:
    """What an ENAMETOOLONG is about: ("file name", its length) when a component of ``path``
    exceeds the file system's limit, else ("path", the whole path's length), in bytes."""
    try:
        limit = os.pathconf(_existing(path.parent), "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    longest = max((len(part.encode()) for part in path.parts), default=0)
    if longest > limit:
        return "file name", longest
    return "path", len(os.fsencode(os.path.abspath(path)))


def _cause(exc: OSError, path: Path, folder: Path) -> tuple[str, str]:
    """(what happened, what to do) for ``exc`` about ``path``; ``folder`` is where a permission
    problem lies."""
    code = exc.errno
    if code == errno.ENOSPC:
        return "the disk is full", f"free space on {_mount(path)} or point results/ elsewhere"
    if code == errno.EDQUOT:
        return (
            "disk quota exceeded",
            f"free space within your quota on {_mount(path)} or point results/ elsewhere",
        )
    if code == errno.EROFS:
        return (
            "the file system is read-only",
            f"remount {_mount(path)} read-write or point results/ elsewhere",
        )
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied", f"check the owner and mode of {_existing(folder)}"
    if code == errno.ENAMETOOLONG:
        what, size = _name_bytes(path)
        return f"the {what} is too long ({size} bytes)", "shorten the experiment name or tag"
    if code in (errno.ENOTDIR, errno.EEXIST):  # mkdir's EEXIST: a file where the folder goes
        return (
            "a file stands where a folder must be",
            f"move {_existing(folder)} out of the way or point results/ elsewhere",
        )
    if code == errno.EFBIG:
        return "the file is larger than its file system allows", "point results/ elsewhere"
    name = errno.errorcode.get(code, "no errno") if code is not None else "no errno"
    words = (exc.strerror or _short(exc)).strip()
    return f"{words} ({name})", "check the folder and its disk, then rerun"


class ArtifactWriteError(OSError):
    """The system refused to write an artifact; the message names the file, the operation
    ("writing", "renaming into place", "creating the folder ..."), the cause in words and
    (``remedy``) what to do. ``cause`` is the ``OSError`` it replaces; its errno is kept.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        operation: str,
        cause: OSError,
        remedy: str | None = None,
        folder: str | os.PathLike | None = None,
    ):
        self.path = Path(path)
        self.operation = operation
        self.cause = cause
        self.reason, default = _cause(cause, self.path, Path(folder or self.path.parent))
        self.remedy = remedy or default
        self.message = f"{path}: {operation} failed: {self.reason}; {self.remedy}"
        super().__init__(cause.errno, self.message)

    def __str__(self) -> str:
        return self.message


def explain(exc: BaseException, operation: str = "reading") -> str:
    """One line for a stage's ``error:`` message: an ``OSError`` other than
    :class:`ArtifactWriteError` worded as one (``operation`` on its file), anything else as is."""
    if isinstance(exc, OSError) and not isinstance(exc, ArtifactWriteError):
        if exc.filename is None:
            return f"{operation} failed ({_short(exc)}); check the files and disks, then rerun"
        path = Path(os.fsdecode(exc.filename))
        return str(ArtifactWriteError(path, operation, exc, folder=path))
    return str(exc)


@contextlib.contextmanager
def _writing(target: Path, operation: str) -> Iterator[None]:
    """Re-raise an ``OSError`` of the block as :class:`ArtifactWriteError` about ``target``."""
    try:
        yield
    except ArtifactWriteError:
        raise
    except OSError as exc:
        raise ArtifactWriteError(target, operation, exc) from exc


def _temp_prefix(name: str) -> str:
    """The temporary file's prefix: the target's name, cut so that a name the file system
    accepts is never refused for the 14 bytes mkstemp adds (an over-long one fails on the
    rename, named as it is)."""
    raw = name.encode()
    if len(raw) > 200:
        name = raw[:100].decode(errors="ignore")
    return f".{name}."


def _short(exc: BaseException) -> str:
    """An exception's first line, cut short: torch's and pyarrow's run to paragraphs."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_file(path: Path, remedy: str | None) -> None:
    """Raise :class:`UnreadableFile` unless ``path`` is a non-empty regular file."""
    if not path.exists():
        # a missing input is made by its rule, not deleted; no remedy beyond naming it
        raise UnreadableFile(path, "no such file", None)
    if not path.is_file():
        raise UnreadableFile(path, "not a regular file", None)
    if path.stat().st_size == 0:
        raise UnreadableFile(path, "empty file (0 bytes)", remedy)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it to ``target`` if the block succeeds.

    The temporary file lives in the same folder so the final ``os.replace`` is atomic.
    On any exception the temporary file is removed and the target is left untouched. The
    system's refusals (creating the folder, the temporary file, the rename, and a full,
    read-only or over-quota disk while the block writes) raise :class:`ArtifactWriteError`.
    """
    target = Path(target)
    with _writing(target, f"creating the folder {target.parent}"):
        target.parent.mkdir(parents=True, exist_ok=True)
    with _writing(target, "writing"):
        fd, tmp = tempfile.mkstemp(
            prefix=_temp_prefix(target.name), suffix=".tmp", dir=target.parent
        )
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _writing(target, "writing"):
            # mkstemp creates files readable by the owner only; results are shared files.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        try:
            yield tmp_path
        except ArtifactWriteError:
            raise
        except OSError as exc:
            # not an error naming another file (the block may read some: an archive's
            # sources), nor one without an errno (a download's URLError is an OSError too)
            ours = exc.filename is None or os.fsdecode(exc.filename) == str(tmp_path)
            if ours and exc.errno is not None:
                raise ArtifactWriteError(target, "writing", exc) from exc
            raise
        with _writing(target, "renaming into place"):
            os.replace(tmp_path, target)
    finally:
        # a temporary file that cannot be removed must not hide the error that got here
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


class _Recorder:
    """A binary file for ``torch.save`` that keeps the ``OSError`` of a failed write: torch
    turns it into a RuntimeError ("unexpected pos ...") that names neither file nor cause."""

    def __init__(self, fh) -> None:
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self.fh.flush()


def _write_failure(exc: RuntimeError, recorder: _Recorder, folder: Path) -> OSError | None:
    """The ``OSError`` behind torch's RuntimeError from a failed save, if it was one: the write
    torch reported, one in the exception's chain, or a disk found full (no retry)."""
    if recorder.error is not None:
        return recorder.error
    seen = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    try:
        full = os.statvfs(folder).f_bavail == 0
    except OSError:
        full = False
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) if full else None


def save_tensors(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` (tensors, numbers, strings, lists, dicts) atomically.

    The same ``obj`` gives the same bytes wherever it is written: ``torch.save`` given a path
    names the zip archive inside after the file, here a random temporary name, so two
    identical results would differ (and an archive import over them would report conflicts);
    given a file object it names it ``archive``. A refused write raises
    :class:`ArtifactWriteError`.
    """
    path = Path(path)
    with atomic_path(path) as tmp, _writing(path, "writing"):
        with open(tmp, "wb") as fh:
            recorder = _Recorder(fh)
            try:
                torch.save(obj, recorder)
            except RuntimeError as exc:
                cause = _write_failure(exc, recorder, tmp.parent)
                if cause is None:
                    raise
                # torch chained the OSError into its RuntimeError already: no loop back to it
                raise cause from None


def load_tensors(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    keys: Iterable[str] = (),
    remedy: str | None = REMAKE,
) -> Any:
    """Load a file written by :func:`save_tensors` without unpickling arbitrary objects.

    With ``keys``, the file must hold a dict with (at least) those keys. Raises
    :class:`UnreadableFile` naming the file if it is missing, empty, truncated, not a torch
    file, holds objects other than tensors and plain values, or lacks a key; ``remedy`` ends
    the message (what to do about a damaged file).
    """
    path = Path(path)
    _check_file(path, remedy)
    # torch.save has written zip archives since torch 1.6; anything else (a truncated archive
    # lacks its central directory) would reach torch's legacy unpickler and fail obscurely
    if not zipfile.is_zipfile(path):
        raise UnreadableFile(path, "truncated or not a torch file (not a zip archive)", remedy)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        raise UnreadableFile(path, f"cannot be read ({_short(exc)})", None) from None
    except pickle.UnpicklingError as exc:
        # torch's message is a paragraph; its "WeightsUnpickler error" line says what was refused
        why = [ln.strip() for ln in str(exc).splitlines() if "Unsupported" in ln]
        raise UnreadableFile(
            path,
            "holds objects other than tensors and plain values, which weights-only loading "
            f"refuses ({(why[0] if why else _short(exc))[:160]})",
            remedy,
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises anything from a damaged zip or pickle
        raise UnreadableFile(
            path, f"truncated or not a torch file ({_short(exc)})", remedy
        ) from None
    keys = list(keys)
    if keys:
        if not isinstance(obj, dict):
            raise UnreadableFile(
                path, f"holds a {type(obj).__name__}, expected a dict with {keys}", remedy
            )
        missing = [k for k in keys if k not in obj]
        if missing:
            raise UnreadableFile(path, f"lacks {missing} (it holds {sorted(obj)})", remedy)
    return obj


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented JSON atomically (keys kept in insertion order)."""
    with atomic_path(path) as tmp, _writing(Path(path), "writing"):
        tmp.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n")


def read_json(
    path: str | os.PathLike, keys: Iterable[str] = (), remedy: str | None = REMAKE
) -> Any:
    """Read a JSON file; with ``keys``, it must hold an object with (at least) those keys.

    Raises :class:`UnreadableFile` naming the file if it is missing, empty, not valid JSON
    (a truncated file is not) or lacks a key.
    """
    path = Path(path)
    _check_file(path, remedy)
    try:
        obj = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableFile(path, f"truncated or not JSON ({_short(exc)})", remedy) from None
    except OSError as exc:
        raise UnreadableFile(path, f"cannot be read ({_short(exc)})", None) from None
    keys = list(keys)
    if keys:
        if not isinstance(obj, dict):
            raise UnreadableFile(
                path, f"holds a JSON {type(obj).__name__}, expected an object with {keys}", remedy
            )
        missing = [k for k in keys if k not in obj]
        if missing:
            raise UnreadableFile(path, f"lacks {missing}", remedy)
    return obj


def read_run_info(
    path: str | os.PathLike,
    run_id: str | None = None,
    settings: Iterable[str] = (),
    result: Iterable[str] = (),
    environment: Iterable[str] = (),
) -> dict:
    """A run's ``run.json``, checked to be ``run_id``'s and to hold the ``settings``, ``result``
    and ``environment`` entries its reader uses.

    A ``run.json`` copied from another run's folder would otherwise lend that run's settings,
    and so its variant, seed and verdicts, to this one.
    """
    sections = {"settings": settings, "result": result, "environment": environment}
    info = read_json(path, keys=("run_id", *sections))
    for section, keys in sections.items():
        if not isinstance(info[section], dict):
            raise UnreadableFile(path, f"its {section!r} is not a JSON object")
        missing = [k for k in keys if k not in info[section]]
        if missing:
            raise UnreadableFile(path, f"its {section!r} lacks {missing}")
    if run_id is not None and (
        info["run_id"] != run_id or info["settings"].get("run_id", run_id) != run_id
    ):
        raise UnreadableFile(
            path, f"belongs to run {info['run_id']!r}, not to {run_id!r} whose folder it is in"
        )
    return info


def write_parquet(df: pd.DataFrame, path: str | os.PathLike, table: Table | None = None) -> None:
    """Write a table to Parquet atomically, without the pandas index; with ``table``, only if
    the frame holds every column of that table's schema (:mod:`chaosgd.planning.tables`)."""
    if table is not None:
        table.check(df)
    with atomic_path(path) as tmp, _writing(Path(path), "writing"):
        df.to_parquet(tmp, index=False, engine="pyarrow")


def read_parquet(
    path: str | os.PathLike,
    columns: list[str] | None = None,
    finite: Iterable[str] | bool = (),
    nonempty: bool = False,
    require: Iterable[str] = (),
    numeric: Iterable[str] = (),
    remedy: str | None = REMAKE,
) -> pd.DataFrame:
    """Read a Parquet table (only ``columns``, if given: they must all be there).

    ``finite`` names columns that must hold finite numbers (``True``: every column read);
    ``numeric`` columns that must hold numbers, NaN and inf allowed; ``require`` columns that
    must be there without restricting what is read; ``nonempty`` demands at least one row.
    Raises :class:`UnreadableFile` naming the file if it is missing, empty, truncated, not
    Parquet, lacks a column, or breaks those demands. The frame's ``attrs["path"]`` is the
    file, for messages about its content further on.
    """
    path = Path(path)
    names = parquet_columns(path, remedy)
    checked = [] if finite is True else list(finite)
    numeric = list(numeric)
    wanted = list(columns) if columns is not None else []
    wanted += [c for c in checked + numeric if c not in wanted]
    missing = [c for c in [*wanted, *require] if c not in names]
    if missing:
        raise UnreadableFile(path, f"lacks column(s) {missing} (it has {names})", remedy)
    try:
        df = pd.read_parquet(path, columns=None if columns is None else wanted, engine="pyarrow")
    except (pyarrow.ArrowException, OSError) as exc:
        problem = f"truncated or not a Parquet file ({_short(exc)})"
        raise UnreadableFile(path, problem, remedy) from None
    if nonempty and df.empty:
        raise UnreadableFile(path, "has no rows", remedy)
    require_finite(df, path, list(df.columns) if finite is True else checked)
    for col in numeric:
        _require_numbers(df[col], col, path)
    df = df if columns is None else df[list(columns)]
    # for messages about the table's content further on (selections keep attrs)
    df.attrs["path"] = str(path)
    return df


def _require_numbers(series: pd.Series, col: str, path: str | os.PathLike) -> None:
    if not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)):
        raise UnreadableFile(path, f"column {col!r} holds {series.dtype} values, expected numbers")


def parquet_columns(path: str | os.PathLike, remedy: str | None = REMAKE) -> list[str]:
    """The column names of a Parquet table, from its schema only; :class:`UnreadableFile` if
    the file is missing, empty, truncated or not Parquet."""
    path = Path(path)
    _check_file(path, remedy)
    try:
        return pq.read_schema(path).names
    except (pyarrow.ArrowException, OSError) as exc:
        problem = f"truncated or not a Parquet file ({_short(exc)})"
        raise UnreadableFile(path, problem, remedy) from None


def require_finite(df: pd.DataFrame, path: str | os.PathLike, columns: list[str]) -> None:
    """Raise :class:`UnreadableFile` naming ``path`` and the column unless each of ``columns``
    holds numbers (or booleans) and none is NaN or infinite.

    Results of a diverged run carry NaN or inf; a statistic over them is meaningless and, with
    NaN-skipping means and medians, can even look like a result.
    """
    for col in columns:
        series = df[col]
        _require_numbers(series, col, path)
        values = series.to_numpy(dtype=np.float64, na_value=math.nan)
        bad = ~np.isfinite(values)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            where = f"step {df['step'].iloc[first]}" if "step" in df.columns else f"row {first}"
            raise UnreadableFile(
                path,
                f"column {col!r} holds {int(bad.sum())} non-finite value(s) (first at {where}: "
                f"{values[first]}); results of a diverged run cannot be used",
                "delete it and rerun the stage that writes it (lower the learning rate if that "
                "run diverges)",
            )


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
