"""Share results without a shared file system: export ``results/`` to one archive, import it
into another checkout, and Snakemake regards the imported results as up to date.

``python -m chaosgd.tools.archive export results.tar.gz`` packs every file under ``results/`` (cached
outputs, which are symbolic links into the Snakemake output cache, are packed as the files they
point to) with a manifest of their sha256 checksums. ``import`` verifies every checksum before
anything is written, extracts into a temporary folder beside the target and moves the files into
place; it refuses to replace a different existing file unless ``--force`` is given. Imported
files get the import time as modification time: Snakemake compares modification times, and the
code files of a fresh checkout are newer than the results were when they were exported.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

from chaosgd import __version__
from chaosgd.runs.artifacts import atomic_path, file_digest

MANIFEST = "chaosgd-manifest.json"


class ArchiveError(RuntimeError):
    """The archive is unusable or would overwrite results; the message says which file."""


def collect(results: Path, stages: list[str] | None = None) -> list[Path]:
    """The files to export, relative to the parent of ``results`` (so they start with it)."""
    if not results.is_dir():
        raise ArchiveError(f"{results}: no results folder to export")
    roots = [results / s for s in stages] if stages else [results]
    for root in roots:
        if not root.exists():
            raise ArchiveError(f"{root}: no such stage folder")
    files = sorted(
        p
        for root in roots
        for p in root.rglob("*")
        if (p.is_file() and not p.name.startswith(".")) and p.name != "checkpoint.pt"
    )
    return [p.relative_to(results.parent) for p in files]


def export(results: Path, archive: Path, stages: list[str] | None = None) -> dict:
    """Pack the files under ``results`` (or only ``stages``) into the ``.tar.gz`` ``archive``.

    Symbolic links are packed as the files they point to, with owners stripped, and a manifest of
    sha256 checksums and sizes comes first; the archive is written atomically. Returns the manifest.
    """
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
    try:
        member = tar.getmember(MANIFEST)
    except KeyError:
        raise ArchiveError(f"{archive}: not a chaosgd results archive (no {MANIFEST})") from None
    try:
        manifest = json.loads(tar.extractfile(member).read())
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
    return manifest


def import_(archive: Path, results: Path, force: bool = False) -> dict:
    """Verify and extract ``archive`` so that its results land in ``results``."""
    if not archive.is_file():
        raise ArchiveError(f"{archive}: no such archive")
    try:
        return _import(archive, results, force)
    except (tarfile.TarError, OSError, EOFError, zlib.error, json.JSONDecodeError) as exc:
        raise ArchiveError(f"{archive}: corrupt or unreadable archive ({exc})") from None


def _import(archive: Path, results: Path, force: bool) -> dict:
    with tarfile.open(archive, "r:gz") as tar:
        manifest = _read_manifest(tar, archive)
        root = manifest["root"]
        names = {m.name: m for m in tar.getmembers() if m.name != MANIFEST}
        if set(names) != set(manifest["files"]):
            missing = sorted(set(manifest["files"]) - set(names))
            extra = sorted(set(names) - set(manifest["files"]))
            raise ArchiveError(
                f"{archive}: files and manifest differ (missing {missing[:3]}, extra {extra[:3]})"
            )
        for name, member in names.items():
            if (
                not member.isfile()
                or Path(name).is_absolute()
                or ".." in Path(name).parts
                or Path(name).parts[0] != root
            ):
                raise ArchiveError(
                    f"{archive}: refusing member {name!r} (not a plain file under {root}/)"
                )
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
            conflicts = []
            for name in names:
                target = results / Path(name).relative_to(root)
                if target.exists() and file_digest(target) != manifest["files"][name]["sha256"]:
                    conflicts.append(str(target))
            if conflicts and not force:
                raise ArchiveError(
                    f"{len(conflicts)} existing file(s) differ from the archive, e.g. {conflicts[0]}; "
                    "use --force to replace them"
                )
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
    args = parser.parse_args(argv)
    try:
        if args.command == "export":
            manifest = export(args.results, args.archive, args.stages)
            print(f"exported {len(manifest['files'])} files to {args.archive}")
        else:
            manifest = import_(args.archive, args.results, args.force)
            print(
                f"imported {len(manifest['files'])} files into {args.results} ({manifest['created_by']}, {manifest['created']})"
            )
    except ArchiveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
