"""`trendcast ingest --scheduled` runs at DEFAULT_INGEST_RATE, the EventBridge rule's rate."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

import ingestion_lambda.handler
from trendcast.cli import app
from trendcast.schedule import DEFAULT_INGEST_RATE, period_seconds


@pytest.fixture
def runs(monkeypatch):
    """Replace the handler and the clock: record calls and the sleeps between them."""
    calls: list[dict] = []
    sleeps: list[float] = []

    def fake_handler(event, context):
        calls.append(event)
        return {"status": "ok", "series": []}

    monkeypatch.setattr(ingestion_lambda.handler, "handler", fake_handler)
    monkeypatch.setattr(time, "sleep", sleeps.append)
    return calls, sleeps


def test_scheduled_runs_at_the_default_ingest_rate(runs):
    calls, sleeps = runs
    result = CliRunner().invoke(app, ["ingest", "--scheduled", "--times", "3"])
    assert result.exit_code == 0, result.output
    assert len(calls) == 3
    assert len(sleeps) == 2
    period = period_seconds(DEFAULT_INGEST_RATE)
    assert all(period - 1 < s <= period for s in sleeps), sleeps


def test_scheduled_and_every_exclude_each_other(runs):
    result = CliRunner().invoke(app, ["ingest", "--scheduled", "--every", "5s", "--times", "1"])
    assert result.exit_code != 0
    assert "--scheduled" in str(result.exception)
    assert runs[0] == []
