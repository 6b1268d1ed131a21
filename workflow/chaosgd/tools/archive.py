"""Share results without a shared file system: export ``results/`` to one archive, import it
into another checkout, and Snakemake regards the imported results as up to date.

``python -m chaosgd.tools.archive export results.tar.gz`` packs every file under ``results/``
(cached outputs, which are symbolic links into the Snakemake output cache, are packed as the
files they point to) with a manifest of their sha256 checksums; ``results/`` holds stage
folders only (one per stage module), and anything else there is refused rather than packed,
but for ``results/stale/`` (outputs the config no longer makes), which is left out.
``import`` unpacks an archive only if every member is a regular file at a relative, normalized
path inside a stage folder (no link, device or directory entry, no ``..``, absolute or
backslash path, nothing that would replace ``results/`` or a stage folder with a file): an
archive from elsewhere cannot write outside ``results/``. It checks that, what on disk is in the way, and every checksum
before anything is written, extracts into a temporary folder beside the target and moves the
files into place; it refuses to replace a different existing file unless ``--force`` is
given. Imported files get the import time as modification time: Snakemake compares
modification times, and the code files of a fresh checkout are newer than the results were
when they were exported.

Snakemake keeps no record of having made imported results, so it takes them as up to date
whatever settings the config now asks for (the Snakefile stops on such runs, see
:mod:`chaosgd.planning.stale`). ``import --configfile FILE ...`` checks first: a run of the
archive whose ``run.json`` (or a reference's ensembles, whose ``ensemble.json``) records other
settings than the config plans under its run id is refused, before anything is written.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import pkgutil
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

import yaml

import chaosgd
from chaosgd import __version__
from chaosgd.planning import plan
from chaosgd.planning.stale import STALE, Difference, described, recorded_differences
from chaosgd.runs.artifacts import atomic_path, file_digest
from chaosgd.tools.stale import load_config

MANIFEST = "chaosgd-manifest.json"


class ArchiveError(RuntimeError):
    """The archive is unusable or would overwrite results; the message says which file."""


def stage_folders() -> tuple[str, ...]:
    """The folders ``results/`` may hold: one per stage, named after its module, which are the
    package's top-level modules (as its rule files are; tests/unit/test_architecture.py)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(chaosgd.__path__) if not m.ispkg))


def collect(results: Path, stages: list[str] | None = None) -> list[Path]:
    """The files to export, relative to the parent of ``results`` (so they start with it)."""
    if not results.is_dir():
        raise ArchiveError(f"{results}: no results folder to export")
    known = stage_folders()
    for stage in stages or []:
        if stage not in known:
            raise ArchiveError(
                f"--stages {stage}: not a stage (stages: {', '.join(known)}); name only those"
            )
    # import refuses anything outside a stage folder, so export packs nothing it would refuse;
    # results/stale/ holds what the config no longer makes (chaosgd.tools.stale): left behind
    strays = sorted(
        p.name
        for p in results.iterdir()
        if not p.name.startswith(".") and p.name not in known and p.name != STALE
    )
    if strays and not stages:
        raise ArchiveError(
            f"{results / strays[0]}: not a stage folder (stages: {', '.join(known)}); move it "
            "out of the results folder, or export named stages with --stages"
        )
    roots = [results / s for s in stages] if stages else [results / s for s in known]
    for root in roots:
        if stages and not root.exists():
            raise ArchiveError(f"{root}: no such stage folder")
        if root.exists() and not root.is_dir():
            raise ArchiveError(f"{root}: a file where the stage folder should be; move it away")
    files = sorted(
        p
        for root in roots
        if root.is_dir()
        for p in root.rglob("*")
        if (p.is_file() and not p.name.startswith(".")) and p.name != "checkpoint.pt"
    )
    return [p.relative_to(results.parent) for p in files]


