"""The scenarios of the stress test: the clean reference, runs killed at random moments side
by side, a moved checkout, and an archive round trip under the same and a changed config."""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import signal
import threading
import time
import traceback
from pathlib import Path

import yaml

from chaosgd.tools.stale import load_config
from chaosgd.tools.stress.compare import compare_results, job_counts, summary_jobs
from chaosgd.tools.stress.runs import (
    NOTHING_TO_DO,
    Command,
    Finished,
    Ledger,
    copy_code,
    job_processes,
    recent_logs,
    snakemake_argv,
    tool_argv,
)

SIGNALS = (signal.SIGKILL, signal.SIGTERM)


class Stress:
    """The scratch area of one stress test: the code snapshot every checkout is copied from,
    the config (a path relative to a checkout), the reference, and the ledger."""

    def __init__(self, workdir: Path, source: Path, config: str, cores: int, timeout: float):
        self.workdir, self.source, self.config = workdir, source, config
        self.cores, self.timeout = cores, timeout
        self.ledger = Ledger()
        self.reference: Path | None = None
        self.reference_seconds = 0.0
        self.reference_jobs: dict[str, int] = {}
        self._labels = itertools.count(1)
        self._label_lock = threading.Lock()

    def checkout(self, name: str) -> Path:
        """A fresh scratch checkout ``workdir/name``: the code snapshot, no results."""
        return copy_code(self.source, self.workdir / name)

    def _log(self, label: str) -> Path:
        with self._label_lock:
            n = next(self._labels)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")
        return self.workdir / "output" / f"{n:03d}-{slug}.log"

    def start(self, checkout: Path, label: str, *args: str) -> Command:
        """Start Snakemake in ``checkout`` (counted as a run)."""
        self.ledger.ran("dry run" if "-n" in args else "snakemake")
        argv = snakemake_argv(*args, config=self.config, cores=self.cores)
        return Command(argv, checkout, self._log(label))

    def snakemake(self, checkout: Path, label: str, *args: str, config: str | None = None):
        """Run Snakemake in ``checkout`` to its end (or its time limit)."""
        self.ledger.ran("dry run" if "-n" in args else "snakemake")
        argv = snakemake_argv(*args, config=config or self.config, cores=self.cores)
        return Command(argv, checkout, self._log(label)).wait(self.timeout)

    def tool(self, checkout: Path, label: str, module: str, *args: str) -> Finished:
        """Run ``python -m chaosgd.<module>`` in ``checkout`` to its end."""
        self.ledger.ran("tool")
        return Command(tool_argv(module, *args), checkout, self._log(label)).wait(self.timeout)

    def compare(self, where: str, checkout: Path, complete: bool = True) -> bool:
        """Compare ``checkout``'s results with the reference; whether they agree."""
        found = compare_results(self.reference / "results", checkout / "results", complete)
        self.ledger.compared_with(where, found, partial=not complete)
        return not found.mismatches

    def recovered(self, where: str, checkout: Path, rerun: Finished) -> bool:
        """Compare a checkout after a rerun that succeeded; whether it is the reference's. A
        rerun that found nothing to do while outputs are missing is explained: Snakemake does
        not remake a missing output whose consumers are up to date (snakemake#1978)."""
        found = compare_results(self.reference / "results", checkout / "results")
        self.ledger.compared_with(where, found)
        missing = [f for f, why in found.mismatches if why == "missing"]
        if missing and NOTHING_TO_DO in rerun.output:
            with self.ledger.lock:
                self.ledger.notes.append(
                    {
                        "where": where,
                        "note": f"the rerun found nothing to do with {len(missing)} outputs "
                        "missing: Snakemake does not remake a missing output whose consumers "
                        "are up to date (snakemake/snakemake#1978), unless a target names it",
                        "files": missing[:20],
                    }
                )
        return not found.mismatches

    def scan(self, where: str, checkout: Path, run: Finished) -> None:
        """Look for escapes in a run's output and the job logs it wrote."""
        self.ledger.scan(where, recent_logs(checkout, run.started), run.output)


