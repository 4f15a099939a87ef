"""The service's HTTP contract: request, response and error models, and the OpenAPI built from
them, so that what the OpenAPI calls valid is exactly what the service accepts.

The models state the feature names (feature set ``core`` v1, the one every served model is
trained on), the symbol and interval rules (``trendcast.schema``), the batch limit and the value
rule: a finite number that float32 (the booster's input type) can hold. Unknown fields are
refused at every level. Every error body is ``{"error": {"code", "message", "field"?}}``.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.json_schema import models_json_schema

from trendcast.feature_sets import DEFAULT_FEATURE_SET
from trendcast.schema import INTERVALS, SYMBOL_PATTERN, SYMBOL_RULE

#: The largest finite float32: beyond it a value becomes infinity in the booster's matrix.
FLOAT32_MAX = float(np.finfo(np.float32).max)
VALUE_RULE = f"must be a finite number within float32's range (|value| <= {FLOAT32_MAX:.8g})"
FEATURES: tuple[str, ...] = DEFAULT_FEATURE_SET.columns

Value = Annotated[float, Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX, strict=True)]
Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN, description=f"Symbol: {SYMBOL_RULE}")]
Interval = Literal[tuple(INTERVALS)]  # type: ignore[valid-type]

STRICT = ConfigDict(extra="forbid")

FeatureRow = create_model(  # type: ignore[call-overload]
    "FeatureRow",
    __config__=STRICT,
    __doc__=f"One row: every feature of {DEFAULT_FEATURE_SET.key} as a number ({VALUE_RULE}).",
    **{name: (Value, ...) for name in FEATURES},
)

ERROR_CODES = {
    400: "invalid_argument",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
    504: "timeout",
}


class ErrorDetail(BaseModel):
    code: Literal[tuple(ERROR_CODES.values())]  # type: ignore[valid-type]
    message: str = Field(description="One line naming the field at fault and the rule.")
    field: str | None = Field(default=None, description="The field at fault, e.g. rows[0].rsi_14")


class ErrorBody(BaseModel):
    """Every error the service answers, whatever the status."""

    error: ErrorDetail


class ModelRef(BaseModel):
    name: str
    version: int
    alias: str


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[float]


class LatestResult(BaseModel):
    symbol: str
    interval: str
    event_time: str = Field(description="Close time of the bar the features describe (ISO 8601)")
    features: dict[str, float]
    prediction: float


class PredictLatestResponse(BaseModel):
    model: ModelRef
    results: list[LatestResult]


class ModelDescription(BaseModel):
    name: str
    version: int
    alias: str
    run_id: str | None
    features: list[str]
    loaded_at: str
    sha256: str
    scorer: Literal["compiled", "xgboost"] = Field(
        description="compiled: the booster's trees walked by compiled code, checked at load to "
        "give XGBoost's predictions bit for bit; xgboost: XGBoost's own predict"
    )


class ModelInfo(ModelDescription):
    shadow: ModelDescription | None
    mlflow: str
    errors: dict[str, str]


class ReloadResponse(BaseModel):
    changes: dict[str, str]
    mlflow: str
    version: int | None


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "not ready"]
    model: str | None = None
    mlflow: str | None = None
    reason: str | None = None
    unaudited: list[str] | None = Field(
        default=None, description="Alias moves not on record: refused, the last model serves"
    )


class Liveness(BaseModel):
    status: Literal["alive"]


class NoArguments(BaseModel):
    """An empty JSON object (or no body at all)."""

    model_config = STRICT


def _message(error: dict) -> tuple[str, str]:
    """(field, message) for one pydantic error, in the service's words."""
    loc = error["loc"]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    kind, given = error["type"], error.get("input")
    if kind == "json_invalid":
        return "body", f"body: not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    if not loc and kind in {"model_type", "model_attributes_type", "dict_type"}:
        return "body", "body: must be a JSON object"
    if kind in {"model_type", "model_attributes_type", "dict_type"} and field.startswith("rows"):
        return field, f"{field}: expected an object of feature: number"
    if kind in {"float_type", "float_parsing"}:
        return field, f"{field}: not a number ({_shown(given)})"
    if kind in {"less_than_equal", "greater_than_equal", "finite_number"}:
        return field, f"{field}: {VALUE_RULE}, got {_shown(given)}"
    if kind == "extra_forbidden":
        parent = field.rsplit(".", 1)[0] if "." in field else ""
        if parent.startswith("rows["):
            return parent, f"{parent}: unknown feature(s) {loc[-1]}"
        return field, f"{field}: unknown field"
    if kind == "missing":
        parent = field.rsplit(".", 1)[0] if "." in field else ""
        if parent.startswith("rows["):
            return parent, f"{parent}: missing feature(s) {loc[-1]}"
        return field, f"{field}: required"
    if kind == "too_short":
        what = "empty batch; send at least one row" if field == "rows" else "empty list"
        if field == "symbols":
            what = "empty list; name at least one symbol"
        return field, f"{field}: {what}"
    if kind == "too_long":
        limit = error.get("ctx", {}).get("max_length")
        return field, f"{field}: {error.get('ctx', {}).get('actual_length', 'too many')} " + (
            f"{'rows' if field == 'rows' else 'items'}, more than the limit of {limit}"
        )
    if kind == "string_pattern_mismatch" and field.startswith("symbols"):
        return field, f"{field}: {_shown(given)} must be {SYMBOL_RULE}"
    if kind == "literal_error" and field == "interval":
        return field, f"interval: {_shown(given)} must be one of {', '.join(INTERVALS)}"
    if kind in {"list_type"}:
        return field, f"{field}: must be a JSON array"
    if kind in {"string_type"}:
        return field, f"{field}: must be a string ({_shown(given)})"
    return field or "body", f"{field or 'body'}: {error['msg']}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}… ({len(text)} characters)"


