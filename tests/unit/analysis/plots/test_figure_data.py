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


def _hidden_disk_full(*args, **kwargs):
    """What matplotlib's PDF backend does on a full disk: the write's OSError, then an
    AttributeError raised while it cleans up ('Stream' object has no attribute 'pos')."""
    try:
        raise OSError(28, "No space left on device")
    except OSError:
        raise AttributeError("'Stream' object has no attribute 'pos'")


def test_a_full_disk_hidden_by_matplotlib_is_named_with_the_file(tmp_path, monkeypatch):
    from chaosgd.runs.artifacts import ArtifactWriteError

    data = FigureData()
    fig, (ax,) = style.figure(1)
    data.plot(ax, "p", "line", [1, 2], [3.0, 4.0])
    monkeypatch.setattr(fig, "savefig", _hidden_disk_full)
    out = tmp_path / "f.pdf"
    with pytest.raises(ArtifactWriteError) as err:
        save(fig, [out], data, tmp_path / "f.parquet")
    assert str(out) in str(err.value) and "the disk is full" in str(err.value)
    # all or nothing: neither the figure nor a temporary file
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_an_error_that_is_not_the_system_s_is_not_disguised(tmp_path, monkeypatch):
    fig, (ax,) = style.figure(1)

    def broken(*args, **kwargs):
        raise AttributeError("a bug")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(AttributeError, match="a bug"):
        save(fig, [tmp_path / "f.pdf"])
    assert not list(tmp_path.iterdir())