def make_reference(stress: Stress) -> bool:
    """Run the config once, undisturbed, in ``workdir/reference``; list its jobs."""
    ledger = stress.ledger
    checkout = stress.checkout("reference")
    ledger.say(f"reference: snakemake --cores {stress.cores} --configfile {stress.config}")
    run = stress.snakemake(checkout, "reference")
    stress.scan("reference", checkout, run)
    if not ledger.check("reference", "the clean run succeeds", run.ok, run.output[-4000:]):
        return False
    stress.reference, stress.reference_seconds = checkout, run.seconds
    stress.reference_jobs = job_counts(run.output)
    ledger.say(f"reference: {sum(stress.reference_jobs.values())} jobs in {run.seconds:.0f} s")
    return True


def reference_jobs(stress: Stress):
    """The reference's jobs and their outputs (``snakemake --detailed-summary``)."""
    run = stress.snakemake(stress.reference, "summary", "--detailed-summary")
    jobs = summary_jobs(run.output)
    stress.ledger.check("reference", "snakemake --detailed-summary lists the jobs", bool(jobs))
    return jobs


def kill_rounds(stress: Stress, parallel: int, rounds: int, kills: int, seed: int) -> list[Path]:
    """``parallel`` checkouts side by side, each for ``rounds`` rounds: a run whose jobs get
    SIGKILL or SIGTERM at random moments, then a rerun to completion, compared with the
    reference. Returns the checkouts."""
    checkouts = [stress.checkout(f"kill-{i}") for i in range(parallel)]
    threads = [
        in_thread(
            stress,
            f"kill-{i}",
            _kill_checkout,
            stress,
            checkouts[i],
            rounds,
            kills,
            random.Random(f"{seed}:{i}"),
        )
        for i in range(parallel)
    ]
    for thread in threads:
        thread.join()
    return checkouts


def in_thread(stress: Stress, name: str, function, *args) -> threading.Thread:
    """Start ``function(*args)`` in a thread; an exception in it is a failed check, with its
    traceback, rather than a line on stderr that the summary would not show."""

    def run():
        try:
            function(*args)
        except Exception:  # the summary must still be written
            stress.ledger.check(name, "runs to its end", False, traceback.format_exc())

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def _kill_checkout(stress, checkout, rounds, kills, rng) -> None:
    ledger, name = stress.ledger, checkout.name
    rules = sorted(r for r in stress.reference_jobs if r not in ("all", "datasets_prepare"))
    for round_ in range(1, rounds + 1):
        where = f"{name} round {round_}"
        args = ["--keep-going"]
        if round_ > 1:
            # a later round reruns one rule's jobs and what follows them, not everything
            forced = rng.choice(rules)
            args += ["--forcerun", forced]
            ledger.say(f"{where}: --forcerun {forced}")
        command = stress.start(checkout, f"{name}-r{round_}-killed", *args)
        _kill_jobs(stress, command, rng.randint(1, kills), rng, where)
        run = command.wait(stress.timeout)
        stress.scan(f"{where} (killed run)", checkout, run)
        if run.rc is None:
            ledger.check(where, "the killed run ends in time", False, run.output[-3000:])
        # a killed job's outputs are removed by Snakemake; what is there must be whole
        stress.compare(f"{where} (after the kills)", checkout, complete=False)
        rerun = stress.snakemake(checkout, f"{name}-r{round_}-rerun")
        stress.scan(f"{where} (rerun)", checkout, rerun)
        if ledger.check(where, "the rerun completes", rerun.ok, rerun.output[-4000:]):
            ledger.say(f"{where}: rerun in {rerun.seconds:.0f} s")
            if not stress.recovered(f"{where} (rerun)", checkout, rerun):
                _restore(stress, checkout, f"{name}-r{round_}", where)


