"""The stress test's command line: the options, the order of the scenarios, the summary in
words and as JSON (the package's docstring says what each scenario does)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from chaosgd.tools.stress.compare import EXCLUSIONS
from chaosgd.tools.stress.faults import NAMESPACE, enter_namespace, fault_tests
from chaosgd.tools.stress.runs import copy_code
from chaosgd.tools.stress.scenarios import (
    Stress,
    archive_round_trip,
    in_thread,
    kill_rounds,
    make_reference,
    moved_checkout,
    reference_jobs,
)

REPO = Path(__file__).resolve().parents[4]
DEFAULT_CONFIG = "config/tiny.yaml"


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.tools.stress",
        description="Stress and fault test: runs killed at random moments side by side, a full "
        "disk and a read-only results/, a moved checkout, an archive round trip under a "
        "changed config; every recovery compared bit for bit with a clean run.",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="an empty or new folder for the scratch checkouts (default: a new temporary one)",
    )
    parser.add_argument("--configfile", default=DEFAULT_CONFIG, help="the config to run")
    parser.add_argument("--parallel", type=int, default=3, help="checkouts run side by side")
    parser.add_argument("--rounds", type=int, default=2, help="killed runs per checkout")
    parser.add_argument("--kills", type=int, default=2, help="most signals per killed run")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores of each run")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds any one command may take"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch checkouts")
    parser.add_argument(
        "--no-namespace",
        action="store_true",
        help="do not enter a private mount namespace: the full disk and the read-only mount are "
        "skipped (the fallback where unshare is refused)",
    )
    parser.add_argument("--summary", type=Path, help="write the summary as JSON here")
    return parser


def _config(name: str) -> tuple[Path, str]:
    """The config file, and its path inside a checkout: where it lies in this checkout, or
    ``config/<name>`` for one from elsewhere."""
    path = Path(name).expanduser()
    if not path.is_absolute() and not path.exists() and (REPO / path).exists():
        path = REPO / path
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"--configfile {name}: no such file")
    try:
        return path, path.relative_to(REPO).as_posix()
    except ValueError:
        return path, f"config/{path.name}"


def _workdir(given: Path | None) -> tuple[Path, bool]:
    """The scratch folder, and whether it was made here (and may be removed whole)."""
    if given is None:
        return Path(tempfile.mkdtemp(prefix="chaosgd-stress-")), True
    given = given.expanduser().resolve()
    if given.exists() and any(given.iterdir()):
        raise FileExistsError(f"--workdir {given}: not empty; name an empty or a new folder")
    made = not given.exists()
    given.mkdir(parents=True, exist_ok=True)
    return given, made


def report(summary: dict) -> str:
    """The summary in words."""
    s, lines = summary["settings"], []
    kills = summary["kills"]
    lines.append(
        f"chaosgd stress test: {s['configfile']}, {s['parallel']} checkouts x {s['rounds']} "
        f"rounds, seed {s['seed']}, --cores {s['cores']} on {s['cpus']} CPUs, "
        f"{summary['wall_seconds']:.0f} s"
    )
    runs = summary["runs"]
    lines.append(
        f"runs:       {runs['snakemake']} snakemake runs, {runs['dry_runs']} dry runs, "
        f"{runs['tools']} tool runs"
    )
    stages = ", ".join(f"{k} {v}" for k, v in summary["killed_jobs_by_stage"].items())
    lines.append(
        f"kills:      {sum(kills.values())}: "
        + (", ".join(f"{n} {sig}" for sig, n in kills.items()) or "none")
        + (f" (jobs: {stages})" if stages else "")
        + f"; {summary['kills_not_made']} more drawn but not made (the run ended first)"
    )
    lines.append(
        f"faults:     {sum(summary['faults'].values())}: "
        + (", ".join(f"{kind} {n}" for kind, n in summary["faults"].items()) or "none")
    )
    for f in summary["fault_messages"]:
        lines.append(
            f"  {f['fault']} ({f['job']}): "
            + (
                f"named by {f['named_by']}: {f['message'][:240]}"
                if f["named_by"]
                else ("NOT NAMED" if f["failed"] else "the job succeeded (not injected)")
            )
        )
    for kind, why in summary["skipped"].items():
        lines.append(f"skipped:    {kind}: {why}")
    c = summary["compared"]
    lines.append(
        f"compared:   {c['files']} files, {c['bytes']} bytes ({c['bytes'] / 2**20:.1f} MiB) in "
        f"{c['comparisons']} comparisons with the reference"
    )
    lines.append(f"mismatches: {len(summary['mismatches'])}")
    for m in summary["mismatches"][:20]:
        lines.append(f"  {m['where']}: {m['file']}: {m['why']}")
    lines.append(f"escapes:    {len(summary['escapes'])}")
    for e in summary["escapes"][:20]:
        lines.append(f"  {e['where']}: {e['kind']}: {e.get('file', '')}{e.get('text', '')[:300]}")
    lines.append(f"notes:      {len(summary['notes'])}")
    for n in summary["notes"][:20]:
        extra = n.get("text") or ", ".join(n.get("files", []))
        lines.append(f"  {n['where']}: {n['note']}" + (f": {extra[:300]}" if extra else ""))
    checks = summary["checks"]
    lines.append(f"checks:     {checks['passed']} passed, {len(checks['failed'])} failed")
    for f in checks["failed"][:20]:
        lines.append(f"  {f['where']}: {f['check']}: {f['detail'][-500:]}")
    lines.append("PASSED" if summary["ok"] else "FAILED")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the stress test from the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.parallel < 1 or args.rounds < 1 or args.kills < 1 or args.cores < 1:
        print("error: --parallel, --rounds, --kills and --cores must be 1 or more", file=sys.stderr)
        return 2
    # a full disk needs a mount of its own: re-executes this command under unshare, once
    outside = "--no-namespace given" if args.no_namespace else enter_namespace(argv)
    try:
        config, inside = _config(args.configfile)
        workdir, made = _workdir(args.workdir)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    # one snapshot of the code: a checkout edited while the test runs does not mix versions
    source = copy_code(REPO, workdir / "source")
    (source / inside).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(config, source / inside)
    stress = Stress(workdir, source, inside, args.cores, args.timeout)
    ledger = stress.ledger
    ledger.say(
        f"workdir {workdir}; "
        + (f"in a private mount namespace ({os.environ[NAMESPACE]})" if not outside else
           f"no private mount namespace: {outside}")
    )  # fmt: skip
    try:
        if make_reference(stress):
            jobs = reference_jobs(stress)
            checkouts = kill_rounds(stress, args.parallel, args.rounds, args.kills, args.seed)
            moved = moved_checkout(stress, checkouts[0])
            # an incomplete source would fail the archive's checks for the kills' sake; the
            # archive's commands and the faults' single jobs each keep one core busy: side by
            # side they take the time of the longer
            archive = in_thread(
                stress, "archive", archive_round_trip, stress, moved or stress.reference
            )
            fault_tests(stress, jobs, args.seed, outside, args.keep)
            archive.join()
    except KeyboardInterrupt:
        ledger.check("stress test", "runs to its end", False, "interrupted")
    except Exception:  # the summary must still be written
        ledger.check("stress test", "runs to its end", False, traceback.format_exc())
    finally:
        settings = {
            "configfile": args.configfile,
            "parallel": args.parallel,
            "rounds": args.rounds,
            "kills_per_run": args.kills,
            "seed": args.seed,
            "cores": args.cores,
            "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d"),
            "workdir": str(workdir) if args.keep else None,
            "namespace": os.environ.get(NAMESPACE) or None,
            "reference_seconds": round(stress.reference_seconds, 1),
            "excluded_from_bit_comparison": [
                {"file": f"results/{e.pattern}", "masked": e.masked, "reason": e.reason}
                for e in EXCLUSIONS
            ],
        }
        summary = ledger.summary(settings)
        print(report(summary))
        if args.summary:
            args.summary.parent.mkdir(parents=True, exist_ok=True)
            args.summary.write_text(json.dumps(summary, indent=2) + "\n")
        if args.keep:
            print(f"scratch checkouts kept in {workdir}")
        else:
            _remove(workdir, made)
    return 0 if summary["ok"] else 1


def _remove(workdir: Path, made: bool) -> None:
    """Remove what the test made under ``workdir`` (the folder too, if it made it)."""
    if made:
        shutil.rmtree(workdir, ignore_errors=True)
        return
    for child in workdir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
