"""Synthetic bars and settings: small pure checks."""

from __future__ import annotations

import numpy as np
import pytest

from trendcast.bars import validate_bars
from trendcast.config import Settings
from trendcast.db import masked, normalize_url
from trendcast.errors import DatabaseUnavailable
from trendcast.synth import synth_bars


def test_synthetic_bars_pass_every_rule_and_change_regime():
    bars = synth_bars(50_000, interval="1m", seed=1, mean_regime_bars=2_000)
    checked = validate_bars(bars, "1m")
    assert checked.rejected_count == 0
    assert bars["regime"].nunique() >= 3
    returns = np.log(bars["close"]).diff()
    by_regime = returns.groupby(bars["regime"]).std()
    assert by_regime["turbulent"] > 2 * by_regime["sideways"]


def test_same_seed_same_bars():
    assert synth_bars(1000, seed=5).equals(synth_bars(1000, seed=5))
    assert not synth_bars(1000, seed=5).equals(synth_bars(1000, seed=6))


def test_settings_read_env_and_split_lists(monkeypatch, tmp_path):
    monkeypatch.setenv("TRENDCAST_SYMBOLS", "BTCUSDT, ETHUSDT")
    monkeypatch.setenv("TRENDCAST_MLFLOW_PORT", "5111")
    monkeypatch.setenv("TRENDCAST_HOME", str(tmp_path))
    settings = Settings()
    assert settings.symbols == ["BTCUSDT", "ETHUSDT"]
    assert settings.tracking_uri == "http://127.0.0.1:5111"
    assert settings.artifacts_destination == str(tmp_path / "mlartifacts")
    assert settings.embedded_database


def test_urls_use_psycopg2_and_hide_passwords():
    url = normalize_url("postgresql://u:pw@db:5432/x")
    assert url.drivername == "postgresql+psycopg2"
    assert masked(url) == "postgresql://u:***@db:5432/x"
    with pytest.raises(DatabaseUnavailable, match="not PostgreSQL"):
        normalize_url("mysql://u@db/x")
