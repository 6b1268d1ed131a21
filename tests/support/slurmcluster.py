"""A throwaway single-node SLURM cluster for tests.

Starts Debian's SLURM daemons (slurmctld, slurmd, slurmdbd), munge and a
MariaDB server from a temporary folder, with one partition and one generic
resource ``gpu`` of count 1, so that GPU jobs can be scheduled on a machine
without a GPU (the GPU is only a scheduling token: nothing in the job sees a
real device). ``sacct`` answers because accounting goes through slurmdbd.

Usage::

    ok, reason = slurm_available()
    if not ok:
        pytest.skip(reason)
    with SlurmCluster() as cluster:
        cluster.run(["sbatch", "--gpus=1", "--wrap", "true"])  # or env=cluster.env
        cluster.wait_jobs_done()
        rows = cluster.sacct()  # [{"JobID": "1", "State": "COMPLETED", ...}]

As a pytest fixture::

    @pytest.fixture(scope="session")
    def slurm_cluster():
        ok, reason = slurm_available()
        if not ok:
            pytest.skip(reason)
        with SlurmCluster() as cluster:
            yield cluster

Requirements: Linux, root (SlurmUser=root, and /etc/slurm is written, see
below), and the packages that ``.ci/slurm-install`` installs.

Why /etc/slurm is touched: the Snakemake SLURM job step clears every
``SLURM_*`` variable, ``SLURM_CONF`` included, before calling ``srun``, which
then only finds the default ``/etc/slurm/slurm.conf``. The cluster therefore
links ``/etc/slurm/{slurm.conf,gres.conf,slurmdbd.conf}`` to its generated
files while it runs and puts back whatever was there before when it stops.
Because those paths are machine-wide, only one cluster runs at a time per
machine (a file lock serialises them).

Clean-up guarantees: every daemon is started by this module, recorded by PID
and stopped by that PID only (slurmd first, then slurmctld, slurmdbd,
MariaDB and munge); leftover job processes are recognised by a marker
variable in their environment, never by name. SIGTERM/SIGHUP are turned
into exceptions while a cluster runs, so that the normal ``finally`` clean-up
happens; if the owning process is killed outright (SIGKILL), a small watchdog
process started with the cluster does the same clean-up within a second or
two, and a state file lets the next cluster finish it should even that fail. Every wait has a timeout, and a daemon
that fails to start raises ``SlurmClusterError`` with the tail of its log.

Facts behind the settings: shared/notes/local-slurm.md ("pitfall N" below).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import fcntl
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

__all__ = ["SlurmCluster", "SlurmClusterError", "slurm_available", "SACCT_FIELDS"]

# Programs the cluster runs; their absence makes slurm_available() say no.
REQUIRED_PROGRAMS = (
    "munged",
    "munge",
    "unmunge",
    "mariadbd",
    "mariadb-install-db",
    "slurmdbd",
    "slurmctld",
    "slurmd",
    "sbatch",
    "srun",
    "squeue",
    "scancel",
    "sacct",
    "sacctmgr",
    "scontrol",
    "sinfo",
)

ETC_SLURM = Path("/etc/slurm")
# Config files that must be found at their default path (pitfall 2).
LINKED_CONFIGS = ("slurm.conf", "gres.conf", "slurmdbd.conf")

# Machine-wide: /etc/slurm can only point at one cluster at a time.
LOCK_FILE = Path(tempfile.gettempdir()) / "slurmcluster.lock"
STATE_FILE = Path(tempfile.gettempdir()) / "slurmcluster.state.json"
REAPER_LOG = Path(tempfile.gettempdir()) / "slurmcluster.reaper.log"

# Environment variable put into every process the cluster starts (and, via
# cluster.env and `sbatch --export=ALL`, into its jobs) to recognise strays.
MARKER_VAR = "SLURMCLUSTER_ROOT"

SACCT_FIELDS = (
    "JobID",
    "JobName",
    "State",
    "ExitCode",
    "Partition",
    "AllocTRES",
    "ReqTRES",
    "Submit",
    "Start",
    "End",
    "Elapsed",
    "TimelimitRaw",
    "ReqMem",
    "Comment",
)

# InnoDB settings that cut MariaDB set-up from ~5 s of fsyncs to ~1 s: the data
# only has to live as long as the test, so durability is not needed.
MARIADB_FAST_OPTS = (
    "--innodb-buffer-pool-size=16M",
    "--innodb-log-file-size=4M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--innodb-flush-method=nosync",
    "--skip-log-bin",
)


class SlurmClusterError(RuntimeError):
    """The test cluster could not be started, queried or stopped."""


# --------------------------------------------------------------------------
# Availability check
# --------------------------------------------------------------------------


def slurm_available() -> tuple[bool, str]:
    """Say whether a SlurmCluster can run here, and if not, why.

    Returns (True, "") or (False, reason), the reason fit for pytest.skip.
    """
    if not sys.platform.startswith("linux"):
        return False, f"SLURM test cluster needs Linux, this is {sys.platform}"
    missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
    if missing:
        return False, (
            "SLURM/munge/MariaDB programs not installed (missing: "
            + ", ".join(missing)
            + "); run .ci/slurm-install"
        )
    if os.geteuid() != 0:
        # SlurmUser=root and the links in /etc/slurm need root.
        return False, "SLURM test cluster needs root (SlurmUser=root, /etc/slurm links)"
    return True, ""


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, lines: int = 25) -> str:
    """Last lines of a text file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path} is empty)"


