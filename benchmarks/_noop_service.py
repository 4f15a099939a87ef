"""A BentoML service that does nothing: the framework's own per-request cost on this machine,
the floor under bench_serving's figures (same worker count, same access-log setting)."""

from __future__ import annotations

from typing import Any

import bentoml


@bentoml.service(name="noop", workers=1, logging={"access": {"enabled": False}})
class Noop:
    @bentoml.api(route="/predict")
    async def predict(self, rows: list[dict[str, Any]]) -> dict:
        return {"predictions": [0.0 for _ in rows]}
