"""Features: indicators for N one-minute bars; point-in-time reads of M (symbol, as_of) rows x 20
features from a store holding revisions; the incremental pipeline run for 1 new bar x 20 symbols,
in-process and through Mage.

Baselines measured in the same run. Indicators: pandas rolling windows computing the same 20
features of core v1, both ours and pandas first run once on a small frame (Numba's compile is
its own figure). Point-in-time: the indexed `CROSS JOIN LATERAL (… ORDER BY event_time DESC,
ingest_time DESC LIMIT 1)` a PostgreSQL user would write, over every entity row, its answers
moved by the same binary COPY as ours; and DuckDB's `ASOF JOIN` over the same rows in memory,
revisions resolved the same way (the greatest (event_time, ingest_time) visible at as_of); all
three must agree bit for bit. Incremental: the first full build; Mage's fixed cost as a run with
nothing new to derive. Targets (issue 18): indicators >= 2x pandas and <= 10 s at 10M bars; our
point-in-time read within 2x of DuckDB's in-memory as-of join.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import sqlalchemy as sa

from benchmarks._harness import scratch_database
from benchmarks._results import Recorder
from trendcast import feature_pipeline, featurestore, pgcopy, window_sums
from trendcast.db import driver_cursor
from trendcast.feature_sets import CORE_V1
from trendcast.history import load_frame
from trendcast.schema import series_key
from trendcast.synth import synth_bars

REPO = Path(__file__).resolve().parents[1]
COLUMNS = list(CORE_V1.columns)


# --- indicators ----------------------------------------------------------------------------


def pandas_indicators(bars: pd.DataFrame) -> pd.DataFrame:
    """The 20 features of core v1 with pandas rolling windows (running sums: close to ours,
    not bit-stable across look-backs)."""
    close, volume, high, low = bars["close"], bars["volume"], bars["high"], bars["low"]
    minute = bars["open_time"].dt.minute
    sma = {n: close.rolling(n).mean() for n in (7, 25, 99)}
    out = {}
    for n in (7, 25, 99):
        out[f"sma_{n}_ratio"] = close / sma[n] - 1.0
    out["sma_7_25_diff"] = (sma[7] - sma[25]) / close
    out["sma_25_99_diff"] = (sma[25] - sma[99]) / close
    out["sma_7_99_diff"] = (sma[7] - sma[99]) / close
    for n in (7, 25, 99):
        seasonal = close.groupby(minute).transform(lambda s, n=n: s.rolling(n).mean())
        out[f"seas_sma_{n}_ratio"] = close / seasonal - 1.0
    for h in (1, 5, 20, 60):
        out[f"logret_{h}"] = np.log(close / close.shift(h))
    out["vol_20"] = out["logret_1"].rolling(20).std()
    out["vol_60"] = out["logret_1"].rolling(60).std()
    change = close.diff()
    gains = change.clip(lower=0).rolling(14).mean()
    losses = (-change.clip(upper=0)).rolling(14).mean()
    total = gains + losses
    out["rsi_14"] = (100.0 * gains / total).where(total > 0, 50.0).where(gains.notna())
    mean_volume = volume.rolling(20).mean()
    out["volume_ratio_20"] = (volume / mean_volume).where(mean_volume > 0, 1.0)
    out["volume_ratio_20"] = out["volume_ratio_20"].where(mean_volume.notna())
    span = high - low
    out["close_position"] = ((close - low) / span).where(span > 0, 0.5)
    out["hl_range"] = span / close
    out["hl_range_20"] = out["hl_range"].rolling(20).mean()
    return pd.DataFrame(out, copy=False)


def bench_indicators(rec: Recorder, n_bars: int) -> None:
    small = synth_bars(50_000, interval="1m", seed=20)
    with rec.phase("indicators: Numba compile of the window sums"):
        began = time.perf_counter()
        kernel = window_sums.compiled()
        if kernel is not None:
            kernel(np.zeros(300), 7, np.empty(294))
        compile_s = time.perf_counter() - began
    with rec.phase("indicators: warm-up, ours and pandas on 50,000 bars"):
        CORE_V1.compute(small, "1m")
        pandas_indicators(small)
    with rec.phase(f"indicators: synthesise {n_bars:,} bars"):
        bars = synth_bars(n_bars, interval="1m", seed=21)
    cpu = time.process_time()
    with rec.phase("indicators: ours (core v1)"):
        ours = CORE_V1.compute(bars, "1m")
    cpu_ours, cpu = time.process_time() - cpu, time.process_time()
    t_ours = rec.seconds("indicators: ours (core v1)")
    with rec.phase("indicators: pandas rolling, the same 20 features"):
        theirs = pandas_indicators(bars)
    cpu_pandas = time.process_time() - cpu
    t_pandas = rec.seconds("indicators: pandas rolling, the same 20 features")
    assert list(theirs.columns) == COLUMNS, "baseline computes other features than core v1"
    worst = 0.0
    for column in COLUMNS:  # one column at a time: two 20-column copies would double the peak
        a, b = ours[column].to_numpy(), theirs[column].to_numpy()
        ok = ~np.isnan(a)
        assert np.array_equal(ok, ~np.isnan(b)), f"{column}: pandas leaves other values undefined"
        worst = max(worst, float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-3))))
    del ours, theirs, a, b, ok
    # the guarantee pandas' running sums lack: a short look-back gives the same bits
    tail = bars.iloc[-(CORE_V1.lookback_bars("1m") + 1_000) :].reset_index(drop=True)
    longer = min(n_bars, 300_000)
    full_tail = CORE_V1.compute(bars.iloc[-longer:].reset_index(drop=True), "1m").iloc[-1_000:]
    short = CORE_V1.compute(tail, "1m").iloc[-1_000:]
    same = np.array_equal(full_tail.to_numpy().view("int64"), short.to_numpy().view("int64"))
    del bars, tail, full_tail, short
    gc.collect()
    label = f"indicators, {n_bars:,} 1m bars x 20 features (core v1)"
    rec.figure("indicators_s", t_ours, "s", label=label)
    rec.figure("indicators_pandas_s", t_pandas, "s", label=f"{label}, pandas", role="baseline")
    rec.figure(
        "indicators_compile_s",
        compile_s,
        "s",
        label="Numba compile of the window sums, once per process",
        note="none: numba missing, NumPy path" if kernel is None else "",
    )
    rec.figure(
        "indicators_vs_pandas", t_pandas / t_ours, "x", label="indicators: pandas time / ours"
    )
    # CPU seconds of this process: on a shared machine, wall time also counts waiting for a core
    rec.figure("indicators_cpu_s", cpu_ours, "s", label=f"{label}, CPU time", role="check")
    rec.figure(
        "indicators_pandas_cpu_s",
        cpu_pandas,
        "s",
        label=f"{label}, pandas, CPU time",
        role="check",
    )
    rec.figure(
        "indicators_pandas_max_rel_diff",
        worst,
        label="largest relative difference, pandas against ours",
        role="check",
    )
    rec.figure(
        "indicators_lookback_bits",
        "identical" if same else "DIFFERENT",
        label=f"last 1,000 bars from a short look-back against {longer:,} bars, bit for bit",
        role="check",
    )
    rec.target(
        "indicators_vs_pandas",
        f"indicators, {n_bars:,} bars, >= 2x pandas",
        t_pandas / t_ours,
        ">=",
        2.0,
        "x",
    )
    if n_bars >= 10_000_000:
        rec.target("indicators_s", f"indicators, {n_bars:,} bars", t_ours, "<=", 10.0, "s")
    if not same:
        raise AssertionError("a short look-back changed the bits of core v1")


# --- point-in-time reads -------------------------------------------------------------------


def fill_store(engine: sa.Engine, symbols: list[str], rows_each: int) -> tuple[int, int]:
    """Rows ingested 0-120 s after each bar, then revisions: every 20th bar of each symbol gets
    a second version (other values) ingested 1-50 min later, as late or corrected data would.
    Returns (rows, revisions)."""
    featurestore.register(engine, CORE_V1)
    rng = np.random.default_rng(5)
    times = pd.date_range("2024-01-01", periods=rows_each, freq="1min", tz="UTC")
    for symbol in symbols:
        frame = pd.DataFrame(rng.standard_normal((rows_each, len(COLUMNS))), columns=COLUMNS)
        frame.insert(0, "event_time", times)
        lag = pd.to_timedelta(rng.integers(0, 120_000_000, rows_each), "us")
        frame.insert(1, "ingest_time", times + lag)
        featurestore.write(
            engine,
            CORE_V1,
            series_key(symbol, "1m"),
            frame,
            producer="bench",
            producer_version="bench",
        )
    # written directly: featurestore.write stamps a new version with the time of the write
    revised = ", ".join(f'"{c}" * 1.01 + 0.5' for c in COLUMNS)
    with engine.begin() as conn:
        added = conn.execute(
            sa.text(
                f"""
                INSERT INTO {featurestore.table(CORE_V1)}
                  (symbol, interval, event_time, ingest_time, producer, producer_version,
                   run_id, {", ".join(f'"{c}"' for c in COLUMNS)})
                SELECT symbol, interval, event_time,
                       ingest_time + (1 + (extract(epoch FROM event_time)::bigint / 60) % 50)
                                     * interval '1 minute',
                       'bench', 'bench-revision', run_id, {revised}
                FROM {featurestore.table(CORE_V1)}
                WHERE (extract(epoch FROM event_time)::bigint / 60) % 20 = 7
                """
            )
        ).rowcount
        conn.execute(sa.text(f"ANALYZE {featurestore.table(CORE_V1)}"))
    return len(symbols) * rows_each + added, added


def entities_for(symbols: list[str], rows_each: int, n: int, seed: int) -> pd.DataFrame:
    """Random (symbol, as_of) at microsecond precision (PostgreSQL's) over the stored span."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01", tz="UTC").value // 1000
    span_us = rows_each * 60_000_000 + 3_600_000_000
    as_of_us = start + rng.integers(-60_000_000, span_us, n)
    return pd.DataFrame(
        {
            "symbol": rng.choice(symbols, n),
            "as_of": pd.to_datetime(as_of_us * 1000, utc=True),
        }
    )


def _result_dtype() -> np.dtype:
    fields = [("count", ">i2"), ("i_len", ">i4"), ("i", ">i8"), ("e_len", ">i4"), ("e", ">i8")]
    for k in range(len(COLUMNS)):
        fields += [(f"l{k}", ">i4"), (f"f{k}", ">f8")]
    return np.dtype(fields)


def _as_answer(n: int, idx: np.ndarray, event_ns: np.ndarray, values: np.ndarray):
    """(event_time ns or INT64_MIN, values or NaN) per entity row, for comparing readers."""
    events = np.full(n, np.iinfo("int64").min)
    out = np.full((n, len(COLUMNS)), np.nan)
    events[idx] = event_ns
    out[idx] = values
    return events, out


def lateral_read(engine: sa.Engine, entities: pd.DataFrame):
    """The indexed LATERAL query over every entity row: the entities go in by COPY, the answers
    come out by binary COPY (the same transfer as ours)."""
    text = io.StringIO()
    frame = pd.DataFrame(
        {
            "i": np.arange(len(entities)),
            "symbol": entities["symbol"].to_numpy(),
            "as_of_us": entities["as_of"].to_numpy(dtype="datetime64[ns]").view("int64") // 1000,
        }
    )
    frame.to_csv(text, index=False, header=False)
    columns = ", ".join(f'f."{c}"' for c in COLUMNS)
    query = f"""
        SELECT q.i, f.event_time, {columns}
        FROM bench_entities q
        CROSS JOIN LATERAL (
            SELECT * FROM {featurestore.table(CORE_V1)} f
            WHERE f.symbol = q.symbol AND f.interval = '1m'
              AND f.event_time <= q.as_of AND f.ingest_time <= q.as_of
            ORDER BY f.event_time DESC, f.ingest_time DESC
            LIMIT 1
        ) f
    """
    with driver_cursor(engine) as cur:
        cur.execute(
            "CREATE TEMP TABLE bench_input (i bigint, symbol text, as_of_us bigint) ON COMMIT DROP"
        )
        text.seek(0)
        cur.copy_expert("COPY bench_input FROM STDIN WITH (FORMAT csv)", text)
        cur.execute(
            "CREATE TEMP TABLE bench_entities ON COMMIT DROP AS SELECT i, "
            'symbol COLLATE "C" AS symbol, '
            "timestamptz 'epoch' + as_of_us * interval '1 microsecond' AS as_of FROM bench_input"
        )
        cur.execute("ANALYZE bench_entities")
        rows = pgcopy.copy_out(cur, query, (), _result_dtype())
    values = np.column_stack([rows[f"f{k}"].astype("float64") for k in range(len(COLUMNS))])
    return _as_answer(
        len(entities), rows["i"].astype("int64"), pgcopy.from_pg_time(rows["e"]), values
    )


def store_rows(engine: sa.Engine) -> pd.DataFrame:
    """Every stored row (both versions of revised ones), times as µs since the Unix epoch."""
    fields = [("count", ">i2"), ("s_len", ">i4"), ("symbol", "S5")]
    fields += [("e_len", ">i4"), ("e", ">i8"), ("g_len", ">i4"), ("g", ">i8")]
    for k in range(len(COLUMNS)):
        fields += [(f"l{k}", ">i4"), (f"f{k}", ">f8")]
    with driver_cursor(engine) as cur:
        rows = pgcopy.copy_out(
            cur,
            "SELECT symbol, event_time, ingest_time, "
            + ", ".join(f'"{c}"' for c in COLUMNS)
            + f" FROM {featurestore.table(CORE_V1)} WHERE interval = '1m'",
            (),
            np.dtype(fields),
        )
    frame = pd.DataFrame(
        {
            "symbol": rows["symbol"].astype(str),
            "event_us": rows["e"].astype("int64") + pgcopy.PG_EPOCH_US,
            "ingest_us": rows["g"].astype("int64") + pgcopy.PG_EPOCH_US,
        }
    )
    for k, c in enumerate(COLUMNS):
        frame[c] = rows[f"f{k}"].astype("float64")
    return frame


def duckdb_read(con: duckdb.DuckDBPyConnection, n: int):
    """The first ``n`` entity rows by ASOF JOIN in DuckDB. A row is visible from max(event,
    ingest); the answer at as_of is the greatest (event, ingest) among visible rows, so the join
    runs against the running maximum of (event, ingest) in visibility order (carrying the row's
    number), then fetches that row's values by its number."""
    columns = ", ".join(f'r."{c}"' for c in COLUMNS)
    answer = con.execute(
        f"""
        WITH timeline AS (
            SELECT symbol, greatest(event_us, ingest_us) AS visible_us,
                   max({{'e': event_us, 'g': ingest_us, 'n': rownum}}) OVER (
                       PARTITION BY symbol ORDER BY greatest(event_us, ingest_us), event_us,
                       ingest_us ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW).n AS best
            FROM store
        )
        SELECT q.i, r.event_us, {columns}
        FROM entities q
        ASOF JOIN timeline t ON q.symbol = t.symbol AND t.visible_us <= q.as_of_us
        JOIN store r ON r.rownum = t.best
        WHERE q.i < {n}
        """
    ).fetchnumpy()
    values = np.column_stack([np.asarray(answer[c], dtype="float64") for c in COLUMNS])
    return _as_answer(
        n,
        np.asarray(answer["i"], dtype="int64"),
        np.asarray(answer["event_us"], dtype="int64") * 1000,
        values,
    )


def read_breakdown(engine: sa.Engine, entities: pd.DataFrame) -> dict[str, float]:
    """Where our read's time goes, from a profile of one more read: the server's query and the
    transfer (the binary COPY), decoding to arrays, the as-of pick, and the rest (assembly)."""
    profile = cProfile.Profile()
    profile.enable()
    featurestore.get_point_in_time(engine, CORE_V1, entities, "1m")
    profile.disable()
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tt, ct, callers)}
    total = max(v[3] for (_, _, name), v in stats.items() if name == "get_point_in_time")

    def cumulative(name: str, file_part: str = "") -> float:
        """Cumulative seconds of a Python function (by name and file) or a C method."""
        return sum(
            v[3]
            for (f, _, n), v in stats.items()
            if (n == name and file_part in f) or (f == "~" and f"'{name}'" in n)
        )

    copy = cumulative("copy_expert") + cumulative("execute")
    decode = cumulative("copy_out", "pgcopy") - cumulative("copy_expert")
    decode += cumulative("_features_matrix", "featurestore")
    decode += cumulative("from_pg_time", "pgcopy")
    pick = cumulative("_as_of_pick", "featurestore")
    return {
        "query_and_transfer": copy,
        "decode": decode,
        "as_of_pick": pick,
        "assembly": max(total - copy - decode - pick, 0.0),
        "profiled_total": total,
    }


