"""The no-op BentoML service with the fixes and BentoML's per-request telemetry off
(``bentoml_fixes.TELEMETRY_OFF``): the framework floor Trendcast's service runs on by default."""

from __future__ import annotations

import gc
from typing import Any

import bentoml

from serving import bentoml_fixes

bentoml_fixes.apply(gateway=False)


@bentoml.service(
    name="noop_quiet",
    workers=1,
    logging={"access": {"enabled": False}},
    **bentoml_fixes.TELEMETRY_OFF,
)
class NoopQuiet:
    def __init__(self) -> None:
        gc.collect()
        gc.freeze()

    @bentoml.api(route="/predict")
    async def predict(self, rows: list[dict[str, Any]]) -> dict:
        return {"predictions": [0.0 for _ in rows]}
