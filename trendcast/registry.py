"""Gated alias moves on the MLflow model registry, audited in ``registry.alias_events``.

Engineers redeploy by moving an alias (``production``, ``challenger``); a move happens only when
the version's logged metrics pass the gates (or ``force`` says otherwise, which is recorded),
and every move can be rolled back to the version the alias held before.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast.errors import InputError, TrendcastError


class PromotionRefused(TrendcastError):
    """The version failed a gate; the alias did not move."""


@dataclass(frozen=True)
class Gates:
    """Promotion gates on metrics logged to the version's run (defaults from the spec)."""

    min_backtest_sharpe: float = 1.0
    max_backtest_drawdown: float = 0.30
    beat_buy_and_hold: bool = True
    min_test_ic: float = 0.02

    @classmethod
    def from_file(cls, path: Path) -> Gates:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a readable JSON gate file ({exc})") from None
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise InputError(
                f"{path}: unknown gate(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**data)

    def evaluate(self, metrics: dict[str, float]) -> dict[str, dict]:
        """Each gate with the value seen and whether it passed; a missing metric fails."""

        def gate(name: str, key: str, passes) -> tuple[str, dict]:
            value = metrics.get(key)
            return name, {
                "metric": key,
                "value": value,
                "passed": value is not None and bool(passes(value)),
            }

        results = dict(
            [
                gate(
                    f"backtest sharpe >= {self.min_backtest_sharpe}",
                    "backtest_sharpe",
                    lambda v: v >= self.min_backtest_sharpe,
                ),
                gate(
                    f"backtest max drawdown <= {self.max_backtest_drawdown:.0%}",
                    "backtest_max_drawdown",
                    lambda v: v <= self.max_backtest_drawdown,
                ),
                gate(f"test IC > {self.min_test_ic}", "test_ic", lambda v: v > self.min_test_ic),
            ]
        )
        if self.beat_buy_and_hold:
            ours = metrics.get("backtest_cumulative_return")
            bench = metrics.get("backtest_benchmark_cumulative_return")
            results["beats buy-and-hold"] = {
                "metric": "backtest_cumulative_return vs backtest_benchmark_cumulative_return",
                "value": ours,
                "passed": ours is not None and bench is not None and ours > bench,
            }
        return results


@dataclass(frozen=True)
class AliasMove:
    model_name: str
    alias: str
    action: str
    from_version: int | None
    to_version: int
    moved_by: str
    forced: bool
    gate_results: dict

    def as_dict(self) -> dict:
        return asdict(self)


def _who() -> str:
    return os.environ.get("TRENDCAST_USER") or getpass.getuser()


def _current(client, name: str, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _record(engine: Engine, move: AliasMove) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO registry.alias_events (model_name, alias, action, from_version, "
                "to_version, moved_by, forced, gate_results) VALUES (:model_name, :alias, "
                ":action, :from_version, :to_version, :moved_by, :forced, :gates)"
            ),
            {**move.as_dict(), "gates": json.dumps(move.gate_results)},
        )


def promote(
    client,
    engine: Engine,
    name: str,
    version: int,
    alias: str = "production",
    gates: Gates | None = None,
    force: bool = False,
) -> AliasMove:
    """Point ``alias`` at ``version`` if its run's metrics pass ``gates`` (or ``force``)."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version(name, str(version))
    except MlflowException:
        raise InputError(f"model {name!r} has no version {version}") from None
    metrics = client.get_run(found.run_id).data.metrics if found.run_id else {}
    results = (gates or Gates()).evaluate(metrics)
    failed = [gate for gate, result in results.items() if not result["passed"]]
    if failed and not force:
        detail = "; ".join(
            f"{g} (got {results[g]['value'] if results[g]['value'] is not None else 'no metric'})"
            for g in failed
        )
        raise PromotionRefused(
            f"{name} version {version} not promoted to {alias!r}: failed {detail}"
        )
    move = AliasMove(
        name,
        alias,
        "promote",
        _current(client, name, alias),
        int(version),
        _who(),
        bool(failed) and force,
        results,
    )
    client.set_registered_model_alias(name, alias, str(version))
    _record(engine, move)
    return move


def rollback(client, engine: Engine, name: str, alias: str = "production") -> AliasMove:
    """Move ``alias`` back to the version it held before its current one was promoted."""
    current = _current(client, name, alias)
    if current is None:
        raise InputError(f"model {name!r} has no alias {alias!r} to roll back")
    with engine.connect() as conn:
        previous = conn.execute(
            sa.text(
                "SELECT from_version FROM registry.alias_events WHERE model_name = :n AND "
                "alias = :a AND action = 'promote' AND to_version = :v ORDER BY id DESC LIMIT 1"
            ),
            {"n": name, "a": alias, "v": current},
        ).scalar()
    if previous is None:
        raise InputError(
            f"{name}@{alias} (version {current}) has no earlier version on record to go back to"
        )
    move = AliasMove(name, alias, "rollback", current, int(previous), _who(), False, {})
    client.set_registered_model_alias(name, alias, str(previous))
    _record(engine, move)
    return move


def history(engine: Engine, name: str, alias: str | None = None) -> list[dict]:
    with engine.connect() as conn:
        rows = (
            conn.execute(
                sa.text(
                    "SELECT * FROM registry.alias_events WHERE model_name = :n AND "
                    "(CAST(:a AS text) IS NULL OR alias = :a) ORDER BY id"
                ),
                {"n": name, "a": alias},
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows]
