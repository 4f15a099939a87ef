"""Resolve ``models:/NAME@ALIAS``, download, verify the SHA-256 tag, load the native booster.

The generic pyfunc path spends ~4 ms per call on schema checks; the native XGBoost booster
with ``inplace_predict`` on a NumPy matrix costs tens of microseconds, and the same trees
compiled (``serving.tree_scorer``, used only where it matches XGBoost bit for bit) a few.
Verification hashes the exact ``model.ubj`` file MLflow stores, which training tagged at
registration."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import xgboost as xgb
import yaml

from serving.contract import FEATURES
from serving.tree_scorer import CompiledTrees, compile_booster
from trendcast.artifacts import sha256_file
from trendcast.config import get_settings
from trendcast.feature_sets import DEFAULT_FEATURE_SET
from trendcast.governance import Verdict
from trendcast.registry import alias_version
from trendcast.tracking import mlflow_client


class VerificationError(Exception):
    """The downloaded artifact does not match the version's ``sha256`` tag."""


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: int
    alias: str
    run_id: str | None
    features: list[str]
    checksum: str
    loaded_at: str
    booster: xgb.Booster = field(repr=False)
    iterations: tuple[int, int] = (0, 0)
    #: the same trees compiled (``serving.tree_scorer``), when they reproduce XGBoost exactly
    scorer: CompiledTrees | None = field(default=None, repr=False)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Predictions for rows in ``features`` order (same as the sklearn model's predict)."""
        if self.scorer is not None:
            return self.scorer.predict(matrix)
        return self.booster.inplace_predict(matrix, iteration_range=self.iterations)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "features": self.features,
            "loaded_at": self.loaded_at,
            "sha256": self.checksum,
            "scorer": "xgboost" if self.scorer is None else "compiled",
        }


def load_version(client, name: str, version: int, alias: str) -> LoadedModel:
    """Download version ``version`` of ``name``, verify it and warm it with its input example."""
    import mlflow

    found = client.get_model_version(name, str(version))
    expected = (found.tags or {}).get("sha256")
    with tempfile.TemporaryDirectory(prefix="trendcast-model-") as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=tmp
            )
        )
        spec = yaml.safe_load((local / "MLmodel").read_text())
        data = local / spec["flavors"]["xgboost"]["data"]
        actual = sha256_file(data)
        if expected is None:
            raise VerificationError(f"{name} version {version} has no sha256 tag to verify")
        if actual != expected:
            raise VerificationError(
                f"{name} version {version}: artifact sha256 {actual[:12]}… does not match the "
                f"registered {expected[:12]}…; refusing to load it"
            )
        booster = xgb.Booster()
        booster.load_model(str(data))
        if set(booster.feature_names or []) != set(FEATURES):
            raise VerificationError(
                f"{name} version {version}: its features differ from the service's contract "
                f"(feature set {DEFAULT_FEATURE_SET.key}); refusing to load it"
            )
        booster.set_param({"nthread": 1})  # one row at a time: OpenMP threads only contend
        example = _input_example(local, spec)
    best = booster.attr("best_iteration")
    iterations = (0, int(best) + 1) if best is not None else (0, 0)
    features = list(booster.feature_names or [])
    probes = None if example is None else example[features].to_numpy(dtype=np.float32)
    model = LoadedModel(
        name,
        int(version),
        alias,
        found.run_id,
        features,
        actual,
        datetime.now(UTC).isoformat(timespec="seconds"),
        booster,
        iterations,
        compile_booster(booster, iterations, probes),
    )
    if probes is not None:  # warm-up: the first real request pays no lazy initialisation
        model.predict(probes)
    return model


def _input_example(local: Path, spec: dict):
    import pandas as pd

    info = spec.get("saved_input_example_info") or {}
    path = local / info.get("artifact_path", "input_example.json")
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return pd.DataFrame(data["data"], columns=data["columns"])


@dataclass
class ModelSlot:
    """One alias's current model; replaced whole, never mutated, so a request that took a
    reference finishes on the model it started with."""

    alias: str
    model: LoadedModel | None = None
    error: str | None = None
    refused: int | None = None  # a version that failed verification is not retried each poll
    unaudited: Verdict | None = None  # the alias points at a move not on record: not served


