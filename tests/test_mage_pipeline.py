"""The Mage pipeline ``derive_indicators`` run headless from .venv-mage, with block tests on.

Runs ``mage run mage_pipelines derive_indicators --test`` as a user would, against the test
database, and checks what lands in the feature store bit for bit against
``compute_features(load_new_bars(...))`` run in the same environment (.venv-mage).

Against this environment's (.venv) library the values agree only to ~1 ulp: .venv-mage has
numpy 1.26 and .venv numpy 2.x, whose SIMD ``np.log`` differ in the last bit for some inputs
(logret_* and the vol_* built on them), so that comparison uses a tolerance.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import REPO

from trendcast.feature_pipeline import online_features
from trendcast.feature_sets import DEFAULT_FEATURE_SET
from trendcast.featurestore import get_latest
from trendcast.history import load_frame
from trendcast.sample_data import SAMPLES

MAGE = REPO / ".venv-mage" / "bin" / "mage"
FEATURES = list(DEFAULT_FEATURE_SET.columns)
TABLE = f"features.{DEFAULT_FEATURE_SET.key}"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MAGE.exists(), reason="no .venv-mage: run `make setup`"),
]


def run_pipeline(env: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess:
    """``mage run`` with block tests; Mage's state (SQLite, block outputs, logs) in data_dir."""
    return subprocess.run(
        [str(MAGE), "run", "mage_pipelines", "derive_indicators", "--test"],
        cwd=REPO,
        env={**env, "MAGE_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=180,
    )


def assert_succeeded(result: subprocess.CompletedProcess) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Pipeline run completed." in result.stdout, output
    assert "1/1 tests passed." in result.stdout, output
    assert "3/3 tests passed." in result.stdout, output
    for alarming in ("Traceback", "FAIL", "ERROR", "Exception"):
        assert alarming not in output, output


# compute_features(load_new_bars(engine, full=True)) in .venv-mage: values and event times as npz
MAGE_EXPECTED = """
import os, sys
import numpy as np, pandas as pd, sqlalchemy as sa
from trendcast.db import normalize_url
from trendcast.feature_pipeline import compute_features, load_new_bars
from trendcast.feature_sets import DEFAULT_FEATURE_SET as fs
engine = sa.create_engine(normalize_url(os.environ["TRENDCAST_DATABASE_URL"]))
f = compute_features(load_new_bars(engine, full=True))
f = f[f["symbol"] == sys.argv[1]].sort_values("event_time")
np.savez(sys.argv[2], values=f[list(fs.columns)].to_numpy("float64"),
         events=pd.DatetimeIndex(f["event_time"]).as_unit("ns").asi8)
"""


def mage_expected(env: dict[str, str], symbol: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(event times as ns, feature bits) the core functions give in the Mage environment."""
    subprocess.run(
        [str(MAGE.with_name("python")), "-c", MAGE_EXPECTED, symbol, str(path)],
        env=env,
        check=True,
        timeout=120,
    )
    with np.load(path) as data:
        return data["events"], data["values"].view("int64")


def event_ns(frame: pd.DataFrame) -> np.ndarray:
    return pd.DatetimeIndex(pd.to_datetime(frame["event_time"], utc=True)).as_unit("ns").asi8


def stored(engine: sa.Engine, symbol: str) -> pd.DataFrame:
    return pd.read_sql(
        sa.text(f"SELECT * FROM {TABLE} WHERE symbol = :s ORDER BY event_time, ingest_time"),
        engine,
        params={"s": symbol},
    )


def bits(frame: pd.DataFrame) -> np.ndarray:
    return frame[FEATURES].to_numpy(dtype="float64").view("int64")


def project_state() -> set[str]:
    """Changed and untracked (not ignored) files under mage_pipelines/."""
    listed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--", "mage_pipelines"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(listed.stdout.splitlines())


def test_mage_pipeline_incremental_and_bit_identical(engine, env, tmp_path):
    frame, origin = SAMPLES[0].reader()
    first, late = frame.iloc[:-3], frame.iloc[-3:]
    load_frame(engine, first, symbol="EURUSD", interval="1h", source="test", origin=origin)
    before = project_state()

    # 1. every bar gets a feature row, bit for bit what the core functions give in .venv-mage
    assert_succeeded(run_pipeline(env, tmp_path / "mage"))
    rows = stored(engine, "EURUSD")
    assert len(rows) == len(first) == 6222
    expected_times = pd.to_datetime(first["open_time"], utc=True) + pd.Timedelta(hours=1)
    assert (pd.to_datetime(rows["event_time"], utc=True).to_numpy() == expected_times).all()
    events, values = mage_expected(env, "EURUSD", tmp_path / "expected_1.npz")
    assert np.array_equal(event_ns(rows), events)
    assert np.array_equal(bits(rows), values)
    library = DEFAULT_FEATURE_SET.compute(first.reset_index(drop=True), "1h")
    assert np.array_equal(bits(rows), library.to_numpy().view("int64"))  # and in .venv too
    assert set(rows["producer"]) == {"mage:derive_indicators"}

    # 2. nothing new: nothing written
    second = run_pipeline(env, tmp_path / "mage")
    assert_succeeded(second)
    assert "0 written" in second.stdout
    assert stored(engine, "EURUSD").equals(rows)

    # 3. three late bars: exactly their three rows are added, the rest untouched
    load_frame(engine, late, symbol="EURUSD", interval="1h", source="test", origin=origin)
    assert_succeeded(run_pipeline(env, tmp_path / "mage"))
    after = stored(engine, "EURUSD")
    assert len(after) == len(frame) == 6225
    assert after.iloc[: len(rows)].equals(rows)
    new = after.iloc[len(rows) :]
    late_times = pd.to_datetime(late["open_time"], utc=True) + pd.Timedelta(hours=1)
    assert (pd.to_datetime(new["event_time"], utc=True).to_numpy() == late_times).all()
    events, values = mage_expected(env, "EURUSD", tmp_path / "expected_3.npz")
    assert np.array_equal(event_ns(after), events)
    assert np.array_equal(bits(after), values)

    # 4. parity: what Mage stored offline = the online paths serving uses, to the last bit
    latest = get_latest(engine, DEFAULT_FEATURE_SET, "EURUSD", "1h")
    online = online_features(engine, "EURUSD", "1h")
    last_row = after[FEATURES].iloc[-1].to_numpy(dtype="float64").view("int64")
    assert np.array_equal(latest[FEATURES].to_numpy(dtype="float64").view("int64"), last_row)
    assert np.array_equal(online[FEATURES].to_numpy(dtype="float64").view("int64"), last_row)
    assert latest["event_time"] == online["event_time"] == late_times.iloc[-1]

    # Mage kept its state in MAGE_DATA_DIR: the project folder is as it was
    assert project_state() == before
