"""The tables' schema: one home of file names and column names, checked where tables are written."""

from __future__ import annotations

import pandas as pd
import pytest

from chaosgd.planning import tables
from chaosgd.planning.tables import EPOCHS, STEPS, TABLES, Table
from chaosgd.runs.artifacts import write_parquet


def test_a_column_is_named_by_the_table_and_a_misspelt_one_fails():
    assert EPOCHS.train_acc == "train_acc"
    assert STEPS.n_pruned == "n_pruned"  # optional columns are named too
    with pytest.raises(AttributeError, match="table 'epochs' has no column 'train_accuracy'"):
        EPOCHS.train_accuracy  # noqa: B018


def test_paths_are_under_the_stage_and_the_run():
    assert STEPS.path("r1") == "results/train/r1/steps.parquet"
    assert tables.EXPONENTS.path() == "results/lyapunov/{run}/exponents.parquet"
    assert tables.FITS.path("r", results="elsewhere") == "elsewhere/fits/r/fits.parquet"
    assert {t.name for t in TABLES.values()} == set(TABLES)
    assert len({t.path() for t in TABLES.values()}) == len(TABLES)


def test_a_writer_that_leaves_out_a_column_writes_nothing(tmp_path):
    frame = pd.DataFrame({c: [0.0] for c in EPOCHS.columns})
    write_parquet(frame, tmp_path / "ok.parquet", EPOCHS)
    assert list(pd.read_parquet(tmp_path / "ok.parquet").columns) == list(EPOCHS.columns)
    with pytest.raises(
        ValueError, match=r"epochs.parquet: the writer left out columns \['val_acc'\]"
    ):
        write_parquet(frame.drop(columns="val_acc"), tmp_path / "bad.parquet", EPOCHS)
    assert not (tmp_path / "bad.parquet").exists()
    # extra columns (a run's own families, like dist_<layer>) are fine
    write_parquet(frame.assign(extra=1), tmp_path / "extra.parquet", EPOCHS)


def test_a_column_may_not_shadow_the_tables_own_attributes():
    with pytest.raises(ValueError, match=r"column names \['path'\] are attributes"):
        Table("x", "t", ("step", "path"), "a table whose column hides its path()")


def test_subspace_columns_cover_every_kind_and_part():
    cols = tables.SUBSPACES.columns
    assert cols[:2] == ("t0", "step") and len(cols) == 2 + 5 * len(tables.SUBSPACE_KINDS)
    assert "similarity_chaotic" in cols and "random_nonchaotic_vs_chaotic" in cols


def _known(table) -> set[str]:
    return set(table.columns) | set(table.optional)


def test_every_column_the_figures_read_is_in_the_schema():
    from chaosgd.analysis.plots import loading

    for name, (present, finite) in loading.TABLES.items():
        assert set(present) <= _known(TABLES[name]), name
        assert set(finite) <= set(present), name


def test_every_column_the_claims_read_is_in_the_schema():
    from chaosgd.analysis.claims import results

    assert set(results.SPECTRUM_COLUMNS) <= _known(STEPS)
    subspaces = results.SUBSPACE_COLUMNS + results.SUBSPACE_SIMILARITIES
    assert set(subspaces) <= _known(tables.SUBSPACES)
    assert set(results.DISTANCE_COLUMNS) <= _known(tables.DISTANCES)
    assert set(results.FIT_COLUMNS + results.FIT_NUMBERS) <= _known(tables.FITS)


def test_a_reader_of_a_column_no_writer_writes_is_caught(monkeypatch):
    from chaosgd.analysis.plots import loading

    monkeypatch.setitem(loading.TABLES, "epochs", (("step", "train_accuracy"), ("step",)))
    with pytest.raises(AssertionError, match="epochs"):
        test_every_column_the_figures_read_is_in_the_schema()
