"""History bulk load: `load-history` against the server's own limit (a bare binary COPY of the
same rows) and against plain row-by-row INSERT, plus a full re-load.

N synthetic one-minute bars (Parquet) are loaded into ``market.bars`` through the same code path
as ``trendcast load-history``. In the same run, on the same server and database:

- anchor: the same rows, as the same binary COPY payload (built before timing), copied into a
  table with only the primary key; only the COPY and its commit are timed;
- baseline: plain row-by-row INSERT (no ON CONFLICT) of a slice of the same rows into an empty
  table of market.bars's schema (same constraints), one transaction; rate per row compares;
- reference: the same COPY into an empty table with market.bars's constraints (what the CHECKs
  cost, so the rest of the gap to the anchor is ours);
- reference: a staging table and ``INSERT … ON CONFLICT DO NOTHING`` (the design the loader
  replaced), into an empty table of the same schema.

Every table is warmed the same way (a small load of other bars through the same path, then
emptied with TRUNCATE) and every timed load starts after a CHECKPOINT, so none pays for another's
dirty pages. The load and the anchor alternate; each is repeated and the median reported.
Where load-history's time goes is measured inside the product (``trendcast.stages``).
Targets (SPEC): ≥ 80 % of the bare COPY's rate; ≥ 30x row-by-row; re-load inserts nothing.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from benchmarks._harness import DATA, scratch_database
from benchmarks._results import Recorder
from trendcast import pgcopy, stages
from trendcast.bar_files import read_bar_file
from trendcast.bar_store import COPY_COLUMNS, LoadSummary, copy_payload
from trendcast.bars import validate_bars
from trendcast.history import load_history
from trendcast.schema import series_key
from trendcast.synth import synth_bars, write_bars

SYMBOL, SOURCE = "SYNLOAD", "bench"
WARM_SYMBOL = "SYNWARM"
_COLUMNS = ", ".join((*COPY_COLUMNS, "ingest_time"))
_BARE_DDL = """
CREATE TABLE bench.bare (
    symbol text COLLATE "C", interval market.bar_interval, open_time timestamptz,
    open double precision, high double precision, low double precision,
    close double precision, volume double precision, trades bigint, source text,
    ingest_time timestamptz,
    PRIMARY KEY (symbol, interval, open_time)
)"""


def bar_file(rows: int, seed: int) -> Path:
    """A cached Parquet file of ``rows`` synthetic bars (made once, outside any timing)."""
    path = DATA / f"synth_1m_{rows}_s{seed}.parquet"
    if not path.exists():
        DATA.mkdir(exist_ok=True)
        write_bars(synth_bars(rows, interval="1m", seed=seed), path)
    return path


def copy_body(path: Path, symbol: str) -> bytes:
    """The binary COPY stream load-history would send for ``path``: the same rows, columns and
    ingest_time, framed as one stream."""
    good = validate_bars(read_bar_file(path).frame, "1m").good
    rows = copy_payload(good, series_key(symbol, "1m"), SOURCE, with_ingest_time=True)
    return pgcopy.HEADER + rows + pgcopy.TRAILER


def checkpoint(engine: sa.Engine, *tables: str) -> None:
    """Empty ``tables`` (fresh files) and flush every dirty page, so the next timed load starts
    from the same state as the others."""
    with engine.begin() as conn:
        if tables:
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} CASCADE"))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("CHECKPOINT"))


def bare_copy(engine: sa.Engine, body: bytes, table: str = "bench.bare") -> float:
    """Seconds for COPY + commit of a prebuilt payload into ``table`` (by default the
    primary-key-only one)."""
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        stream = io.BytesIO(body)
        began = time.perf_counter()
        with conn.cursor() as cur:
            cur.copy_expert(
                f"COPY {table} ({_COLUMNS}) FROM STDIN WITH (FORMAT binary)",
                stream,
                size=1 << 20,
            )
        conn.commit()
        return time.perf_counter() - began
    finally:
        raw.close()


def row_by_row(engine: sa.Engine, bars: pd.DataFrame, symbol: str) -> float:
    """Seconds to INSERT ``bars`` one statement per row (no ON CONFLICT), one transaction, into
    the fresh table of market.bars's schema; values converted before timing."""
    rows = [
        (
            symbol,
            r.open_time.to_pydatetime(),
            r.open,
            r.high,
            r.low,
            r.close,
            r.volume,
            int(r.trades),
            (r.open_time + pd.Timedelta(minutes=1)).to_pydatetime(),
        )
        for r in bars.itertuples(index=False)
    ]
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        began = time.perf_counter()
        with conn.cursor() as cur:
            for row in rows:
                cur.execute(
                    "INSERT INTO bench.row_by_row (symbol, interval, open_time, open, high, low, "
                    "close, volume, trades, source, ingest_time) VALUES (%s, '1m', %s, %s, %s, "
                    "%s, %s, %s, %s, 'bench', %s)",
                    row,
                )
        conn.commit()
        return time.perf_counter() - began
    finally:
        raw.close()


