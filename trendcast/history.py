"""Bulk history load: read a file, validate every bar, store good bars and quarantine the rest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from trendcast.bar_files import read_bar_file
from trendcast.bar_store import LoadSummary, Rejected, store_bars
from trendcast.bars import validate_bars
from trendcast.errors import InputError
from trendcast.schema import INTERVALS, series_key, validate_source
from trendcast.stages import stage


def rejected_rows(
    raw: pd.DataFrame, positions: np.ndarray, reasons: np.ndarray, origin: str
) -> list[Rejected]:
    """Quarantine entries carrying the values exactly as received and the 1-based data row."""
    records = raw.iloc[positions].astype(object).where(raw.iloc[positions].notna(), None)
    return [
        Rejected(reason=str(reason), payload={"origin": origin, "row": int(pos) + 1, "values": rec})
        for pos, reason, rec in zip(
            positions, reasons, records.to_dict(orient="records"), strict=True
        )
    ]


def load_frame(
    engine: Engine,
    frame: pd.DataFrame,
    *,
    symbol: str,
    interval: str,
    source: str,
    origin: str,
    raw: pd.DataFrame | None = None,
    kind: str = "load-history",
    now: datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
    known_at: str = "close",
    revise: bool = False,
) -> LoadSummary:
    """Validate a typed bar frame and store it; ``raw`` (same index) feeds quarantine payloads.
    A frame whose bars are spaced unlike ``interval`` is refused before anything is written."""
    key = series_key(symbol, interval)
    validate_source(source)
    with stage("validate"):
        checked = validate_bars(frame, interval, now=now)
        check_spacing(checked.good["open_time"], interval, origin)
        rejected = rejected_rows(
            frame if raw is None else raw,
            checked.rejected_positions,
            checked.rejected_reasons,
            origin,
        )
    return store_bars(
        engine,
        key,
        checked.good,
        rejected,
        source=source,
        kind=kind,
        read=len(frame),
        details={"origin": origin, "known_at": known_at},
        on_progress=on_progress,
        known_at=known_at,
        revise=revise,
    )


def most_common_spacing(open_times: pd.Series) -> pd.Timedelta | None:
    """The most frequent distance between consecutive open times (None under three bars)."""
    if len(open_times) < 3:
        return None
    ns = open_times.to_numpy(dtype="datetime64[ns]").view("int64")
    ns = ns[~open_times.isna().to_numpy()]
    steps = np.diff(ns)
    if (steps < 0).any():
        steps = np.diff(np.sort(ns))
    steps = steps[steps > 0]
    if not len(steps):
        return None
    counts = pd.Series(steps).value_counts(sort=False)  # hashing: few distinct steps, fast
    tally = counts.to_numpy()
    return pd.Timedelta(int(counts.index.to_numpy()[tally == tally.max()].min()))


def check_spacing(open_times: pd.Series, interval: str, origin: str) -> None:
    """Refuse bars whose most common spacing is not ``interval``: alignment alone lets hourly
    bars pass as one-minute bars (every hour is also a minute)."""
    spacing = most_common_spacing(open_times)
    if spacing is None:
        return
    length = INTERVALS[interval]
    if length is None:  # calendar months: 28 to 31 days
        fits = pd.Timedelta(days=28) <= spacing <= pd.Timedelta(days=31)
        wanted = "28 to 31 days"
    else:
        fits = spacing == pd.Timedelta(length)
        wanted = _human(pd.Timedelta(length))
    if not fits:
        raise InputError(
            f"{origin}: bars are {_human(spacing)} apart (most common spacing), but --interval "
            f"{interval} means {wanted}; load it with the interval that matches"
        )


def _human(delta: pd.Timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def load_history(
    engine: Engine,
    path: Path,
    *,
    symbol: str,
    interval: str,
    source: str = "file",
    time_format: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    known_at: str = "close",
    revise: bool = False,
) -> LoadSummary:
    """Load one CSV/Parquet file of bars for (symbol, interval); see :func:`load_frame`."""
    series_key(symbol, interval)  # reject bad arguments before reading a large file
    validate_source(source)
    with stage("read file"):
        parsed = read_bar_file(path, time_format=time_format)
    summary = load_frame(
        engine,
        parsed.frame,
        symbol=symbol,
        interval=interval,
        source=source,
        origin=str(path),
        raw=parsed.raw,
        on_progress=on_progress,
        known_at=known_at,
        revise=revise,
    )
    summary.details["layout"] = parsed.layout
    return summary
