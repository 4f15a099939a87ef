"""The bar rules, checked on hand-made frames (pure functions, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from trendcast.bars import aligned, validate_bars

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def frame(rows: list[tuple]) -> pd.DataFrame:
    cols = ["open_time", "open", "high", "low", "close", "volume"]
    out = pd.DataFrame(rows, columns=cols)
    out["open_time"] = pd.to_datetime(out["open_time"], utc=True, format="ISO8601")
    return out


GOOD = ("2024-01-01T00:00Z", 10.0, 12.0, 9.0, 11.0, 5.0)


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ((None, 10.0, 12.0, 9.0, 11.0, 5.0), "open_time: not a parseable timestamp"),
        (("2030-01-01T00:00Z", 10.0, 12.0, 9.0, 11.0, 5.0), "open_time: in the future"),
        (("2024-01-01T00:30Z", 10.0, 12.0, 9.0, 11.0, 5.0), "not aligned to the 1h interval"),
        (("2024-01-01T01:00Z", np.nan, 12.0, 9.0, 11.0, 5.0), "open: missing or not a number"),
        (("2024-01-01T01:00Z", 10.0, np.inf, 9.0, 11.0, 5.0), "high: not finite"),
        (("2024-01-01T01:00Z", 10.0, 12.0, 0.0, 11.0, 5.0), "low: must be > 0"),
        (("2024-01-01T01:00Z", 10.0, 8.0, 9.0, 11.0, 5.0), "high < low"),
        (("2024-01-01T01:00Z", 10.0, 10.5, 9.0, 11.0, 5.0), "high < max(open, close)"),
        (("2024-01-01T01:00Z", 10.0, 12.0, 10.5, 11.0, 5.0), "low > min(open, close)"),
        (("2024-01-01T01:00Z", 10.0, 12.0, 9.0, 11.0, -1.0), "volume: must be >= 0"),
    ],
)
def test_each_rule_rejects_with_its_reason(row, reason):
    result = validate_bars(frame([GOOD, row]), "1h", now=NOW)
    assert len(result.good) == 1
    assert list(result.rejected_positions) == [1]
    assert reason in result.rejected_reasons[0]


def test_duplicate_key_keeps_first_of_identical_valid_rows_and_names_it():
    bad_first = ("2024-01-01T01:00Z", 10.0, 8.0, 9.0, 11.0, 5.0)  # high < low
    second = ("2024-01-01T01:00Z", 10.0, 12.0, 9.0, 11.0, 6.0)
    third = ("2024-01-01T01:00Z", 10.0, 12.0, 9.0, 11.0, 6.0)
    result = validate_bars(frame([GOOD, bad_first, second, third]), "1h", now=NOW)
    assert result.good["volume"].tolist() == [5.0, 6.0]
    reasons = dict(zip(result.rejected_positions, result.rejected_reasons, strict=True))
    assert reasons[1] == "high < low"
    assert reasons[3] == "open_time: duplicate key in file (row 3 kept)"


@pytest.mark.parametrize("order", ["wrong first", "right first"])
def test_conflicting_copies_are_all_rejected_whichever_comes_first(order):
    right = ("2024-01-01T01:00Z", 10.0, 12.0, 9.0, 11.0, 6.0)
    wrong = ("2024-01-01T01:00Z", 10.0, 12.0, 9.0, 11.5, 6.0)
    rows = [GOOD, wrong, right] if order == "wrong first" else [GOOD, right, wrong]
    result = validate_bars(frame(rows), "1h", now=NOW)
    assert result.good["open_time"].tolist() == [pd.Timestamp("2024-01-01T00:00Z")]
    assert list(result.rejected_positions) == [1, 2]
    assert all("conflicting duplicate (rows 2, 3 differ)" in r for r in result.rejected_reasons)


def test_good_bars_come_back_sorted_by_time():
    rows = [("2024-01-01T02:00Z", 1.0, 2.0, 0.5, 1.5, 1.0), GOOD]
    result = validate_bars(frame(rows), "1h", now=NOW)
    assert result.good["open_time"].is_monotonic_increasing
    assert result.rejected_count == 0


def test_trades_must_be_non_negative_integers():
    data = frame([GOOD, ("2024-01-01T01:00Z", 10.0, 12.0, 9.0, 11.0, 5.0)])
    data["trades"] = [3.0, -1.0]
    result = validate_bars(data, "1h", now=NOW)
    assert result.rejected_reasons.tolist() == ["trades: must be a non-negative integer"]


@pytest.mark.parametrize(
    ("stamp", "interval", "expected"),
    [
        ("2024-01-01T00:15Z", "15m", True),
        ("2024-01-01T00:16Z", "15m", False),
        ("2024-01-01T00:00Z", "1w", True),  # a Monday
        ("2024-01-02T00:00Z", "1w", False),
        ("2024-02-01T00:00Z", "1M", True),
        ("2024-02-02T00:00Z", "1M", False),
    ],
)
def test_alignment_follows_exchange_conventions(stamp, interval, expected):
    ns = pd.to_datetime([stamp], utc=True).as_unit("ns").asi8
    assert bool(aligned(ns, interval)[0]) is expected
