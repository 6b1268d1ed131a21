"""Every fault named: a write the system refuses (a full disk, a read-only or foreign folder, an
over-long name, a quota) ends a stage with one line ``error: <file>: <what happened>; <what to
do>`` and exit status 1, no traceback, no half-written file, and the previous complete file
byte-identical. The faults are injected at the lowest call that raises them (``os.replace``,
``open``, ``torch.save``, pyarrow's writer, ``mkdir``), and, where no root is needed, made real:
``/dev/full``, an over-long file name, a folder without write permission."""

from __future__ import annotations

import builtins
import errno
import io
import os
import shutil
import types
import urllib.error
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from chaosgd import fits, lyapunov, train
from chaosgd.planning.run_settings import RunSettings
from chaosgd.runs import artifacts, recovery, run_outputs
from chaosgd.runs.artifacts import (
    ArtifactWriteError,
    atomic_path,
    explain,
    save_tensors,
    write_json,
    write_parquet,
)

from support.fit_tables import exponents_table, synthetic_distances
from support.runs import TRAIN_BASE, lyap_args, run_cli

# what each errno's message must say (the cause; the first words of what to do)
CAUSES = {
    errno.ENOSPC: ("the disk is full", "free space on "),
    errno.EROFS: ("the file system is read-only", "read-write or point results/ elsewhere"),
    errno.EACCES: ("permission denied", "check the owner and mode of "),
    errno.ENAMETOOLONG: ("is too long (", "shorten the experiment name or tag"),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota on "),
}
CODES = list(CAUSES)
CALLS = ("rename", "open", "torch.save", "parquet")
ROOT = os.geteuid() == 0  # root writes into a folder of mode 0o555: no real permission fault

# a 6-step run (1 epoch of 48 images), the cheapest with every training output
TINY = dict(TRAIN_BASE, hidden=4, train_size=48, test_size=48, epochs=1)


# a column only the table of that name has
PARQUET_MARK = {"steps.parquet": "grad_norm", "fits.parquet": "alpha", "x.parquet": "a"}


def full_device(file, mode="r", *args, **kwargs):
    """``open`` with every write going to /dev/full, which fails each with ENOSPC."""
    return builtins.open("/dev/full" if "w" in mode else file, mode, *args, **kwargs)


def fault(code: int, filename=None) -> OSError:
    return OSError(code, os.strerror(code), *([] if filename is None else [str(filename)]))


def concerns(path, target: str) -> bool:
    """Whether ``path`` is ``target`` (a file name) or one of atomic_path's temporary files."""
    name = Path(os.fsdecode(path)).name
    return name == target or name.startswith(f".{target}.") and name.endswith(".tmp")


def inject(monkeypatch, call: str, code: int, target: str) -> None:
    """Make ``call`` raise ``OSError(code)`` when it writes ``target`` (or its temporary file),
    each as the real call would: ``open`` and ``os.replace`` name the file, a failed write (by
    torch or pyarrow) does not; torch's and pyarrow's leave half a file behind."""
    if call == "rename":
        real_replace = os.replace

        def replace(src, dst, *a, **kw):
            if concerns(dst, target):
                raise OSError(code, os.strerror(code), str(src), None, str(dst))
            return real_replace(src, dst, *a, **kw)

        monkeypatch.setattr(os, "replace", replace)
    elif call == "open":
        real_open = io.open

        def opener(file, mode="r", *a, **kw):
            if isinstance(file, (str, os.PathLike)) and concerns(file, target) and "r" not in mode:
                raise fault(code, file)
            return real_open(file, mode, *a, **kw)

        monkeypatch.setattr(builtins, "open", opener)
        monkeypatch.setattr(io, "open", opener)
    elif call == "torch.save":
        real_save = torch.save

        def save(obj, f, *a, **kw):
            if concerns(getattr(getattr(f, "fh", f), "name", ""), target):
                f.write(b"PK\x03\x04 half an archive")
                raise fault(code)
            return real_save(obj, f, *a, **kw)

        monkeypatch.setattr(torch, "save", save)
    elif call == "parquet":
        real_write = pq.write_table

        def write_table(table, where, *a, **kw):
            # pandas hands pyarrow a stream that names no file: a table is told by its columns
            if PARQUET_MARK[target] in table.column_names:
                where.write(b"PAR1 half a table")
                raise OSError(code, f"Error writing bytes to file. Detail: [errno {code}]")
            return real_write(table, where, *a, **kw)

        monkeypatch.setattr(pq, "write_table", write_table)
    else:
        raise ValueError(call)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] if folder.is_dir() else []


