"""The feature store on a real PostgreSQL: idempotent builds, offline/online parity to the bit,
and the look-ahead traps (a late bar, a rewritten value, a changed definition)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from trendcast import feature_pipeline as pipeline
from trendcast import featurestore
from trendcast.errors import InputError
from trendcast.feature_sets import CORE_V1
from trendcast.history import load_frame
from trendcast.sample_data import SAMPLES

FS = CORE_V1
HOUR = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    frame, _ = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    return frame


def load(engine, bars: pd.DataFrame, known_at: str = "close") -> None:
    load_frame(
        engine,
        bars,
        symbol="EURUSD",
        interval="1h",
        source="test",
        origin="test",
        known_at=known_at,
    )


def stored(engine) -> pd.DataFrame:
    return pd.read_sql(
        f"SELECT * FROM {featurestore.table(FS)} WHERE symbol = 'EURUSD' "
        "ORDER BY event_time, ingest_time",
        engine,
    )


def bits(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(FS.columns)].to_numpy(dtype="float64").view("int64")


def test_build_writes_every_bar_once_and_a_rerun_writes_nothing(engine, eurusd):
    load(engine, eurusd)
    first = pipeline.build(engine)
    assert first == {
        "series": 1,
        "rows_computed": len(eurusd),
        "rows_written": len(eurusd),
        "failed": [],
    }
    assert pipeline.build(engine)["rows_written"] == 0
    assert pipeline.build(engine, full=True)["rows_written"] == 0  # same values: no new rows
    rows = stored(engine)
    assert len(rows) == len(eurusd)
    assert (rows["event_time"] == eurusd["open_time"] + HOUR).all()
    assert set(rows["producer"]) == {"trendcast:derive_indicators"}
    assert rows["producer_version"].str.len().min() >= 7  # a git SHA


def test_offline_and_online_features_are_identical_to_the_bit(engine, eurusd):
    history, live = eurusd.iloc[:-12], eurusd.iloc[-12:]
    load(engine, history)
    pipeline.build(engine)
    for i in range(len(live)):  # bars arrive one by one, as from the Lambda
        load(engine, live.iloc[i : i + 1], known_at="now")
        assert pipeline.build(engine)["rows_written"] == 1
    offline = FS.compute(eurusd, "1h")  # the whole history at once
    rows = stored(engine)
    assert len(rows) == len(eurusd)
    assert np.array_equal(bits(rows), offline.to_numpy().view("int64"))
    latest = featurestore.get_latest(engine, FS, "EURUSD", "1h")
    online = pipeline.online_features(engine, "EURUSD", "1h")
    expected = offline.iloc[-1].to_numpy()
    assert np.array_equal(
        latest[list(FS.columns)].to_numpy(dtype="float64").view("int64"), expected.view("int64")
    )
    assert np.array_equal(
        online[list(FS.columns)].to_numpy(dtype="float64").view("int64"), expected.view("int64")
    )
    assert latest["event_time"] == online["event_time"] == eurusd["open_time"].iloc[-1] + HOUR


def test_a_bar_backfilled_late_is_invisible_before_its_ingest_time(engine, eurusd):
    bars = eurusd.iloc[:4000]
    missing = 3900
    load(engine, bars.drop(bars.index[missing]))
    pipeline.build(engine)
    before = stored(engine)
    load(engine, bars.iloc[[missing]], known_at="now")  # the gap repaired today
    written = pipeline.build(engine)["rows_written"]
    after = stored(engine)
    assert written == len(after) - len(before) > 1  # the bar and every window it enters
    newest = after["ingest_time"].max()
    assert newest > pd.Timestamp("2026-01-01", tz="UTC")  # stamped with the repair time
    later_event = bars["open_time"].iloc[3950] + HOUR
    entities = pd.DataFrame(
        {"symbol": ["EURUSD"] * 2, "as_of": [later_event + pd.Timedelta(minutes=5), newest]}
    )
    seen = featurestore.get_point_in_time(engine, FS, entities, "1h", ["sma_99_ratio"])
    old = before.loc[before["event_time"] == later_event, "sma_99_ratio"].iloc[0]
    new = after.loc[after["event_time"] == later_event].iloc[-1]["sma_99_ratio"]
    assert old != new
    assert seen["sma_99_ratio"].iloc[0] == old  # in 2017 nobody knew the repaired bar
    assert seen["event_time"].iloc[1] == bars["open_time"].iloc[-1] + HOUR
    bar_time = bars["open_time"].iloc[missing] + HOUR
    at_gap = featurestore.get_point_in_time(
        engine, FS, pd.DataFrame({"symbol": ["EURUSD"], "as_of": [bar_time]}), "1h", ["logret_1"]
    )
    assert at_gap["event_time"].iloc[0] == bar_time - HOUR  # the missing bar's row is not there


def test_point_in_time_reads_respect_event_and_ingest_time(engine, eurusd):
    load(engine, eurusd.iloc[:500])
    pipeline.build(engine)
    close_10 = eurusd["open_time"].iloc[10] + HOUR
    entities = pd.DataFrame(
        {
            "symbol": ["EURUSD", "EURUSD", "NOPE", "EURUSD"],
            "as_of": [
                close_10,
                close_10 - pd.Timedelta(seconds=1),
                close_10,
                pd.Timestamp("2000-01-01", tz="UTC"),
            ],
        }
    )
    out = featurestore.get_point_in_time(engine, FS, entities, "1h", ["logret_1", "rsi_14"])
    assert list(out["symbol"]) == list(entities["symbol"])  # input order kept
    assert out["event_time"].iloc[0] == close_10
    assert out["event_time"].iloc[1] == close_10 - HOUR  # one second earlier: previous bar
    assert out[["logret_1", "rsi_14"]].iloc[2:].isna().all().all()  # unknown symbol, too early
    assert out["logret_1"].iloc[0] == pytest.approx(
        np.log(eurusd["close"].iloc[10] / eurusd["close"].iloc[9])
    )
    with pytest.raises(InputError, match="not in feature set"):
        featurestore.get_point_in_time(engine, FS, entities, "1h", ["bogus"])


def test_a_changed_definition_cannot_overwrite_a_version(engine, eurusd):
    load(engine, eurusd.iloc[:300])
    pipeline.build(engine)
    changed = dataclasses.replace(FS, function=lambda b, i: FS.function(b, i) + 1.0)
    with pytest.raises(InputError, match=r"definition changed.*new version"):
        pipeline.build(engine, changed)
    assert len(stored(engine)) == 300


def test_a_store_registered_by_code_with_the_same_bits_keeps_accepting_writes(engine, eurusd):
    # a store made before the compiled window sums holds core v1 under the NumPy-only fingerprint
    load(engine, eurusd.iloc[:300])
    pipeline.build(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE features.feature_sets SET fingerprint = :fp WHERE key = :key"),
            {"fp": FS.same_bits_as[0], "key": FS.key},
        )
    load(engine, eurusd.iloc[300:310])
    assert pipeline.build(engine)["rows_written"] == 10
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE features.feature_sets SET fingerprint = 'other' WHERE key = :key"),
            {"key": FS.key},
        )
    load(engine, eurusd.iloc[310:312])
    with pytest.raises(InputError, match=r"definition changed"):
        pipeline.build(engine)


def test_training_snapshot_is_immutable_and_fingerprinted(engine, eurusd, tmp_path):
    load(engine, eurusd.iloc[:600])
    pipeline.build(engine)
    entities = pd.DataFrame({"symbol": "EURUSD", "as_of": eurusd["open_time"].iloc[200:600] + HOUR})
    one = featurestore.export_training_set(engine, FS, entities, "1h", tmp_path)
    two = featurestore.export_training_set(engine, FS, entities, "1h", tmp_path)
    assert one == two and one.rows == 400
    assert one.path.name == f"core_v1-{one.fingerprint}.parquet"
    other = featurestore.export_training_set(engine, FS, entities.iloc[:-1], "1h", tmp_path)
    assert other.fingerprint != one.fingerprint
    frame = pd.read_parquet(one.path)
    assert list(frame.columns[:3]) == ["symbol", "as_of", "event_time"]
    assert not frame[["logret_1", "sma_99_ratio", "rsi_14"]].isna().any().any()


def test_changes_are_consumed_and_pruned(engine, eurusd):
    load(engine, eurusd.iloc[:100])
    load(engine, eurusd.iloc[100:200])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM market.bar_changes")).scalar_one() == 2
    pipeline.build(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM market.bar_changes")).scalar_one() == 0
