"""The stress test's pure parts: the bit-for-bit comparison and what it masks, the reading of
tracebacks, fault messages, job tables and Snakemake's summary, and the command line's checks."""

from __future__ import annotations

import json

import pytest

from chaosgd.tools.stress import faults
from chaosgd.tools.stress.cli import main, report
from chaosgd.tools.stress.compare import (
    EXCLUSIONS,
    compare_results,
    difference,
    exclusion_for,
    job_counts,
    named_fault,
    names_a_file,
    summary_jobs,
    tracebacks,
    without_job_logs,
)
from chaosgd.tools.stress.runs import Ledger

RUN = "fmnist_mlp-relu4_sgd_m0_s0"
DATA_FILES = [
    f"train/{RUN}/steps.parquet",
    f"train/{RUN}/epochs.parquet",
    f"train/{RUN}/spectra.parquet",
    f"train/{RUN}/final.pt",
    f"lyapunov/{RUN}/spectrum_final.pt",
    f"lyapunov/{RUN}/exponents.parquet",
    f"ensembles/{RUN}/distances.parquet",
    f"fits/{RUN}/fits.parquet",
    "datasets/fmnist.pt",
    "datasets/fmnist.json",
    "figures/fig1.parquet",
    "figures/fig1.png",
    "claims/claims.md",
    "claims/claims.html",
    "claims/claims.parquet",
    "report/stale.txt",
]


def run_json(**result) -> bytes:
    info = {
        "run_id": RUN,
        "settings": {"lr": 0.01, "seed": 0},
        "result": {"steps": 6, "wall_seconds": 4.9, "resumed_from_step": None, **result},
    }
    return json.dumps(info, indent=2).encode()


@pytest.mark.parametrize("name", DATA_FILES)
def test_data_files_are_compared_bit_for_bit(name):
    assert exclusion_for(name) is None
    data = bytes(range(256)) * 4
    flipped = data[:700] + bytes([data[700] ^ 1]) + data[701:]
    assert difference(name, data, data) is None
    assert difference(name, data, flipped) == "differs (first at byte 700 of 1024)"
    assert "bytes, the reference has 1024" in difference(name, data, data[:-1])


def test_every_exclusion_names_what_it_masks_and_why():
    assert len({e.pattern for e in EXCLUSIONS}) == len(EXCLUSIONS)
    for e in EXCLUSIONS:
        assert e.masked and e.reason
        assert not e.pattern.endswith((".parquet", ".pt", ".png"))


def test_an_exclusion_matches_within_one_folder_only():
    assert exclusion_for(f"train/{RUN}/run.json") is not None
    assert exclusion_for(f"train/{RUN}/deeper/run.json") is None
    assert exclusion_for("figures/sub/fig1.pdf") is None
    assert exclusion_for("run.json") is None


def test_run_json_timings_are_masked_and_settings_are_not():
    name = f"train/{RUN}/run.json"
    ref = run_json()
    assert difference(name, ref, run_json(wall_seconds=7.5, resumed_from_step=3)) is None
    assert "differs beyond the keys" in difference(name, ref, run_json(steps=5))
    changed = ref.replace(b'"lr": 0.01', b'"lr": 0.02')
    assert difference(name, ref, changed)
    assert difference(name, ref, b"{ not json")  # damaged: a plain mismatch, no exception


def test_a_pdf_is_compared_but_for_its_creation_date():
    name = "figures/fig1.pdf"
    ref = b"%PDF-1.4\n<< /CreationDate (D:20261203161034Z) /Producer (x) >>\nstream 123"
    later = ref.replace(b"20261203161034Z", b"20261204090000Z")
    assert difference(name, ref, later) is None
    assert difference(name, ref, later.replace(b"123", b"124"))


def test_the_runs_table_is_compared_but_for_its_timing_columns():
    name = "report/runs.tsv"
    ref = b"run_id\tlr\twall_seconds\tsteps_per_second\tfinal_val_acc\nr\t0.01\t5.0\t1.2\t0.14\n"
    assert difference(name, ref, ref.replace(b"5.0\t1.2", b"2.2\t2.7")) is None
    assert difference(name, ref, ref.replace(b"0.14", b"0.15"))


def write(root, files):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_comparing_results_finds_a_one_byte_difference_and_counts_bytes(tmp_path):
    files = {f"train/{RUN}/steps.parquet": b"PAR1" + bytes(100), "datasets/fmnist.pt": bytes(50)}
    write(tmp_path / "ref", files)
    write(tmp_path / "got", files)
    same = compare_results(tmp_path / "ref", tmp_path / "got")
    assert (same.files, same.bytes, same.mismatches) == (2, 154, [])
    steps = tmp_path / "got" / "train" / RUN / "steps.parquet"
    data = bytearray(steps.read_bytes())
    data[57] ^= 0x40
    steps.write_bytes(bytes(data))
    found = compare_results(tmp_path / "ref", tmp_path / "got")
    assert found.mismatches == [(f"train/{RUN}/steps.parquet", "differs (first at byte 57 of 104)")]