def one_error(capsys) -> str:
    """The stage's only ``error:`` line; no traceback on stderr."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def assert_names(line: str, path: Path, code: int, operation: str = "writing") -> None:
    cause, remedy = CAUSES[code]
    assert line.startswith(f"error: {path}: {operation} failed: "), line
    assert cause in line and remedy in line, line


# -- the writers ---------------------------------------------------------------------------------

WRITERS = {
    "torch": ("x.pt", lambda p: save_tensors({"w": torch.arange(1000.0)}, p)),
    "json": ("x.json", lambda p: write_json({"a": list(range(100))}, p)),
    "parquet": ("x.parquet", lambda p: write_parquet(pd.DataFrame({"a": range(9)}), p)),
}
WRITER_CALLS = {
    "torch": ("rename", "open", "torch.save"),
    "json": ("rename", "open"),
    "parquet": ("rename", "parquet"),  # pyarrow opens its files itself, not through open()
}
WRITER_CASES = [
    (w, call, code) for w, calls in WRITER_CALLS.items() for call in calls for code in CODES
]


@pytest.mark.parametrize("writer, call, code", WRITER_CASES)
def test_a_refused_write_names_the_file_and_keeps_the_previous_one(
    tmp_path, monkeypatch, writer, call, code
):
    name, write = WRITERS[writer]
    path = tmp_path / name
    path.write_bytes(b"the previous complete file")
    inject(monkeypatch, call, code, name)
    with pytest.raises(ArtifactWriteError) as caught:
        write(path)
    exc = caught.value
    assert isinstance(exc, OSError) and exc.errno == code and exc.path == path
    assert str(exc).count("\n") == 0
    assert_names(
        f"error: {exc}", path, code, "renaming into place" if call == "rename" else "writing"
    )
    assert path.read_bytes() == b"the previous complete file"
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("code", CODES)
def test_a_folder_that_cannot_be_made_is_named(tmp_path, monkeypatch, code):
    path = tmp_path / "new" / "x.json"
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **kw):
        if self == path.parent:
            raise fault(code, self)
        return real_mkdir(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(ArtifactWriteError) as caught:
        write_json({}, path)
    assert_names(f"error: {caught.value}", path, code, f"creating the folder {path.parent}")
    if code == errno.EACCES:  # the folder whose mode matters is the one that exists
        assert str(caught.value).endswith(f"check the owner and mode of {tmp_path}")
    assert not path.parent.exists()


def test_a_real_full_device_under_torch_save_is_named(tmp_path, monkeypatch):
    """torch.save into a full disk raises RuntimeError ("unexpected pos ...", naming no file);
    /dev/full makes every write fail with ENOSPC, as a full disk does."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    path = tmp_path / "x.pt"
    save_tensors({"w": torch.zeros(3)}, path)
    before = path.read_bytes()
    monkeypatch.setattr(artifacts, "open", full_device, raising=False)
    with pytest.raises(ArtifactWriteError) as caught:
        save_tensors({"w": torch.arange(100_000.0)}, path)
    assert caught.value.errno == errno.ENOSPC
    assert_names(f"error: {caught.value}", path, errno.ENOSPC)
    assert path.read_bytes() == before
    assert temporaries(tmp_path) == []


def unexpected_pos(obj, f, *a, **kw):
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