def describe_errors(exc: ValidationError) -> tuple[str, str]:
    """The first problem as (field, message); missing or unknown features of one row are
    listed together, as a user fixes them together."""
    errors = exc.errors(include_url=False)
    field, message = _message(errors[0])
    if "feature(s)" in message:
        kind = errors[0]["type"]
        names = [
            str(e["loc"][-1])
            for e in errors
            if e["type"] == kind and _message(e)[0] == field and len(e["loc"]) == 3
        ]
        message = f"{message.rsplit(' ', 1)[0]} {', '.join(dict.fromkeys(names))}"
    return field, message


def error_body(status: int, message: str, field: str | None = None) -> dict:
    detail: dict[str, Any] = {"code": ERROR_CODES.get(status, "internal"), "message": message}
    if field:
        detail["field"] = field
    return {"error": detail}


class Contract:
    """The request models and the OpenAPI for one set of limits (the batch size)."""

    def __init__(self, max_batch: int, token_required: bool) -> None:
        self.max_batch = max_batch
        self.token_required = token_required
        self.predict = create_model(
            "PredictRequest",
            __config__=STRICT,
            rows=(
                list[FeatureRow],  # type: ignore[valid-type]
                Field(
                    min_length=1,
                    max_length=max_batch,
                    description=f"1 to {max_batch} feature rows",
                ),
            ),
        )
        self.predict_latest = create_model(
            "PredictLatestRequest",
            __config__=STRICT,
            symbols=(
                list[Symbol],
                Field(
                    min_length=1,
                    max_length=max_batch,
                    description=f"1 to {max_batch} symbols, scored on their newest bar",
                ),
            ),
            interval=(Interval, Field(default="1h", description="Bar interval")),
        )

    def requests(self) -> dict[str, type[BaseModel]]:
        return {
            "/predict": self.predict,
            "/predict_latest": self.predict_latest,
            "/model": NoArguments,
            "/reload": NoArguments,
        }

    @cached_property
    def openapi(self) -> dict:
        """The OpenAPI 3.1 document the service serves at /docs.json."""
        models = [
            *self.requests().values(),
            ErrorBody,
            PredictResponse,
            PredictLatestResponse,
            ModelInfo,
            ReloadResponse,
            Readiness,
            Liveness,
        ]
        refs, schema = models_json_schema(
            [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
        )

        def ref(model) -> dict:
            return refs[(model, "validation")]

        def json_content(model) -> dict:
            return {"application/json": {"schema": ref(model)}}

        def error(description: str) -> dict:
            return {"description": description, "content": json_content(ErrorBody)}

        common = {
            "413": error("Body larger than the limit (TRENDCAST_SERVING_MAX_BODY_BYTES)"),
            "415": error("Not application/json"),
            "429": error("Too many requests in flight"),
            "500": error("Unexpected error (see the service log)"),
            "504": error("Not answered in time"),
        }
        if self.token_required:
            common["401"] = error("Missing or wrong bearer token")
        security = [{"bearer": []}] if self.token_required else []

        def operation(summary, request, response, *extra: tuple[str, str]) -> dict:
            responses = {
                "200": {"description": "OK", "content": json_content(response)},
                "400": error("Invalid request: the message names the field and the rule"),
                **common,
                **{status: error(text) for status, text in extra},
            }
            op = {
                "summary": summary,
                "operationId": summary.split(":")[0].strip().replace(" ", "_").lower(),
                "requestBody": {
                    "required": request is not NoArguments,
                    "content": json_content(request),
                },
                "responses": responses,
            }
            if security:
                op["security"] = security
            return {"post": op}

        unavailable = ("503", "No verified model loaded yet (the reason is in the message)")

        def probe(summary: str, model, *statuses: tuple[str, str]) -> dict:
            op = {
                "summary": summary,
                "responses": {
                    "200": {"description": "OK", "content": json_content(model)},
                    **{s: {"description": t, "content": json_content(model)} for s, t in statuses},
                },
            }
            return {"get": {**op, "operationId": summary.split(":")[0].lower().replace(" ", "_")}}

        paths = {
            "/predict": operation(
                "Predict: forward returns for feature rows",
                self.predict,
                PredictResponse,
                unavailable,
            ),
            "/predict_latest": operation(
                "Predict latest: each symbol scored on its newest bar's features",
                self.predict_latest,
                PredictLatestResponse,
                unavailable,
                ("404", "No bars stored for a symbol"),
                ("409", "Not enough history for a symbol's features"),
            ),
            "/model": operation("Model: the served model", NoArguments, ModelInfo, unavailable),
            "/reload": operation(
                "Reload: check the aliases now", NoArguments, ReloadResponse, unavailable
            ),
            "/livez": probe("Livez: the process answers", Liveness),
            "/healthz": probe("Healthz: the process answers", Liveness),
            "/readyz": probe(
                "Readyz: a verified model is loaded",
                Readiness,
                ("503", "Not ready: no verified model (the reason is in the body)"),
            ),
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        }
        document = {
            "openapi": "3.1.0",
            "info": {
                "title": "Trendcast prediction service",
                "version": "1",
                "description": "Forward-return predictions from the model behind "
                "models:/NAME@production. Feature values "
                f"{VALUE_RULE}; symbols: {SYMBOL_RULE}; intervals: {', '.join(INTERVALS)}. "
                'Every error: {"error": {"code", "message", "field"}}.',
            },
            "paths": paths,
            "components": {"schemas": schema.get("$defs", {})},
        }
        if self.token_required:
            document["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
        return document
