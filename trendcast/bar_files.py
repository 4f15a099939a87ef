"""Read bar files (CSV or Parquet; plain OHLCV or Binance kline CSV) into a typed frame.

File-level problems (missing file, no rows, missing columns, a column with no usable value) raise
:class:`InputError` naming the file and the column; single bad cells become NaN/NaT so that
validation can quarantine just those rows.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trendcast.bars import NUMERIC_COLUMNS
from trendcast.errors import InputError

#: Column order of Binance's kline CSV dumps (data.binance.vision), which carry no header.
BINANCE_KLINE_COLUMNS = (
    "open_time",
    *NUMERIC_COLUMNS,
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
    "ignore",
)
TIME_ALIASES = ("open_time", "open time", "time", "timestamp", "datetime", "date", "gmt time")
TRADES_ALIASES = ("trades", "number_of_trades", "number of trades", "count")


@dataclass(frozen=True)
class BarFile:
    """A parsed file: ``frame`` has open_time (UTC), float OHLCV and maybe trades;
    ``raw`` keeps the values as read (for quarantine payloads); ``layout`` names the format."""

    path: Path
    frame: pd.DataFrame
    raw: pd.DataFrame
    layout: str


def read_bar_file(path: Path, time_format: str | None = None) -> BarFile:
    """Read ``path`` by its suffix (``.parquet``/``.pq`` or CSV, optionally gzipped)."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty (no rows)")
    if path.suffix.lower() in {".parquet", ".pq"}:
        raw, layout = _read_parquet(path), "parquet"
    else:
        try:
            raw, layout = _read_csv(path)
        except InputError:
            raise
        except (EOFError, OSError, UnicodeError, zlib.error, ValueError, csv.Error) as exc:
            # A truncated or corrupt .gz (EOFError, BadGzipFile, zlib.error), bytes that are
            # not UTF-8, or a parser giving up: one line naming the file, never a traceback.
            raise InputError(f"{path}: not a readable CSV file ({_problem(exc)})") from None
    if raw.empty:
        raise InputError(f"{path}: file has a header but no rows")
    return BarFile(path=path, frame=_typed(path, raw, time_format), raw=raw, layout=layout)


