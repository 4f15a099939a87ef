"""A model-threshold deployment against a real MLflow server: the alias is resolved and verified
like the service does, audited moves are followed, an unaudited one is refused, and the paper
account bar by bar equals the backtest with the versions as they were served."""

from __future__ import annotations

import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import xgboost as xgb

from trendcast import feature_pipeline
from trendcast.feature_sets import CORE_V1
from trendcast.history import load_frame
from trendcast.registry import promote
from trendcast.sample_data import SAMPLES
from trendcast.tracking import mlflow_client
from trendcast.trading import deployments as store
from trendcast.trading.inputs import features_known_by
from trendcast.trading.lifecycle import create, run_pending
from trendcast.trading.promotion import PromotionRefused, Thresholds
from trendcast.trading.promotion import promote as go_live
from trendcast.trading.reconcile import reconcile

pytestmark = pytest.mark.slow
N_BARS = 3300  # the seasonal 99-day SMA needs ~2,400 hourly bars before its first value
START = 3000


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    frame, _ = next(s for s in SAMPLES if s.symbol == "EURUSD").reader()
    return frame.iloc[:N_BARS].reset_index(drop=True)


def register(client, engine, name: str, features: pd.DataFrame, seed: int) -> int:
    """An XGBoost regressor on the stored features, logged and tagged as training does."""
    from training.train import model_checksum, register_model

    label = np.log(features["close"].shift(-4) / features["close"]).fillna(0.0)
    x = features[list(CORE_V1.columns)]
    model = xgb.XGBRegressor(n_estimators=20, max_depth=2, random_state=seed, n_jobs=1)
    known = x.iloc[:START].notna().all(axis=1).to_numpy()
    model.fit(x.iloc[:START][known], label.iloc[:START][known])
    experiment = client.get_experiment_by_name("deploy-tests")
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("deploy-tests")
    )
    with mlflow.start_run(experiment_id=experiment_id):
        return register_model(
            model, name, x.iloc[:5], model.predict(x.iloc[:5]), model_checksum(model)
        )


@pytest.fixture
def setup(engine, eurusd, mlflow_url, monkeypatch):
    monkeypatch.setenv("TRENDCAST_MLFLOW_TRACKING_URI", mlflow_url)
    store_frame = eurusd
    load_frame(engine, store_frame, symbol="EURUSD", interval="1h", source="test", origin="test")
    feature_pipeline.build(engine)
    client = mlflow_client(mlflow_url)
    closes = eurusd["open_time"] + pd.Timedelta(hours=1)
    feats = features_known_by(
        engine,
        "EURUSD",
        "1h",
        closes,
        list(CORE_V1.columns),
        pd.Timestamp.now(tz="UTC").to_pydatetime(),
    )
    feats["close"] = eurusd["close"].to_numpy()
    name = f"EURUSD_deploy_{uuid.uuid4().hex[:6]}"
    v1 = register(client, engine, name, feats, seed=1)
    v2 = register(client, engine, name, feats, seed=2)
    promote(client, engine, name, v1, "production", force=True, reason="deploy test")
    return client, name, v1, v2


def test_model_threshold_follows_audited_moves_refuses_others_and_equals_the_backtest(
    engine, eurusd, setup
):
    client, name, v1, v2 = setup
    dep = create(
        engine,
        name=f"mt-{uuid.uuid4().hex[:6]}",
        strategy="model-threshold",
        params={"threshold": 0.0},
        model=f"{name}@production",
        symbols=["EURUSD"],
        interval="1h",
        broker="paper",
        capital=10_000.0,
        risk={},
        start=pd.Timestamp(eurusd["open_time"].iloc[START]),
        warmup=200,
        client=client,
    )
    run_pending(engine, dep.name, bars=60, client=client)
    # an audited move is followed from the next bar on
    promote(client, engine, name, v2, "production", force=True, reason="deploy test 2")
    run_pending(engine, dep.name, bars=60, client=client)
    # a move made behind Trendcast's back is refused: the last verified version keeps trading
    client.set_registered_model_alias(name, "production", str(v1))
    run_pending(engine, dep.name, bars=60, client=client)
    decided = pd.read_sql(
        sa.text(
            "SELECT bar_time, model_version, prediction, target, skipped FROM trading.decisions "
            "WHERE deployment_id = :d ORDER BY bar_time"
        ),
        engine,
        params={"d": dep.id},
    )
    assert list(decided["model_version"].iloc[[0, 59, 60, 119, 120, 179]]) == [
        v1,
        v1,
        v2,
        v2,
        v2,
        v2,
    ]
    assert decided["prediction"].notna().all(), decided.head().to_dict()
    kinds = [e["kind"] for e in store.events(engine, store.get(engine, dep.name))]
    assert "model_refused" in kinds
    with engine.connect() as conn:
        unaudited = conn.execute(
            sa.text(
                "SELECT count(*) FROM monitoring.alerts WHERE model_name = :m "
                "AND rule = 'unaudited_alias_move'"
            ),
            {"m": name},
        ).scalar_one()
    assert unaudited == 1
    result = reconcile(engine, dep.name, client=client)
    assert result.fills_live == result.fills_backtest > 2
    assert result.versions == {v1: True, v2: True}
    assert result.max_equity_diff <= 1e-9 and result.equal, result.differences[:3]

    # demo -> live: refused, naming what is missing (no live keys, paper broker)
    with pytest.raises(PromotionRefused) as refused:
        go_live(engine, dep.name, "live", _Settings(), Thresholds(1.0, 1, 0.01), client)
    message = str(refused.value)
    assert "live needs the binance broker" in message
    assert "TRENDCAST_BINANCE_API_KEY is not set" in message
    assert "failed" not in message  # every gate passed: 180 bars, fills, equal equity
    assert store.get(engine, dep.name).stage == "demo"


class _Settings:
    binance_api_key = None
    binance_api_secret = None
    binance_base_url = "https://testnet.binance.vision"