def bench_point_in_time(rec: Recorder, engine: sa.Engine, n_rows: int, lateral_rows: int) -> None:
    symbols = [f"SYN{i:02d}" for i in range(20)]
    rows_each = n_rows // len(symbols)
    with rec.phase("point-in-time: fill the store, with revisions"):
        stored, revisions = fill_store(engine, symbols, rows_each)
    entities = entities_for(symbols, rows_each, n_rows, seed=8)
    featurestore.get_point_in_time(engine, CORE_V1, entities.iloc[:1_000], "1m")  # warm-up
    with rec.phase("point-in-time: ours (get_point_in_time)"):
        ours = featurestore.get_point_in_time(engine, CORE_V1, entities, "1m")
    t_ours = rec.seconds("point-in-time: ours (get_point_in_time)")
    ours_answer = (
        ours["event_time"].to_numpy(dtype="datetime64[ns]").view("int64"),
        ours[COLUMNS].to_numpy(dtype="float64"),
    )
    lateral_entities = entities.iloc[:lateral_rows]
    lateral_read(engine, entities.iloc[:1_000])  # warm-up
    with rec.phase(f"point-in-time: LATERAL … LIMIT 1 on {len(lateral_entities):,} rows"):
        lateral = lateral_read(engine, lateral_entities)
    t_lateral = rec.seconds(f"point-in-time: LATERAL … LIMIT 1 on {len(lateral_entities):,} rows")
    with rec.phase("point-in-time: load the store's rows into memory for DuckDB"):
        store = store_rows(engine)
        q = pd.DataFrame(
            {
                "i": np.arange(len(entities)),
                "symbol": entities["symbol"].to_numpy(),
                "as_of_us": entities["as_of"].to_numpy(dtype="datetime64[ns]").view("int64")
                // 1000,
            }
        )
        con = duckdb.connect()
        con.execute("SET threads = 2")
        con.register("store_frame", store)
        con.register("entities_frame", q)
        con.execute(
            "CREATE TABLE store AS SELECT *, row_number() OVER () AS rownum FROM store_frame"
        )
        con.execute("CREATE TABLE entities AS SELECT * FROM entities_frame")
        del store, q
    assert con.execute("SELECT count(*) FROM store").fetchone()[0] == stored
    duckdb_read(con, 1_000)  # warm-up
    cpu = time.process_time()
    with rec.phase("point-in-time: DuckDB ASOF JOIN in memory"):
        duck = duckdb_read(con, len(entities))
    cpu_duck = time.process_time() - cpu
    t_duck = rec.seconds("point-in-time: DuckDB ASOF JOIN in memory")
    con.close()

    def same(a, b, rows: int) -> bool:
        return np.array_equal(a[0][:rows], b[0][:rows]) and np.array_equal(
            a[1][:rows].view("int64"), b[1][:rows].view("int64")
        )

    agree_duck = same(ours_answer, duck, n_rows)
    agree_lateral = same(ours_answer, lateral, len(lateral_entities))
    answered = int((ours_answer[0] != np.iinfo("int64").min).sum())
    saw_revision = int(np.isin(ours["event_time"].dt.minute.to_numpy() % 20, [7]).sum())
    label = f"point-in-time, {n_rows:,} (symbol, as_of) rows x 20 features"
    store_note = f"store: {stored:,} rows of which {revisions:,} revisions (later versions)"
    rec.figure("pit_s", t_ours, "s", label=f"{label}, ours from PostgreSQL", note=store_note)
    rec.figure("pit_rate", n_rows / t_ours, "rows/s", label=f"{label}, ours, rate")
    lateral_note = (
        ""
        if len(lateral_entities) == n_rows
        else (
            f"measured on the first {len(lateral_entities):,} of the {n_rows:,} rows (every one "
            "queried, none extrapolated): compare rates"
        )
    )
    rec.figure(
        "pit_lateral_s",
        t_lateral,
        "s",
        label=f"indexed LATERAL … LIMIT 1, {len(lateral_entities):,} rows",
        role="baseline",
        note=lateral_note,
    )
    rec.figure(
        "pit_lateral_rate",
        len(lateral_entities) / t_lateral,
        "rows/s",
        label="indexed LATERAL … LIMIT 1, rate",
        role="baseline",
    )
    rec.figure("pit_duckdb_s", t_duck, "s", label=f"{label}, DuckDB ASOF JOIN", role="reference")
    rec.figure(
        "pit_duckdb_cpu_s",
        cpu_duck,
        "s",
        label="DuckDB ASOF JOIN, CPU time (its threads)",
        role="check",
        note="on a shared machine wall time also counts waiting for a core",
    )
    rec.figure(
        "pit_vs_lateral",
        (n_rows / t_ours) / (len(lateral_entities) / t_lateral),
        "x",
        label="point-in-time: our rate / LATERAL's rate",
    )
    ratio = t_ours / t_duck
    rec.figure("pit_vs_duckdb", ratio, "x", label="point-in-time: our time / DuckDB's")
    rec.figure(
        "pit_answered", answered, "rows", label="entity rows with a visible value", role="check"
    )
    rec.figure(
        "pit_revised_answers",
        saw_revision,
        "rows",
        label="answers at a bar that has a later revision",
        role="check",
    )
    rec.figure(
        "pit_agree",
        "identical" if agree_duck and agree_lateral else "DIFFERENT",
        label="ours, LATERAL and DuckDB: same event_time and values, bit for bit",
        role="check",
    )
    met = rec.target(
        "pit_vs_duckdb", "our read within 2x of DuckDB's as-of join", ratio, "<=", 2.0, "x"
    )
    if not met:
        split = read_breakdown(engine, entities)
        for part, seconds in split.items():
            rec.figure(
                f"pit_profile_{part}",
                seconds,
                "s",
                label=f"our read, profiled: {part.replace('_', ' ')}",
                note="one more read under cProfile (its overhead included)",
            )
    if not (agree_duck and agree_lateral):
        raise AssertionError(
            f"point-in-time readers disagree: DuckDB {agree_duck}, LATERAL {agree_lateral}"
        )