def _problem(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "compressed file ends early: truncated download?"
    if isinstance(exc, UnicodeError):
        return f"not UTF-8 text: {exc}"
    text = " ".join(str(exc).split())  # one line, whatever the library put in its message
    return f"{type(exc).__name__}: {text or 'unreadable'}"


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{path}: not a readable Parquet file ({_problem(exc)})") from None


def _read_csv(path: Path) -> tuple[pd.DataFrame, str]:
    first = _first_line(path)
    try:
        if _looks_like_binance(first):
            width = len(first)
            names = list(BINANCE_KLINE_COLUMNS[:width]) + [
                f"extra_{i}" for i in range(width - len(BINANCE_KLINE_COLUMNS))
            ]
            return pd.read_csv(path, header=None, names=names, engine="pyarrow"), "binance-klines"
        frame = pd.read_csv(path, engine="pyarrow")
    except (ValueError, pd.errors.ParserError) as exc:
        # pyarrow is strict about ragged rows; the C parser reports the line at fault.
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (ValueError, pd.errors.ParserError) as exc2:
            raise InputError(f"{path}: not a readable CSV file ({exc2})") from exc
    return frame, "ohlcv-csv"


def _first_line(path: Path) -> list[str]:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="") as handle:
            return next(csv.reader(handle), [])
    except (UnicodeDecodeError, OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: not a text CSV file ({_problem(exc)})") from None


def _looks_like_binance(first: list[str]) -> bool:
    if len(first) < 6:
        return False
    try:
        [float(cell) for cell in first[:6]]
    except ValueError:
        return False
    return True


def _column_map(path: Path, columns: list[str]) -> dict[str, str]:
    """Map our names (open_time, open, …) to the file's columns, case-insensitively."""
    lowered = {str(col).strip().lower(): col for col in columns}
    found: dict[str, str] = {}
    for alias in TIME_ALIASES:
        if alias in lowered:
            found["open_time"] = lowered[alias]
            break
    for name in NUMERIC_COLUMNS:
        if name in lowered:
            found[name] = lowered[name]
    for alias in TRADES_ALIASES:
        if alias in lowered:
            found["trades"] = lowered[alias]
            break
    missing = [n for n in ("open_time", *NUMERIC_COLUMNS) if n not in found]
    if missing:
        wanted = ", ".join("time" if m == "open_time" else m for m in missing)
        raise InputError(
            f"{path}: missing column(s) {wanted}; expected a time column "
            f"({' | '.join(TIME_ALIASES)}) and open, high, low, close, volume; "
            f"found: {', '.join(map(str, columns))}"
        )
    return found


def _typed(path: Path, raw: pd.DataFrame, time_format: str | None) -> pd.DataFrame:
    mapping = _column_map(path, list(raw.columns))
    out = pd.DataFrame(index=raw.index)
    out["open_time"] = _parse_times(path, raw[mapping["open_time"]], time_format)
    for name in NUMERIC_COLUMNS + (("trades",) if "trades" in mapping else ()):
        out[name] = _parse_numbers(path, raw[mapping[name]], name)
    return out


def _parse_numbers(path: Path, column: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.astype("float64")
    numbers = pd.to_numeric(column.astype(str).str.strip(), errors="coerce").astype("float64")
    if numbers.isna().all() and column.notna().any():
        example = column[column.notna()].iloc[0]
        raise InputError(
            f"{path}: column {column.name!r} ({name}) is not numeric "
            f"(row 1: {example!r}); expected numbers"
        )
    return numbers


def _parse_times(path: Path, column: pd.Series, time_format: str | None) -> pd.Series:
    """Epoch numbers (s, ms, µs or ns, by magnitude) or date strings; naive times are UTC."""
    if pd.api.types.is_datetime64_any_dtype(column):  # typed already (Parquet): no parsing
        aware = isinstance(column.dtype, pd.DatetimeTZDtype)
        stamps = column.dt.tz_convert("UTC") if aware else column.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(column):
        stamps = _epoch_to_utc(column.astype("float64"))
    else:
        text = column.astype(str).str.strip()
        numeric = pd.to_numeric(text, errors="coerce")
        if time_format is None and numeric.notna().mean() > 0.5:
            stamps = _epoch_to_utc(numeric)
        else:
            stamps = _parse_strings(text, time_format)
    stamps = stamps.astype("datetime64[ns, UTC]")
    if stamps.isna().all():
        example = column.iloc[0]
        hint = "check --time-format" if time_format else "pass --time-format, e.g. '%d.%m.%Y %H:%M'"
        raise InputError(
            f"{path}: column {column.name!r} (time) has no parseable timestamp "
            f"(row 1: {example!r}); {hint}"
        )
    return stamps


def _parse_strings(text: pd.Series, time_format: str | None) -> pd.Series:
    if time_format:
        return pd.to_datetime(text, format=time_format, utc=True, errors="coerce")
    # No guessing beyond ISO 8601: "01.02.2017" is January or February depending on the source,
    # and a wrong guess would store shuffled bars without a word.
    return pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")


def _epoch_to_utc(values: pd.Series) -> pd.Series:
    magnitude = values.abs()
    factor = np.select(
        [magnitude < 1e11, magnitude < 1e14, magnitude < 1e17], [1e9, 1e6, 1e3], default=1.0
    )
    ns = values.to_numpy(dtype="float64") * factor
    finite = np.isfinite(ns) & (np.abs(ns) < 9.2e18)
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    out[finite] = pd.to_datetime(ns[finite].astype("int64"), unit="ns", utc=True)
    return out
