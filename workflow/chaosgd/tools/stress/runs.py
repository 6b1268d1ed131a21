"""Scratch checkouts, Snakemake and the tools run in them with time limits, their jobs found in
``/proc``, and the ledger that counts what the stress test did and found."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from chaosgd.tools.stress.compare import Comparison, names_a_file, tracebacks, without_job_logs

# what a run needs of a checkout (the rest, docs and tests, it never reads); the workflow's
# profile too, as it sets rerun-incomplete and the failed logs that Snakemake prints
CHECKOUT = ("Snakefile", "pyproject.toml", "workflow", "config", "profiles", "envs")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
NOTHING_TO_DO = "Nothing to be done"


def copy_code(source: Path, dest: Path) -> Path:
    """Copy what a run needs of the checkout ``source`` (:data:`CHECKOUT`) to ``dest``."""
    dest.mkdir(parents=True)
    for name in CHECKOUT:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=IGNORED)
        elif src.is_file():
            shutil.copy2(src, dest / name)
        elif name in ("Snakefile", "workflow"):
            raise FileNotFoundError(f"{src}: not found; run the stress test from a checkout")
    return dest


def environment(checkout: Path) -> dict[str, str]:
    """The environment of everything run in ``checkout``: this interpreter's ``python`` and
    ``snakemake`` first on the PATH, the checkout's own package on PYTHONPATH (its jobs must
    import its code, not an installed copy), one BLAS thread per job unless the caller says
    otherwise (N workflows share the machine)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(checkout / "workflow")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("PYTHONHASHSEED", "0")
    return env


@dataclass
class Finished:
    """A finished command: exit status (None: it ran out of time and was killed), its output,
    its wall time in seconds and when it started (``time.time()``)."""

    rc: int | None
    output: str
    seconds: float
    started: float

    @property
    def ok(self) -> bool:
        """Whether it exited with status 0."""
        return self.rc == 0


class Command:
    """A command started in a checkout in its own session (so that a timeout ends it and every
    process it started), its output written to ``log``."""

    def __init__(self, argv: list[str], checkout: Path, log: Path):
        self.checkout, self.log = checkout, log
        log.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=checkout,
                env=environment(checkout),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def running(self) -> bool:
        """Whether the command is still running."""
        return self.proc.poll() is None

    def wait(self, timeout: float) -> Finished:
        """Wait up to ``timeout`` seconds, then end it (and its jobs) and say so."""
        try:
            rc = self.proc.wait(timeout=max(timeout - (time.time() - self.started), 1))
        except subprocess.TimeoutExpired:
            self.stop()
            rc = None
        output = self.log.read_text(errors="replace")
        if rc is None:
            output += f"\n[stress] ran out of its {timeout:.0f} s and was killed\n"
        return Finished(rc, output, time.time() - self.started, self.started)

    def stop(self) -> None:
        """End the command's session and every job still running in its checkout."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        self.proc.wait()
        for pid, _ in job_processes(self.checkout):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def snakemake_argv(*args: str, config: str, cores: int) -> list[str]:
    """A Snakemake command line on the checkout's Snakefile; ``--configfile`` last, as it takes
    every word after it."""
    snakemake = str(Path(sys.executable).parent / "snakemake")
    return [snakemake, "-s", "Snakefile", "--cores", str(cores), *args, "--configfile", config]


def tool_argv(module: str, *args: str) -> list[str]:
    """``python -m chaosgd.<module> ...`` with this interpreter."""
    return [sys.executable, "-m", f"chaosgd.{module}", *args]


def job_processes(checkout: Path) -> list[tuple[int, str]]:
    """The running jobs of a checkout: each ``python -m chaosgd.<stage>`` process (the job
    itself, not the shell around it) whose working directory is ``checkout``, with its stage
    and run (pid, "<stage> <run id or output>"), from Linux's ``/proc``."""
    found = []
    try:
        target = checkout.resolve()
    except OSError:
        return found
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) != target:
                continue
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        pairs = dict(zip(argv, argv[1:]))
        stage = pairs.get("-m", "")
        if stage.startswith("chaosgd.") and not stage.startswith("chaosgd.tools"):
            outputs = (v for k, v in pairs.items() if k.startswith("--out"))
            what = pairs.get("--run-id") or pairs.get("--name") or next(outputs, "")
            found.append((int(entry.name), f"{stage.removeprefix('chaosgd.')} {what}"))
    return sorted(found)


def recent_logs(checkout: Path, since: float) -> str:
    """The job logs under ``checkout/logs`` written since ``since``, each after its name."""
    parts = []
    logs = checkout / "logs"
    for path in sorted(logs.rglob("*.log")) if logs.is_dir() else []:
        try:
            if path.stat().st_mtime >= since - 1:
                parts.append(f"==> {path.relative_to(checkout)} <==\n{path.read_text('utf-8')}")
        except (OSError, UnicodeDecodeError):
            continue
    return "\n".join(parts)


