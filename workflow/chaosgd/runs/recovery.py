"""Surviving preemption and crashes: checkpoint files, their fingerprints, and stop signals.

A long job (a training run, a Lyapunov run, an ensemble) can end at any moment: SLURM sends
SIGTERM at the time limit or on preemption and SIGKILL a little later, a node dies, someone
presses Ctrl-C. The jobs therefore write a checkpoint every ``checkpoint_every`` steps, and on
SIGTERM or SIGINT (:func:`stop_on_signals`) one more at the next step boundary, after which they
exit with status 128 + the signal's number (143 for SIGTERM, 130 for SIGINT) and say so in their
log (:class:`Interrupted`). A rerun resumes from the checkpoint and ends with the same bytes as
an uninterrupted run.

Resuming is only right if the checkpoint was written by the same computation, so each carries a
fingerprint (:func:`fingerprint`): every setting that shapes the job's outputs, digests of its
input files and a digest of the package's source files that the job runs (:func:`code_digest`).
:func:`load_checkpoint` starts over, with a notice naming what differed, when either part
differs, and sets an unreadable file (truncated, empty, garbage) aside under a new name, so that
one bad file never blocks every later attempt.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from chaosgd.runs.artifacts import ArtifactWriteError, file_digest, load_tensors, save_tensors

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
    """A job stopped at a step boundary on a signal, after writing its checkpoint.

    ``where`` says what was done ("run x: after step 12 of 50"); :meth:`report` is the job's
    last log line and :attr:`exit_status` its exit status.
    """

    def __init__(self, signum: int, where: str):
        super().__init__(where)
        self.signum = int(signum)
        self.where = where

    @property
    def exit_status(self) -> int:
        """128 + the signal's number, as a shell reports a process killed by that signal."""
        return 128 + self.signum

    def report(self, checkpoint: str | os.PathLike | None) -> str:
        """The log line: which signal, where the job stopped, and what a rerun does."""
        name = signal.Signals(self.signum).name
        if checkpoint is None:
            saved = "no checkpoint file was given, so a rerun starts over"
        else:
            saved = f"checkpoint written to {checkpoint}, a rerun resumes from it"
        return f"received {name}: stopped {self.where}; {saved}; exit status {self.exit_status}"


class UnusableCheckpoint(RuntimeError):
    """A checkpoint of this very job (its fingerprint matches) whose content does not fit it."""


class StopFlag:
    """Set by :func:`stop_on_signals`' handler; true once a stop signal arrived."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[StopFlag]:
    """Turn ``signals`` into a request to stop at the next step boundary while the block runs.

    The handler only records the signal: Python runs it between two bytecodes of the main thread,
    possibly in the middle of a tensor update or a checkpoint write, so acting there could leave
    a half-updated state behind. The loop checks the flag between steps instead. A second
    SIGINT raises ``KeyboardInterrupt`` as usual (someone at a terminal insists); a repeated
    SIGTERM does not, because SLURM may send several (at preemption and again at the end of the
    grace time) and each must leave the job time to write its checkpoint. The previous handlers
    are restored on exit. Outside the main thread, where Python cannot install handlers, the
    flag never rises.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if signum == signal.SIGINT and flag.signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.signum = signum

    previous = {}
    try:
        for signum in signals:
            previous[signum] = signal.signal(signum, handler)
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


# -- fingerprints --------------------------------------------------------------------------------

_CODE_DIGESTS: dict[tuple[str, str | None], str] = {}


def code_digest(stage: str, package: str | os.PathLike | None = None) -> str:
    """SHA-256 over the package's source files that ``python -m chaosgd.<stage>`` runs (the files
    :func:`chaosgd.planning.code_inputs.code_closure` lists, the same that the stage's rule names as
    its code input), by path within the package and content; ``package`` is another copy of the
    package to digest.

    Computed once per process: the digest describes the code this job loaded, even if the files
    change while it runs.
    """
    key = (stage, None if package is None else str(package))
    if key not in _CODE_DIGESTS:
        # imported by name, not by an import statement: code_inputs only lists the files, it
        # does not shape any output, so it must not count as part of the stages' code
        code_inputs = importlib.import_module("chaosgd.planning.code_inputs")
        root = Path(package) if package is not None else code_inputs.PACKAGE
        files = code_inputs.code_closure(stage, root)
        h = hashlib.sha256()
        for path in files:
            # the path within the package: modules of one name live in several subpackages
            name = Path(path).relative_to(root).as_posix().encode()
            data = Path(path).read_bytes()
            h.update(len(name).to_bytes(8, "little") + name)
            h.update(len(data).to_bytes(8, "little") + data)
        _CODE_DIGESTS[key] = h.hexdigest()
    return _CODE_DIGESTS[key]


