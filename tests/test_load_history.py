"""History load against a real PostgreSQL: exact counts, idempotence, quarantine, atomicity."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from trendcast.errors import InputError
from trendcast.history import load_frame, load_history
from trendcast.synth import synth_bars, write_bars

MIXED = """time,open,high,low,close,volume
2024-01-01T00:00:00Z,1,2,0.5,1.5,10
2024-01-01T01:00:00Z,1,0.9,0.5,1.5,10
2024-01-01T02:00:00Z,1,2,0.5,1.5,-1
bad-time,1,2,0.5,1.5,1
2024-01-01T00:00:00Z,1,2,0.5,1.5,11
2024-01-01T03:00:00Z,1,2,0.5,1.5,12
"""


def count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def test_load_then_reload_inserts_nothing(engine, tmp_path):
    path = tmp_path / "syn.parquet"
    write_bars(synth_bars(5_000, interval="1m"), path)
    first = load_history(engine, path, symbol="SYN", interval="1m", source="synthetic")
    assert (first.read, first.inserted, first.duplicates, first.quarantined) == (5000, 5000, 0, 0)
    again = load_history(engine, path, symbol="SYN", interval="1m", source="synthetic")
    assert (again.inserted, again.duplicates) == (0, 5000)
    assert count(engine, "SELECT count(*) FROM market.bars WHERE symbol = 'SYN'") == 5000
    stored = pd.read_sql(
        "SELECT open_time, open, high, low, close, volume, trades FROM market.bars "
        "WHERE symbol = 'SYN' ORDER BY open_time",
        engine,
    )
    expected = synth_bars(5_000, interval="1m")
    assert stored["close"].tolist() == expected["close"].tolist()
    assert stored["trades"].tolist() == expected["trades"].tolist()
    assert stored["open_time"].iloc[0] == pd.Timestamp("2020-01-01", tz="UTC")


def test_overlapping_load_inserts_only_new_bars(engine, tmp_path):
    bars = synth_bars(300, interval="1h")
    write_bars(bars.iloc[:200], tmp_path / "a.parquet")
    write_bars(bars.iloc[100:], tmp_path / "b.parquet")
    load_history(engine, tmp_path / "a.parquet", symbol="OVL", interval="1h")
    second = load_history(engine, tmp_path / "b.parquet", symbol="OVL", interval="1h")
    assert (second.inserted, second.duplicates) == (100, 100)
    assert count(engine, "SELECT count(*) FROM market.bars WHERE symbol = 'OVL'") == 300


def test_bad_rows_go_to_quarantine_with_reason_and_payload(engine, tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED)
    summary = load_history(engine, path, symbol="MIX", interval="1h")
    # rows 1 and 5 give 00:00 two different volumes: neither is stored
    assert (summary.read, summary.inserted, summary.quarantined) == (6, 1, 5)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT reason, payload, run_id::text FROM market.quarantine ORDER BY id")
        ).all()
    reasons = {row.payload["row"]: row.reason for row in rows}
    assert reasons == {
        1: "open_time: conflicting duplicate (rows 1, 5 differ)",
        2: "high < max(open, close)",
        3: "volume: must be >= 0",
        4: "open_time: not a parseable timestamp",
        5: "open_time: conflicting duplicate (rows 1, 5 differ)",
    }
    bad_time = next(r for r in rows if r.payload["row"] == 4)
    assert bad_time.payload["values"]["time"] == "bad-time"
    assert bad_time.payload["origin"] == str(path)
    assert {r.run_id for r in rows} == {summary.run_id}
    with engine.connect() as conn:
        run = conn.execute(
            sa.text("SELECT * FROM market.ingestion_runs WHERE run_id = :id"),
            {"id": summary.run_id},
        ).one()
    assert run.status == "succeeded"
    assert (run.rows_read, run.rows_inserted, run.rows_quarantined) == (6, 1, 5)
    assert run.finished_at is not None


def test_failure_mid_load_leaves_nothing_behind(engine, tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED)

    def crash(_rows: int) -> None:
        raise RuntimeError("simulated crash after COPY")

    with pytest.raises(RuntimeError, match="simulated crash"):
        load_history(engine, path, symbol="MIX", interval="1h", on_progress=crash)
    for table in ("market.bars", "market.quarantine", "market.ingestion_runs"):
        assert count(engine, f"SELECT count(*) FROM {table}") == 0


@pytest.mark.parametrize(
    ("symbol", "interval", "message"),
    [
        ("btc", "1h", "symbol 'btc': must be 1-32 upper-case"),
        ("BTC USDT", "1h", "symbol 'BTC USDT'"),
        ("BTC", "7m", "interval '7m': must be one of"),
    ],
)
def test_rejected_symbol_or_interval_writes_nothing(engine, tmp_path, symbol, interval, message):
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED)
    with pytest.raises(InputError, match=message):
        load_history(engine, path, symbol=symbol, interval=interval)
    assert count(engine, "SELECT count(*) FROM market.ingestion_runs") == 0


def test_rows_without_trades_store_null(engine):
    frame = synth_bars(3, interval="1d").drop(columns="trades")
    frame["trades"] = [5, None, 7]
    load_frame(engine, frame, symbol="TRD", interval="1d", source="test", origin="test")
    with engine.connect() as conn:
        trades = conn.execute(
            sa.text("SELECT trades FROM market.bars WHERE symbol = 'TRD' ORDER BY open_time")
        ).scalars()
        assert list(trades) == [5, None, 7]


def test_sample_history_is_real_and_loads_clean(engine):
    from trendcast.sample_data import SAMPLES

    eurusd = next(s for s in SAMPLES if s.symbol == "EURUSD")
    frame, origin = eurusd.reader()
    summary = load_frame(
        engine, frame, symbol="EURUSD", interval="1h", source=eurusd.source, origin=origin
    )
    assert (summary.read, summary.inserted, summary.quarantined) == (6225, 6225, 0)
    assert Path(origin).name == "FOREX_EURUSD_1H_ASK.csv"
    first = pd.read_sql(
        "SELECT open, close FROM market.bars WHERE symbol = 'EURUSD' ORDER BY open_time LIMIT 1",
        engine,
    )
    assert first.iloc[0].tolist() == [1.05236, 1.05227]  # the file's first row


def test_a_load_streamed_in_pieces_stores_every_bar_once(engine, tmp_path, monkeypatch):
    """Above COPY_CHUNK_ROWS the payload is built on a producer thread, piece by piece, while
    the server ingests: every bar arrives once, in one transaction, with progress for each."""
    from trendcast import bar_store

    monkeypatch.setattr(bar_store, "COPY_CHUNK_ROWS", 1_000)
    path = tmp_path / "big.parquet"
    bars = synth_bars(5_500, interval="1m", seed=21)
    write_bars(bars, path)
    seen: list[int] = []
    summary = load_history(
        engine, path, symbol="STREAM", interval="1m", source="synthetic", on_progress=seen.append
    )
    assert summary.inserted == 5_500 and sum(seen) == 5_500 and len(seen) == 6
    stored = pd.read_sql(
        "SELECT open_time, close, ingest_time FROM market.bars WHERE symbol = 'STREAM' "
        "ORDER BY open_time",
        engine,
    )
    assert stored["close"].tolist() == bars["close"].tolist()
    assert (stored["ingest_time"] == stored["open_time"] + pd.Timedelta(minutes=1)).all()
    assert count(engine, "SELECT count(*) FROM market.bar_changes WHERE symbol = 'STREAM'") == 1


def test_a_streamed_load_that_fails_midway_stores_nothing(engine, tmp_path, monkeypatch):
    """A piece that cannot be built aborts the COPY: the transaction rolls back, the error
    reaches the caller, and no producer thread is left behind."""
    import threading

    from trendcast import bar_store

    monkeypatch.setattr(bar_store, "COPY_CHUNK_ROWS", 1_000)
    real = bar_store.copy_payload
    built = []

    def third_piece_fails(chunk, *args, **kwargs):
        built.append(len(chunk))
        if len(built) == 3:
            raise MemoryError("out of memory building piece 3")
        return real(chunk, *args, **kwargs)

    monkeypatch.setattr(bar_store, "copy_payload", third_piece_fails)
    path = tmp_path / "big.parquet"
    write_bars(synth_bars(5_500, interval="1m", seed=22), path)
    with pytest.raises(MemoryError, match="piece 3"):
        load_history(engine, path, symbol="HALF", interval="1m", source="synthetic")
    assert count(engine, "SELECT count(*) FROM market.bars WHERE symbol = 'HALF'") == 0
    assert count(engine, "SELECT count(*) FROM market.bar_changes WHERE symbol = 'HALF'") == 0
    assert not [t for t in threading.enumerate() if t.name == "copy-payload"]
