"""Trendcast's prediction service (BentoML 1.4).

Serves the model behind ``models:/NAME@ALIAS`` (``TRENDCAST_MODEL_NAME``, default
``EURUSD_1h_h4``; ``TRENDCAST_MODEL_ALIAS``, default ``production``), polls the alias and swaps
in a new version once it is downloaded, verified and warmed. The ``challenger`` alias is scored
in shadow. Every prediction is logged to ``serving.predictions`` off the request path.

Run: ``trendcast serve`` (or ``bentoml serve serving.service:Trendcast``).
"""

from __future__ import annotations

import gc
import json
import logging
import math
import sys
import threading
import time
from http import HTTPStatus
from typing import Any

import bentoml
import numpy as np
import orjson
from bentoml.exceptions import BentoMLException, InvalidArgument, NotFound, ServiceUnavailable
from pydantic import Field
from starlette.responses import Response

from serving import bentoml_fixes
from serving.gateway import Gateway
from serving.models import LoadedModel, ModelHolder
from serving.prediction_log import (
    PredictionLog,
    copy_lines,
    new_request_id,
    utc_now_text,
)
from trendcast import governance
from trendcast.config import get_settings

log = logging.getLogger("trendcast.serving")
bentoml_fixes.apply()


class NotEnoughHistory(BentoMLException):
    """A symbol's stored bars do not cover its features' windows yet (409: a state, not a
    malformed request)."""

    error_code = HTTPStatus.CONFLICT


#: BentoML's limits; the gateway keeps max_concurrency on the /predict it answers itself.
TRAFFIC = {"timeout": 30, "max_concurrency": 256}


def _answer(body: dict) -> Response:
    """The JSON answer as a ready response: for a ``dict`` return value BentoML 1.4 builds a
    pydantic TypeAdapter and its JSON schema on every request (``IORootModel.mime_type``),
    which costs more than the prediction."""
    return Response(json.dumps(body).encode(), media_type="application/json")