def staging_on_conflict(engine: sa.Engine, body: bytes) -> float:
    """The design the loader replaced: COPY to a temp table, INSERT … ON CONFLICT DO NOTHING."""
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        began = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE stage (LIKE market.bars INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            cur.copy_expert(
                f"COPY stage ({_COLUMNS}) FROM STDIN WITH (FORMAT binary)",
                io.BytesIO(body),
                size=1 << 20,
            )
            cur.execute("INSERT INTO bench.staged SELECT * FROM stage ON CONFLICT DO NOTHING")
        conn.commit()
        return time.perf_counter() - began
    finally:
        raw.close()


def ours(engine: sa.Engine, path: Path, symbol: str) -> tuple[float, LoadSummary, dict]:
    """Seconds for load_history of ``path``, its summary, and its stages' seconds."""
    with stages.recording() as spent:
        began = time.perf_counter()
        summary = load_history(engine, path, symbol=symbol, interval="1m", source=SOURCE)
        seconds = time.perf_counter() - began
    return seconds, summary, dict(spent)


def count(engine: sa.Engine, table: str, symbol: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE symbol = :s"), {"s": symbol}
        ).scalar_one()


STAGES = (
    ("read", "read file", "read and parse the Parquet file"),
    ("validate", "validate", "validate every bar (and quarantine payloads)"),
    ("lock", "lock and read the stored span", "series lock and read of the stored span"),
    (
        "payload",
        "build COPY payload",
        "build the binary COPY payload (producer thread, overlaps the COPY)",
    ),
    ("copy", "COPY", "COPY statement, from first to last byte sent"),
    (
        "copy_wait",
        "COPY waiting for the client's payload",
        "of which the COPY waited for the client's payload",
    ),
    ("commit", "commit", "commit (WAL flush)"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=2_000_000)
    parser.add_argument("--slice", type=int, default=50_000, help="rows for row-by-row INSERT")
    parser.add_argument("--warmup", type=int, default=5_000, help="warm-up rows per table")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats, median")
    parser.add_argument("--skip-reference", action="store_true", help="skip ON CONFLICT path")
    args = parser.parse_args()
    rec = Recorder(
        "load",
        "History bulk load: load-history against a bare COPY and row-by-row INSERT",
        script=__file__,
        description=(
            "`load-history` of one Parquet file of synthetic one-minute bars into a fresh "
            "`market.bars` (validation, series lock, read of the stored span, binary COPY with "
            "ingest_time, the `bar_changes` outbox row, the run record, one durable commit). "
            "Anchor, same run and server: the same rows as the same binary COPY payload, built "
            "before timing, copied into a table with only the primary key (COPY and commit "
            "timed); for reference, the same COPY into a table with market.bars's constraints "
            "(what the CHECKs cost). Baseline: plain row-by-row INSERT, no ON CONFLICT, of a "
            "slice of the same "
            "rows into an empty table with market.bars's schema and constraints, one "
            "transaction, compared per row. Every table was warmed the same way (a small load "
            "through the same path, then emptied) and every timed load starts empty after a "
            "CHECKPOINT; load and anchor alternate, median of the repeats. Stages are timed "
            "inside the product; the payload is built on a producer thread while the server "
            "ingests, so its time overlaps the COPY's."
        ),
        params={
            "bars": args.bars,
            "row_by_row_slice": args.slice,
            "warmup_rows": args.warmup,
            "repeats": args.repeats,
            "reference": not args.skip_reference,
        },
    )
    with rec.phase("prepare files and the anchor's payload (untimed)"):
        path, warm_path = bar_file(args.bars, 11), bar_file(args.warmup, 12)
        body, warm_body = copy_body(path, SYMBOL), copy_body(warm_path, WARM_SYMBOL)
        good = validate_bars(read_bar_file(path).frame, "1m").good
        warm_rows = validate_bars(read_bar_file(warm_path).frame, "1m").good
        row_slice = good.iloc[: args.slice]
    loads: list[tuple[float, LoadSummary, dict]] = []
    bares: list[float] = []
    constrained: list[float] = []
    with scratch_database() as url:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE SCHEMA bench"))
            conn.execute(sa.text(_BARE_DDL))
            for table in ("row_by_row", "staged", "constrained"):
                conn.execute(
                    sa.text(f"CREATE TABLE bench.{table} (LIKE market.bars INCLUDING ALL)")
                )
        ours_tables = ("market.bars", "market.bar_changes", "market.ingestion_runs")
        with rec.phase("warm-up: one small load into each table through its own path"):
            ours(engine, warm_path, WARM_SYMBOL)
            bare_copy(engine, warm_body)
            bare_copy(engine, warm_body, "bench.constrained")
            row_by_row(engine, warm_rows, WARM_SYMBOL)
            if not args.skip_reference:
                staging_on_conflict(engine, warm_body)
        for i in range(1, args.repeats + 1):
            checkpoint(engine, "bench.bare")
            with rec.phase(f"bare COPY into a primary-key-only table, repeat {i}"):
                bares.append(bare_copy(engine, body))
            checkpoint(engine, "bench.constrained")
            with rec.phase(f"bare COPY into a table with market.bars's constraints, repeat {i}"):
                constrained.append(bare_copy(engine, body, "bench.constrained"))
            checkpoint(engine, *ours_tables)
            with rec.phase(f"load-history, repeat {i}"):
                loads.append(ours(engine, path, SYMBOL))
        checkpoint(engine)
        with rec.phase("re-load of the same file"):
            reload_s, again, _ = ours(engine, path, SYMBOL)
        checkpoint(engine, "bench.row_by_row")
        with rec.phase(f"row-by-row INSERT of {args.slice:,} rows"):
            row_s = row_by_row(engine, row_slice, SYMBOL)
        staged_s = None
        if not args.skip_reference:
            checkpoint(engine, "bench.staged")
            with rec.phase("reference: staging table + INSERT … ON CONFLICT"):
                staged_s = staging_on_conflict(engine, body)
        stored = {t: count(engine, t, SYMBOL) for t in ("market.bars", "bench.bare")}
        engine.dispose()

    loads.sort(key=lambda item: item[0])
    load_s, first, spent = loads[(len(loads) - 1) // 2]  # the median (the lower one if even)
    bare_s = statistics.median_low(bares)
    n = first.inserted
    load_rate, bare_rate, row_rate = n / load_s, args.bars / bare_s, args.slice / row_s
    label = f"{args.bars:,} bars"
    rec.figure("load_s", load_s, "s", label=f"load-history, {label} (median)")
    rec.figure("load_rate", load_rate, "bars/s", label="load-history rate")
    rec.figure("bare_s", bare_s, "s", label=f"bare binary COPY, {label} (median)", role="baseline")
    rec.figure("bare_rate", bare_rate, "bars/s", label="bare binary COPY rate", role="baseline")
    rec.figure(
        "constrained_rate",
        args.bars / statistics.median_low(constrained),
        "bars/s",
        label="the same COPY into a table with market.bars's constraints (its CHECKs' cost)",
        role="reference",
    )
    rec.figure(
        "row_rate",
        row_rate,
        "bars/s",
        label=f"row-by-row INSERT rate ({args.slice:,}-row slice)",
        role="baseline",
    )
    if staged_s is not None:
        rec.figure(
            "staged_rate",
            args.bars / staged_s,
            "bars/s",
            label="staging table + INSERT … ON CONFLICT rate",
            role="reference",
        )
    rec.figure("reload_s", reload_s, "s", label=f"re-load of the same {label}")
    rec.figure("reload_inserted", again.inserted, "bars", label="bars inserted by the re-load")
    rec.figure(
        "rows_match",
        "yes" if stored["market.bars"] == stored["bench.bare"] == args.bars else "NO",
        label="load-history and the bare COPY stored the same number of rows",
        role="check",
    )
    for key, name, label in STAGES:
        rec.figure(f"stage_{key}_s", spent.get(name, 0.0), "s", label=f"stage: {label}")
    accounted = sum(
        spent.get(name, 0.0) for key, name, _ in STAGES if key not in {"payload", "copy_wait"}
    )
    rec.figure("stage_other_s", load_s - accounted, "s", label="stage: the rest (run record, …)")
    rec.target(
        "vs_bare", "load-history rate / bare COPY rate", 100 * load_rate / bare_rate, ">=", 80, " %"
    )
    rec.target(
        "vs_row", "load-history rate / row-by-row INSERT rate", load_rate / row_rate, ">=", 30, "x"
    )
    rec.target("reload", "bars inserted by a re-load", again.inserted, "==", 0)
    rec.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
