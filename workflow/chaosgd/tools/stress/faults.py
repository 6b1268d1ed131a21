"""System faults in a scratch mount: a full disk and a read-only ``results/`` (before a run, and
in the middle of a job), each named by the failing job or Snakemake with nothing half-written,
and each followed by a rerun that recovers.

A small file system needs a mount, and a mount without root needs a private user and mount
namespace: the stress test re-executes itself under ``unshare`` (:func:`enter_namespace`),
where it may mount a tmpfs over a checkout's ``results/``, shrink it to what it holds and remount
it read-only. Where no namespace can be made, the full disk is skipped with the reason, and a
folder made read-only by its mode (``chmod``) stands in for the read-only mount, unless the test
runs as root, whom a mode does not stop.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from chaosgd.tools.stress.compare import Job, compare_results, named_fault, tracebacks
from chaosgd.tools.stress.runs import job_processes, recent_logs

NAMESPACE = "CHAOSGD_STRESS_NAMESPACE"  # set inside the namespace: do not enter it again
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
HEADROOM = 256 * 2**20  # a tmpfs's room while the results are copied into it


def unshare_argv() -> list[str]:
    """The ``unshare`` command for a private mount namespace: root needs no user namespace (and
    keeps being root outside it); anyone else becomes root of a user namespace of their own."""
    if os.geteuid() == 0:
        return ["unshare", "--mount", "--propagation", "private"]
    return ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]


def enter_namespace(argv: list[str]) -> str:
    """Re-execute ``python -m chaosgd.tools.stress argv`` in a private mount namespace and never
    return; or return why that cannot be done (or, inside it, that it is done)."""
    if os.environ.get(NAMESPACE):
        return ""
    if not sys.platform.startswith("linux"):
        return f"mounts in a private namespace need Linux, not {sys.platform}"
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux) to make a private mount namespace"
    try:
        probe = subprocess.run(
            [*unshare_argv(), "true"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    if probe.returncode != 0:
        return f"{' '.join(unshare_argv())} refused: {probe.stderr.strip()}"
    os.environ[NAMESPACE] = " ".join(unshare_argv())
    sys.stdout.flush()
    sys.stderr.flush()
    command = [*unshare_argv(), "--", sys.executable, "-m", "chaosgd.tools.stress", *argv]
    os.execvp(command[0], command)
    return "exec failed"  # not reached


def _mount(*args: str) -> str:
    """Run ``mount`` (or ``umount``); its error output, empty when it succeeded."""
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


def _used(path: Path) -> int:
    """Bytes in use on the file system of ``path``."""
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _pages(size: int) -> int:
    """``size`` bytes as a tmpfs holds them: whole pages."""
    return -(-size // PAGE) * PAGE


class Faults:
    """The fault tests in ``checkout`` (a copy of the reference checkout): each target job is
    picked by ``rng`` among ``jobs``."""

    def __init__(self, stress, checkout: Path, jobs: list[Job], rng: random.Random):
        self.stress, self.ledger = stress, stress.ledger
        self.checkout, self.results = checkout, checkout / "results"
        self.jobs, self.rng = jobs, rng
        self.mounted = False

    # -- the scratch mount -----------------------------------------------------------------

    def mount(self) -> str:
        """Put the checkout's results on a tmpfs of their own; why not, or empty."""
        if not os.environ.get(NAMESPACE):
            return ""
        aside = self.checkout / "results.disk"
        self.results.rename(aside)
        self.results.mkdir()
        size = _pages(sum(p.stat().st_size for p in aside.rglob("*") if p.is_file()))
        error = _mount(
            "mount", "-t", "tmpfs", "-o", f"size={size + HEADROOM}", "stress", str(self.results)
        )
        if error:
            self.results.rmdir()
            aside.rename(self.results)
            return f"mount -t tmpfs refused: {error}"
        self.mounted = True
        shutil.copytree(aside, self.results, symlinks=True, dirs_exist_ok=True)
        shutil.rmtree(aside)
        return ""

    def unmount(self, keep: bool) -> None:
        """Unmount the tmpfs; with ``keep``, its files are copied back to disk first."""
        if not self.mounted:
            return
        _mount("mount", "-o", "remount,rw", str(self.results))
        aside = self.checkout / "results.disk"
        if keep:
            shutil.copytree(self.results, aside, symlinks=True)
        _mount("umount", str(self.results))
        self.results.rmdir()
        if keep:
            aside.rename(self.results)
        self.mounted = False

    # -- one fault ---------------------------------------------------------------------------

    def _pick(self) -> Job:
        # a rule first, then one of its jobs: the figures' many jobs would crowd out the rest
        rule = self.rng.choice(sorted({j.rule for j in self.jobs}))
        return self.rng.choice([j for j in self.jobs if j.rule == rule])

    def _target(self, kind: str) -> Job:
        job = self._pick()
        for output in job.outputs:
            (self.checkout / output).unlink(missing_ok=True)
        self.ledger.faults[kind] += 1
        self.ledger.say(f"{kind}: the {job.rule} job of {job.log}")
        return job

    def _judge(self, kind: str, cause: str, job: Job, run) -> None:
        """A faulted run must fail, name the file and the cause, and leave no half-written
        output and no temporary file."""
        where = f"{kind} ({job.rule}, {job.log})"
        logs = recent_logs(self.checkout, run.started)
        self.stress.ledger.scan(where, logs, run.output)
        named = None if run.ok else named_fault(logs + "\n" + run.output, cause)
        with self.ledger.lock:
            self.ledger.fault_messages.append(
                {
                    "fault": kind,
                    "job": job.log,
                    "failed": not run.ok,
                    "named_by": named[0] if named else None,
                    "message": named[1] if named else None,
                }
            )
        if run.ok:
            self.ledger.notes.append(
                {"where": where, "note": "the job succeeded: the fault came too late, or fitted"}
            )
            return
        if named is None:
            raised = tracebacks(logs) or tracebacks(run.output)
            text = raised[-1] if raised else run.output[-1000:]
            self.ledger.escaped(where, "the fault is not named with its file", text)
        else:
            self.ledger.say(f"{kind}: named by {named[0]}: {named[1][:200]}")
        found = compare_results(self.stress.reference / "results", self.results, complete=False)
        self.ledger.compared_with(where, found, partial=True)
        # a writer removes its temporary file when the disk is full; on a read-only file system
        # it cannot (compared_with notes those)
        if found.temporary and cause == "disk full":
            self.ledger.escaped(where, "temporary files left behind", ", ".join(found.temporary))

    def _recover(self, kind: str, job: Job) -> None:
        run = self.stress.snakemake(self.checkout, f"{kind}-rerun", *job.outputs)
        self.stress.scan(f"{kind} (rerun)", self.checkout, run)
        if self.ledger.check(
            kind, "the rerun after the fault succeeds", run.ok, run.output[-3000:]
        ):
            self.stress.compare(f"{kind} (rerun)", self.checkout)

    def disk_full(self) -> None:
        """Shrink the tmpfs to what it holds plus a random part of one job's outputs."""
        kind, reference = "disk full", self.stress.reference
        job = self._target(kind)
        need = sum(_pages((reference / o).stat().st_size) for o in job.outputs)
        room = int(self.rng.uniform(0, 0.9) * need) // PAGE * PAGE
        error = _mount(
            "mount", "-o", f"remount,size={_used(self.results) + room}", str(self.results)
        )
        if not self.ledger.check(kind, "the tmpfs shrinks", not error, error):
            return
        run = self.stress.snakemake(self.checkout, "disk-full", *job.outputs)
        self._judge(kind, "disk full", job, run)
        error = _mount(
            "mount", "-o", f"remount,size={_used(self.results) + HEADROOM}", str(self.results)
        )
        if self.ledger.check(kind, "the tmpfs grows again", not error, error):
            self._recover(kind, job)

    def read_only_before(self) -> None:
        """Remount ``results/`` read-only before a run that must write there."""
        kind = "read-only results/ (before the run)"
        job = self._target(kind)
        error = _mount("mount", "-o", "remount,ro", str(self.results))
        if not self.ledger.check(kind, "remount read-only", not error, error):
            return
        run = self.stress.snakemake(self.checkout, "read-only-before", *job.outputs)
        _mount("mount", "-o", "remount,rw", str(self.results))
        self._judge(kind, "read-only", job, run)
        self._recover(kind, job)

    def read_only_during(self) -> None:
        """Remount ``results/`` read-only once a job has started (a file system that turns
        read-only on an error does so in the middle of a run)."""
        kind = "read-only results/ (during a job)"
        job = self._target(kind)
        command = self.stress.start(self.checkout, "read-only-during", *job.outputs)
        deadline = time.time() + 120
        while command.running() and not job_processes(self.checkout) and time.time() < deadline:
            time.sleep(0.02)
        error = _mount("mount", "-o", "remount,ro", str(self.results))
        # the kernel refuses while a file there is open for writing: try again until it is not
        while error and "busy" in error and command.running() and time.time() < deadline:
            time.sleep(0.02)
            error = _mount("mount", "-o", "remount,ro", str(self.results))
        run = command.wait(self.stress.timeout)
        _mount("mount", "-o", "remount,rw", str(self.results))
        if self.ledger.check(kind, "remount read-only", not error, error):
            self._judge(kind, "read-only", job, run)
        self._recover(kind, job)

    def permission_denied(self) -> str:
        """Without a namespace: the output folders of one job made read-only by their mode.
        Returns why it was skipped, or empty."""
        kind = "read-only folder (chmod)"
        job = self._pick()
        folders = sorted({(self.checkout / o).parent for o in job.outputs})
        modes = {f: f.stat().st_mode for f in folders}
        for folder in folders:
            folder.chmod(0o555)
        probe = folders[0] / ".stress-probe"
        try:
            probe.touch()
            probe.unlink()
            writable = True
        except OSError:
            writable = False
        if writable:
            for folder, mode in modes.items():
                folder.chmod(mode)
            return "a folder's mode does not stop this user (root) from writing"
        for output in job.outputs:
            (self.checkout / output).unlink(missing_ok=True)
        self.ledger.faults[kind] += 1
        run = self.stress.snakemake(self.checkout, "chmod", *job.outputs)
        for folder, mode in modes.items():
            folder.chmod(mode)
        self._judge(kind, "permission denied", job, run)
        self._recover(kind, job)
        return ""


