"""Reading bar files: the layouts we accept and the one-line errors for the ones we do not."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from trendcast.bar_files import read_bar_file
from trendcast.errors import InputError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_plain_csv_with_any_case_and_extra_columns(tmp_path):
    path = write(
        tmp_path / "a.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,1,2,0.5,1.5,1.4,100\n",
    )
    parsed = read_bar_file(path)
    row = parsed.frame.iloc[0]
    assert row["open_time"] == pd.Timestamp("2024-01-02", tz="UTC")
    assert (row["open"], row["high"], row["low"], row["close"], row["volume"]) == (
        1,
        2,
        0.5,
        1.5,
        100,
    )
    assert parsed.layout == "ohlcv-csv"


@pytest.mark.parametrize("factor", [1_000, 1_000_000], ids=["milliseconds", "microseconds"])
def test_binance_kline_csv_without_header(tmp_path, factor):
    open_s = 1_704_067_200  # 2024-01-01T00:00Z
    close_ms = (open_s + 59) * factor
    line = f"{open_s * factor},42000.1,42100.0,41900.5,42050.0,12.5,{close_ms},0,77,0,0,0"
    parsed = read_bar_file(write(tmp_path / "k.csv", line + "\n"))
    assert parsed.layout == "binance-klines"
    row = parsed.frame.iloc[0]
    assert row["open_time"] == pd.Timestamp("2024-01-01", tz="UTC")
    assert row["trades"] == 77
    assert row["close"] == 42050.0


def test_parquet_and_gzip_csv(tmp_path):
    frame = pd.DataFrame(
        {
            "open_time": pd.to_datetime(["2024-01-01T00:00Z"], utc=True),
            "open": [1.0],
            "high": [2.0],
            "low": [0.5],
            "close": [1.5],
            "volume": [3.0],
        }
    )
    frame.to_parquet(tmp_path / "b.parquet")
    assert read_bar_file(tmp_path / "b.parquet").frame["close"].tolist() == [1.5]
    with gzip.open(tmp_path / "c.csv.gz", "wt") as handle:
        handle.write("timestamp,open,high,low,close,volume\n1704067200,1,2,0.5,1.5,3\n")
    parsed = read_bar_file(tmp_path / "c.csv.gz")
    assert parsed.frame["open_time"].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC")


def test_time_format_for_day_first_dates(tmp_path):
    path = write(
        tmp_path / "fx.csv",
        "Time,Open,High,Low,Close,Volume\n02.01.2017 22:00:00.000,1,2,0.5,1.5,3\n",
    )
    with pytest.raises(InputError, match=r"fx.csv: column 'Time' \(time\) has no parseable"):
        read_bar_file(path)
    parsed = read_bar_file(path, time_format="%d.%m.%Y %H:%M:%S.%f")
    assert parsed.frame["open_time"].iloc[0] == pd.Timestamp("2017-01-02 22:00", tz="UTC")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "file is empty"),
        ("time,open,high,low,close,volume\n", "header but no rows"),
        ("a,b,c\n1,2,3\n", "missing column(s) time, open, high, low, close, volume"),
        ("time,open,high,low,close\n2024-01-01,1,2,0.5,1.5\n", "missing column(s) volume"),
        (
            "time,open,high,low,close,volume\n2024-01-01,x,2,0.5,1.5,3\n",
            "column 'open' (open) is not numeric",
        ),
    ],
)
def test_file_level_errors_name_the_file_and_the_rule(tmp_path, content, message):
    path = write(tmp_path / "bad.csv", content)
    with pytest.raises(InputError) as info:
        read_bar_file(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_bar_file(tmp_path / "nope.csv")