@bentoml.service(
    name="trendcast",
    workers=1,
    traffic=TRAFFIC,
    endpoints={"livez": "/livez", "readyz": "/readyz"},
    # Every prediction is already logged (with its latency) in serving.predictions; a second
    # per-request access-log line costs more than the prediction itself.
    logging={"access": {"enabled": False}},
    # BentoML's OpenTelemetry span (no exporter is configured) and its Prometheus middleware
    # per request halve the throughput of a no-op service and set the tail at 16 connections
    # (bench_serving); the gateway counts requests and latencies itself and serves /metrics.
    **({} if get_settings().serving_framework_telemetry else bentoml_fixes.TELEMETRY_OFF),
)
class Trendcast:
    def __init__(self) -> None:
        from trendcast.db import database_url

        self.settings = get_settings()
        name = self.settings.serving_model_name
        self.url = database_url("trendcast", self.settings).render_as_string(hide_password=False)
        self._engine = None
        self.holder = ModelHolder(
            self.settings.tracking_uri,
            name,
            self.settings.model_alias,
            self.settings.shadow_alias,
            audit=lambda model, alias, version: governance.check_move(
                self.engine, model, alias, version
            ),
            on_unaudited=self._unaudited,
            on_audited=self._audited,
        )
        self.log = PredictionLog(
            self.url,
            self.settings.prediction_log_queue,
            journal=self.settings.home / "prediction-journal",
            spill_bytes=self.settings.prediction_log_spill_bytes,
        )
        Gateway.attach(self, TRAFFIC["max_concurrency"])
        changes = self.holder.check()
        log.info("model check at start: %s", changes)
        # Everything loaded so far (modules, the booster, settings) lives as long as the process:
        # out of the collector's sight, a full collection has less to walk.
        gc.collect()
        gc.freeze()
        # The prediction-log writer builds its COPY payloads in Python: with the default 5 ms
        # switch interval each burst holds the event loop for whole intervals (bench_serving
        # measures both).
        sys.setswitchinterval(self.settings.serving_switch_interval_ms / 1000)
        self._stop = threading.Event()
        threading.Thread(target=self._poll, name="alias-poller", daemon=True).start()

    # -- background -------------------------------------------------------------------------
    def _poll(self) -> None:
        while not self._stop.wait(self.settings.serving_poll_s):
            changes = self.holder.check()
            for alias, change in changes.items():
                if change.startswith("loaded"):
                    log.info("%s@%s: %s", self.holder.name, alias, change)
                elif change.startswith("refused"):
                    log.error("%s@%s: %s", self.holder.name, alias, change)

    def _unaudited(self, verdict: governance.Verdict) -> None:
        log.error("refusing an unaudited alias move: %s", verdict.reason)
        try:
            governance.raise_alert(
                self.engine,
                verdict,
                self.settings.alert_webhook,
                self.settings.alert_webhook_attempts,
            )
        except Exception as exc:  # the alert must never stop the poller
            log.error("could not record the alert for %s: %s", verdict.reason, exc)

    def _audited(self, verdict: governance.Verdict) -> None:
        log.info("%s@%s version %s is now on record", verdict.model, verdict.alias, verdict.version)
        try:
            governance.resolve_alerts(self.engine, verdict.model, verdict.alias, verdict.version)
        except Exception as exc:
            log.warning("could not resolve the alerts of %s: %s", verdict.reason, exc)

    @property
    def engine(self):
        if self._engine is None:
            import sqlalchemy as sa

            from trendcast.db import normalize_url

            self._engine = sa.create_engine(normalize_url(self.url), pool_pre_ping=True)
        return self._engine

    def __is_ready__(self) -> bool:
        return self.holder.ready

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()
        self.log.close()

    # -- helpers ----------------------------------------------------------------------------
    def _model(self) -> LoadedModel:
        model = self.holder.primary.model
        if model is None:
            raise ServiceUnavailable(
                f"no verified model for {self.holder.name}@{self.holder.primary.alias} yet: "
                f"{self.holder.primary.error or self.holder.mlflow_error or 'loading'}"
            )
        return model

    def _matrix(self, rows: list[dict[str, Any]], features: list[str]) -> np.ndarray:
        """Rows in ``features`` order. The gateway has checked them against the contract; what
        still could differ (a model whose features are not the contract's, a value that float32
        cannot hold) is refused here, naming the cell."""
        try:
            matrix = np.array([[row[f] for f in features] for row in rows], dtype=np.float32)
        except KeyError as exc:
            raise InvalidArgument(f"rows: missing feature {exc.args[0]}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidArgument(f"rows: a value is not a number ({exc})") from None
        if not np.isfinite(matrix).all():
            i, j = np.argwhere(~np.isfinite(matrix))[0]
            raise InvalidArgument(f"rows[{i}].{features[j]}: must be finite within float32's range")
        return matrix

    def _score(
        self,
        model: LoadedModel,
        matrix: np.ndarray,
        inputs: list[dict],
        started: float,
        keys: list[tuple[str | None, str | None, str | None]],
    ) -> list[float]:
        """Score with ``model``, the one reference the request took when it started, and hand
        the rows (and the shadow's) to the prediction log as COPY text."""
        predictions = model.predict(matrix).tolist()
        latency = (time.perf_counter() - started) * 1000
        request_id, at = new_request_id(), utc_now_text()
        text = copy_lines(
            request_id,
            at,
            keys,
            (model.name, model.version, model.alias),
            False,
            inputs,
            predictions,
            latency,
        )
        rows = len(predictions)
        shadow = self.holder.shadow.model if self.holder.shadow else None
        if shadow is not None and shadow.version != model.version:
            try:
                if shadow.features == model.features:
                    text += copy_lines(
                        request_id,
                        at,
                        keys,
                        (shadow.name, shadow.version, shadow.alias),
                        True,
                        inputs,
                        shadow.predict(matrix).tolist(),
                        latency,
                    )
                    rows *= 2
            except Exception as exc:  # the shadow never fails a request
                log.warning("shadow scoring failed: %s", exc)
        self.log.put_text(text, rows)
        return predictions

    def predict_rows(self, rows: list[dict[str, Any]], started: float) -> bytes:
        """The ``/predict`` answer as JSON bytes for rows the contract has accepted. The gateway
        calls it directly (see ``serving.gateway``): BentoML's own request pipeline behind it
        costs several times the scoring; ``started`` is the request's arrival there."""
        model = self._model()  # one reference for the whole request
        matrix = self._matrix(rows, model.features)
        predictions = self._score(model, matrix, rows, started, [(None, None, None)] * len(rows))
        return orjson.dumps(  # a tenth of json.dumps's time (a few % of a one-row request)
            {
                "model": {"name": model.name, "version": model.version, "alias": model.alias},
                "predictions": predictions,
            }
        )

    # -- endpoints --------------------------------------------------------------------------
    @bentoml.api(route="/predict")
    async def predict(
        self, rows: list[dict[str, Any]] = Field(description="Feature rows: name -> number")
    ) -> Any:  # a ready JSON Response (see _answer)
        """Predict the forward return for a batch of feature rows. Over HTTP the gateway
        answers ``/predict`` itself with ``predict_rows``; this endpoint is BentoML's own route
        to the same code (its Python client, and the gateway switched off)."""
        payload = self.predict_rows(rows, time.perf_counter())
        return Response(payload, media_type="application/json")

    @bentoml.api(route="/predict_latest")
    def predict_latest(
        self,
        symbols: list[str] = Field(description="Symbols to score on their newest bar"),
        interval: str = Field(default="1h", description="Bar interval"),
    ) -> Any:  # a ready JSON Response (see _answer)
        """Score each symbol on the features of its newest stored bar (the real-time path)."""
        from trendcast.errors import InputError
        from trendcast.schema import series_key

        started = time.perf_counter()
        model = self._model()
        if not symbols:
            raise InvalidArgument("symbols: empty list; name at least one symbol")
        if len(symbols) > self.settings.serving_max_batch:
            raise InvalidArgument(f"symbols: more than {self.settings.serving_max_batch}")
        rows, keys, times = [], [], []
        for i, symbol in enumerate(symbols):
            try:
                key = series_key(symbol, interval)
            except InputError as exc:
                raise InvalidArgument(f"symbols[{i}]: {exc}") from None
            features = self._latest_features(key.symbol, key.interval, model.features)
            if features is None:
                raise NotFound(f"symbols[{i}]: no bars stored for {key.symbol} {key.interval}")
            event_time, values = features
            rows.append(values)
            keys.append((key.symbol, key.interval, event_time))
            times.append(event_time)
        matrix = self._matrix(rows, model.features)
        predictions = self._score(model, matrix, rows, started, keys)
        return _answer(
            {
                "model": {"name": model.name, "version": model.version, "alias": model.alias},
                "results": [
                    {
                        "symbol": key[0],
                        "interval": key[1],
                        "event_time": key[2],
                        "features": row,
                        "prediction": p,
                    }
                    for key, row, p in zip(keys, rows, predictions, strict=True)
                ],
            }
        )

    def _latest_features(self, symbol: str, interval: str, names: list[str]):
        """The stored feature row when it covers the newest bar, else computed now from the
        bars by the same indicator code (so a bar that just closed is scored at once)."""
        import sqlalchemy as sa

        from trendcast.feature_pipeline import online_features
        from trendcast.feature_sets import DEFAULT_FEATURE_SET
        from trendcast.featurestore import get_latest
        from trendcast.gaps import step_offset

        with self.engine.connect() as conn:
            newest = conn.execute(
                sa.text(
                    "SELECT max(open_time) FROM market.bars WHERE symbol = :s "
                    "AND interval = CAST(:i AS market.bar_interval)"
                ),
                {"s": symbol, "i": interval},
            ).scalar()
        if newest is None:
            return None
        closes = newest + step_offset(interval)
        stored = get_latest(self.engine, DEFAULT_FEATURE_SET, symbol, interval)
        if stored is None or stored["event_time"] < closes:
            stored = online_features(self.engine, symbol, interval)
        values = {n: float(stored[n]) for n in names}
        bad = [n for n, v in values.items() if not math.isfinite(v)]
        if bad:
            raise NotEnoughHistory(
                f"{symbol} {interval}: not enough history for feature(s) {', '.join(bad)}"
            )
        return stored["event_time"].isoformat(), values

    @bentoml.api(route="/model")
    async def model(self) -> Any:  # a ready JSON Response (see _answer)
        """The served model: name, version, alias, run id, features, loaded-at, checksum."""
        served = self._model().describe()
        shadow = self.holder.shadow.model if self.holder.shadow else None
        return _answer(
            {
                **served,
                "shadow": shadow.describe() if shadow else None,
                "mlflow": "ok"
                if self.holder.mlflow_ok
                else f"unreachable: {self.holder.mlflow_error}",
                "errors": {
                    s.alias: s.error
                    for s in filter(None, (self.holder.primary, self.holder.shadow))
                    if s.error
                },
            }
        )

    @bentoml.api(route="/reload")
    def reload(self) -> dict:
        """Check the aliases now instead of waiting for the next poll."""
        changes = self.holder.check(retry_refused=True)
        return {
            "changes": changes,
            "mlflow": "ok" if self.holder.mlflow_ok else f"unreachable: {self.holder.mlflow_error}",
            "version": self.holder.primary.model.version if self.holder.primary.model else None,
        }
