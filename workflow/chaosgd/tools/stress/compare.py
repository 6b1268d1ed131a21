"""Comparing results with the clean reference, and reading what a failed run left behind.

Two undisturbed runs of one config write the same bytes but for a few parts that record when
and how fast something ran; :data:`EXCLUSIONS` names each of those files, what is masked in it
and why. Everything else under ``results/`` is compared bit for bit. Pure functions (no
subprocess, no torch), so that the unit tests can hold them to these promises.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

# the keys of run.json and ensemble.json that record timings, and how this particular job got
# there (resumed from a checkpoint or not): the only parts of them that may differ between an
# interrupted and an uninterrupted run (tests/support/workflow.py holds the same list for the
# recovery tests; the package cannot import the tests)
TIMING_KEYS = frozenset(
    {
        "wall_seconds",
        "steps_per_second",
        "curvature_seconds",
        "tangent_seconds",
        "readout_seconds",
        "readout_seconds_each",
        "lambda1_seconds",
        "seconds",
        "seconds_per_step",
        "single_seconds_per_step",
        "ratio",
        "steps_this_job",
        "resumed_from_step",
    }
)
# the runs table's timing columns (chaosgd.report writes a run.json's timings there)
TIMING_COLUMNS = ("wall_seconds", "steps_per_second")
# matplotlib stamps every PDF with the time it was drawn; the same length on both sides keeps
# the byte offsets of the PDF's cross-reference table comparable
_PDF_DATES = re.compile(rb"/(CreationDate|ModDate) \(D:[^)]*\)")


def _json_without_timings(data: bytes) -> bytes:
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in TIMING_KEYS}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    return json.dumps(strip(json.loads(data)), sort_keys=True).encode()


def _pdf_without_dates(data: bytes) -> bytes:
    return _PDF_DATES.sub(lambda m: b"/" + m.group(1) + b" (D:masked)", data)


def _tsv_without_timings(data: bytes) -> bytes:
    lines = data.decode().split("\n")
    header = lines[0].split("\t")
    masked = {i for i, name in enumerate(header) if name in TIMING_COLUMNS}
    out = [lines[0]]
    for line in lines[1:]:
        cells = line.split("\t")
        out.append("\t".join("-" if i in masked else c for i, c in enumerate(cells)))
    return "\n".join(out).encode()


@dataclass(frozen=True)
class Exclusion:
    """A file (a glob relative to ``results/``, ``*`` within one folder name) that two clean
    runs do not write byte for byte alike: ``masked`` is what is left out of the comparison,
    ``reason`` why it legitimately differs; ``normalize`` maps its bytes to what is compared."""

    pattern: str
    masked: str
    reason: str
    normalize: Callable[[bytes], bytes] = field(repr=False)

    def matches(self, relative: str) -> bool:
        """Whether the path (relative to ``results/``) is this exclusion's file."""
        parts, pattern = PurePosixPath(relative).parts, PurePosixPath(self.pattern).parts
        return len(parts) == len(pattern) and all(
            fnmatch.fnmatchcase(p, q) for p, q in zip(parts, pattern)
        )


EXCLUSIONS: tuple[Exclusion, ...] = (
    Exclusion(
        "train/*/run.json",
        f"the keys {', '.join(sorted(TIMING_KEYS))} (at any depth)",
        "wall-clock timings of the job, and whether it resumed from a checkpoint",
        _json_without_timings,
    ),
    Exclusion(
        "ensembles/*/ensemble.json",
        "the same timing keys as run.json",
        "wall-clock timings of the ensemble, and the step it resumed from",
        _json_without_timings,
    ),
    Exclusion(
        "report/runs.tsv",
        f"the columns {', '.join(TIMING_COLUMNS)}",
        "the runs table copies each run.json's wall time and speed",
        _tsv_without_timings,
    ),
    Exclusion(
        "figures/*.pdf",
        "the /CreationDate and /ModDate entries",
        "matplotlib stamps each PDF with the time it was drawn",
        _pdf_without_dates,
    ),
)