def export(results: Path, archive: Path, stages: list[str] | None = None) -> dict:
    """Pack the files under ``results`` (or only ``stages``) into the ``.tar.gz`` ``archive``.

    Symbolic links are packed as the files they point to, with owners stripped, and a manifest of
    sha256 checksums and sizes comes first; the archive is written atomically. Returns the manifest.
    """
    # a folder name to record as the root, also for "." or "results/.."
    results = Path(os.path.abspath(results))
    base = results.parent
    files = collect(results, stages)
    manifest = {
        "created_by": f"chaosgd {__version__}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "root": results.name,
        "files": {
            str(f): {"sha256": file_digest(base / f), "bytes": (base / f).stat().st_size}
            for f in files
        },
    }
    with atomic_path(archive) as tmp:
        with tarfile.open(tmp, "w:gz", dereference=True) as tar:
            blob = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(blob), int(time.time())
            tar.addfile(info, io.BytesIO(blob))
            for f in files:
                tar.add(base / f, arcname=str(f), recursive=False, filter=_plain)
    return manifest


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _read_manifest(tar: tarfile.TarFile, archive: Path) -> dict:
    """The archive's manifest, checked to be what :func:`export` writes: a ``root`` folder name
    and, per file, its ``sha256``; else :class:`ArchiveError` naming the archive."""
    found = [m for m in tar.getmembers() if m.name == MANIFEST]
    if not found:
        raise ArchiveError(f"{archive}: not a chaosgd results archive (no {MANIFEST})")
    if len(found) > 1 or not found[0].isreg():
        raise ArchiveError(
            f"{archive}: refusing member {MANIFEST!r}: "
            + ("it appears twice" if len(found) > 1 else _kind(found[0]))
            + "; nothing was imported"
        )
    try:
        manifest = json.loads(tar.extractfile(found[0]).read())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise ArchiveError(f"{archive}: its {MANIFEST} is not JSON ({exc})") from None
    usable = (
        isinstance(manifest, dict)
        and isinstance(manifest.get("root"), str)
        and isinstance(manifest.get("files"), dict)
        and all(
            isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
            for entry in manifest["files"].values()
        )
    )
    if not usable:
        raise ArchiveError(
            f"{archive}: its {MANIFEST} is damaged (expected a root folder name and a sha256 "
            "per file); export the archive again"
        )
    if _bad_path(manifest["root"]) or "/" in manifest["root"]:
        raise ArchiveError(
            f"{archive}: its {MANIFEST} names the results folder {manifest['root']!r}, which is "
            "not a plain folder name; export the archive again"
        )
    return manifest


def _kind(member: tarfile.TarInfo) -> str:
    """Why a member that is not a regular file is refused."""
    if member.issym():
        return f"a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"a hard link (to {member.linkname!r})"
    if member.isdir():
        return "a directory entry"
    if member.isdev():
        return "a device or FIFO"
    return "not a regular file"


# a Windows drive (C:): absolute there, though not on POSIX
_DRIVE = re.compile(r"^[A-Za-z]:")


def _bad_path(name: str) -> str | None:
    """Why ``name`` is not a relative, normalized POSIX path (None when it is)."""
    if "\\" in name or "\0" in name:
        return "its path holds a backslash or NUL (a separator or a name's end elsewhere)"
    if name.startswith("/") or _DRIVE.match(name):
        return "its path is absolute"
    if name in ("", ".") or posixpath.normpath(name) != name or ".." in name.split("/"):
        return "its path is not normalized (empty, '.' or '..' parts)"
    return None