def input_digest(path: str | os.PathLike) -> str:
    """SHA-256 of an input file's bytes (a prepared dataset, a reference's spectrum)."""
    return file_digest(path)


def fingerprint(settings: dict[str, Any], stage: str) -> dict[str, Any]:
    """A checkpoint's fingerprint: ``settings`` (plain values: every setting and input digest
    that shapes the outputs) and the digest of the stage's code."""
    return {"settings": settings, "code": code_digest(stage), "stage": stage}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix or "value": d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:18] + "..." + text[-18:]


def mismatch(found: Any, expected: dict[str, Any]) -> str | None:
    """Why a checkpoint with fingerprint ``found`` cannot continue a job whose fingerprint is
    ``expected`` (naming the settings and/or the code that differ), or ``None`` if it can."""
    if not isinstance(found, dict) or not {"settings", "code"} <= set(found):
        return "it was written in another checkpoint format (an older version of chaosgd)"
    reasons = []
    if found["settings"] != expected["settings"]:
        old, new = _flatten(found["settings"]), _flatten(expected["settings"])
        keys = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
        listed = ", ".join(
            f"{k}: {_short(old.get(k, '(unset)'))} -> {_short(new.get(k, '(unset)'))}"
            for k in keys[:6]
        )
        more = f" and {len(keys) - 6} more" if len(keys) > 6 else ""
        reasons.append(f"it belongs to other settings or inputs ({listed}{more})")
    if found["code"] != expected["code"]:
        reasons.append(
            f"it was written by other code (the source files of chaosgd.{expected['stage']} "
            f"changed: digest {str(found['code'])[:12]} -> {expected['code'][:12]})"
        )
    return "; ".join(reasons) or None


# -- checkpoint files ----------------------------------------------------------------------------


def set_aside(path: str | os.PathLike) -> Path:
    """Rename a bad checkpoint out of the way (``<name>.corrupt-<time>``), keeping it for a
    post-mortem; returns the new path."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    try:
        os.replace(path, target)
    except OSError as exc:
        raise ArtifactWriteError(path, f"setting it aside as {target.name}", exc) from exc
    return target


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write checkpoint ``path`` atomically. If the system refuses (a full disk, a read-only
    folder), raise :class:`ArtifactWriteError` saying so and what a rerun does: the previous
    checkpoint is untouched, so the job ends loudly rather than running on unprotected."""
    try:
        save_tensors(state, path)
    except ArtifactWriteError as exc:
        kept = (
            "the previous checkpoint is kept, a rerun resumes from it"
            # os.path, not Path: an over-long name is False here, not a second error
            if os.path.isfile(path)
            else "no checkpoint was written before, a rerun starts over"
        )
        raise ArtifactWriteError(
            exc.path, exc.operation, exc.cause, remedy=f"{exc.remedy}; {kept}"
        ) from exc.cause


def load_checkpoint(
    path: str | os.PathLike | None,
    expected: dict[str, Any],
    map_location: str | torch.device = "cpu",
) -> dict | None:
    """The state in checkpoint ``path`` if it continues the job whose fingerprint is
    ``expected``; else ``None`` (start over), with a line on stderr saying why.

    No file: ``None`` silently. An unreadable file (truncated, empty, not a checkpoint) is
    reported, naming the file and the error, and set aside (:func:`set_aside`). A readable one
    of other settings or code is reported and left in place (the job's next checkpoint
    replaces it).
    """
    if path is None or not Path(path).is_file():
        return None
    try:
        state = load_tensors(path, map_location=map_location)
        if not isinstance(state, dict) or "fingerprint" not in state:
            raise ValueError(f"not a chaosgd checkpoint (a {type(state).__name__})")
    except Exception as exc:  # any failure to read it means the same: start over
        # chaosgd.runs.artifacts's readers name the file and the problem; anything else, by its type
        problem = getattr(exc, "problem", None)
        detail = str(exc).strip().splitlines()
        error = problem or type(exc).__name__ + (f": {detail[0]}" if detail else "")
        try:
            moved = f"set aside as {set_aside(path)}"
        except OSError as move_error:
            moved = f"could not be set aside ({move_error}); it will be overwritten"
        print(
            f"checkpoint {path} is unreadable ({error}); {moved}; starting over",
            file=sys.stderr,
        )
        return None
    why = mismatch(state["fingerprint"], expected)
    if why is not None:
        print(f"ignoring checkpoint {path}: {why}; starting over", file=sys.stderr)
        return None
    return state