def _restore(stress: Stress, checkout: Path, label: str, where: str) -> None:
    """After a rerun that left outputs missing (recorded as mismatches), remake them by naming
    them as targets, so that the next round, the move and the archive start from whole results;
    whether that recovers is checked and compared too."""
    found = compare_results(stress.reference / "results", checkout / "results")
    missing = [f"results/{f}" for f, why in found.mismatches if why == "missing"]
    if not missing:
        return
    stress.ledger.say(f"{where}: remaking the {len(missing)} missing outputs by name")
    run = stress.snakemake(checkout, f"{label}-targets", *missing)
    stress.scan(f"{where} (rerun naming the missing outputs)", checkout, run)
    if stress.ledger.check(
        where, "a rerun naming the missing outputs completes", run.ok, run.output[-3000:]
    ):
        stress.compare(f"{where} (rerun naming the missing outputs)", checkout)


# the longest a kill waits into its job: most jobs of a small config last a few seconds
KILL_DELAY = 3.0


def _kill_jobs(stress: Stress, command: Command, kills: int, rng, where: str) -> None:
    """Signal ``kills`` jobs of a run: the moments are picked as the i-th job to start (i drawn
    from the jobs Snakemake schedules) and a delay into it, so that they fall within the run
    however fast the machine is; the signal is SIGKILL or SIGTERM."""
    ledger, checkout = stress.ledger, command.checkout
    while command.running() and "Job stats:" not in command.log.read_text(errors="replace"):
        time.sleep(0.1)
    scheduled = job_counts(command.log.read_text(errors="replace"))
    total = sum(n for rule, n in scheduled.items() if rule != "all")
    picks = sorted(rng.sample(range(total), min(kills, total)))
    delays = [rng.uniform(0, KILL_DELAY) for _ in picks]
    started: dict[int, tuple[float, str]] = {}  # every job seen, by pid: when, what
    for index, delay in zip(picks, delays):
        victim = None
        while command.running() and victim is None:
            for pid, what in job_processes(checkout):
                started.setdefault(pid, (time.time(), what))
            if len(started) > index:
                pid = list(started)[index]
                if time.time() >= started[pid][0] + delay or not _alive(pid):
                    victim = pid
            time.sleep(0.05)
        if victim is None:  # the run ended first (a failed job stops what follows it)
            with ledger.lock:
                ledger.missed_kills += 1
            continue
        if not _alive(victim):  # it ended before its moment: any job running now instead
            running = job_processes(checkout)
            victim = rng.choice(running)[0] if running else None
        sig = rng.choice(SIGNALS)
        what = started.get(victim, (0, ""))[1] or "a job"
        try:
            if victim is None:
                raise ProcessLookupError
            os.kill(victim, sig)
        except ProcessLookupError:
            with ledger.lock:
                ledger.missed_kills += 1
            continue
        ledger.killed(sig, what.split()[0])
        ledger.say(f"{where}: {sig.name} to {what} at {time.time() - command.started:.1f} s")


def _alive(pid: int) -> bool:
    """Whether a process still runs (a zombie, waiting for its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def moved_checkout(stress: Stress, checkout: Path) -> Path | None:
    """Move a finished checkout elsewhere: a dry run finds nothing to do, a run runs no job,
    and the results are still the reference's. Returns the new place if they are."""
    ledger = stress.ledger
    ledger.faults["checkout moved"] += 1
    target = stress.workdir / "moved" / checkout.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(checkout, target)
    ledger.say(f"moved {checkout} -> {target}")
    dry = stress.snakemake(target, "moved-dry", "-n")
    ledger.check("moved checkout", "snakemake -n: Nothing to be done", _nothing(dry), dry.output)
    run = stress.snakemake(target, "moved-run")
    stress.scan("moved checkout", target, run)
    ledger.check("moved checkout", "a run runs no job", _nothing(run), run.output[-3000:])
    return target if stress.compare("moved checkout", target) else None


def _nothing(run: Finished) -> bool:
    return run.ok and NOTHING_TO_DO in run.output and not job_counts(run.output)