def _refusals(
    members: list[tarfile.TarInfo], root: str, stages: tuple[str, ...]
) -> list[tuple[str, str]]:
    """Each member that may not be unpacked, and why: anything but a regular file at a relative,
    normalized path inside a stage folder of ``root``, a name given twice, a file at a path the
    archive also uses as a folder."""
    refused = []
    folders = {
        "/".join(parts[:i])
        for parts in (m.name.split("/") for m in members)
        for i in range(1, len(parts))
    }
    seen = set()
    for member in members:
        name, parts = member.name, member.name.split("/")
        why = None if member.isreg() else _kind(member)
        why = why or _bad_path(name)
        if why is None and parts[0] != root:
            why = f"it lies outside the results folder {root}/"
        elif why is None and len(parts) == 1:
            why = f"it would replace the results folder {root}/ itself with a file"
        elif why is None and parts[1] not in stages:
            why = f"{parts[1]!r} is not a stage folder (stages: {', '.join(stages)})"
        elif why is None and len(parts) == 2:
            why = f"it would replace the stage folder {name}/ with a file"
        elif why is None and name in folders:
            why = "the archive also holds files inside it, as if it were a folder"
        elif why is None and name in seen:
            why = "it appears twice"
        seen.add(name)
        if why:
            refused.append((name, why))
    return refused


def _in_the_way(results: Path, names: list[str], root: str) -> list[str]:
    """Paths under ``results`` that are in the way of the archive's files: a file where the
    archive needs a folder, or a folder where it has a file (never replaced, not even with
    ``--force``)."""
    blocked = []
    if results.exists() and not results.is_dir():
        return [f"{results} is a file, not a folder"]
    for name in names:
        rel = Path(name).relative_to(root)
        target = results / rel
        for folder in (results.joinpath(*rel.parts[:i]) for i in range(1, len(rel.parts))):
            if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
                blocked.append(f"{folder} is a file where the archive has the folder of {name}")
                break
        else:
            if target.is_dir() and not target.is_symlink():
                blocked.append(f"{target} is a folder where the archive has the file {name}")
    return blocked


def other_settings(
    tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], root: str, config: dict
) -> list[Difference]:
    """The settings that the archive's runs and ensembles (``members`` by name, under ``root``)
    record otherwise than ``config`` (validated) plans under the same run id."""

    def read(path: Path) -> dict | None:
        member = members.get(path.as_posix())
        if member is None:
            return None
        try:
            info = json.loads(tar.extractfile(member).read())
        except ValueError:  # damaged: the checksum or the stage that reads it names it
            return None
        return info if isinstance(info, dict) else None

    runs, _, lyapunov = plan.plan_runs(config)
    return recorded_differences(config, runs, lyapunov, read, root)


def import_(
    archive: Path,
    results: Path,
    force: bool = False,
    config: dict | None = None,
    config_name: str = "",
) -> dict:
    """Verify and extract ``archive`` so that its results land in ``results``; with ``config``
    (validated; its files named ``config_name``), only if every run of it that the config
    plans records the config's settings."""
    if not archive.is_file():
        raise ArchiveError(f"{archive}: no such archive")
    try:
        return _import(archive, results, force, config, config_name)
    except (tarfile.TarError, OSError, EOFError, zlib.error, json.JSONDecodeError) as exc:
        raise ArchiveError(f"{archive}: corrupt or unreadable archive ({exc})") from None


def _refuse_other_settings(archive: Path, differing: list[Difference], config_name: str) -> None:
    lines = described(differing, here="in the archive")
    raise ArchiveError(
        f"{archive}: {len(lines)} run(s) in it were made with other settings than {config_name} "
        "plans under the same run id, and Snakemake would take them for the config's; nothing "
        "was imported:\n"
        + "".join(f"  made with other settings: {line}\n" for line in lines)
        + "Import it into a checkout that runs the config the archive was made with (and give "
        "that to --configfile), or leave out those stages: export it again with --stages naming "
        "only what these settings do not shape (datasets, say), so that this config makes the rest"
    )