class ModelHolder:
    """The served (and shadow) models and the alias poller's view of MLflow."""

    def __init__(
        self,
        tracking_uri: str,
        name: str,
        alias: str,
        shadow: str | None,
        audit: Callable[[str, str, int], Verdict] | None = None,
        on_unaudited: Callable[[Verdict], None] | None = None,
        on_audited: Callable[[Verdict], None] | None = None,
    ) -> None:
        """``audit`` says whether an alias's version got there by a recorded move (see
        ``trendcast.governance``); a version that did not is refused like a bad checksum and
        reported once to ``on_unaudited``; ``on_audited`` hears when such a move is resolved."""
        settings = get_settings()
        # The poller must notice an unreachable MLflow within a poll, not after minutes of backoff.
        self.client = mlflow_client(
            tracking_uri,
            retries=settings.serving_mlflow_retries,
            timeout_s=settings.mlflow_timeout_s,
        )
        self.name = name
        self.primary = ModelSlot(alias)
        self.shadow = ModelSlot(shadow) if shadow else None
        self.mlflow_ok = False
        self.mlflow_error: str | None = None
        self.last_check: float | None = None
        self.audit = audit
        self.on_unaudited = on_unaudited
        self.on_audited = on_audited
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self.primary.model is not None

    def check(self, retry_refused: bool = False) -> dict:
        """Poll every alias once; load and verify new versions off the request path.
        ``retry_refused`` (POST /reload) verifies a previously refused version again."""
        with self._lock:  # one check at a time (poller and POST /reload)
            changes = {}
            try:
                for slot in filter(None, (self.primary, self.shadow)):
                    if retry_refused:
                        slot.refused = None
                    changes[slot.alias] = self._refresh(slot)
                self.mlflow_ok, self.mlflow_error = True, None
            except Exception as exc:  # MLflow unreachable: keep serving what we have
                self.mlflow_ok = False
                self.mlflow_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            self.last_check = time.time()
            return changes

    def _refresh(self, slot: ModelSlot) -> str:
        version = alias_version(self.client, self.name, slot.alias)
        if version is None:
            slot.unaudited = None
            if slot.model is None:
                slot.error = f"alias {slot.alias!r} is not set on {self.name}"
                return "unset"
            # A deleted alias is a registry mistake or an operator's act, never a reason to stop
            # answering: keep the last verified model and say so (/readyz "degraded").
            slot.error = (
                f"alias {slot.alias!r} is not set on {self.name} any more; still serving "
                f"version {slot.model.version}"
            )
            return f"unset (keeping version {slot.model.version})"
        if slot.model is not None and slot.model.version == version:
            slot.error, slot.unaudited = None, None  # e.g. the alias moved back
            return "unchanged"
        if not self._audited(slot, version):
            return f"refused {version}: {slot.error}"
        if slot.refused == version:
            return f"unchanged (version {version} was refused)"
        twin = self.primary.model if slot is not self.primary else None
        if twin is not None and twin.version == version:
            # The shadow alias on the served version: the same model, loaded once; it is not
            # scored a second time (see Trendcast._score).
            slot.model, slot.error, slot.refused = replace(twin, alias=slot.alias), None, None
            return f"loaded {version} (same as {self.primary.alias})"
        try:
            loaded = load_version(self.client, self.name, version, slot.alias)
        except VerificationError as exc:
            slot.error, slot.refused = str(exc), version  # keep the old model; log and show
            return f"refused {version}: {exc}"
        slot.model, slot.error, slot.refused = loaded, None, None  # the swap: one assignment
        return f"loaded {version}"

    def _audited(self, slot: ModelSlot, version: int) -> bool:
        """Whether the move to ``version`` is on record; if not, keep the old model, say why
        and report the move once. A check that cannot run (database down) refuses too."""
        if self.audit is None:
            return True
        try:
            verdict = self.audit(self.name, slot.alias, version)
        except Exception as exc:
            slot.error = (
                f"cannot check the audit of {self.name}@{slot.alias} version {version}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            )
            return False
        if verdict.audited:
            if slot.unaudited is not None and self.on_audited is not None:
                self.on_audited(verdict)
            slot.unaudited = None
            return True
        if (slot.unaudited is None or slot.unaudited.version != version) and self.on_unaudited:
            self.on_unaudited(verdict)
        slot.unaudited, slot.error = verdict, verdict.reason
        return False