def test_torch_runtime_error_on_a_full_disk_is_named(tmp_path, monkeypatch):
    """No OSError to go by: the probe finds the disk full (no retry of the write)."""
    monkeypatch.setattr(torch, "save", unexpected_pos)
    monkeypatch.setattr(os, "statvfs", lambda p: types.SimpleNamespace(f_bavail=0, f_frsize=4096))
    with pytest.raises(ArtifactWriteError) as caught:
        save_tensors({}, tmp_path / "x.pt")
    assert_names(f"error: {caught.value}", tmp_path / "x.pt", errno.ENOSPC)
    assert temporaries(tmp_path) == [] and not (tmp_path / "x.pt").exists()


def test_torch_runtime_error_with_room_on_the_disk_stays_what_it_is(tmp_path, monkeypatch):
    """A RuntimeError that is no write fault (the disk has room) is a bug, not a full disk."""
    monkeypatch.setattr(torch, "save", unexpected_pos)
    monkeypatch.setattr(os, "statvfs", lambda p: types.SimpleNamespace(f_bavail=10, f_frsize=4096))
    with pytest.raises(RuntimeError, match="unexpected pos"):
        save_tensors({}, tmp_path / "x.pt")
    assert temporaries(tmp_path) == []


def test_a_real_over_long_file_name_is_named_with_its_length(tmp_path):
    path = tmp_path / ("x" * 300 + ".json")
    with pytest.raises(ArtifactWriteError) as caught:
        write_json({}, path)
    assert caught.value.errno == errno.ENAMETOOLONG
    assert "the file name is too long (305 bytes); shorten the experiment name or tag" in str(
        caught.value
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(ROOT, reason="root writes into a read-only folder regardless of its mode")
def test_a_real_read_only_folder_is_named(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    write_json({"a": 1}, folder / "x.json")
    before = snapshot(folder)
    folder.chmod(0o555)
    try:
        with pytest.raises(ArtifactWriteError) as caught:
            write_json({"a": 2}, folder / "x.json")
    finally:
        folder.chmod(0o755)
    assert_names(f"error: {caught.value}", folder / "x.json", errno.EACCES)
    assert snapshot(folder) == before


def test_a_real_file_where_the_folder_goes_is_named(tmp_path):
    (tmp_path / "results").write_text("not a folder")
    path = tmp_path / "results" / "run" / "x.json"
    with pytest.raises(ArtifactWriteError) as caught:
        write_json({}, path)
    assert str(caught.value) == (
        f"{path}: creating the folder {path.parent} failed: a file stands where a folder must "
        f"be; move {tmp_path / 'results'} out of the way or point results/ elsewhere"
    )


def test_a_block_error_about_another_file_is_left_alone(tmp_path):
    """atomic_path's block may read other files (an archive's sources) or download (URLError
    is an OSError): those are not faults of the file being written."""
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "x.tar.gz"):
            open(tmp_path / "missing")
    with pytest.raises(urllib.error.URLError):
        with atomic_path(tmp_path / "x.gz"):
            raise urllib.error.URLError("no route")
    assert list(tmp_path.iterdir()) == []


def test_explain_words_a_plain_os_error_alike(tmp_path):
    line = explain(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "d.pt")))
    assert line == f"{tmp_path / 'd.pt'}: reading failed: permission denied; check the owner and " \
        f"mode of {tmp_path}"  # fmt: skip
    assert explain(ValueError("as it is")) == "as it is"


# -- the stages ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fmnist_pt) -> Path:
    """A complete run's outputs, for the reruns below to fail over."""
    folder = tmp_path_factory.mktemp("trained") / "run"
    rc, _ = run_cli(RunSettings(**TINY), fmnist_pt, folder, checkpoint=False)
    assert rc == 0
    return folder


