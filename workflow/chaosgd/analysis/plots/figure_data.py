"""The numbers a figure draws, recorded as it draws them, and the saving of a figure with them:
every figure's PDF and PNG go out with a Parquet table of its points, so that what the paper's
figures show can be checked against the numbers rather than read off a picture."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from chaosgd.analysis.plots import style
from chaosgd.runs.artifacts import atomic_path, write_parquet

DATA_COLUMNS = ("panel", "series", "x", "y", "lo", "hi")


class FigureData:
    """The numbers a figure draws, in long format (:data:`DATA_COLUMNS`): one row per plotted
    point, ``panel`` and ``series`` naming its panel and curve, ``lo`` / ``hi`` the band drawn
    around it (NaN where there is none). A horizontal reference line is two points, at the ends
    of its panel's data.

    Its ``plot``, ``band`` and ``hline`` draw and record in one call, so that what is saved is
    what is drawn.
    """

    def __init__(self) -> None:
        self._parts: list[pd.DataFrame] = []

    def add(self, panel: str, series: str, x, y, lo=None, hi=None) -> None:
        """Record the points (``x``, ``y``) of one curve, with a band ``lo``..``hi`` if given."""
        x = np.asarray(x, dtype=float).ravel()

        def column(values):
            if values is None:
                return np.full(x.shape, np.nan)
            return np.broadcast_to(np.asarray(values, dtype=float).ravel(), x.shape)

        self._parts.append(
            pd.DataFrame(
                {
                    "panel": str(panel),
                    "series": str(series),
                    "x": x,
                    "y": column(y),
                    "lo": column(lo),
                    "hi": column(hi),
                }
            )
        )

    def plot(self, ax, panel: str, series: str, x, y, **kwargs):
        """``ax.plot(x, y, **kwargs)``, recorded."""
        self.add(panel, series, x, y)
        return ax.plot(np.asarray(x), np.asarray(y), **kwargs)

    def band(self, ax, panel: str, series: str, x, mean, spread, colour, label, linestyle="-"):
        """:func:`chaosgd.analysis.plots.style.band` (a mean line with a ± ``spread`` band),
        recorded."""
        lo = hi = None
        if spread is not None:
            lo, hi = np.asarray(mean) - spread, np.asarray(mean) + spread
        self.add(panel, series, x, mean, lo, hi)
        style.band(ax, x, mean, spread, colour, label, linestyle)

    def hline(self, ax, panel: str, series: str, y: float, **kwargs) -> None:
        """A horizontal line at ``y`` over the panel (recorded at the ends of its data so far)."""
        xs = [p["x"] for p in self._parts if len(p) and p["panel"].iat[0] == str(panel)]
        xs = pd.concat(xs) if xs else pd.Series([np.nan])
        self.add(panel, series, [xs.min(), xs.max()], [y, y])
        ax.axhline(y, **kwargs)

    def frame(self) -> pd.DataFrame:
        """Every row recorded, in drawing order."""
        if not self._parts:
            return pd.DataFrame(columns=list(DATA_COLUMNS))
        return pd.concat(self._parts, ignore_index=True)[list(DATA_COLUMNS)]

    def write(self, path: str | os.PathLike) -> None:
        """Write the rows to ``path`` (Parquet, atomically); a figure that drew nothing is an
        error, not an empty table."""
        df = self.frame()
        if df.empty:
            raise ValueError(f"{path}: the figure drew no data")
        write_parquet(df, path)


def save(
    fig,
    outputs: list[str | os.PathLike],
    data: FigureData | None = None,
    data_path: str | os.PathLike | None = None,
) -> None:
    """Save to every output path (format from the suffix: .pdf, .png), atomically, and the
    figure's ``data`` to ``data_path`` (Parquet)."""
    # the data first: a figure whose numbers cannot be written is not saved either
    if data is not None and data_path is not None:
        data.write(data_path)
    for out in outputs:
        suffix = Path(out).suffix.lstrip(".")
        with atomic_path(out) as tmp:
            try:
                fig.savefig(tmp, format=suffix, dpi=200)
            except OSError:
                raise
            except Exception as exc:
                # matplotlib's PDF backend, cleaning up after a failed write (a full disk),
                # raises an AttributeError that hides the system's error: raise that one, which
                # atomic_path names with the file
                cause = _system_error(exc)
                if cause is None:
                    raise
                raise cause from exc
    style.plt.close(fig)


def _system_error(exc: BaseException) -> OSError | None:
    """The first OSError with an errno among the exceptions ``exc`` was raised from or while
    handling, or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
