"""Late and revised inputs never break the feature build (issue 14), through both runners.

Late history (a hole filled with ``--known-at close``), older history loaded after newer, and
revisions must each produce new versions only where values changed, with keys that cannot
collide, while an as-of read before the late write still returns what the store held then.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import REPO, run_cli

from trendcast import featurestore
from trendcast.feature_sets import CORE_V1
from trendcast.history import load_frame
from trendcast.sample_data import SAMPLES
from trendcast.synth import synth_bars

FS = CORE_V1
HOUR = pd.Timedelta(hours=1)
MAGE = REPO / ".venv-mage" / "bin" / "mage"
RUNNERS = [
    "python",
    pytest.param(
        "mage",
        marks=[
            pytest.mark.slow,
            pytest.mark.skipif(not MAGE.exists(), reason="no .venv-mage: run `make setup`"),
        ],
    ),
]


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    frame, _ = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    return frame.iloc[:3000].reset_index(drop=True)


def load(engine, bars: pd.DataFrame, symbol: str = "EURUSD", **kwargs):
    return load_frame(
        engine, bars, symbol=symbol, interval="1h", source="test", origin="test", **kwargs
    )


def build(env: dict, runner: str, tmp_path, ok: bool = True):
    result = run_cli(
        "features",
        "build",
        "--runner",
        runner,
        env={**env, "MAGE_DATA_DIR": str(tmp_path / "mage")},
    )
    if ok:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def db_now(engine) -> pd.Timestamp:
    with engine.connect() as conn:
        return pd.Timestamp(conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one())


def latest(engine, symbol: str = "EURUSD") -> pd.DataFrame:
    return pd.read_sql(
        sa.text(
            f"SELECT DISTINCT ON (event_time) * FROM {featurestore.table(FS)} WHERE symbol = :s "
            "ORDER BY event_time, ingest_time DESC"
        ),
        engine,
        params={"s": symbol},
    )


def assert_latest_equals_full_computation(engine, bars: pd.DataFrame, runner: str) -> None:
    """The current version of every row = the features of the whole, final history."""
    got = latest(engine)
    want = FS.compute(bars.reset_index(drop=True), "1h")
    events = pd.to_datetime(bars["open_time"], utc=True) + HOUR
    assert (pd.to_datetime(got["event_time"], utc=True).to_numpy() == events.to_numpy()).all()
    values = got[list(FS.columns)].to_numpy(dtype="float64")
    if runner == "python":
        assert np.array_equal(values.view("int64"), want.to_numpy().view("int64"))
    else:  # .venv-mage's numpy 1.26 log differs from numpy 2's in the last bit
        np.testing.assert_allclose(values, want.to_numpy(), rtol=1e-12, equal_nan=True)


def as_of(engine, when: pd.Timestamp) -> pd.DataFrame:
    """The store's point-in-time read for EURUSD at ``when``."""
    entities = pd.DataFrame({"symbol": ["EURUSD"], "as_of": [when]})
    return featurestore.get_point_in_time(engine, FS, entities, "1h")


def version_at(engine, event: pd.Timestamp, when: pd.Timestamp) -> np.ndarray:
    """The version of one event time's features the store held at ``when``."""
    row = pd.read_sql(
        sa.text(
            f"SELECT * FROM {featurestore.table(FS)} WHERE symbol = 'EURUSD' "
            "AND event_time = :e AND ingest_time <= :t ORDER BY ingest_time DESC LIMIT 1"
        ),
        engine,
        params={"e": event, "t": when},
    )
    return row[list(FS.columns)].to_numpy()[0]


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_hole_filled_late_with_known_at_close_after_features_were_built(
    engine, env, tmp_path, eurusd, runner
):
    hole = eurusd.iloc[2500:2510]
    load(engine, eurusd.drop(hole.index))
    build(env, runner, tmp_path)
    before = latest(engine)
    held_at = db_now(engine)

    load(engine, hole)  # --known-at close: these bars say they were known when they closed
    second = build(env, runner, tmp_path)  # used to fail with UniqueViolation core_v1_pkey
    assert "0 written" not in second.stdout
    if runner == "python":  # idempotent (the runners share write_features; Mage costs ~10 s)
        assert "0 written" in build(env, runner, tmp_path).stdout
    assert_latest_equals_full_computation(engine, eurusd, runner)

    # Rows the store already held and that changed got new versions, visible from the late
    # write on: an as-of read at `held_at` returns exactly what the store held then.
    after = latest(engine)
    changed = after.merge(before, on="event_time", suffixes=("", "_old"))
    changed = changed[changed["ingest_time"] != changed["ingest_time_old"]]
    assert len(changed) > 100
    assert (pd.to_datetime(changed["ingest_time"], utc=True) > held_at).all()
    event = pd.Timestamp(changed["event_time"].max())
    held = before[before["event_time"] == event][list(FS.columns)].to_numpy()[0]
    assert np.array_equal(version_at(engine, event, held_at), held, equal_nan=True)
    now = version_at(engine, event, db_now(engine))
    assert not np.array_equal(now, held, equal_nan=True)


