"""The workflow as a whole: it plans cleanly, lints cleanly, and rejects bad configs early."""

from __future__ import annotations

import pytest

from support.workflow import REPO, run_snakemake


def test_dry_run_quick_config_is_clean(tmp_path):
    proc = run_snakemake("-n", "--configfile", str(REPO / "config/quick.yaml"), workdir=tmp_path)
    assert "datasets_prepare" in proc.stdout


def test_dry_run_paper_config_is_clean(tmp_path):
    proc = run_snakemake("-n", workdir=tmp_path)
    assert "datasets_prepare" in proc.stdout


def test_lint_is_clean():
    proc = run_snakemake("--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "text, expected",
    [
        ("download_cachee: x\n", "unknown key 'download_cachee'"),
        ("datasets:\n  fmnist:\n    local_dirr: /x\n", "datasets.fmnist: unknown key 'local_dirr'"),
        ("datasets:\n  fmnist:\n    download: 'yes'\n", "datasets.fmnist.download: 'yes' is not"),
        ("datasets:\n  mnist: {}\n", "datasets: unknown key 'mnist'"),
    ],
)
def test_bad_config_fails_before_any_job_naming_the_key(tmp_path, text, expected):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    proc = run_snakemake("-n", "--configfile", str(cfg), workdir=tmp_path, check=False)
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr
    assert "datasets_prepare" not in proc.stdout
