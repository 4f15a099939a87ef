"""Gated alias moves on the MLflow model registry, audited in ``registry.alias_events``.

Engineers redeploy by moving an alias (``production``, ``challenger``); a move happens only when
the version's logged metrics pass the gates (or ``force`` says otherwise, which is recorded),
and every move can be rolled back to the version the alias held before.
"""

from __future__ import annotations

import getpass
import json
import logging
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast.errors import InputError, TrendcastError
from trendcast.gates import Gates

log = logging.getLogger(__name__)

# The metrics every training run logs (see training/train.py): what --metric may name.
TEST_METRICS = (
    "test_mse",
    "test_mae",
    "test_ic",
    "test_rank_ic",
    "test_direction_accuracy",
    "test_accuracy",
    "test_up_precision",
    "test_up_recall",
    "test_macro_f1",
)
BACKTEST_METRICS = tuple(
    f"backtest_{name}"
    for name in (
        "cumulative_return",
        "annualized_return",
        "benchmark_cumulative_return",
        "benchmark_annualized_return",
        "sharpe",
        "sortino",
        "max_drawdown",
        "average_drawdown",
        "time_in_market",
        "win_rate_long",
        "win_rate_short",
        "average_trade",
        "expected_daily_gain",
        "expected_monthly_gain",
        "psr",
        "dsr",
    )
)
KNOWN_METRICS = TEST_METRICS + BACKTEST_METRICS
LOWER_IS_BETTER = frozenset(
    {"test_mse", "test_mae", "backtest_max_drawdown", "backtest_average_drawdown"}
)


def resolve_metric(name: str) -> str:
    """A logged metric's key from its name or short name (``sharpe`` -> ``backtest_sharpe``)."""
    for candidate in (name, f"backtest_{name}", f"test_{name}"):
        if candidate in KNOWN_METRICS:
            return candidate
    raise InputError(f"--metric {name!r}: unknown metric; choose from {', '.join(KNOWN_METRICS)}")


def selection_metric(key: str) -> str:
    """The validation counterpart a search ranks on: ``test_ic`` -> ``validation_ic``,
    ``backtest_sharpe`` -> ``validation_backtest_sharpe``. Test metrics are for the gates."""
    if key.startswith("test_"):
        return "validation_" + key.removeprefix("test_")
    return "validation_" + key


def better_first(metric: str, values: list[float]) -> list[int]:
    """Indices of ``values`` best first for ``metric`` (missing or NaN values last)."""
    base = metric.removeprefix("validation_")
    lower = (
        metric in LOWER_IS_BETTER or base in LOWER_IS_BETTER or f"test_{base}" in LOWER_IS_BETTER
    )
    sign = 1.0 if lower else -1.0

    def key(i: int) -> tuple[bool, float]:
        v = values[i]
        missing = v is None or v != v
        return (missing, 0.0 if missing else sign * v)

    return sorted(range(len(values)), key=key)


class PromotionRefused(TrendcastError):
    """The version failed a gate; the alias did not move."""


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
    reason: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _who() -> str:
    """The person (``TRENDCAST_USER`` or the login) and, with MLflow auth, the identity the
    move was made as."""
    from trendcast.config import get_settings

    settings = get_settings()
    person = settings.user or getpass.getuser()
    identity = settings.mlflow_username
    return f"{person} as {identity}" if identity and identity != person else person


def alias_version(client, name: str, alias: str) -> int | None:
    """The version ``alias`` points at, or None when the alias (or model) does not exist;
    any other MLflow error (an outage) propagates, so it is never mistaken for "unset"."""
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise


def _move_alias(client, engine: Engine, move: AliasMove) -> None:
    """Record the move, then make it: the audit row is committed before the alias moves, so a
    service polling in between never sees an unrecorded move (and raises no false alarm). If
    MLflow refuses the move, the row is taken back and nothing changed."""
    with engine.begin() as conn:
        event = conn.execute(
            sa.text(
                "INSERT INTO registry.alias_events (model_name, alias, action, from_version, "
                "to_version, moved_by, forced, gate_results, reason) VALUES (:model_name, "
                ":alias, :action, :from_version, :to_version, :moved_by, :forced, :gates, "
                ":reason) RETURNING id"
            ),
            {**move.as_dict(), "gates": json.dumps(move.gate_results)},
        ).scalar_one()
    try:
        client.set_registered_model_alias(move.model_name, move.alias, str(move.to_version))
    except BaseException:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM registry.alias_events WHERE id = :id"), {"id": event})
        raise


def checked_reason(reason: str | None, force: bool) -> str | None:
    reason = (reason or "").strip() or None
    if force and reason is None:
        raise InputError(
            "--reason: required with --force; say why the gates are overridden (it is stored "
            "in the audit and shown by alias-history and the dashboard)"
        )
    if reason is not None and len(reason) > 500:
        raise InputError(f"--reason: at most 500 characters, got {len(reason)}")
    return reason