def exclusion_for(relative: str) -> Exclusion | None:
    """The exclusion that applies to a file (relative to ``results/``), if any."""
    return next((e for e in EXCLUSIONS if e.matches(relative)), None)


def difference(relative: str, reference: bytes, got: bytes) -> str | None:
    """Why ``got`` is not the reference's file ``relative`` (None when it is), bit for bit but
    for what its :data:`EXCLUSIONS` entry masks."""
    if reference == got:
        return None
    rule = exclusion_for(relative)
    if rule is not None:
        try:
            if rule.normalize(reference) == rule.normalize(got):
                return None
        except (ValueError, UnicodeDecodeError):  # a damaged JSON file: a plain mismatch
            pass
        what = f"differs beyond {rule.masked}"
    else:
        what = "differs"
    if len(reference) != len(got):
        return f"{what} ({len(got)} bytes, the reference has {len(reference)})"
    first = next(i for i, (a, b) in enumerate(zip(reference, got)) if a != b)
    return f"{what} (first at byte {first} of {len(got)})"


def hidden(relative: str) -> bool:
    """Whether a path has a part starting with a dot: the atomic writers' temporary files
    (``.<name>.<random>``), never an output."""
    return any(part.startswith(".") for part in PurePosixPath(relative).parts)


def files_under(root: Path) -> dict[str, Path]:
    """Every regular file under ``root`` (links followed), by its path relative to ``root``."""
    if not root.is_dir():
        return {}
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


@dataclass
class Comparison:
    """What comparing one ``results/`` folder with the reference found: files and bytes
    compared, ``mismatches`` (path, why), and hidden temporary files left lying there."""

    files: int = 0
    bytes: int = 0
    mismatches: list[tuple[str, str]] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)


# what a run job may leave beside its outputs while it is incomplete: its checkpoint, and an
# unreadable checkpoint set aside (chaosgd.runs.recovery); neither is ever an output
TRANSIENT = ("checkpoint.pt", "checkpoint.pt.corrupt-*")


def transient(relative: str) -> bool:
    """Whether a file is a run job's checkpoint or a set-aside one (never an output)."""
    name = PurePosixPath(relative).name
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in TRANSIENT)


def compare_results(reference: Path, results: Path, complete: bool = True) -> Comparison:
    """Compare the files under ``results`` with those under ``reference``.

    ``complete``: after a run that finished, every reference file must be there and nothing
    else (a checkpoint left behind is a mismatch too). Otherwise (after a failed or killed
    run) files may be missing and checkpoints may lie there, but every output present must be
    the reference's, whole: anything else is a half-written or foreign output.
    """
    want, got = files_under(reference), files_under(results)
    found = Comparison()
    for relative, path in got.items():
        if hidden(relative):
            found.temporary.append(relative)
            continue
        if relative not in want:
            if not complete and transient(relative):
                continue
            found.mismatches.append((relative, "not in the reference (a half-written output?)"))
            continue
        data = path.read_bytes()
        found.files += 1
        found.bytes += len(data)
        why = difference(relative, want[relative].read_bytes(), data)
        if why:
            found.mismatches.append((relative, why))
    if complete:
        for relative in want:
            if not hidden(relative) and relative not in got:
                found.mismatches.append((relative, "missing"))
    return found


# -- reading Snakemake's and the jobs' output ------------------------------------------------

_TRACEBACK = "Traceback (most recent call last):"
# a path: something/with/slashes or a quoted name with an extension
_PATH = re.compile(r"[\w.+~-]*/[\w./+~-]+|'[^']+\.\w+'")


# the lines that join a chain of tracebacks: one exception raised while handling another
_CHAINED = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)