def archive_round_trip(stress: Stress, source: Path) -> None:
    """Export ``source``'s results; import them into a fresh checkout under the same config
    (nothing to do, the reference's files) and into another under a config with another
    learning rate (the import refuses, the Snakefile stops on the imported runs, and once the
    stale tool moved them aside exactly the jobs that the rate shapes are scheduled)."""
    ledger = stress.ledger
    packed = stress.workdir / "results.tar.gz"
    run = stress.tool(source, "archive-export", "tools.archive", "export", str(packed))
    if not ledger.check("archive", "export", run.ok, run.output):
        return
    same = stress.checkout("import-same")
    run = stress.tool(
        same,
        "archive-import",
        "tools.archive",
        "import",
        str(packed),
        "--configfile",
        stress.config,
    )
    if ledger.check("archive, same config", "import --configfile accepts it", run.ok, run.output):
        dry = stress.snakemake(same, "import-same-dry", "-n")
        ledger.check("archive, same config", "Nothing to be done", _nothing(dry), dry.output)
        run = stress.snakemake(same, "import-same-run")
        stress.scan("archive, same config", same, run)
        ledger.check("archive, same config", "a run runs no job", _nothing(run), run.output)
        stress.compare("archive, same config", same)

    ledger.faults["archive under a changed config"] += 1
    changed = stress.checkout("import-changed")
    config, lr = _changed_config(changed, stress.config)
    where = f"archive, lr {lr[0]} -> {lr[1]}"
    run = stress.tool(
        changed, "archive-import-changed", "tools.archive", "import", str(packed),
        "--configfile", config,
    )  # fmt: skip
    runs = sorted(p.name for p in (stress.reference / "results" / "train").iterdir())
    named = all(f"results/train/{r}/: lr" in run.output for r in runs)
    ledger.check(
        where, "import --configfile refuses, naming every run and lr", not run.ok and named,
        run.output,
    )  # fmt: skip
    ledger.check(
        where, "the refused import wrote nothing", not (changed / "results").exists(), run.output
    )
    run = stress.tool(changed, "archive-import-plain", "tools.archive", "import", str(packed))
    if not ledger.check(where, "import without --configfile", run.ok, run.output):
        return
    dry = stress.snakemake(changed, "import-changed-dry", "-n", config=config)
    stress.scan(where, changed, dry)
    named = all(f"results/train/{r}/: lr" in dry.output for r in runs)
    ledger.check(
        where, "Snakemake stops, naming every imported run and lr", not dry.ok and named, dry.output
    )
    moved = stress.tool(changed, "stale-move", "tools.stale", "--configfile", config, "--move")
    if not ledger.check(where, "chaosgd.tools.stale --move", moved.ok, moved.output):
        return
    dry = stress.snakemake(changed, "import-changed-dry2", "-n", config=config)
    # the rate shapes every run and all that reads them; the dataset it does not
    expected = {r: n for r, n in stress.reference_jobs.items() if r != "datasets_prepare"}
    got = job_counts(dry.output)
    ledger.check(
        where,
        "after the move, exactly the jobs lr shapes are scheduled",
        dry.ok and got == expected,
        f"scheduled {got}, expected {expected}\n{dry.output[-2000:]}",
    )


def _changed_config(checkout: Path, config: str) -> tuple[str, tuple[float, float]]:
    """Write beside the checkout's ``config`` a copy with twice its learning rate; its path
    relative to the checkout, and the (old, new) rate."""
    path = checkout / config
    settings = yaml.safe_load(path.read_text()) or {}
    old = load_config([str(path)])["training"]["lr"]
    new = old * 2
    settings.setdefault("training", {})["lr"] = new
    changed = Path(config).with_name(f"{Path(config).stem}-lr{new:g}.yaml")
    (checkout / changed).write_text(yaml.safe_dump(settings, sort_keys=False))
    return changed.as_posix(), (old, new)