def promote(
    client,
    engine: Engine,
    name: str,
    version: int,
    alias: str = "production",
    gates: Gates | None = None,
    force: bool = False,
    reason: str | None = None,
) -> AliasMove:
    """Point ``alias`` at ``version`` if its run's metrics pass ``gates`` (or ``force``, which
    needs a ``reason``)."""
    from mlflow.exceptions import MlflowException

    reason = checked_reason(reason, force)

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
        alias_version(client, name, alias),
        int(version),
        _who(),
        bool(failed) and force,
        results,
        reason,
    )
    _move_alias(client, engine, move)
    return move


def rollback(
    client, engine: Engine, name: str, alias: str = "production", reason: str | None = None
) -> AliasMove:
    """Move ``alias`` back to the version it held before its current one was promoted."""
    current = alias_version(client, name, alias)
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
    move = AliasMove(
        name,
        alias,
        "rollback",
        current,
        int(previous),
        _who(),
        False,
        {},
        checked_reason(reason, False),
    )
    _move_alias(client, engine, move)
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


@dataclass
class VersionSummary:
    """One registered version with its aliases and its run's metrics."""

    name: str
    version: int
    aliases: list[str]
    run_id: str | None
    created: int
    metrics: dict[str, float]
    sha256: str | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """What ``trendcast models --json`` prints: the honesty record of the version too."""
        m = self.metrics
        return {
            "model": self.name,
            "version": self.version,
            "aliases": self.aliases,
            "run_id": self.run_id,
            "sha256": self.sha256,
            "n_trials": int(m["n_trials"]) if "n_trials" in m else None,
            "selection_end": self.tags.get("selection_end"),
            "test_start": self.tags.get("test_start"),
            "cost_profile": self.params.get("cost_profile"),
            "round_trip_cost": _number(self.params.get("round_trip_cost")),
            "periods_per_year": _number(self.params.get("periods_per_year")),
            "metrics": dict(sorted(m.items())),
        }


def _number(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def versions(client, name: str) -> list[VersionSummary]:
    """Every version of ``name``, newest first (an unknown name is an InputError)."""
    found = client.search_model_versions(f"name = '{name}'")
    if not found:
        raise InputError(f"model {name!r} has no registered version")
    aliases: dict[str, list[str]] = {}
    for alias, version in (client.get_registered_model(name).aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    summaries = []
    for v in found:
        data = client.get_run(v.run_id).data if v.run_id else None
        summaries.append(
            VersionSummary(
                name,
                int(v.version),
                sorted(aliases.get(str(v.version), [])),
                v.run_id,
                int(v.creation_timestamp or 0),
                dict(data.metrics) if data else {},
                (v.tags or {}).get("sha256"),
                dict(data.params) if data else {},
                dict(data.tags) if data else {},
            )
        )
    return sorted(summaries, key=lambda s: s.version, reverse=True)


def rank(
    client, name: str, metric: str, gates: Gates | None = None
) -> list[tuple[VersionSummary, bool]]:
    """Versions best first on ``metric``, each with whether it passes ``gates`` (True if none)."""
    key = resolve_metric(metric)
    found = versions(client, name)
    order = better_first(key, [v.metrics.get(key) for v in found])
    return [
        (
            found[i],
            gates is None or gates.passes(found[i].metrics),
        )
        for i in order
    ]


def eligible(ranked: list[tuple[VersionSummary, bool]], metric: str) -> list[VersionSummary]:
    """The one "best version" rule: ranked versions that pass the gates and have ``metric``
    logged (a version without the metric is never "best" on it)."""
    key = resolve_metric(metric)
    return [v for v, ok in ranked if ok and v.metrics.get(key) is not None]


def best(client, name: str, metric: str, gates: Gates | None = None, place: int = 1) -> int:
    """The ``place``-th best version on ``metric`` among those passing ``gates``."""
    ranked = rank(client, name, metric, gates)
    passing = eligible(ranked, metric)
    if len(passing) < place:
        top = ranked[0][0]
        failed = [
            f"{gate} (got {_shown(result['value'])})"
            for gate, result in (gates or Gates()).evaluate(top.metrics).items()
            if not result["passed"]
        ]
        why = (
            f"; the best on it, version {top.version}, fails {'; '.join(failed)}"
            if not passing
            else ""
        )
        raise PromotionRefused(
            f"{name}: {len(passing)} version(s) pass the gates, so there is no "
            f"{'best' if place == 1 else f'number {place}'} on {resolve_metric(metric)}{why}"
        )
    return passing[place - 1].version


def resolve_version(client, name: str, version: str, metric: str, gates: Gates | None) -> int:
    """A version number from ``N``, ``latest``, ``best`` or ``best:K`` (K-th best passing)."""
    if version.isdigit():
        return int(version)
    if version == "latest":
        return max(v.version for v in versions(client, name))
    if version == "best" or (version.startswith("best:") and version[5:].isdigit()):
        place = int(version[5:]) if ":" in version else 1
        return best(client, name, metric, gates, place=max(place, 1))
    raise InputError(f"--version {version!r}: a version number, 'latest', 'best' or 'best:K'")


def _shown(value: float | None) -> str:
    return "no metric" if value is None else f"{value:.4g}"