def test_a_finished_run_has_every_file_and_nothing_else(tmp_path):
    write(tmp_path / "ref", {"a/x.parquet": b"1", "a/y.pt": b"2"})
    write(tmp_path / "got", {"a/x.parquet": b"1", "a/checkpoint.pt": b"c", "a/.y.pt.abc": b"t"})
    found = compare_results(tmp_path / "ref", tmp_path / "got")
    assert sorted(found.mismatches) == [
        ("a/checkpoint.pt", "not in the reference (a half-written output?)"),
        ("a/y.pt", "missing"),
    ]
    assert found.temporary == ["a/.y.pt.abc"]


def test_after_a_failed_run_only_whole_outputs_may_lie_there(tmp_path):
    write(tmp_path / "ref", {"a/x.parquet": b"whole", "a/y.pt": b"2"})
    write(
        tmp_path / "got",
        {"a/x.parquet": b"whole", "a/checkpoint.pt": b"c", "a/checkpoint.pt.corrupt-1": b"?"},
    )
    assert compare_results(tmp_path / "ref", tmp_path / "got", complete=False).mismatches == []
    (tmp_path / "got" / "a" / "y.pt").write_bytes(b"")  # half-written
    (tmp_path / "got" / "a" / "z.tmp").write_bytes(b"")  # foreign
    found = compare_results(tmp_path / "ref", tmp_path / "got", complete=False)
    assert sorted(f for f, _ in found.mismatches) == ["a/y.pt", "a/z.tmp"]


SNAKEMAKE_CRASH = """\
Traceback (most recent call last):

  File "/venv/lib/python3.11/site-packages/snakemake/cli.py", line 2316, in args_to_api
    dag_api.execute_workflow(
    ^^^^^^^^^^^^^^^^^^^^^^^^

  File "<frozen os>", line 243, in removedirs

OSError: [Errno 30] Read-only file system: 'results/train/run'
"""
STAGE_CRASH = """\
Traceback (most recent call last):
  File "/x/chaosgd/train.py", line 60, in main
    torch.save(state, tmp)
RuntimeError: [enforce fail at inline_container.cc:664] . unexpected pos 1088 vs 1002
"""


def test_tracebacks_are_read_to_their_exception_line():
    assert tracebacks("all fine\nerror: results/x: writing failed") == []
    assert tracebacks(SNAKEMAKE_CRASH + STAGE_CRASH) == [
        "OSError: [Errno 30] Read-only file system: 'results/train/run'",
        "RuntimeError: [enforce fail at inline_container.cc:664] . unexpected pos 1088 vs 1002",
    ]
    assert names_a_file(tracebacks(SNAKEMAKE_CRASH)[0])
    assert not names_a_file(tracebacks(STAGE_CRASH)[0])


def test_a_fault_is_named_by_the_stage_or_by_snakemake():
    stage = (
        "error: results/train/r/checkpoint.pt: writing failed: the disk is full; free space on "
        "/mnt or point results/ elsewhere"
    )
    assert named_fault(f"noise\n{stage}\n", "disk full") == ("stage", stage)
    assert named_fault(stage, "read-only") is None
    assert named_fault(SNAKEMAKE_CRASH, "read-only") == (
        "snakemake",
        "OSError: [Errno 30] Read-only file system: 'results/train/run'",
    )
    assert named_fault("OSError: [Errno 28] No space left on device", "disk full") is None


def test_job_counts_and_the_detailed_summary_are_read():
    stats = "Job stats:\njob    count\n-----  -----\ntrain_run  2\nall  1\ntotal  3\n\nSelect"
    assert job_counts(stats) == {"train_run": 2, "all": 1}
    assert job_counts("Nothing to be done (all requested files are present and up to date).") == {}
    table = (
        "Building DAG of jobs...\n"
        "output_file\tdate\trule\tlog-file(s)\tinput-file(s)\n"
        "results/figures/fig1.pdf\td\tfigures_draw\tlogs/figures/fig1.log\tx\n"
        "results/figures/fig1.png\td\tfigures_draw\tlogs/figures/fig1.log\tx\n"
        "results/train/r/run.json\td\ttrain_run\tlogs/train/r.log\tx\n"
    )
    jobs = summary_jobs(table)
    assert [(j.rule, j.log, j.outputs) for j in jobs] == [
        ("figures_draw", "logs/figures/fig1.log", ("results/figures/fig1.pdf", "results/figures/fig1.png")),
        ("train_run", "logs/train/r.log", ("results/train/r/run.json",)),
    ]  # fmt: skip