def fault_tests(stress, jobs: list[Job], seed: int, outside: str, keep: bool) -> None:
    """Copy the reference checkout (Snakemake's records with it: up to date), inject the
    faults, and rerun it to completion. ``outside``: why no namespace could be entered."""
    ledger = stress.ledger
    checkout = stress.workdir / "faults"
    shutil.copytree(stress.reference, checkout, symlinks=True)
    dry = stress.snakemake(checkout, "copied-dry", "-n")
    ledger.check(
        "copied checkout", "snakemake -n: Nothing to be done", "Nothing to be done" in dry.output,
        dry.output[-2000:],
    )  # fmt: skip
    # a dataset job would rerun every job after it: the cost of a whole run, for one more writer
    targets = [j for j in jobs if j.rule not in ("all", "datasets_prepare")]
    faults = Faults(stress, checkout, targets, random.Random(f"{seed}:faults"))
    why = outside or faults.mount()
    try:
        if why:
            ledger.skipped["disk full"] = why
            ledger.skipped["read-only mount"] = why
            ledger.say(f"skipped the full disk and the read-only mount: {why}")
            skipped = faults.permission_denied()
            if skipped:
                ledger.skipped["read-only folder (chmod)"] = skipped
                ledger.say(f"skipped the read-only folder: {skipped}")
        else:
            faults.disk_full()
            faults.read_only_before()
            faults.read_only_during()
        run = stress.snakemake(checkout, "faults-final")
        stress.scan("faults, final rerun", checkout, run)
        if ledger.check("faults", "the final rerun completes", run.ok, run.output[-3000:]):
            stress.recovered("faults, final rerun", checkout, run)
    finally:
        faults.unmount(keep)
