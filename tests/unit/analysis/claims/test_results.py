"""Reading the results a claim needs: the settings of a run, and its tables checked as read."""

from __future__ import annotations

import pandas as pd
import pytest

from chaosgd.analysis.claims.results import Results
from chaosgd.runs.artifacts import UnreadableFile

from support.claims import fake_run


def test_settings_and_final_row_of_a_run(tmp_path):
    fake_run(tmp_path, "neg0", "cgd-negative", 2, onset=5, acc=0.7, loss=0.9)
    res = Results(tmp_path)
    settings = res.settings("neg0")
    assert (settings["variant"], settings["seed"], settings["onset"]) == ("cgd-negative", 2, 5)
    assert res.settings("neg0") is settings  # read once per run
    final = res.final("neg0")
    assert (final["train_acc"], final["train_loss"]) == (0.7, 0.9)


def test_a_missing_column_names_the_file(tmp_path):
    fake_run(tmp_path, "sgd0", "sgd", 0)
    with pytest.raises(UnreadableFile, match="steps.parquet: lacks column"):
        Results(tmp_path).table("train", "sgd0", "steps", ["step", "n_negative"])
    assert isinstance(Results(tmp_path).table("train", "sgd0", "steps"), pd.DataFrame)
