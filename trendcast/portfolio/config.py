"""PORTFOLIO.yaml, validated: a bad file is refused with one line naming the field and the rule,
before anything is fitted or written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trendcast.errors import InputError

METHODS = ("equal", "inverse-vol", "risk-parity", "hrp", "mean-cvar")
CALENDAR = {"weekly": "W-MON", "monthly": "MS", "quarterly": "QS"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Member(_Strict):
    """A strategy as the portfolio sees it: (strategy, parameters, assets, model alias), and
    optionally the paper deployment that trades it."""

    name: str = Field(min_length=1, max_length=80)
    strategy: str = Field(min_length=1)
    params: dict = Field(default_factory=dict)
    symbols: list[str] = Field(min_length=1)
    model: str | None = None  # MODEL@ALIAS, when the strategy reads a model
    deployment: str | None = None
    min_weight: float | None = Field(default=None, ge=0, le=1)
    max_weight: float | None = Field(default=None, ge=0, le=1)

    @property
    def member_id(self) -> str:
        return member_id(self.strategy, resolved_params(self), self.symbols, self.model)


def resolved_params(member: Member) -> dict:
    """The member's parameters with the strategy's defaults filled in, as a backtest records
    them (so ``params: {}`` and the defaults spelled out are one member). A model member is
    named by its model, not by the knobs its training fitted: ``{}``."""
    if member.model:
        return {}
    from trendcast.strategy import make_strategy

    params = make_strategy(member.strategy, **member.params).get_params()
    return {k: v for k, v in params.items() if k != "round_trip_cost"}


def member_id(strategy: str, params: dict, symbols: list[str], model: str | None) -> str:
    """A stable id for (strategy, parameters, assets, model alias): the same four give the
    same id whatever the order of the parameters or the symbols."""
    key = json.dumps(
        {"strategy": strategy, "params": params, "symbols": sorted(symbols), "model": model},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class Risk(_Strict):
    """The risk appetite. For ``mean-cvar`` all are optimiser constraints; for the other
    methods ``target_vol`` scales the invested sleeve down (the rest stays in cash) and
    ``max_drawdown`` / ``cvar_limit`` are checked on the result and reported when breached."""

    target_vol: float | None = Field(default=None, gt=0, le=5)  # annualised
    max_drawdown: float | None = Field(default=None, gt=0, lt=1)
    cvar_limit: float | None = Field(default=None, gt=0, lt=1)  # daily CVaR, fraction
    cvar_beta: float = Field(default=0.95, gt=0.5, lt=1)
    min_weight: float = Field(default=0.0, ge=0, le=1)
    max_weight: float = Field(default=1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Risk:
        if self.min_weight > self.max_weight:
            raise ValueError(f"min_weight {self.min_weight} must be <= max_weight")
        return self


class Rebalance(_Strict):
    rule: Literal["calendar", "drift"] = "calendar"
    every: Literal["weekly", "monthly", "quarterly"] = "monthly"
    band: float = Field(default=0.05, gt=0, lt=1)  # drift: max |actual - target| weight


class Costs(_Strict):
    bps: float = Field(default=10.0, ge=0, lt=1000)  # per unit of traded weight (one way)


class Substitution(_Strict):
    """When a member's live returns leave its backtest band for ``days`` consecutive days."""

    metric: Literal["rolling_sharpe", "drawdown"] = "rolling_sharpe"
    window: int = Field(default=20, ge=5, le=365)
    quantile: float = Field(default=0.05, gt=0, lt=0.5)
    days: int = Field(default=5, ge=1, le=365)
    auto_substitute: bool = False
    #: the gates a bench candidate must pass to replace a member (trendcast.gates)
    min_sharpe: float = 1.0
    max_drawdown: float = Field(default=0.30, gt=0, lt=1)


class PortfolioConfig(_Strict):
    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$")
    method: Literal["equal", "inverse-vol", "risk-parity", "hrp", "mean-cvar"] = "hrp"
    capital: float = Field(default=100_000.0, gt=0)
    lookback_days: int | None = Field(default=365, ge=10)  # None: expanding window
    min_history_days: int = Field(default=60, ge=10)
    periods_per_year: float = Field(default=365.0, gt=0)
    risk: Risk = Field(default_factory=Risk)
    rebalance: Rebalance = Field(default_factory=Rebalance)
    costs: Costs = Field(default_factory=Costs)
    members: list[Member] = Field(min_length=1)
    bench: list[Member] = Field(default_factory=list)
    substitution: Substitution = Field(default_factory=Substitution)

    @model_validator(mode="after")
    def _consistent(self) -> PortfolioConfig:
        from trendcast.errors import TrendcastError

        for member in (*self.members, *self.bench):
            try:
                resolved_params(member)
            except (TrendcastError, TypeError) as exc:
                raise ValueError(f"member {member.name}: {exc}") from None
        names = [m.name for m in (*self.members, *self.bench)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"member names must be unique, repeated: {dupes}")
        n = len(self.members)
        if n * self.risk.min_weight > 1 + 1e-12:
            raise ValueError(
                f"risk.min_weight {self.risk.min_weight} x {n} members exceeds 1 (infeasible)"
            )
        for member in self.members:
            low, high = self.bounds(member)
            if low > high:
                raise ValueError(f"member {member.name}: min_weight {low} > max_weight {high}")
        if self.lookback_days is not None and self.lookback_days < self.min_history_days:
            raise ValueError(
                f"lookback_days {self.lookback_days} must be >= min_history_days "
                f"{self.min_history_days}"
            )
        return self

    def bounds(self, member: Member) -> tuple[float, float]:
        low = self.risk.min_weight if member.min_weight is None else member.min_weight
        high = self.risk.max_weight if member.max_weight is None else member.max_weight
        return low, high

    def fingerprint(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def _where(error: dict) -> str:
    return ".".join(str(p) for p in error["loc"]) or "config"


def parse_config(data: object, source: str = "portfolio config") -> PortfolioConfig:
    """A validated config, or InputError naming the first failing field and its rule."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: must be a YAML mapping (name, method, members, ...)")
    try:
        return PortfolioConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise InputError(f"{source}: {_where(first)}: {message}") from None


def load_config(path: Path | str) -> PortfolioConfig:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_config(data, str(path))