# the file each call fails on: the first the stage writes through it
TRAIN_TARGET = {"rename": "steps.parquet", "open": "final.pt", "torch.save": "final.pt"}
TRAIN_TARGET["parquet"] = "steps.parquet"


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("call", CALLS)
def test_training_outputs_that_cannot_be_written_fail_naming_the_file(
    tmp_path, monkeypatch, capsys, trained, fmnist_pt, call, code
):
    folder = tmp_path / "run"
    shutil.copytree(trained, folder)
    before = snapshot(folder)
    inject(monkeypatch, call, code, TRAIN_TARGET[call])
    capsys.readouterr()
    rc, _ = run_cli(RunSettings(**TINY), fmnist_pt, folder, checkpoint=False)
    assert rc == 1
    operation = "renaming into place" if call == "rename" else "writing"
    assert_names(one_error(capsys), folder / TRAIN_TARGET[call], code, operation)
    # the outputs written before the failing one are rewritten with the same bytes
    assert snapshot(folder) == before


def test_training_into_a_real_full_device_is_named(
    tmp_path, monkeypatch, capsys, trained, fmnist_pt
):
    folder = tmp_path / "run"
    shutil.copytree(trained, folder)
    before = snapshot(folder)
    monkeypatch.setattr(artifacts, "open", full_device, raising=False)
    capsys.readouterr()
    rc, _ = run_cli(RunSettings(**TINY), fmnist_pt, folder, checkpoint=False)
    assert rc == 1
    assert_names(one_error(capsys), folder / "final.pt", errno.ENOSPC)
    assert snapshot(folder) == before


def test_training_with_a_real_over_long_output_name_is_named(tmp_path, capsys, fmnist_pt):
    folder = tmp_path / "run"
    s = RunSettings(**TINY)
    out = {k: folder / name for k, name in run_outputs.OUTPUT_FILES.items()}
    out["final"] = folder / ("f" * 300 + ".pt")
    argv = s.to_args() + ["--data", str(fmnist_pt), "--no-progress"]
    argv += [a for k, p in out.items() for a in (f"--out-{k}", str(p))]
    capsys.readouterr()
    assert train.main(argv) == 1
    line = one_error(capsys)
    assert line.startswith(f"error: {out['final']}: renaming into place failed: ")
    assert "the file name is too long (303 bytes); shorten the experiment name or tag" in line
    assert temporaries(folder) == [] and not out["info"].exists()


@pytest.mark.parametrize(
    "call, target", [("rename", "spectrum_final.pt"), ("torch.save", "spectrum_final.pt")]
)
def test_lyapunov_outputs_that_cannot_be_written_fail_naming_the_file(
    tmp_path, monkeypatch, capsys, fmnist_pt, call, target
):
    folder = tmp_path / "run"
    files = {**run_outputs.OUTPUT_FILES, **lyapunov.LYAP_OUTPUTS}
    argv = RunSettings(**TINY).to_args() + lyap_args() + ["--data", str(fmnist_pt)]
    argv += ["--no-progress", "--checkpoint", str(folder / "checkpoint.pt")]
    argv += [a for k, name in files.items() for a in (f"--out-{k}", str(folder / name))]
    inject(monkeypatch, call, errno.ENOSPC, target)
    capsys.readouterr()
    assert lyapunov.main(argv) == 1
    operation = "renaming into place" if call == "rename" else "writing"
    assert_names(one_error(capsys), folder / target, errno.ENOSPC, operation)
    assert temporaries(folder) == [] and not (folder / target).exists()


