"""Strategies: given bars (and maybe a model), the target position for every bar.

A strategy is not a model: it owns entries, exits and sizing, and may use model predictions as
one input. In the spirit of scikit-learn estimators it is built from keyword parameters that
``get_params`` returns and ``save`` / ``load`` round-trip. ``signals(frame)`` returns, for each
bar, the position wanted from the *next* bar's open (the engine never trades on the bar whose
close produced the signal): 1 long, -1 short, 0 flat, or any weight in between.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from trendcast.errors import InputError
from trendcast.indicators import rolling_mean


class Strategy(ABC):
    """Base class: subclasses declare ``name`` and ``defaults`` and implement ``signals``."""

    name: ClassVar[str] = "strategy"
    defaults: ClassVar[dict[str, Any]] = {}
    #: bars before the first valid decision (windows filling up)

    def __init__(self, model: Any = None, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise InputError(
                f"{self.name}: unknown parameter(s) {unknown}; known: {sorted(self.defaults)}"
            )
        self.params = {**self.defaults, **params}
        self.model = model

    def get_params(self) -> dict[str, Any]:
        return dict(self.params)

    def set_params(self, **params: Any) -> Strategy:
        return type(self)(model=self.model, **{**self.params, **params})

    @abstractmethod
    def signals(self, frame: pd.DataFrame) -> np.ndarray:
        """Target position per bar, decided at that bar's close from bars up to it."""

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"strategy": self.name, "params": self.params}))

    @staticmethod
    def load(path: Path, model: Any = None) -> Strategy:
        data = json.loads(Path(path).read_text())
        return make_strategy(data["strategy"], model=model, **data["params"])

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({params})"


class BuyAndHold(Strategy):
    """Always long: the benchmark every report compares against."""

    name = "buy-and-hold"

    def signals(self, frame: pd.DataFrame) -> np.ndarray:
        return np.ones(len(frame))


class SmaCrossover(Strategy):
    """Long while the fast SMA of close is above the slow one; short below it if allowed."""

    name = "sma-crossover"
    defaults: ClassVar[dict[str, Any]] = {"fast": 7, "slow": 25, "allow_short": False}

    def __init__(self, model: Any = None, **params: Any) -> None:
        super().__init__(model, **params)
        if not 1 <= int(self.params["fast"]) < int(self.params["slow"]):
            raise InputError(f"{self.name}: need 1 <= fast < slow, got {self.params}")

    def signals(self, frame: pd.DataFrame) -> np.ndarray:
        close = frame["close"].to_numpy(dtype="float64")
        fast = rolling_mean(close, int(self.params["fast"]))
        slow = rolling_mean(close, int(self.params["slow"]))
        short = -1.0 if self.params["allow_short"] else 0.0
        out = np.where(fast > slow, 1.0, short)
        out[np.isnan(slow)] = 0.0
        return out


#: The model-threshold strategy's threshold when nothing better is known.
DEFAULT_THRESHOLD = 0.0005


def median_threshold(predictions: np.ndarray) -> float:
    """Training's rule for a model's threshold: the median absolute prediction on its test
    split, so the strategy trades on the stronger half of the model's calls."""
    return float(np.quantile(np.abs(np.asarray(predictions, dtype="float64")), 0.5))


def logged_threshold(report: dict | None) -> tuple[float, bool]:
    """(threshold, allow_short) of the strategy a model's logged backtest report ran; the
    defaults when there is no report. The drift monitor and the dashboard both read it here."""
    params = (report or {}).get("params") or {}
    threshold = params.get("threshold")
    return (
        DEFAULT_THRESHOLD if threshold is None else float(threshold),
        bool(params.get("allow_short", False)),
    )


class ModelThreshold(Strategy):
    """Long when the predicted forward return beats ``threshold``, short below ``-threshold``
    if allowed, flat otherwise. Predictions come from ``model.predict(features)`` on the frame's
    feature columns, or from a ``prediction`` column already in the frame. Stops are applied by
    the engine (``stop_loss`` / ``take_profit`` fractions)."""

    name = "model-threshold"
    defaults: ClassVar[dict[str, Any]] = {
        "threshold": DEFAULT_THRESHOLD,
        "allow_short": False,
        "stop_loss": None,
        "take_profit": None,
        "features": None,
    }

    def predictions(self, frame: pd.DataFrame) -> np.ndarray:
        if self.model is None:
            if "prediction" not in frame:
                raise InputError(f"{self.name}: needs a model or a 'prediction' column")
            return frame["prediction"].to_numpy(dtype="float64")
        columns = self.params["features"] or getattr(self.model, "feature_names_in_", None)
        inputs = frame[list(columns)] if columns is not None else frame
        return np.asarray(self.model.predict(inputs), dtype="float64")

    def signals(self, frame: pd.DataFrame) -> np.ndarray:
        predicted = self.predictions(frame)
        threshold = float(self.params["threshold"])
        out = np.where(predicted > threshold, 1.0, 0.0)
        if self.params["allow_short"]:
            out = np.where(predicted < -threshold, -1.0, out)
        out[np.isnan(predicted)] = 0.0
        return out


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (BuyAndHold, SmaCrossover, ModelThreshold)
}


def make_strategy(name: str, model: Any = None, **params: Any) -> Strategy:
    if name not in STRATEGIES:
        raise InputError(f"strategy {name!r}: unknown; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](model=model, **params)
