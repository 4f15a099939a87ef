"""The HTTP client of the prediction service (`trendcast up --with serving`): predict, predict
on the newest bars, wait until an alias's version is served, and the served version's logged
input example. Errors are one line saying what to do."""

from __future__ import annotations

import time

import httpx

from trendcast.config import Settings
from trendcast.errors import InputError, TrendcastError


class PredictionClient:
    def __init__(self, settings: Settings) -> None:
        from trendcast.stack import serving_server

        self.settings = settings
        self.base = serving_server.url(settings)
        self.headers = (
            {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
        )
        self.name = settings.serving_model_name

    def call(self, path: str, body: dict) -> dict:
        try:
            response = httpx.post(f"{self.base}{path}", json=body, headers=self.headers, timeout=30)
        except httpx.HTTPError as exc:
            raise TrendcastError(
                f"prediction service at {self.base} not reachable ({exc}); start it with "
                "`trendcast up --with serving`"
            ) from None
        if response.status_code >= 400:
            try:  # the service's one error schema: {"error": {"code", "message", "field"}}
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            raise TrendcastError(f"{path}: HTTP {response.status_code}: {message}")
        return response.json()

    def wait_for_alias(self, alias: str, timeout_s: float, mlflow_client) -> tuple[int, float]:
        """Block until the service serves the version ``alias`` points at; returns that
        version and the seconds waited. Raises after ``timeout_s`` with the service's error."""
        from trendcast.registry import alias_version

        target = alias_version(mlflow_client, self.name, alias)
        if target is None:
            raise InputError(f"--wait-for-alias {alias}: not set on {self.name}")
        started = time.monotonic()
        while (served := self.call("/model", {}).get("version")) != target:
            if time.monotonic() - started > timeout_s:
                errors = self.call("/model", {}).get("errors") or {}
                why = f": {errors[alias]}" if alias in errors else ""
                raise TrendcastError(
                    f"still serving version {served}, not {target}, after {timeout_s:.0f} s{why}"
                )
            time.sleep(0.5)
        return target, time.monotonic() - started

    def predict_latest(self, symbols: list[str], interval: str) -> dict:
        return self.call("/predict_latest", {"symbols": symbols, "interval": interval})

    def predict(self, rows: list[dict]) -> dict:
        return self.call("/predict", {"rows": rows})

    def input_example(self, mlflow_client) -> list[dict]:
        """The served version's logged input example, as rows."""
        import mlflow

        version = self.call("/model", {})["version"]
        loaded = mlflow.artifacts.load_dict(f"models:/{self.name}/{version}/input_example.json")
        return [dict(zip(loaded["columns"], values, strict=True)) for values in loaded["data"]]