def test_a_checkpoint_that_cannot_be_written_ends_the_run_and_keeps_the_last(
    tmp_path, monkeypatch, capsys, fmnist_pt
):
    """The second checkpoint (step 10 of 12) fails: the job says so and exits 1, the first
    stays as it was, and a rerun resumes from it."""
    s = RunSettings(**dict(TINY, epochs=2))
    folder = tmp_path / "run"
    real_replace, kept = os.replace, {}

    def replace(src, dst, *a, **kw):
        if Path(dst).name == "checkpoint.pt":
            if kept:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), None, str(dst))
            real_replace(src, dst, *a, **kw)
            kept["bytes"] = Path(dst).read_bytes()
            return None
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    capsys.readouterr()
    rc, out = run_cli(s, fmnist_pt, folder)
    assert rc == 1
    line = one_error(capsys)
    assert_names(line, folder / "checkpoint.pt", errno.ENOSPC, "renaming into place")
    assert line.endswith("the previous checkpoint is kept, a rerun resumes from it")
    assert (folder / "checkpoint.pt").read_bytes() == kept["bytes"]
    assert temporaries(folder) == [] and not out["info"].exists()
    monkeypatch.setattr(os, "replace", real_replace)
    rc, _ = run_cli(s, fmnist_pt, folder)
    assert rc == 0
    assert f"resuming {s.run_id} from step 5" in capsys.readouterr().err


def test_a_first_checkpoint_that_cannot_be_written_says_a_rerun_starts_over(tmp_path):
    path = tmp_path / ("c" * 300 + ".pt")
    with pytest.raises(ArtifactWriteError) as caught:
        recovery.save_checkpoint({"step": 1}, path)
    assert str(caught.value).endswith("no checkpoint was written before, a rerun starts over")
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_that_cannot_be_set_aside_is_named(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"bad")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(fault(errno.EROFS, path)))
    with pytest.raises(ArtifactWriteError) as caught:
        recovery.set_aside(path)
    assert str(caught.value).startswith(f"{path}: setting it aside as checkpoint.pt.corrupt-")
    assert "the file system is read-only" in str(caught.value)
    assert path.read_bytes() == b"bad"


@pytest.fixture
def fit_inputs(tmp_path) -> list[str]:
    dist, _ = synthetic_distances()
    dist.to_parquet(tmp_path / "distances.parquet", index=False)
    exponents_table().to_parquet(tmp_path / "exponents.parquet", index=False)
    args = ["--distances", str(tmp_path / "distances.parquet")]
    return args + ["--exponents", str(tmp_path / "exponents.parquet")]


def fits_argv(inputs, out: Path, fits_name="fits.parquet") -> list[str]:
    return inputs + [
        "--out-fits", str(out / fits_name), "--out-bounds", str(out / "bounds.parquet")
    ]  # fmt: skip


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("call", ["rename", "parquet"])
def test_fits_that_cannot_be_written_fail_naming_the_file(
    tmp_path, monkeypatch, capsys, fit_inputs, call, code
):
    out = tmp_path / "out"
    assert fits.main(fits_argv(fit_inputs, out)) == 0
    before = snapshot(out)
    inject(monkeypatch, call, code, "fits.parquet")
    capsys.readouterr()
    assert fits.main(fits_argv(fit_inputs, out)) == 1
    operation = "renaming into place" if call == "rename" else "writing"
    assert_names(one_error(capsys), out / "fits.parquet", code, operation)
    assert snapshot(out) == before


def test_fits_with_a_real_over_long_name_fail_naming_it(tmp_path, capsys, fit_inputs):
    out = tmp_path / "out"
    name = "f" * 300 + ".parquet"
    capsys.readouterr()
    assert fits.main(fits_argv(fit_inputs, out, name)) == 1
    line = one_error(capsys)
    assert line.startswith(f"error: {out / name}: renaming into place failed: the file name is ")
    assert "too long (308 bytes); shorten the experiment name or tag" in line
    assert temporaries(out) == []


@pytest.mark.skipif(ROOT, reason="root writes into a read-only folder regardless of its mode")
def test_fits_into_a_real_read_only_folder_fail_naming_it(tmp_path, capsys, fit_inputs):
    out = tmp_path / "out"
    assert fits.main(fits_argv(fit_inputs, out)) == 0
    before = snapshot(out)
    out.chmod(0o555)
    try:
        capsys.readouterr()
        assert fits.main(fits_argv(fit_inputs, out)) == 1
    finally:
        out.chmod(0o755)
    assert_names(one_error(capsys), out / "bounds.parquet", errno.EACCES)
    assert snapshot(out) == before