# --- the incremental run -------------------------------------------------------------------


def arrive(engine: sa.Engine, symbols: list[str], bar: pd.DataFrame) -> None:
    """One new live bar for every symbol, stamped with its arrival time."""
    for symbol in symbols:
        load_frame(
            engine,
            bar,
            symbol=symbol,
            interval="1m",
            source="bench",
            origin="bench",
            known_at="now",
        )


def mage_run(url: str) -> tuple[float, subprocess.CompletedProcess]:
    mage = REPO / ".venv-mage" / "bin" / "mage"
    began = time.perf_counter()
    done = subprocess.run(
        [str(mage), "run", "mage_pipelines", "derive_indicators", "--test"],
        cwd=REPO,
        env={**os.environ, "TRENDCAST_DATABASE_URL": url},
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"mage run failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, done


def stored_rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(f"SELECT count(*) FROM {featurestore.table(CORE_V1)} WHERE symbol LIKE 'INC%'")
        ).scalar_one()


def bench_incremental(rec: Recorder, engine: sa.Engine, url: str) -> None:
    symbols = [f"INC{i:02d}" for i in range(20)]
    bars = synth_bars(CORE_V1.lookback_bars("1m") + 200, interval="1m", seed=2)
    for symbol in symbols:
        load_frame(
            engine, bars.iloc[:-1], symbol=symbol, interval="1m", source="bench", origin="bench"
        )
    with rec.phase("incremental: first build (every bar of 20 symbols)"):
        full = feature_pipeline.build(engine)
    arrive(engine, symbols, bars.iloc[-1:])
    with rec.phase("incremental: 1 new bar x 20 symbols, in-process"):
        inc = feature_pipeline.build(engine)
    assert inc["rows_written"] == len(symbols), inc
    t_full = rec.seconds("incremental: first build (every bar of 20 symbols)")
    t_inc = rec.seconds("incremental: 1 new bar x 20 symbols, in-process")
    rec.figure("incremental_s", t_inc, "s", label="incremental run, 1 new bar x 20 symbols")
    rec.figure(
        "incremental_full_s",
        t_full,
        "s",
        label=f"first build of {full['rows_written']:,} rows",
        role="baseline",
    )
    rec.figure("incremental_vs_full", t_full / t_inc, "x", label="first build time / incremental")
    mage = REPO / ".venv-mage" / "bin" / "mage"
    if not (mage.exists() and (REPO / "mage_pipelines").exists()):
        rec.figure("mage", "not run: .venv-mage missing", label="Mage runs", role="check")
        return
    next_bar = bars.iloc[-1:].assign(open_time=bars["open_time"].iloc[-1] + pd.Timedelta("1min"))
    arrive(engine, symbols, next_bar)
    before = stored_rows(engine)
    with rec.phase("incremental: 1 new bar x 20 symbols, mage run --test"):
        t_mage, _ = mage_run(url)
    written = stored_rows(engine) - before
    with rec.phase("incremental: mage run --test with nothing new (Mage's fixed cost)"):
        t_idle, _ = mage_run(url)
    assert stored_rows(engine) - before == written
    rec.figure(
        "mage_run_s",
        t_mage,
        "s",
        label="the same through `mage run … --test` (a new process)",
        note=f"{written} rows written",
    )
    rec.figure(
        "mage_fixed_s",
        t_idle,
        "s",
        label="`mage run … --test` with nothing new: Mage start, pipeline, block tests",
        role="reference",
    )
    if written != len(symbols):
        raise AssertionError(f"mage run wrote {written} rows, expected {len(symbols)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=10_000_000)
    parser.add_argument("--pit-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--lateral-rows",
        type=int,
        default=None,
        help="entity rows the LATERAL baseline queries (default: all of --pit-rows)",
    )
    args = parser.parse_args()
    lateral_rows = min(args.lateral_rows or args.pit_rows, args.pit_rows)
    rec = Recorder(
        "features",
        "Features: indicators, point-in-time reads, the incremental run",
        script=__file__,
        description=__doc__.split("\n\n", 1)[1],
        params={"bars": args.bars, "pit_rows": args.pit_rows, "lateral_rows": lateral_rows},
        measures=["mage_pipelines"],
    )
    bench_indicators(rec, args.bars)
    with scratch_database() as url:
        engine = sa.create_engine(url)
        bench_point_in_time(rec, engine, args.pit_rows, lateral_rows)
        bench_incremental(rec, engine, url.render_as_string(hide_password=False))
        engine.dispose()
    rec.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
