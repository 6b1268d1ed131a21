"""FigureData: what a figure draws is what it records, and a figure that drew nothing saves
nothing."""

from __future__ import annotations

import numpy as np
import pytest

from chaosgd.analysis.plots import style
from chaosgd.analysis.plots.figure_data import DATA_COLUMNS, FigureData, save


def test_a_figure_that_draws_nothing_saves_nothing(tmp_path):
    with pytest.raises(ValueError, match="drew no data"):
        FigureData().write(tmp_path / "x.parquet")
    assert not any(tmp_path.iterdir())


def test_lines_bands_and_reference_lines_are_recorded_as_drawn(tmp_path):
    data = FigureData()
    fig, (ax,) = style.figure(1)
    data.plot(ax, "p", "line", [1, 2, 3], [4.0, 5.0, 6.0])
    data.band(ax, "p", "band", np.array([1, 3]), np.array([1.0, 2.0]), 0.5, "#000000", "b")
    data.hline(ax, "p", "level", 7.0)
    data.hline(ax, "empty", "level", 1.0)  # a panel without data: no x to span
    df = data.frame()
    assert list(df.columns) == list(DATA_COLUMNS)
    line = df[df["series"] == "line"]
    assert line["y"].tolist() == [4.0, 5.0, 6.0] and line["lo"].isna().all()
    band = df[df["series"] == "band"]
    assert band["lo"].tolist() == [0.5, 1.5] and band["hi"].tolist() == [1.5, 2.5]
    level = df[(df["panel"] == "p") & (df["series"] == "level")]
    assert level["x"].tolist() == [1.0, 3.0] and level["y"].tolist() == [7.0, 7.0]
    assert df[df["panel"] == "empty"]["x"].isna().all()
    save(fig, [tmp_path / "f.png"], data, tmp_path / "f.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet", "f.png"]