@pytest.mark.parametrize("option", ["--parallel", "--rounds", "--kills", "--cores"])
def test_sizes_below_one_are_refused_before_anything_runs(option, capsys):
    assert main([option, "0"]) == 2
    assert "must be 1 or more" in capsys.readouterr().err


def test_a_missing_config_or_a_used_workdir_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHAOSGD_STRESS_NAMESPACE", "test")  # no re-execution under unshare
    assert main(["--configfile", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "file").write_text("mine")
    assert main(["--workdir", str(tmp_path / "used")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "used" / "file").read_text() == "mine"


def test_a_chain_of_tracebacks_counts_once_by_the_exception_that_escaped():
    chained = (
        'Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
        "OSError: [Errno 28] No space left on device\n\n"
        "During handling of the above exception, another exception occurred:\n\n"
        'Traceback (most recent call last):\n  File "y.py", line 2, in g\n'
        "AttributeError: 'Stream' object has no attribute 'pos'\n"
    )
    assert tracebacks(chained) == ["AttributeError: 'Stream' object has no attribute 'pos'"]


def test_snakemake_own_output_leaves_out_the_job_logs_it_repeats():
    output = (
        "Error in rule figures_draw:\n"
        "Logfile logs/figures/fig2.log:\n" + "=" * 80 + "\n" + STAGE_CRASH + "=" * 80 + "\n"
        "Logfile logs/figures/fig3.log: empty file\n"
        "Shutting down, this might take some time.\n"
    )
    own = without_job_logs(output)
    assert tracebacks(output) and not tracebacks(own)
    assert own.splitlines() == [
        "Error in rule figures_draw:",
        "Logfile logs/figures/fig3.log: empty file",
        "Shutting down, this might take some time.",
    ]
    assert tracebacks(without_job_logs(SNAKEMAKE_CRASH)) == tracebacks(SNAKEMAKE_CRASH)


SETTINGS = {"configfile": "c.yaml", "parallel": 1, "rounds": 1, "seed": 0, "cores": 1, "cpus": 2}


def test_a_corrupted_results_file_fails_the_stress_test(tmp_path):
    files = {f"train/{RUN}/final.pt": bytes(64), f"train/{RUN}/run.json": run_json()}
    write(tmp_path / "ref", files)
    write(tmp_path / "got", files)
    ledger = Ledger()
    ledger.compared_with("clean", compare_results(tmp_path / "ref", tmp_path / "got"))
    assert ledger.summary(SETTINGS)["ok"]
    assert report(ledger.summary(SETTINGS)).endswith("PASSED")
    (tmp_path / "got" / "train" / RUN / "final.pt").write_bytes(bytes(63) + b"\x01")
    ledger.compared_with("corrupted", compare_results(tmp_path / "ref", tmp_path / "got"))
    summary = ledger.summary(SETTINGS)
    assert not summary["ok"]
    assert summary["mismatches"] == [
        {
            "where": "corrupted",
            "file": f"results/train/{RUN}/final.pt",
            "why": "differs (first at byte 63 of 64)",
        }
    ]
    assert summary["compared"] == {
        "comparisons": 2,
        "files": 4,
        "bytes": 2 * (64 + len(run_json())),
    }
    text = report(summary)
    assert "mismatches: 1" in text and text.endswith("FAILED")


def test_a_half_written_output_after_a_failed_run_is_an_escape(tmp_path):
    write(tmp_path / "ref", {"a/x.parquet": b"whole"})
    write(tmp_path / "got", {"a/x.parquet": b"who"})
    ledger = Ledger()
    found = compare_results(tmp_path / "ref", tmp_path / "got", complete=False)
    ledger.compared_with("disk full", found, partial=True)
    ledger.scan("disk full", STAGE_CRASH)
    summary = ledger.summary(SETTINGS)
    assert not summary["ok"] and summary["mismatches"] == []
    assert [e["kind"] for e in summary["escapes"]] == [
        "half-written or foreign output",
        "traceback in a job log",
    ]


def test_without_unshare_the_mounts_are_skipped_with_the_reason(monkeypatch):
    monkeypatch.delenv(faults.NAMESPACE, raising=False)
    monkeypatch.setattr(faults.shutil, "which", lambda name: None)
    assert "no unshare command" in faults.enter_namespace([])
    monkeypatch.setattr(faults.sys, "platform", "darwin")
    assert "need Linux" in faults.enter_namespace([])
    monkeypatch.setenv(faults.NAMESPACE, "unshare --mount")  # inside it already
    assert faults.enter_namespace([]) == ""