@pytest.mark.parametrize("runner", RUNNERS)
def test_older_history_loaded_after_newer_extends_the_features_backwards(
    engine, env, tmp_path, eurusd, runner
):
    load(engine, eurusd.iloc[1500:])
    build(env, runner, tmp_path)
    load(engine, eurusd.iloc[:1500])
    build(env, runner, tmp_path)
    assert_latest_equals_full_computation(engine, eurusd, runner)
    if runner == "python":
        assert "0 written" in build(env, runner, tmp_path).stdout


def test_a_revision_is_read_as_of_before_and_after(engine, env, tmp_path, eurusd):
    load(engine, eurusd)
    build(env, "python", tmp_path)
    target = eurusd.iloc[[-1]].copy()  # the newest bar: as-of reads return its features
    target["close"] *= 1.001
    target["high"] = np.maximum(target["high"], target["close"])

    conflict = load(engine, target)  # by default: a conflict, nothing changed
    assert (conflict.conflicts, conflict.quarantined, conflict.revised) == (1, 1, 0)
    assert "0 written" in build(env, "python", tmp_path).stdout

    held_at = db_now(engine)
    revised = load(engine, target, revise=True)
    assert (revised.revised, revised.conflicts, revised.inserted) == (1, 0, 0)
    with engine.connect() as conn:
        rev = conn.execute(sa.text("SELECT * FROM market.bar_revisions")).one()
    assert rev.old_close == eurusd.iloc[-1]["close"] and rev.new_close == target.iloc[0]["close"]
    assert rev.run_id is not None and pd.Timestamp(rev.known_at) > held_at
    build(env, "python", tmp_path)

    before, after = as_of(engine, held_at), as_of(engine, db_now(engine))
    event = target.iloc[0]["open_time"] + HOUR
    assert before["event_time"].iloc[0] == after["event_time"].iloc[0] == event
    old = FS.compute(eurusd, "1h").iloc[-1]
    new = FS.compute(pd.concat([eurusd.iloc[:-1], target]), "1h").iloc[-1]
    assert np.array_equal(before[list(FS.columns)].to_numpy()[0], old.to_numpy())
    assert np.array_equal(after[list(FS.columns)].to_numpy()[0], new.to_numpy())
    assert before["close_position"].iloc[0] != after["close_position"].iloc[0]


def test_a_failing_series_is_reported_and_left_unconsumed_while_others_build(engine, env, tmp_path):
    runner = "python"  # the Mage exporter raises the same BuildFailed after the same loop
    for symbol, seed in (("AAA", 1), ("BBB", 2)):
        load(engine, synth_bars(400, interval="1h", seed=seed), symbol=symbol)
    featurestore.register(engine, FS)
    table = featurestore.table(FS)
    with engine.begin() as conn:  # a real failure inside PostgreSQL for one series only
        conn.execute(
            sa.text(
                "CREATE OR REPLACE FUNCTION public.refuse_aaa() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN RAISE EXCEPTION 'disk quota exceeded for %', NEW.symbol; END $$"
            )
        )
        conn.execute(
            sa.text(
                f"CREATE TRIGGER refuse_aaa BEFORE INSERT ON {table} FOR EACH ROW "
                "WHEN (NEW.symbol = 'AAA') EXECUTE FUNCTION public.refuse_aaa()"
            )
        )
    failed = build(env, runner, tmp_path, ok=False)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "1 series failed" in failed.stderr and "AAA 1h" in failed.stderr
    assert "disk quota exceeded for AAA" in failed.stderr
    assert "Traceback" not in failed.stderr
    counts = dict(
        pd.read_sql(f"SELECT symbol, count(*) AS n FROM {table} GROUP BY 1", engine).values
    )
    assert counts == {"BBB": 400}
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TRIGGER refuse_aaa ON {table}"))
    build(env, runner, tmp_path)
    counts = dict(
        pd.read_sql(f"SELECT symbol, count(*) AS n FROM {table} GROUP BY 1", engine).values
    )
    assert counts == {"AAA": 400, "BBB": 400}
