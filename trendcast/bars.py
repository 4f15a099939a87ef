"""Validation of OHLCV bars: pure, vectorised, and the one place the bar rules live in Python.

``validate_bars`` splits a parsed frame into bars that satisfy every rule of ``market.bars`` and
rejected rows, each with the first rule it broke, so loaders can quarantine instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from trendcast.schema import INTERVALS

PRICE_COLUMNS = ("open", "high", "low", "close")
NUMERIC_COLUMNS = (*PRICE_COLUMNS, "volume")
BAR_COLUMNS = ("open_time", *NUMERIC_COLUMNS, "trades")

_NS_PER_DAY = 86_400 * 10**9
_MONDAY_OFFSET_NS = 4 * _NS_PER_DAY  # 1970-01-05 was the first Monday after the epoch


@dataclass(frozen=True)
class ValidatedBars:
    """``good``: bars sorted by open_time; ``rejected``: positions into the input with reasons."""

    good: pd.DataFrame
    rejected_positions: np.ndarray
    rejected_reasons: np.ndarray

    @property
    def rejected_count(self) -> int:
        return len(self.rejected_positions)


def aligned(open_time_ns: np.ndarray, interval: str) -> np.ndarray:
    """True where an open time (ns since epoch, UTC) starts a bar of ``interval``."""
    length = INTERVALS[interval]
    if length is None:  # calendar month: midnight on the first day
        stamps = pd.to_datetime(open_time_ns, utc=True)
        return np.asarray((stamps.day == 1) & (stamps.normalize() == stamps))
    step = int(length.total_seconds()) * 10**9
    offset = _MONDAY_OFFSET_NS if interval == "1w" else 0
    return (open_time_ns - offset) % step == 0


def validate_bars(frame: pd.DataFrame, interval: str, now: datetime | None = None) -> ValidatedBars:
    """Check every row against the bar rules; the first broken rule is the row's reason.

    ``frame`` has ``open_time`` (datetime64 UTC, NaT where unparseable), float columns ``open``,
    ``high``, ``low``, ``close``, ``volume`` (NaN where unparseable) and optionally ``trades``.
    Among valid rows with the same open_time: identical copies keep the first; copies that
    differ are all rejected as a conflicting duplicate, so no guess is ever stored.
    """
    now_ns = pd.Timestamp(now or datetime.now(UTC)).value
    times = frame["open_time"]
    t_ns = times.to_numpy(dtype="datetime64[ns]").view("int64")
    nat = times.isna().to_numpy()
    values = {c: frame[c].to_numpy(dtype="float64", na_value=np.nan) for c in NUMERIC_COLUMNS}
    o, h, lo, c, v = (values[k] for k in NUMERIC_COLUMNS)

    checks: list[tuple[np.ndarray, str]] = [
        (nat, "open_time: not a parseable timestamp"),
        (~nat & (t_ns > now_ns), "open_time: in the future"),
        (~nat & ~aligned(t_ns, interval), f"open_time: not aligned to the {interval} interval"),
    ]
    for col in NUMERIC_COLUMNS:
        checks.append((np.isnan(values[col]), f"{col}: missing or not a number"))
        checks.append((np.isinf(values[col]), f"{col}: not finite"))
    for col in PRICE_COLUMNS:
        checks.append((values[col] <= 0, f"{col}: must be > 0"))
    checks += [
        (h < lo, "high < low"),
        (h < np.maximum(o, c), "high < max(open, close)"),
        (lo > np.minimum(o, c), "low > min(open, close)"),
        (v < 0, "volume: must be >= 0"),
    ]
    if "trades" in frame:
        trades = frame["trades"].to_numpy(dtype="float64", na_value=np.nan)
        present = ~np.isnan(trades)
        bad_trades = present & ((trades < 0) | (trades != np.floor(trades)) | np.isinf(trades))
        checks.append((bad_trades, "trades: must be a non-negative integer"))

    with np.errstate(invalid="ignore"):
        conditions = [np.asarray(cond, dtype=bool) for cond, _ in checks]
    # Reasons are worked out for the broken rows only: a string per row for millions of good
    # bars would cost more than every check together.
    ok = ~np.logical_or.reduce(conditions)
    reasons = np.full(len(frame), "", dtype=object)
    broken = np.flatnonzero(~ok)
    if len(broken):
        reasons[broken] = np.select(
            [cond[broken] for cond in conditions], [msg for _, msg in checks], default=""
        )

    # Duplicate keys. Identical copies: keep the first, reject the rest. Copies that disagree:
    # nobody can tell which one is right, so every copy is rejected (the loader refetches or
    # reports the open time) and none is stored.
    positions = np.flatnonzero(ok)
    t_ok = t_ns[positions]
    if (np.diff(t_ok) > 0).all():  # strictly increasing, as files usually are: no duplicates
        dup_any = np.zeros(len(t_ok), dtype=bool)
    else:
        dup_any = pd.Series(t_ok).duplicated(keep=False).to_numpy()
    if dup_any.any():
        group_pos = positions[dup_any]
        group_t = t_ns[group_pos]
        stacked = np.column_stack([values[k][group_pos] for k in NUMERIC_COLUMNS])
        keys = pd.DataFrame(stacked).assign(t=group_t)
        distinct = keys.drop_duplicates().groupby("t").size()
        conflicting = np.isin(group_t, distinct.index[distinct.to_numpy() > 1])
        rows_of = pd.Series(group_pos + 1).groupby(group_t).agg(lambda r: ", ".join(map(str, r)))
        for pos, t in zip(group_pos[conflicting], group_t[conflicting], strict=True):
            reasons[pos] = f"open_time: conflicting duplicate (rows {rows_of[t]} differ)"
            ok[pos] = False
        exact = group_pos[~conflicting]
        if len(exact):
            first = pd.Series(exact).groupby(t_ns[exact]).transform("first").to_numpy()
            later = exact != first
            kept_rows = (first[later] + 1).astype(str).astype(object)
            reasons[exact[later]] = "open_time: duplicate key in file (row " + kept_rows + " kept)"
            ok[exact[later]] = False

    columns = [col for col in BAR_COLUMNS if col in frame]
    good = frame.loc[:, columns] if ok.all() else frame.loc[ok, columns]
    if not good["open_time"].is_monotonic_increasing:  # files are usually in order already
        good = good.sort_values("open_time", kind="stable")
    good = good.reset_index(drop=True)
    rejected = np.flatnonzero(~ok)
    return ValidatedBars(good=good, rejected_positions=rejected, rejected_reasons=reasons[rejected])