def _pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The state letter follows the ")" that closes the command name.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _read_environ(pid: int) -> dict[str, str]:
    """A process's environment, or {} if it is gone or unreadable."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def _processes_marked(root: str) -> list[int]:
    """PIDs of live processes whose environment carries the marker for root."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        if _read_environ(pid).get(MARKER_VAR) == root and _pid_alive(pid):
            found.append(pid)
    return found


def _kill_pid(pid: int, sig: int) -> None:
    """Send a signal to one PID, ignoring that it may already be gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    failed: Callable[[], str | None] = lambda: None,
    interval: float = 0.2,
) -> None:
    """Poll check() until it is true; raise SlurmClusterError on timeout.

    failed() is polled too: a non-None return is a reason to give up at once
    (e.g. the daemon being waited for has exited).
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        reason = failed()
        if reason is not None:
            raise SlurmClusterError(f"{what}: {reason}")
        if time.monotonic() > deadline:
            raise SlurmClusterError(f"{what}: not done after {timeout:.0f} s")
        time.sleep(interval)


# --------------------------------------------------------------------------
# Daemons
# --------------------------------------------------------------------------


@dataclass
class Daemon:
    """One daemon process started in the foreground, owned by its PID."""

    name: str
    argv: list[str]
    log: Path  # the daemon's own log file
    out: Path  # its stdout/stderr (start-up errors often land only here)
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, env: dict[str, str]) -> None:
        """Start the daemon; its own session keeps a terminal's Ctrl-C from
        reaching it directly, so the stop order below is always ours."""
        with open(self.out, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def exited(self) -> str | None:
        """None while running; otherwise a message with the log tails."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"{self.name} exited with status {self.proc.returncode}\n{self.logs()}"

    def logs(self, lines: int = 25) -> str:
        """Tails of the daemon's log and output, for error messages."""
        parts = [f"--- {self.log} ---\n{_tail(self.log, lines)}"]
        if self.out.exists() and self.out.stat().st_size:
            parts.append(f"--- {self.out} ---\n{_tail(self.out, lines)}")
        return "\n".join(parts)

    def stop(self, grace: float) -> None:
        """SIGTERM, wait up to grace seconds, then SIGKILL; always reaps."""
        if self.proc is None or self.proc.poll() is not None:
            return
        _kill_pid(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _kill_pid(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


# --------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------


class SlurmCluster:
    """A single-node SLURM cluster with accounting and one fake GPU.

    Attributes once started: ``hostname`` (the node), ``partition`` (the
    default partition), ``cluster_name``, ``root`` (temporary folder with
    configs, state and logs), ``env`` (environment for SLURM clients and
    for Snakemake), ``daemons`` (name -> Daemon).
    """

    # Stop order (pitfall 6): slurmd before slurmctld, accounting after the
    # controller has flushed to it, munge last since all of them use it.
    STOP_ORDER = ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged")

    def __init__(
        self,
        partition: str = "snaketest",
        cluster_name: str = "snaketest",
        gpus: int = 1,
        start_timeout: float = 60.0,
        lock_timeout: float = 600.0,
        keep_root: bool | None = None,
    ) -> None:
        """keep_root keeps the temporary folder (logs) after stopping; by
        default it is kept only if SLURMCLUSTER_KEEP=1 is set."""
        self.partition = partition
        self.cluster_name = cluster_name
        self.gpus = gpus
        self.start_timeout = start_timeout
        self.lock_timeout = lock_timeout
        self.keep_root = (
            os.environ.get("SLURMCLUSTER_KEEP") == "1" if keep_root is None else keep_root
        )
        self.hostname = socket.gethostname().split(".")[0]
        self.root: Path | None = None
        self.env: dict[str, str] = {}
        self.daemons: dict[str, Daemon] = {}
        self.started_at: _dt.datetime | None = None
        self.ports: dict[str, int] = {}  # daemon -> TCP port, chosen at start
        self.munge_socket: Path | None = None
        self.slurm_conf: Path | None = None
        self._lock_fd: int | None = None
        self._links: list[dict[str, str | None]] = []
        self._made_etc_slurm = False
        self._old_handlers: dict[int, object] = {}
        self._reaper: subprocess.Popen | None = None
        self._reaper_pipe: int | None = None
        self._stopped = True
        # Seconds spent in each start-up step, for diagnosing slow starts.
        self.timings: dict[str, float] = {}

    # -- context manager ----------------------------------------------------

    def __enter__(self) -> "SlurmCluster":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- start --------------------------------------------------------------

    def start(self) -> "SlurmCluster":
        """Start all daemons and wait until the node is idle and sacct works.

        On any failure everything started so far is stopped again before the
        error propagates.
        """
        ok, reason = slurm_available()
        if not ok:
            raise SlurmClusterError(reason)
        self._stopped = False
        atexit.register(self.stop)
        self._install_signal_handlers()
        try:
            for step in (
                self._acquire_lock,
                self._clean_stale_state,
                self._prepare_root,
                self._write_configs,
                self._link_configs,
                self._save_state,
                self._start_reaper,
                self._start_munge,
                self._start_mariadb,
                self._start_slurmdbd,
                self._start_slurmctld,
                self._start_slurmd,
                self._wait_accounting_ready,
            ):
                t0 = time.monotonic()
                step()
                self.timings[step.__name__.lstrip("_")] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def _install_signal_handlers(self) -> None:
        """Turn SIGTERM/SIGHUP into SystemExit so that finally-blocks (and
        thus stop()) run when the test runner is terminated."""
        if threading.current_thread() is not threading.main_thread():
            return

        def _raise(signum, _frame):
            raise SystemExit(128 + signum)

        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, _raise)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    def _acquire_lock(self) -> None:
        """Take the machine-wide lock, waiting at most lock_timeout."""
        fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock_fd = fd
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise SlurmClusterError(
                        f"another SlurmCluster holds {LOCK_FILE} for over "
                        f"{self.lock_timeout:.0f} s"
                    ) from None
                time.sleep(0.5)

    def _prepare_root(self) -> None:
        """Make the temporary folder tree.

        Short path under /tmp: Unix socket paths must stay under 108 bytes.
        Mode 755 throughout: munged rejects a socket folder that others cannot
        traverse (pitfall 1).
        """
        self.root = Path(tempfile.mkdtemp(prefix="slurmcluster-", dir="/tmp"))
        for sub in ("", "etc", "log", "run", "munge", "state", "spool", "db"):
            (self.root / sub).mkdir(exist_ok=True)
            os.chmod(self.root / sub, 0o755)
        self.started_at = _dt.datetime.now().replace(microsecond=0)
        self.ports = {name: _free_port() for name in ("slurmctld", "slurmd", "slurmdbd", "mariadb")}
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.slurm_conf = self.root / "etc" / "slurm.conf"
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))
        }
        env["SLURM_CONF"] = str(self.slurm_conf)
        env[MARKER_VAR] = str(self.root)
        self.env = env

    # -- configuration ------------------------------------------------------

    def _write_configs(self) -> None:
        """Write munge key, fake GPU device, slurm.conf, gres.conf, slurmdbd.conf."""
        key = self.root / "munge" / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        os.chmod(key, 0o600)
        self.db_password = secrets.token_hex(12)
        gpu_files = [self._make_fake_gpu(i) for i in range(self.gpus)]
        etc = self.root / "etc"
        (etc / "slurm.conf").write_text(self._slurm_conf())
        (etc / "gres.conf").write_text(self._gres_conf(gpu_files))
        dbd = etc / "slurmdbd.conf"
        dbd.write_text(self._slurmdbd_conf())
        os.chmod(dbd, 0o600)  # slurmdbd refuses a world-readable file with a password

    def _make_fake_gpu(self, index: int) -> str:
        """A character device to stand in for /dev/nvidiaN.

        slurmd drops a GPU gres without File= and then drains the node. A
        fresh null-device node (c 1 3) is used; where mknod is not allowed
        (some containers), /dev/null itself serves.
        """
        path = self.root / "run" / f"fakegpu{index}"
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            return str(path)
        except OSError:
            return "/dev/null"

    def _node_line(self) -> str:
        """NodeName line from `slurmd -C`, so CPUs/memory match the machine
        (a node claiming more than it has is drained)."""
        out = subprocess.run(
            ["slurmd", "-C"], capture_output=True, text=True, timeout=30, env=self.env
        )
        first = out.stdout.splitlines()[0] if out.stdout else ""
        if not first.startswith("NodeName="):
            raise SlurmClusterError(f"`slurmd -C` gave no node line: {out.stdout}{out.stderr}")
        fields = first.split()[1:]
        return " ".join(
            [
                f"NodeName={self.hostname}",
                *fields,
                "NodeAddr=127.0.0.1",
                f"Gres=gpu:{self.gpus}",
                "State=UNKNOWN",
            ]
        )

    def _slurm_conf(self) -> str:
        r, p = self.root, self.ports
        return f"""\
# Generated by tests/slurmcluster.py for a throwaway single-node test cluster.
ClusterName={self.cluster_name}
SlurmctldHost={self.hostname}(127.0.0.1)
SlurmctldPort={p['slurmctld']}
SlurmdPort={p['slurmd']}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups in containers/without systemd.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
# Finished jobs stay visible to scontrol for 5 minutes.
MinJobAge=300
ReturnToService=2
SchedulerType=sched/backfill
MpiDefault=none
MailProg=/bin/true
InactiveLimit=0
KillWait=5
Waittime=0
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={p['slurmdbd']}
# slurmdbd connections ignore AuthInfo; this is how they find munge (pitfall 5).
AccountingStoragePass={self.munge_socket}
# Record GPUs in AllocTRES, and the job comment (the plugin puts the rule
# name there) in sacct.
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
{self._node_line()}
PartitionName={self.partition} Nodes={self.hostname} Default=YES MaxTime=INFINITE State=UP
"""

    def _gres_conf(self, gpu_files: Sequence[str]) -> str:
        lines = [
            "# Generated by tests/slurmcluster.py: fake GPUs (scheduling only).",
            "AutoDetect=off",
        ]
        lines += [f"NodeName={self.hostname} Name=gpu File={f}" for f in gpu_files]
        return "\n".join(lines) + "\n"

    def _slurmdbd_conf(self) -> str:
        r = self.root
        return f"""\
# Generated by tests/slurmcluster.py.
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.ports['slurmdbd']}
SlurmUser=root
PidFile={r}/run/slurmdbd.pid
LogFile={r}/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports['mariadb']}
StorageUser=slurm
StoragePass={self.db_password}
StorageLoc=slurm_acct_db
"""

    # -- /etc/slurm links -----------------------------------------------------

    def _link_configs(self) -> None:
        """Point /etc/slurm/<conf> at the generated files, keeping what was
        there under a backup name (pitfall 2)."""
        if not ETC_SLURM.exists():
            ETC_SLURM.mkdir(parents=True)
            self._made_etc_slurm = True
        for name in LINKED_CONFIGS:
            target = ETC_SLURM / name
            backup = None
            if target.exists() or target.is_symlink():
                backup = ETC_SLURM / f".{name}.slurmcluster-backup"
                if os.path.lexists(backup):  # never overwrite an earlier original
                    raise SlurmClusterError(f"{backup} exists; restore it to {target} first")
                os.rename(target, backup)
            entry = {
                "target": str(target),
                "backup": str(backup) if backup else None,
                "source": str(self.root / "etc" / name),
            }
            self._links.append(entry)
            os.symlink(entry["source"], target)
            self._save_state()  # after each change, so a hard kill can be undone

    @staticmethod
    def _unlink_configs(links: Iterable[dict], made_dir: bool) -> None:
        """Undo _link_configs: remove our links, put backups back."""
        for entry in reversed(list(links)):
            target = Path(entry["target"])
            if target.is_symlink() and os.readlink(target) == entry["source"]:
                target.unlink()
            backup = entry.get("backup")
            if backup and os.path.lexists(backup) and not os.path.lexists(target):
                os.rename(backup, target)
        if made_dir:
            with contextlib.suppress(OSError):
                ETC_SLURM.rmdir()  # only if empty

    # -- state file: recovery after a hard kill -------------------------------

    def _save_state(self) -> None:
        """Record what must be undone if this process dies without stop()."""
        state = {
            "owner_pid": os.getpid(),
            "root": str(self.root),
            "links": self._links,
            "made_etc_slurm": self._made_etc_slurm,
        }
        tmp = STATE_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, STATE_FILE)

    @classmethod
    def _clean_stale_state(cls) -> None:
        """Undo a cluster whose owner died without stopping it.

        Called with the lock held, so a state file here belongs to a dead
        owner. Its processes are found by the marker in their environment
        (proof that we started them) and killed by PID.
        """
        try:
            state = json.loads(STATE_FILE.read_text())
        except (OSError, ValueError):
            return
        root = state.get("root")
        if root:
            for pid in _processes_marked(root):
                _kill_pid(pid, signal.SIGKILL)
            shutil.rmtree(root, ignore_errors=True)
        cls._unlink_configs(state.get("links", []), state.get("made_etc_slurm", False))
        with contextlib.suppress(OSError):
            STATE_FILE.unlink()

    # -- reaper: clean-up when this process is killed outright ----------------

    def _start_reaper(self) -> None:
        """Start a watchdog process that undoes the cluster if this process
        dies without calling stop() (SIGKILL, a crash of the interpreter).

        It holds the read end of a pipe whose write end only this process
        has: end-of-file means we are gone; a byte b"x" means stop() finished
        and the watchdog can just exit. It runs in its own session, so
        killing the test runner's process group does not take it along.
        """
        read_fd, write_fd = os.pipe()
        env = {k: v for k, v in os.environ.items() if k != MARKER_VAR}
        with open(REAPER_LOG, "ab") as log:
            self._reaper = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--reap",
                    str(os.getpid()),
                    str(read_fd),
                ],
                pass_fds=(read_fd,),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        os.close(read_fd)
        os.set_inheritable(write_fd, False)
        self._reaper_pipe = write_fd

    def _stop_reaper(self) -> None:
        """Tell the watchdog that clean-up is done, and reap it."""
        if self._reaper_pipe is not None:
            with contextlib.suppress(OSError):
                os.write(self._reaper_pipe, b"x")
            os.close(self._reaper_pipe)
            self._reaper_pipe = None
        if self._reaper is not None:
            try:
                self._reaper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _kill_pid(self._reaper.pid, signal.SIGKILL)
                self._reaper.wait(timeout=10)
            self._reaper = None

    # -- starting each daemon --------------------------------------------------

    def _daemon(self, name: str, argv: list[str], log: str) -> Daemon:
        """Create, register and start a daemon."""
        d = Daemon(name, argv, self.root / "log" / log, self.root / "log" / f"{name}.out")
        self.daemons[name] = d
        d.start(self.env)
        return d

    def _start_munge(self) -> None:
        m = self.root / "munge"
        d = self._daemon(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={m / 'munge.key'}",
                f"--pid-file={self.root / 'run' / 'munged.pid'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={m / 'munged.seed'}",
            ],
            "munged.log",
        )
        _wait_until("munged start", self._munge_works, self.start_timeout, d.exited)

    def _munge_works(self) -> bool:
        """A credential encodes and decodes through our socket."""
        if not self.munge_socket.exists():
            return False
        sock = f"--socket={self.munge_socket}"
        enc = subprocess.run(["munge", sock, "-n"], capture_output=True, timeout=10)
        if enc.returncode != 0:
            return False
        dec = subprocess.run(["unmunge", sock], input=enc.stdout, capture_output=True, timeout=10)
        return dec.returncode == 0

    def _start_mariadb(self) -> None:
        """Initialise a data folder (with the slurm user) and start MariaDB on
        a loopback TCP port (slurmdbd has no socket-path setting)."""
        data = self.root / "db" / "data"
        sql = self.root / "db" / "init.sql"
        # Bootstrap mode runs one statement per line and needs grant tables
        # loaded (FLUSH PRIVILEGES) before CREATE USER works.
        sql.write_text(
            "FLUSH PRIVILEGES;\n"
            f"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{self.db_password}';\n"
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';\n"
        )
        install_log = self.root / "log" / "mariadb-install-db.log"
        argv = [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={data}",
            "--user=root",
            "--skip-test-db",
            "--skip-name-resolve",
            "--auth-root-authentication-method=socket",
            f"--extra-file={sql}",
            *MARIADB_FAST_OPTS,
        ]
        with open(install_log, "wb") as log:
            try:
                rc = subprocess.run(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    timeout=self.start_timeout,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        if rc != 0:
            raise SlurmClusterError(f"mariadb-install-db failed ({rc}):\n{_tail(install_log)}")
        d = self._daemon(
            "mariadbd",
            [
                "mariadbd",
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                f"--socket={self.root / 'run' / 'mariadb.sock'}",
                "--bind-address=127.0.0.1",
                f"--port={self.ports['mariadb']}",
                "--skip-name-resolve",
                f"--pid-file={self.root / 'run' / 'mariadbd.pid'}",
                f"--log-error={self.root / 'log' / 'mariadbd.log'}",
                *MARIADB_FAST_OPTS,
            ],
            "mariadbd.log",
        )
        _wait_until(
            "mariadbd start",
            lambda: _port_open(self.ports["mariadb"]),
            self.start_timeout,
            d.exited,
        )

    def _start_slurmdbd(self) -> None:
        d = self._daemon("slurmdbd", ["slurmdbd", "-D"], "slurmdbd.log")
        _wait_until(
            "slurmdbd start",
            lambda: _port_open(self.ports["slurmdbd"]),
            self.start_timeout,
            d.exited,
        )

    def _start_slurmctld(self) -> None:
        d = self._daemon(
            "slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.slurm_conf)], "slurmctld.log"
        )
        _wait_until(
            "slurmctld start",
            lambda: self._ok(["scontrol", "ping"], "UP"),
            self.start_timeout,
            d.exited,
        )

    def _start_slurmd(self) -> None:
        d = self._daemon(
            "slurmd",
            ["slurmd", "-D", "-f", str(self.slurm_conf), "-N", self.hostname],
            "slurmd.log",
        )

        def node_state() -> str:
            out = self._run(["sinfo", "-h", "-N", "-n", self.hostname, "-o", "%T"], check=False)
            return out.stdout.strip()

        def failed() -> str | None:
            died = d.exited()
            if died:
                return died
            state = node_state()
            if "drain" in state or state.startswith("down"):
                reason = self._run(["scontrol", "show", "node", self.hostname], check=False).stdout
                return f"node is {state}:\n{reason}\n{d.logs()}\n{self.daemons['slurmctld'].logs()}"
            return None

        try:
            _wait_until(
                "slurmd registration", lambda: node_state() == "idle", self.start_timeout, failed
            )
        except SlurmClusterError as e:
            if "not done after" in str(e):
                raise SlurmClusterError(f"{e}; node state {node_state()!r}\n{d.logs()}") from None
            raise

    def _wait_accounting_ready(self) -> None:
        """slurmctld registers the cluster in slurmdbd on its own; sacct only
        answers for it after that."""

        def registered() -> bool:
            out = self._run(
                ["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"], check=False
            )
            return self.cluster_name in out.stdout.split()

        _wait_until(
            "cluster registration in slurmdbd",
            registered,
            self.start_timeout,
            lambda: self.daemons["slurmdbd"].exited() or self.daemons["slurmctld"].exited(),
        )

    # -- running SLURM clients -------------------------------------------------

    def _run(
        self, argv: list[str], check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        """Run a SLURM client against this cluster."""
        try:
            res = subprocess.run(
                argv, capture_output=True, text=True, env=self.env, timeout=timeout
            )
        except subprocess.TimeoutExpired as e:
            raise SlurmClusterError(f"{' '.join(argv)} timed out after {timeout} s") from e
        if check and res.returncode != 0:
            raise SlurmClusterError(
                f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}"
            )
        return res

    def _ok(self, argv: list[str], expect: str) -> bool:
        res = self._run(argv, check=False, timeout=10)
        return res.returncode == 0 and expect in res.stdout

    def run(self, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client (sbatch, squeue, ...) against this cluster;
        raise SlurmClusterError if it fails."""
        return self._run(argv, timeout=timeout)

    # -- queries ------------------------------------------------------------

    def sacct(
        self, job_ids: Iterable[str | int] | None = None, fields: Sequence[str] = SACCT_FIELDS
    ) -> list[dict[str, str]]:
        """Accounting rows (one per job allocation, no steps) as dicts.

        job_ids: restrict to these jobs; None means every job since the
        cluster started. Each row also has "Rule": the Snakemake rule name,
        parsed from the comment the SLURM executor plugin gives its jobs
        ("rule_<name>" or "rule_<name>_wildcards_<...>"), else "".
        """
        fields = list(fields)
        if "Comment" in fields:  # last, so that a "|" inside it cannot shift columns
            fields.remove("Comment")
            fields.append("Comment")
        # -a: all users; -X: allocations only, no steps; -P -n: "|"-separated, no header.
        argv = ["sacct", "-a", "-X", "-P", "-n", "-o", ",".join(fields)]
        argv += ["-S", self.started_at.isoformat(), "-E", "now"]
        if job_ids is not None:
            ids = [str(j) for j in job_ids]
            if not ids:
                return []
            argv += ["-j", ",".join(ids)]
        rows = []
        for line in self._run(argv).stdout.splitlines():
            if not line.strip():
                continue
            row = dict(zip(fields, line.split("|", len(fields) - 1)))
            row["Rule"] = _rule_from_comment(row.get("Comment", ""))
            rows.append(row)
        return rows

    def scontrol_job(self, job_id: str | int) -> dict[str, str]:
        """`scontrol show job` as a dict (works for MinJobAge=300 s after the
        job ended). Values are split at spaces, fine for the keys tests need
        (JobState, TRES, TresPerJob, Comment, Partition)."""
        out = self._run(["scontrol", "-o", "show", "job", str(job_id)]).stdout
        return dict(re.findall(r"(\S+?)=(\S*)", out))

    def wait_jobs_done(self, timeout: float = 60) -> None:
        """Wait until the queue is empty (all jobs ended)."""
        _wait_until("jobs to finish", lambda: not self._queued_job_ids(), timeout)

    def _queued_job_ids(self) -> list[str]:
        """IDs of jobs slurmctld still holds as pending/running/completing."""
        return self._run(["squeue", "-h", "-o", "%i"], timeout=10).stdout.split()

    def daemon_pids(self) -> dict[str, int]:
        """name -> PID of every daemon this cluster started."""
        return {n: d.pid for n, d in self.daemons.items() if d.pid is not None}

    def leftover_processes(self) -> list[int]:
        """Live processes started by this cluster (daemons, job steps, jobs)."""
        pids = [p for p in self.daemon_pids().values() if _pid_alive(p)]
        if self.root is not None:
            pids += [p for p in _processes_marked(str(self.root)) if p not in pids]
        return pids

    # -- stop -----------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything this cluster started and undo its changes.

        Idempotent and exception-safe: every step runs even if an earlier one
        failed; the first error is re-raised at the end.
        """
        if self._stopped:
            return
        self._stopped = True
        errors: list[BaseException] = []

        def attempt(step: Callable[[], None]) -> None:
            try:
                step()
            except BaseException as e:  # keep cleaning up, report later
                errors.append(e)

        attempt(self._cancel_jobs)
        for name in self.STOP_ORDER:
            if name in self.daemons:
                # slurmd may ignore SIGTERM once slurmctld is gone (pitfall 6),
                # which is also why it goes first; it gets a short grace.
                attempt(lambda d=self.daemons[name]: d.stop(grace=5 if name == "slurmd" else 15))
        attempt(self._kill_strays)
        attempt(lambda: self._unlink_configs(self._links, self._made_etc_slurm))
        self._links = []
        if self._lock_fd is not None:  # else the state file is another cluster's
            attempt(lambda: STATE_FILE.unlink(missing_ok=True))
        if self.root is not None and not self.keep_root:
            attempt(lambda: shutil.rmtree(self.root, ignore_errors=True))
        attempt(self._release_lock)
        attempt(self._stop_reaper)
        self._restore_signal_handlers()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if errors:
            raise errors[0]

    def _cancel_jobs(self) -> None:
        """Cancel queued/running jobs while the controller is still up, so
        that no job step outlives the daemons."""
        ctld = self.daemons.get("slurmctld")
        if ctld is None or ctld.exited():
            return
        # An unresponsive controller is no reason to fail the clean-up: any
        # job left over is killed with the strays below.
        with contextlib.suppress(SlurmClusterError):
            ids = self._queued_job_ids()
            if ids:
                self._run(["scancel", *ids], check=False)
                self.wait_jobs_done(timeout=20)

    def _kill_strays(self) -> None:
        """SIGKILL any process still carrying our marker (slurmstepd, job
        scripts): started by this cluster, so safe to kill by PID."""
        if self.root is None:
            return
        pids = _processes_marked(str(self.root))
        for pid in pids:
            _kill_pid(pid, signal.SIGKILL)
        if pids:
            _wait_until("stray processes to exit", lambda: not any(_pid_alive(p) for p in pids), 10)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


def _rule_from_comment(comment: str) -> str:
    """Rule name from the SLURM plugin's job comment, "" if not one of its."""
    if not comment.startswith("rule_"):
        return ""
    return comment[len("rule_") :].split("_wildcards_", 1)[0]


def _reap(owner_pid: int, pipe_fd: int) -> None:
    """Watchdog body (see SlurmCluster._start_reaper): wait for the owner to
    finish or die; if it died, undo its cluster like the next start would."""
    while True:
        ready, _, _ = select.select([pipe_fd], [], [], 1.0)
        if ready:
            data = os.read(pipe_fd, 1)
            if data == b"x":
                return  # stop() ran to the end
            if data == b"":
                break  # the owner exited without stop()
        elif not _pid_alive(owner_pid):
            break
    print(f"{_dt.datetime.now():%F %T} owner {owner_pid} died; cleaning up", flush=True)
    lock_fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    # The owner's lock went with it; another cluster may have it now, and
    # that one cleans up stale state itself before starting.
    deadline = time.monotonic() + 60
    while True:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.5)
    try:
        state = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return
    if state.get("owner_pid") == owner_pid:
        SlurmCluster._clean_stale_state()
        print(f"{_dt.datetime.now():%F %T} cleaned up {state.get('root')}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--reap":
        _reap(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit("usage: slurmcluster.py --reap OWNER_PID PIPE_FD (internal)")
