"""The Lambda zip works on its own: unpacked into a clean folder and invoked with only the zip's
contents on the path (no site-packages), it ingests from the replay into the test database."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pandas as pd
import pytest
import sqlalchemy as sa

from ingestion_lambda.build_zip import build
from trendcast.replay import Replay, ReplayClock, start_in_thread
from trendcast.sample_data import SAMPLES

pytestmark = pytest.mark.slow

INVOKE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy, pandas
from ingestion_lambda.handler import handler

class Context:
    def get_remaining_time_in_millis(self):
        return 60_000

event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
print(json.dumps({"summary": handler(event, Context()), "pandas": pandas.__file__}))
"""


def test_zip_runs_the_handler_with_nothing_else_installed(tmp_path, engine, db_url):
    archive = build(tmp_path / "dist" / "ingestion_lambda.zip", tmp_path / "work")
    unpacked = tmp_path / "task"
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        zipped.extractall(unpacked)
    assert "ingestion_lambda/handler.py" in names and "trendcast/ingest.py" in names
    assert not any(name.startswith(("tests/", "boto3/")) for name in names)

    frame, _ = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    replay = Replay({"EURUSD": frame}, "1h", ReplayClock(pd.Timestamp("2017-03-01T00:30Z"), 0.0))
    server, url = start_in_thread(replay)
    env = {
        "PATH": "/usr/bin:/bin",
        "TRENDCAST_DATABASE_URL": db_url.render_as_string(hide_password=False),
        "TRENDCAST_EXCHANGE_URL": url,
        "TRENDCAST_SYMBOLS": "EURUSD",
        "TRENDCAST_INTERVALS": "1h",
        "TRENDCAST_INGEST_LOOKBACK_BARS": "48",
    }
    try:
        # -I: ignore PYTHON* variables and the user site; -S: no site-packages at all.
        result = subprocess.run(
            [sys.executable, "-I", "-S", "-c", INVOKE, str(unpacked)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["pandas"].startswith(str(unpacked))  # loaded from the zip, not our venv
    summary = output["summary"]
    assert summary["status"] == "succeeded", summary
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM market.bars")).scalar_one()
    assert stored == summary["inserted"] > 0