def tracebacks(text: str) -> list[str]:
    """The final line (the exception) of each Python traceback in ``text``; a chain of them
    (one raised while handling another) counts once, by the exception that escaped."""
    found: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != _TRACEBACK:
            continue
        last = "(the traceback ends without an exception line)"
        for later in lines[i + 1 :]:
            if not later.strip() or later[:1].isspace() or later.strip().startswith("^"):
                continue
            last = later.strip()
            break
        before = next((b.strip() for b in reversed(lines[:i]) if b.strip()), "")
        if found and before in _CHAINED:
            found[-1] = last
        else:
            found.append(last)
    return found


def without_job_logs(output: str) -> str:
    """Snakemake's output without the failed jobs' logs it repeats (``show-failed-logs``:
    "Logfile <log>:" and the log between two rules of "="): what Snakemake itself said."""
    kept, lines, i = [], output.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        ruled = i + 1 < len(lines) and set(lines[i + 1].strip()) == {"="}
        if line.startswith("Logfile ") and line.rstrip().endswith(":") and ruled:
            i += 2
            while i < len(lines) and set(lines[i].strip()) != {"="}:
                i += 1
        else:
            kept.append(line)
        i += 1
    return "\n".join(kept)


def names_a_file(line: str) -> bool:
    """Whether a message names a file (a path with a folder in it, or a quoted file name)."""
    return bool(_PATH.search(line))


# the causes of the faults injected, as the pipeline's ArtifactWriteError words them and as
# Python's OSError does (Snakemake's own messages)
CAUSES = {
    "disk full": ("the disk is full", "No space left on device"),
    "read-only": ("the file system is read-only", "Read-only file system"),
    "permission denied": ("permission denied", "Permission denied"),
}
# chaosgd.runs.artifacts.ArtifactWriteError: "<file>: <operation> failed: <cause>; <remedy>"
_NAMED = re.compile(r"(?P<path>\S*results/\S+?): (?P<operation>[^:;]+?) failed: (?P<cause>[^;]+)")


def named_fault(text: str, cause: str) -> tuple[str, str] | None:
    """How ``text`` (a job log and Snakemake's output) names a fault of kind ``cause`` (a key of
    :data:`CAUSES`): ("stage", line) for the pipeline's own message naming the file under
    ``results/``, the operation and the cause; ("snakemake", line) for a line that names a file
    under ``results/`` and the cause otherwise; None when no line does."""
    words = CAUSES[cause]
    other = None
    for line in text.splitlines():
        if not any(w in line for w in words) or "results/" not in line:
            continue
        match = _NAMED.search(line)
        if match and any(w in match["cause"] for w in words):
            return "stage", line.strip()
        other = other or ("snakemake", line.strip())
    return other


def job_counts(output: str) -> dict[str, int]:
    """Jobs per rule from the "Job stats" table Snakemake prints (empty: nothing to do)."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Job stats:":
            for row in lines[i + 3 :]:
                parts = row.split()
                if len(parts) != 2 or not parts[1].isdigit() or parts[0] == "total":
                    break
                counts[parts[0]] = int(parts[1])
            break
    return counts


@dataclass(frozen=True)
class Job:
    """One job of the workflow as ``snakemake --detailed-summary`` lists it: its rule, its log
    (which names it) and its outputs."""

    rule: str
    log: str
    outputs: tuple[str, ...]


def summary_jobs(text: str) -> list[Job]:
    """The jobs of a ``snakemake --detailed-summary`` table (tab-separated: output file, date,
    rule, log files, ...), one per log file, in the table's order."""
    jobs: dict[tuple[str, str], list[str]] = {}
    header = None
    for line in text.splitlines():
        cells = line.split("\t")
        if header is None:
            if cells[:1] == ["output_file"]:
                header = cells
            continue
        if len(cells) < 4:
            continue
        row = dict(zip(header, cells))
        key = (row["rule"], row["log-file(s)"])
        jobs.setdefault(key, []).append(row["output_file"])
    return [Job(rule, log, tuple(outputs)) for (rule, log), outputs in jobs.items()]
