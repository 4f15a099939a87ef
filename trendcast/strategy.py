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

import numba
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

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Row-wise inputs computed once before the signals (e.g. model scores): each output
        row may depend on its own input row only (the engine checks); the default adds
        nothing."""
        return frame

    def check_inputs(self, frame: pd.DataFrame) -> dict[str, Any]:
        """Refuse inputs the strategy cannot trust; returns what the report should record."""
        return {}

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


#: The frame columns ``ModelThreshold.prepare`` writes: predictions the project scored itself,
#: and per-row thresholds when the model fitted one per row (walk-forward folds).
SCORED = "prediction__scored"
FITTED_THRESHOLD = "threshold__fitted"
#: A ``prediction`` column whose correlation with a return it could not know exceeds this is a
#: leak (an honest hourly model reaches an IC of a few hundredths).
LEAK_IC = 0.3
#: Forward horizons (bars) the leak test correlates predictions with.
LEAK_HORIZONS = (1, 2, 3, 4, 6, 8, 12, 24)
LEAK_SAMPLE = 100_000


@numba.njit(cache=True)
def _hold_positions(predicted, entries, stays, min_hold, allow_short):
    """Enter when |prediction| clears ``entries[t]``; stay while it clears ``stays[t]`` on the
    same side; never leave (or reverse) before ``min_hold`` bars."""
    n = len(predicted)
    out = np.zeros(n)
    position = 0.0
    held = 0
    for t in range(n):
        p = predicted[t]
        entry = entries[t]
        stay = stays[t]
        want = position
        if np.isnan(p):
            want = 0.0
        elif p > entry:
            want = 1.0
        elif allow_short and p < -entry:
            want = -1.0
        elif (position > 0 and p <= stay) or (position < 0 and p >= -stay):
            want = 0.0
        if want != position and position != 0.0 and held < min_hold:
            want = position
        if want != position:
            held = 0
        position = want
        if position != 0.0:
            held += 1
        out[t] = position
    return out


#: The model-threshold strategy's threshold when nothing better is known.
DEFAULT_THRESHOLD = 0.0005


def median_threshold(predictions: np.ndarray) -> float:
    """Training's rule for a model's threshold: the median absolute prediction on its
    validation split (never test), so the strategy trades on the stronger half of the model's
    calls."""
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
    """Long when the predicted forward return clears the entry level, short below its negative
    if allowed, flat when it falls back to ``threshold``; a position is held at least
    ``min_hold`` bars. The entry level is ``max(threshold, round_trip_cost + margin)``: a
    trade whose predicted move does not pay its own costs is never entered (the engine fills
    ``round_trip_cost`` from the backtest's cost profile when it is left ``None``).

    Predictions come from ``model.predict(features)``, scored row by row on the frame's
    point-in-time feature columns. A ``prediction`` column handed in ready-made is refused
    unless ``trust_predictions=True`` (recorded in the report), and even then refused when it
    correlates with future returns it cannot have known. Stops are applied by the engine."""

    name = "model-threshold"
    defaults: ClassVar[dict[str, Any]] = {
        "threshold": DEFAULT_THRESHOLD,
        "margin": 0.0,
        "min_hold": 1,
        "round_trip_cost": None,
        "allow_short": False,
        "stop_loss": None,
        "take_profit": None,
        "features": None,
        "trust_predictions": False,
    }

    def __init__(self, model: Any = None, **params: Any) -> None:
        super().__init__(model, **params)
        if int(self.params["min_hold"]) < 1:
            raise InputError(f"{self.name}: min_hold {self.params['min_hold']}: must be >= 1")
        if float(self.params["margin"]) < 0 or float(self.params["threshold"]) < 0:
            raise InputError(f"{self.name}: threshold and margin must be >= 0")

    def _inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        columns = self.params["features"] or getattr(self.model, "feature_names_in_", None)
        return frame[list(columns)] if columns is not None else frame

    def _score(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict(self._inputs(frame)), dtype="float64")

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Score the model once, row by row (the engine proves it row-wise)."""
        stale = [c for c in (SCORED, FITTED_THRESHOLD) if c in frame]
        if stale:  # never trust a column that claims to be our own scoring
            frame = frame.drop(columns=stale)
        if self.model is None:
            return frame
        scores = self._score(frame)
        frame = frame.assign(**{SCORED: scores})
        if hasattr(self.model, "row_thresholds"):  # each row's threshold, fitted with its model
            frame[FITTED_THRESHOLD] = np.asarray(
                self.model.row_thresholds(self._inputs(frame)), dtype="float64"
            )
        return frame

    def check_inputs(self, frame: pd.DataFrame) -> dict[str, Any]:
        """Refuse predictions of unknown origin, and any that know the future."""
        if self.model is not None:
            return {"predictions": "scored by the model on point-in-time features"}
        if "prediction" not in frame:
            raise InputError(f"{self.name}: needs a model or a 'prediction' column")
        if not self.params["trust_predictions"]:
            raise InputError(
                f"{self.name}: a 'prediction' column is accepted only from the project's own "
                "scoring (give the model) or with --trust-predictions (recorded in the report)"
            )
        check_predictions_are_not_leaks(frame["prediction"], frame["close"])
        return {"predictions": "trusted 'prediction' column (--trust-predictions)"}

    def predictions(self, frame: pd.DataFrame) -> np.ndarray:
        if SCORED in frame:
            return frame[SCORED].to_numpy(dtype="float64")
        if self.model is not None:
            return self._score(frame)
        if "prediction" not in frame:
            raise InputError(f"{self.name}: needs a model or a 'prediction' column")
        return frame["prediction"].to_numpy(dtype="float64")

    def entry_level(self, threshold: float | np.ndarray | None = None):
        """The predicted move a trade must clear: the threshold, or the round-trip cost plus
        the margin when that is higher."""
        threshold = self.params["threshold"] if threshold is None else threshold
        cost = float(self.params["round_trip_cost"] or 0.0)
        return np.maximum(threshold, cost + float(self.params["margin"]))

    def signals(self, frame: pd.DataFrame) -> np.ndarray:
        predicted = np.ascontiguousarray(self.predictions(frame), dtype="float64")
        if FITTED_THRESHOLD in frame and self.model is not None:
            stay = frame[FITTED_THRESHOLD].to_numpy(dtype="float64")
        else:
            stay = np.full(len(predicted), float(self.params["threshold"]))
        return _hold_positions(
            predicted,
            np.ascontiguousarray(self.entry_level(stay), dtype="float64"),
            np.ascontiguousarray(stay),
            int(self.params["min_hold"]),
            bool(self.params["allow_short"]),
        )


def check_predictions_are_not_leaks(prediction: pd.Series, close: pd.Series) -> None:
    """A prediction made at bar t's close cannot know the return from t to any later bar beyond
    what skill allows: an information coefficient above ``LEAK_IC`` with a forward return is
    information it cannot have had."""
    from trendcast.metrics import information_coefficient

    p = np.asarray(prediction, dtype="float64")
    c = np.asarray(close, dtype="float64")
    # an evenly spaced sample of at most LEAK_SAMPLE rows: the IC's standard error stays near
    # 1/sqrt(LEAK_SAMPLE), far below LEAK_IC, and 10M-bar backtests pay milliseconds
    step = max(1, len(c) // LEAK_SAMPLE)
    for horizon in LEAK_HORIZONS:
        if len(c) <= horizon + 10:
            break
        rows = np.arange(0, len(c) - horizon, step)
        forward = np.log(c[rows + horizon] / c[rows])
        ic = information_coefficient(p[rows], forward)
        if np.isfinite(ic) and abs(ic) > LEAK_IC:
            raise LookAheadInputError(
                f"prediction: correlates with the {horizon}-bar forward return at IC {ic:.2f} "
                f"(> {LEAK_IC}): it holds information about returns it cannot have known"
            )


class LookAheadInputError(InputError):
    """Input data that carries the future (a leaked prediction column)."""


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (BuyAndHold, SmaCrossover, ModelThreshold)
}


def make_strategy(name: str, model: Any = None, **params: Any) -> Strategy:
    if name not in STRATEGIES:
        raise InputError(f"strategy {name!r}: unknown; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](model=model, **params)