def _import(
    archive: Path, results: Path, force: bool, config: dict | None, config_name: str
) -> dict:
    with tarfile.open(archive, "r:gz") as tar:
        # everything is checked before anything is written: the members' kinds and paths, the
        # manifest, what is in the way on disk; then the bytes against their checksums
        manifest = _read_manifest(tar, archive)
        root = manifest["root"]
        members = [m for m in tar.getmembers() if m.name != MANIFEST]
        refused = _refusals(members, root, stage_folders())
        if refused:
            (name, why), more = refused[0], len(refused) - 1
            also = f" (and {more} more member{'s' * (more > 1)})" if more else ""
            raise ArchiveError(
                f"{archive}: refusing member {name!r}: {why}{also}; nothing was imported. A "
                f"results archive holds only regular files inside the stage folders of {root}/, "
                "as `python -m chaosgd.tools.archive export` writes it"
            )
        names = {m.name: m for m in members}
        if set(names) != set(manifest["files"]):
            missing = sorted(set(manifest["files"]) - set(names))
            extra = sorted(set(names) - set(manifest["files"]))
            raise ArchiveError(
                f"{archive}: files and manifest differ (missing {missing[:3]}, extra {extra[:3]})"
            )
        if config is not None:
            differing = other_settings(tar, names, root, config)
            if differing:
                _refuse_other_settings(archive, differing, config_name)
        blocked = _in_the_way(results, sorted(names), root)
        if blocked:
            raise ArchiveError(
                f"{archive}: cannot import into {results}: {blocked[0]}"
                + (f" (and {len(blocked) - 1} more)" if len(blocked) > 1 else "")
                + "; move it away and import again"
            )
        conflicts = []
        for name in sorted(names):
            target = results / Path(name).relative_to(root)
            if target.exists() and file_digest(target) != manifest["files"][name]["sha256"]:
                conflicts.append(str(target))
        if conflicts and not force:
            raise ArchiveError(
                f"{len(conflicts)} existing file(s) differ from the archive, e.g. "
                f"{conflicts[0]}; use --force to replace them"
            )
        made = [p for p in reversed(results.parents) if not p.exists()]
        results.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".chaosgd-import-", dir=results.parent))
        try:
            for name, member in names.items():
                data = tar.extractfile(member).read()
                expected = manifest["files"][name]["sha256"]
                if hashlib.sha256(data).hexdigest() != expected:
                    raise ArchiveError(
                        f"{archive}: checksum mismatch for {name}; the archive is corrupt"
                    )
                dest = staging / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            for folder in reversed(made):  # the folders made for the staging area only
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise
        try:
            now = time.time()
            for name in sorted(names):
                target = results / Path(name).relative_to(root)
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.is_symlink():
                    target.unlink()
                os.replace(staging / name, target)
                os.utime(target, (now, now))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """Export or import a results archive from the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m chaosgd.tools.archive",
        description="Export results to an archive, or import one (checksums verified).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="pack results/ into a .tar.gz with a checksum manifest")
    exp.add_argument("archive", type=Path)
    exp.add_argument("--results", type=Path, default=Path("results"))
    exp.add_argument("--stages", nargs="+", default=None, help="only these stage folders")
    imp = sub.add_parser("import", help="verify and unpack an archive into results/")
    imp.add_argument("archive", type=Path)
    imp.add_argument("--results", type=Path, default=Path("results"))
    imp.add_argument("--force", action="store_true", help="replace differing existing files")
    imp.add_argument(
        "--configfile",
        nargs="+",
        action="extend",
        metavar="FILE",
        help="the config files the workflow runs with, in order (as python -m "
        "chaosgd.tools.stale reads them): refuse runs that record other settings than it plans",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "import" and args.configfile:
            try:
                config = load_config(args.configfile)
            except (OSError, ValueError, yaml.YAMLError) as exc:  # ConfigError is a ValueError
                raise ArchiveError(f"--configfile: {exc}") from None
        else:
            config = None
        if args.command == "export":
            manifest = export(args.results, args.archive, args.stages)
            print(f"exported {len(manifest['files'])} files to {args.archive}")
        else:
            manifest = import_(
                args.archive, args.results, args.force, config, " ".join(args.configfile or [])
            )
            print(
                f"imported {len(manifest['files'])} files into {args.results} "
                f"({manifest.get('created_by')}, {manifest.get('created')})"
            )
    except ArchiveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
