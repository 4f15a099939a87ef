"""The grid file of ``trendcast train --grid``: hyperparameters x market periods, validated.

Example (``training/grids/demo.yaml``)::

    symbol: EURUSD
    interval: 1h
    horizon: 4
    metric: backtest_sharpe      # any logged metric; short names like ``sharpe`` work too
    aggregate: mean              # how a candidate's scores across periods combine: mean | min
    periods:                     # regimes each candidate is trained and tested on
      - {name: h1-2017, start: 2017-01-01, end: 2017-06-30}
      - {name: q3-2017, start: 2017-06-01, end: 2017-10-01}
    params:                      # XGBoost parameters: every combination is a candidate
      max_depth: [2, 4]
      learning_rate: [0.05, 0.1]
    register_top: 2              # the best N candidates are retrained on `final` and registered
"""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trendcast.errors import InputError
from trendcast.schema import known_interval

# Parameters the grid may not set: they belong to the run, not to the search.
_RESERVED = {"random_state", "n_jobs", "eval_metric"}


class Period(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    start: datetime | None = None
    end: datetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.start and self.end and self.start >= self.end:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    def bounds(self) -> tuple[str | None, str | None]:
        return (
            self.start.isoformat() if self.start else None,
            self.end.isoformat() if self.end else None,
        )


class GridSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=1)
    interval: str = "1h"
    horizon: int = Field(default=4, ge=1)
    model_name: str | None = None
    metric: str = "backtest_sharpe"
    aggregate: Literal["mean", "min"] = "mean"
    periods: list[Period] = Field(min_length=1)
    params: dict[str, list[int | float | str]] = Field(default_factory=dict)
    final: Period | None = None
    register_top: int = Field(default=2, ge=0)
    n_jobs: int = Field(default=2, ge=1)

    @field_validator("interval")
    @classmethod
    def _known_interval(cls, value: str) -> str:
        return known_interval(value)

    @field_validator("params")
    @classmethod
    def _known_params(cls, value: dict[str, list]) -> dict[str, list]:
        import xgboost as xgb

        known = set(xgb.XGBRegressor().get_params()) | {"early_stopping_rounds"}
        for name, choices in value.items():
            if name in _RESERVED:
                raise ValueError(f"{name}: set by the run, not by the grid")
            if name not in known:
                raise ValueError(f"{name}: not an XGBoost parameter")
            if not choices:
                raise ValueError(f"{name}: needs at least one value")
        return value

    @model_validator(mode="after")
    def _unique_periods(self) -> GridSpec:
        names = [p.name for p in self.periods]
        if len(set(names)) != len(names):
            raise ValueError(f"periods: names must be unique, got {names}")
        return self

    @property
    def name(self) -> str:
        return self.model_name or f"{self.symbol}_{self.interval}_h{self.horizon}"

    def candidates(self) -> list[dict]:
        """Every combination of the parameter lists, in a stable order."""
        keys = sorted(self.params)
        return [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*(self.params[k] for k in keys))
        ]

    def final_period(self) -> Period:
        """The window the top candidates are retrained on: given, or spanning every period."""
        if self.final:
            return self.final
        starts = [p.start for p in self.periods]
        ends = [p.end for p in self.periods]
        return Period(
            name="final",
            start=None if None in starts else min(starts),
            end=None if None in ends else max(ends),
        )


def load_grid(path: Path) -> GridSpec:
    """Read and validate a grid file; every problem names the field and the rule."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read the grid file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with symbol, periods and params")
    try:
        return GridSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'grid'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise InputError(f"{path}: {problems}") from None
