"""The no-op BentoML service with serving/bentoml_fixes.py applied (the timer cleanup, the
outermost gateway off): set beside ``_noop_service`` it isolates what the fix changes in the
framework itself."""

from __future__ import annotations

import gc
from typing import Any

import bentoml

from serving import bentoml_fixes

bentoml_fixes.apply(gateway=False)


@bentoml.service(name="noop_fixed", workers=1, logging={"access": {"enabled": False}})
class NoopFixed:
    def __init__(self) -> None:
        gc.collect()
        gc.freeze()

    @bentoml.api(route="/predict")
    async def predict(self, rows: list[dict[str, Any]]) -> dict:
        return {"predictions": [0.0 for _ in rows]}