class Ledger:
    """What the stress test did and found, counted from several threads at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = time.time()
        self.runs = collections.Counter()  # snakemake, dry runs, tools
        self.kills = collections.Counter()  # by signal name
        self.killed_stages = collections.Counter()
        self.missed_kills = 0
        self.faults = collections.Counter()
        self.fault_messages: list[dict] = []  # how each injected fault was reported
        self.skipped: dict[str, str] = {}
        self.compared = collections.Counter()  # comparisons, files, bytes
        self.mismatches: list[dict] = []
        self.escapes: list[dict] = []
        self.notes: list[dict] = []
        self.checks: list[dict] = []

    def say(self, text: str) -> None:
        """Print a progress line with the seconds since the start."""
        with self.lock:
            print(f"[stress {time.time() - self.started:6.0f}s] {text}", file=sys.stderr)

    def check(self, where: str, what: str, ok: bool, detail: str = "") -> bool:
        """Record a check; returns ``ok``."""
        with self.lock:
            self.checks.append({"where": where, "check": what, "ok": ok, "detail": detail})
        if not ok:
            self.say(f"FAILED {where}: {what}: {detail[-2000:]}")
        return ok

    def ran(self, kind: str) -> None:
        """Count a command run (``snakemake``, ``dry run``, ``tool``)."""
        with self.lock:
            self.runs[kind] += 1

    def killed(self, sig: signal.Signals, stage: str) -> None:
        """Count a signal sent to a job of ``stage``."""
        with self.lock:
            self.kills[sig.name] += 1
            self.killed_stages[stage] += 1

    def compared_with(self, where: str, found: Comparison, partial: bool = False) -> None:
        """Count a comparison with the reference; its mismatches (after a failed run, with
        ``partial``: half-written or foreign outputs, which escaped) and leftover files."""
        with self.lock:
            self.compared.update(comparisons=1, files=found.files, bytes=found.bytes)
            for relative, why in found.mismatches:
                entry = {"where": where, "file": f"results/{relative}", "why": why}
                if partial:
                    self.escapes.append({**entry, "kind": "half-written or foreign output"})
                else:
                    self.mismatches.append(entry)
            if found.temporary:
                self.notes.append(
                    {
                        "where": where,
                        "note": "hidden temporary files left under results/ (never read as "
                        "outputs; a killed writer without a SIGTERM handler cannot remove its own)",
                        "files": found.temporary[:20],
                    }
                )
        for relative, why in found.mismatches:
            self.say(f"{'ESCAPE' if partial else 'MISMATCH'} {where}: results/{relative}: {why}")

    def scan(self, where: str, text: str, snakemake: str = "") -> None:
        """Record what escaped in a job log or Snakemake's output: a Python traceback in a job
        log (a stage turns every error into one line naming the file), or one of Snakemake's
        own that names no file; a Snakemake traceback that names the file is a note."""
        with self.lock:
            for last in tracebacks(text):
                self.escapes.append(
                    {"where": where, "kind": "traceback in a job log", "text": last}
                )
            for last in tracebacks(without_job_logs(snakemake)):
                entry = {"where": where, "text": last}
                if names_a_file(last):
                    self.notes.append(
                        {**entry, "note": "Snakemake's own traceback (names the file)"}
                    )
                else:
                    self.escapes.append({**entry, "kind": "Snakemake traceback naming no file"})

    def escaped(self, where: str, kind: str, text: str) -> None:
        """Record an escape of another kind (a fault not named, a half-written output)."""
        with self.lock:
            self.escapes.append({"where": where, "kind": kind, "text": text})
        self.say(f"ESCAPE {where}: {kind}: {text[:300]}")

    def failed(self) -> list[dict]:
        """The checks that failed."""
        return [c for c in self.checks if not c["ok"]]

    def summary(self, settings: dict) -> dict:
        """Everything counted, as a JSON-ready dict; ``ok`` is False if anything failed."""
        ok = not (self.mismatches or self.escapes or self.failed())
        return {
            "ok": ok,
            "settings": settings,
            "wall_seconds": round(time.time() - self.started, 1),
            "runs": {
                "snakemake": self.runs["snakemake"],
                "dry_runs": self.runs["dry run"],
                "tools": self.runs["tool"],
            },
            "kills": dict(sorted(self.kills.items())),
            "killed_jobs_by_stage": dict(sorted(self.killed_stages.items())),
            "kills_not_made": self.missed_kills,
            "faults": dict(sorted(self.faults.items())),
            "fault_messages": self.fault_messages,
            "skipped": self.skipped,
            "compared": {
                "comparisons": self.compared["comparisons"],
                "files": self.compared["files"],
                "bytes": self.compared["bytes"],
            },
            "mismatches": self.mismatches,
            "escapes": self.escapes,
            "notes": self.notes,
            "checks": {"passed": len(self.checks) - len(self.failed()), "failed": self.failed()},
        }
