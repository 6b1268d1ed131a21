"""Results archives: what export packs round-trips byte for byte, and import unpacks nothing of
an archive that holds anything but regular files inside the stage folders of ``results/``,
whatever else it holds (links, devices, ``..``, absolute paths, files in place of folders)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import pytest
import yaml

from chaosgd.tools import archive

from support import recorded
from support.recorded import write_runs
from support.workflow import REPO

GOOD = {
    "results/train/run_a/final.pt": b"\x00weights" * 100,
    "results/train/run_a/run.json": b'{"run": "a"}',
    "results/lyapunov/run_a/exponents.parquet": bytes(range(256)),
    "results/figures/fig1.pdf": b"%PDF-1.4 figure",
}


def _results(root: Path) -> Path:
    """A results folder holding GOOD, under ``root``."""
    for name, data in GOOD.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root / "results"


def _info(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data) if kind == tarfile.REGTYPE else 0, link
    return info, data


def _archive(path: Path, *members, root: str = "results", manifest_member=None) -> Path:
    """A .tar.gz as export writes it (manifest first, listing every member with its checksum),
    holding GOOD's files and then ``members`` (``_info`` pairs)."""
    entries = [_info(name, data=data) for name, data in GOOD.items()] + list(members)
    manifest = {
        "created_by": "test",
        "created": "now",
        "root": root,
        "files": {i.name: {"sha256": hashlib.sha256(d).hexdigest()} for i, d in entries},
    }
    blob = json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz") as tar:
        info, _ = manifest_member or _info(archive.MANIFEST, data=blob)
        tar.addfile(info, io.BytesIO(blob) if info.isreg() else None)
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _refused(packed: Path, target: Path, capsys, *extra: str) -> str:
    """Import ``packed`` into ``target``: exit 1, one line naming the archive, nothing written."""
    before = sorted(target.parent.rglob("*")) if target.parent.exists() else None
    capsys.readouterr()
    assert archive.main(["import", str(packed), "--results", str(target), *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {packed}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    after = sorted(target.parent.rglob("*")) if target.parent.exists() else None
    assert after == before, "the import wrote something"
    return err


MEMBERS = {
    "parent path": (_info("../x", data=b"x"), "not normalized"),
    "parent path inside": (_info("results/train/../../x", data=b"x"), "not normalized"),
    "absolute path": (_info("/etc/x", data=b"x"), "its path is absolute"),
    "drive path": (_info("C:/results/train/x", data=b"x"), "its path is absolute"),
    "backslashes": (_info("results\\train\\..\\..\\x", data=b"x"), "backslash"),
    "dot part": (_info("results/./train/x", data=b"x"), "not normalized"),
    "empty part": (_info("results/train//x", data=b"x"), "not normalized"),
    "symbolic link": (
        _info("results/train/run_a/link", tarfile.SYMTYPE, link="/etc/passwd"),
        "a symbolic link (to '/etc/passwd')",
    ),
    "hard link": (
        _info("results/train/run_b/final.pt", tarfile.LNKTYPE, link="results/train/run_a/final.pt"),
        "a hard link (to 'results/train/run_a/final.pt')",
    ),
    "directory entry": (_info("results/train/run_c", tarfile.DIRTYPE), "a directory entry"),
    "character device": (_info("results/train/tty", tarfile.CHRTYPE), "a device or FIFO"),
    "fifo": (_info("results/train/pipe", tarfile.FIFOTYPE), "a device or FIFO"),
    "results as a file": (
        _info("results", data=b"x"),
        "it would replace the results folder results/ itself with a file",
    ),
    "stage folder as a file": (
        _info("results/train", data=b"x"),
        "it would replace the stage folder results/train/ with a file",
    ),
    "unknown stage folder": (_info("results/evil/x", data=b"x"), "'evil' is not a stage folder"),
    "file beside the stage folders": (
        _info("results/notes.txt", data=b"x"),
        "'notes.txt' is not a stage folder",
    ),
    "outside the results folder": (
        _info("elsewhere/train/x", data=b"x"),
        "it lies outside the results folder results/",
    ),
}


@pytest.mark.parametrize("case", list(MEMBERS))
def test_an_archive_with_a_forbidden_member_is_refused_whole(tmp_path, capsys, case):
    member, why = MEMBERS[case]
    packed = _archive(tmp_path / "bad.tar.gz", member)
    err = _refused(packed, tmp_path / "dest" / "results", capsys)
    assert f"refusing member {member[0].name!r}: " in err and why in err
    assert "nothing was imported" in err
    assert not (tmp_path / "dest").exists()


def test_a_traversal_through_a_symbolic_link_in_the_archive_is_refused(tmp_path, capsys):
    """A link to a folder outside, then a file 'inside' it: the link is refused, so the file
    never lands outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    packed = _archive(
        tmp_path / "bad.tar.gz",
        _info("results/train/run_b", tarfile.SYMTYPE, link=str(outside)),
        _info("results/train/run_b/final.pt", data=b"planted"),
    )
    err = _refused(packed, tmp_path / "dest" / "results", capsys)
    assert f"refusing member 'results/train/run_b': a symbolic link (to {str(outside)!r})" in err
    assert not any(outside.iterdir())


def test_a_name_used_as_file_and_folder_or_given_twice_is_refused(tmp_path, capsys):
    packed = _archive(
        tmp_path / "bad.tar.gz",
        _info("results/train/run_a/run.json/x", data=b"x"),
    )
    err = _refused(packed, tmp_path / "dest" / "results", capsys)
    assert "refusing member 'results/train/run_a/run.json': the archive also holds files" in err
    packed = _archive(tmp_path / "twice.tar.gz", _info("results/figures/fig1.pdf", data=b"other"))
    err = _refused(packed, tmp_path / "dest" / "results", capsys)
    assert "refusing member 'results/figures/fig1.pdf': it appears twice" in err


def test_a_manifest_that_is_a_link_or_names_no_folder_is_refused(tmp_path, capsys):
    link = _info(archive.MANIFEST, tarfile.SYMTYPE, link="/etc/passwd")
    packed = _archive(tmp_path / "link.tar.gz", manifest_member=link)
    err = _refused(packed, tmp_path / "dest" / "results", capsys)
    assert f"refusing member {archive.MANIFEST!r}: a symbolic link" in err
    for root in ("..", "/tmp", "a/b", ""):
        packed = _archive(tmp_path / "root.tar.gz", root=root)
        err = _refused(packed, tmp_path / "dest" / "results", capsys)
        assert f"names the results folder {root!r}, which is not a plain folder name" in err


@pytest.mark.parametrize(
    "blocker, says",
    [
        ("train", "is a file where the archive has the folder of results/train/run_a/final.pt"),
        ("train/run_a/run.json/", "is a folder where the archive has the file"),
        ("", "is a file, not a folder"),
    ],
)
@pytest.mark.parametrize("force", [[], ["--force"]])
def test_what_is_in_the_way_on_disk_is_never_replaced(tmp_path, capsys, blocker, says, force):
    """Not even with --force: a file where the archive needs a folder, or the reverse."""
    packed = _archive(tmp_path / "good.tar.gz")
    target = tmp_path / "dest" / "results"
    path = target / blocker
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir() if blocker.endswith("/") else path.write_bytes(b"mine")
    err = _refused(packed, target, capsys, *force)
    assert f"cannot import into {target}: " in err and says in err
    assert path.is_dir() or path.read_bytes() == b"mine"


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_an_exported_archive_round_trips_byte_for_byte(tmp_path, capsys):
    results = _results(tmp_path / "src")
    # cached outputs are links into the Snakemake cache: packed as the files they point to
    cache = tmp_path / "cache" / "abc"
    cache.parent.mkdir()
    cache.write_bytes(b"cached output")
    (results / "train" / "run_a" / "steps.parquet").symlink_to(cache)
    packed = tmp_path / "results.tar.gz"
    assert archive.main(["export", str(packed), "--results", str(results)]) == 0
    with tarfile.open(packed) as tar:
        assert all(m.isreg() for m in tar.getmembers())
    target = tmp_path / "empty" / "results"
    assert archive.main(["import", str(packed), "--results", str(target)]) == 0
    assert _tree(target) == _tree(results)
    assert not (target / "train" / "run_a" / "steps.parquet").is_symlink()
    assert sorted(p.name for p in target.parent.iterdir()) == ["results"]  # no staging left
    # once more over identical files: nothing differs, nothing to force
    assert archive.main(["import", str(packed), "--results", str(target)]) == 0
    assert "differ" not in capsys.readouterr().err


def test_export_packs_nothing_import_would_refuse(tmp_path, capsys):
    results = _results(tmp_path / "src")
    (results / "notes.txt").write_text("mine")
    packed = tmp_path / "results.tar.gz"
    assert archive.main(["export", str(packed), "--results", str(results)]) == 1
    err = capsys.readouterr().err
    assert f"error: {results / 'notes.txt'}: not a stage folder" in err and "--stages" in err
    assert not packed.exists()
    # named stages leave the rest alone; an unknown name is refused
    assert (
        archive.main(["export", str(packed), "--results", str(results), "--stages", "train"]) == 0
    )
    assert archive.main(["export", str(packed), "--results", str(results), "--stages", "evil"]) == 1
    assert "error: --stages evil: not a stage (stages: claims, " in capsys.readouterr().err


def test_the_stage_folders_are_the_stages_the_rules_write_into():
    """One home of the names: the package's stage modules, which the rules are named after."""
    rules = REPO / "workflow" / "rules"
    stages = {p.stem for p in rules.glob("*.smk")} - {"common"}
    assert set(archive.stage_folders()) == stages
    written = {m for p in rules.glob("*.smk") for m in re.findall(r"results/(\w+)/", p.read_text())}
    assert written <= stages


def test_a_checksum_mismatch_leaves_nothing_behind(tmp_path, capsys):
    """The bytes are checked last, in a staging folder beside the target: removed, with the
    folders made for it."""
    packed = _archive(tmp_path / "good.tar.gz")
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(packed) as src, tarfile.open(tampered, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name.endswith("fig1.pdf"):
                data = data.upper()
            dst.addfile(member, io.BytesIO(data))
    err = _refused(tampered, tmp_path / "new" / "deeper" / "results", capsys)
    assert "checksum mismatch for results/figures/fig1.pdf" in err
    assert not (tmp_path / "new").exists()


def test_import_with_a_config_refuses_runs_made_with_other_settings(tmp_path, capsys):
    made = tmp_path / "made"
    write_runs(made / "results", recorded.config())
    packed = tmp_path / "results.tar.gz"
    assert archive.main(["export", str(packed), "--results", str(made / "results")]) == 0
    base, lr = tmp_path / "base.yaml", tmp_path / "lr.yaml"
    base.write_text(yaml.safe_dump(recorded.CONFIG))
    lr.write_text("training:\n  lr: 0.02\n")
    target = tmp_path / "checkout" / "results"
    capsys.readouterr()
    args = ["import", str(packed), "--results", str(target)]
    assert archive.main([*args, "--configfile", str(base), "--configfile", str(lr)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {packed}: 2 run(s) in it were made with other settings than ")
    for run in (recorded.CGD, recorded.SGD):
        assert (
            f"  made with other settings: results/train/{run}/: lr 0.001 in the archive, 0.02 in "
            "the config\n" in err
        )
    assert "nothing was imported" in err and "--stages" in err
    assert not target.parent.exists()  # nothing written
    # under the config it was made with (only what differs counts), it is imported
    device = tmp_path / "device.yaml"
    device.write_text("device: cuda\ntraining:\n  checkpoint_every: 9\n")
    assert archive.main([*args, "--configfile", str(base), str(device)]) == 0
    assert (target / "train" / recorded.CGD / "run.json").is_file()


def test_import_with_a_bad_config_names_it(tmp_path, capsys):
    packed = _archive(tmp_path / "a.tar.gz")
    (tmp_path / "bad.yaml").write_text("experiments: 3\n")
    args = ["import", str(packed), "--results", str(tmp_path / "r"), "--configfile"]
    assert archive.main([*args, str(tmp_path / "bad.yaml")]) == 1
    assert capsys.readouterr().err.startswith("error: --configfile: invalid config:")
    assert not (tmp_path / "r").exists()


def test_import_with_a_config_refuses_ensembles_made_with_other_settings(tmp_path, capsys):
    made = tmp_path / "made" / "results"
    cfg = recorded.config()
    write_runs(made, cfg)
    recorded.write_ensembles(made, cfg, record_every=7)
    packed = tmp_path / "results.tar.gz"
    assert archive.main(["export", str(packed), "--results", str(made)]) == 0
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(recorded.CONFIG))
    target = tmp_path / "checkout" / "results"
    capsys.readouterr()
    args = ["import", str(packed), "--results", str(target), "--configfile", str(base)]
    assert archive.main(args) == 1
    err = capsys.readouterr().err
    assert (
        f"  made with other settings: results/ensembles/{recorded.SGD}/: ensembles.record_every 7 "
        f"in the archive, {cfg['ensembles']['record_every']} in the config\n" in err
    )
    assert "results/train/" not in err and not target.parent.exists()
    # what the config asks for: imported
    asked = tmp_path / "asked.yaml"
    asked.write_text("ensembles:\n  record_every: 7\n")
    assert archive.main([*args, str(asked)]) == 0
    assert (target / "ensembles" / recorded.SGD / "ensemble.json").is_file()
