"""Which alias moves the product acts on: only those ``registry.alias_events`` records.

Anyone who can reach the MLflow server can point an alias at any version (its UI, its REST API,
``MlflowClient.set_registered_model_alias``). The gates and the audit live in ``trendcast
promote``, so every consumer of an alias — the service, the drift backfill, the registry views
— asks here whether the version an alias points at got there through a recorded move: the
newest event for (model, alias) must move it to exactly that version, and a forced move counts
only with a reason. Anything else is "moved outside Trendcast": refused like a bad checksum and
raised as an alert.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger("trendcast.governance")

UNAUDITED_RULE = "unaudited_alias_move"
OUTSIDE = "moved outside Trendcast"


@dataclass(frozen=True)
class Verdict:
    """Whether ``alias`` -> ``version`` of ``model`` is a recorded move, and why not."""

    model: str
    alias: str
    version: int
    audited: bool
    reason: str = ""
    moved_by: str | None = None

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "alias": self.alias,
            "version": self.version,
            "audited": self.audited,
            "reason": self.reason,
            "moved_by": self.moved_by,
        }


def check_move(engine: Engine, model: str, alias: str, version: int) -> Verdict:
    """The verdict on the alias pointing at ``version`` (database errors propagate: a move
    that cannot be checked is not served)."""
    with engine.connect() as conn:
        last = (
            conn.execute(
                sa.text(
                    "SELECT to_version, moved_by, moved_at, forced, reason, action "
                    "FROM registry.alias_events WHERE model_name = :m AND alias = :a "
                    "ORDER BY id DESC LIMIT 1"
                ),
                {"m": model, "a": alias},
            )
            .mappings()
            .first()
        )
    if last is not None and last["to_version"] == version:
        if last["forced"] and not (last["reason"] or "").strip():
            return Verdict(
                model,
                alias,
                version,
                False,
                f"{model}@{alias} -> version {version} was forced past the gates without a "
                "reason; promote it again with --force --reason TEXT or through the gates",
                last["moved_by"],
            )
        return Verdict(model, alias, version, True, "", last["moved_by"])
    recorded = (
        f"the last recorded move put it on version {last['to_version']} "
        f"({last['action']} by {last['moved_by']} at {last['moved_at']:%Y-%m-%d %H:%M:%S %Z})"
        if last is not None
        else "no move of this alias is on record"
    )
    return Verdict(
        model,
        alias,
        version,
        False,
        f"{model}@{alias} -> version {version} was {OUTSIDE} ({recorded}); promote it through "
        f"the gates (`trendcast promote {model} --version {version} --alias {alias}`) or move "
        "the alias back",
    )


def raise_alert(
    engine: Engine, verdict: Verdict, webhook: str | None = None, attempts: int = 3
) -> bool:
    """Record an open critical alert for an unaudited move (one per model, version, alias and
    day) and post it to the webhook; returns whether a new alert was opened."""
    from trendcast.drift import notify

    values = {
        "model_name": verdict.model,
        "model_version": verdict.version,
        "source": "live",
        "date": dt.datetime.now(dt.UTC).date(),
        "rule": UNAUDITED_RULE,
        "severity": "critical",
        "action": f"promote version {verdict.version} through the gates or move "
        f"{verdict.alias} back; until then the previous version keeps serving",
        "metric": "alias_audit",
        "feature": verdict.alias,
        "value": float(verdict.version),
        "threshold": 0.0,
        "message": verdict.reason,
    }
    with engine.begin() as conn:
        new = conn.execute(
            sa.text(
                "INSERT INTO monitoring.alerts (model_name, model_version, source, date, rule, "
                "severity, action, metric, feature, value, threshold, message) VALUES "
                "(:model_name, :model_version, :source, :date, :rule, :severity, :action, "
                ":metric, :feature, :value, :threshold, :message) ON CONFLICT (model_name, "
                "model_version, source, date, rule, feature) DO NOTHING RETURNING id"
            ),
            values,
        ).first()
    if new is None:
        return False
    notify(engine, [{**values, "id": new.id}], webhook, attempts)
    return True


def resolve_alerts(engine: Engine, model: str, alias: str, version: int) -> None:
    """Close the unaudited-move alerts of a version once its move is on record."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE monitoring.alerts SET status = 'resolved', resolved_at = now() "
                "WHERE model_name = :m AND model_version = :v AND rule = :r AND feature = :a "
                "AND status = 'open'"
            ),
            {"m": model, "v": version, "r": UNAUDITED_RULE, "a": alias},
        )


def alias_verdicts(client, engine: Engine, model: str) -> dict[str, Verdict]:
    """Every alias of ``model`` with its verdict (for `trendcast models` and the dashboard)."""
    aliases = client.get_registered_model(model).aliases or {}
    return {
        alias: check_move(engine, model, alias, int(version))
        for alias, version in sorted(aliases.items())
    }


def split_audited(
    engine: Engine, served: list[tuple[str, str, int]]
) -> tuple[list[tuple[str, str, int]], list[Verdict]]:
    """(model, alias, version) triples split into those on record and the verdicts of the rest."""
    kept, refused = [], []
    for model, alias, version in served:
        verdict = check_move(engine, model, alias, version)
        (kept.append((model, alias, version)) if verdict.audited else refused.append(verdict))
    return kept, refused
