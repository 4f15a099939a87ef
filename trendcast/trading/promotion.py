"""Demo -> live: a gated, audited promotion of a deployment (like a model's alias move).

Gates (each named in a refusal, with what it got): at least ``demo_days`` days of demo bars and
``demo_trades`` fills, every fill's slippage within the deployment's band, no order whose
outcome is unknown, and equity within ``tolerance`` (relative) of the backtest of the same bars.
Live also needs the ``binance`` broker with live keys and a live base URL; what is missing is
named. Every attempt, passed or refused, is one ``promotion`` event.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast.errors import InputError, TrendcastError
from trendcast.trading import deployments as store


class PromotionRefused(TrendcastError):
    """A gate failed; the deployment stays on demo."""


@dataclass(frozen=True)
class Thresholds:
    demo_days: float
    demo_trades: int
    tolerance: float


def live_requirements(dep: store.Deployment, settings) -> list[str]:
    """What live trading still lacks (empty: nothing)."""
    missing = []
    if dep.broker != "binance":
        missing.append(f"the binance broker (this deployment uses {dep.broker})")
    for field, env in (
        ("binance_api_key", "TRENDCAST_BINANCE_API_KEY"),
        ("binance_api_secret", "TRENDCAST_BINANCE_API_SECRET"),
    ):
        value = getattr(settings, field, None)
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if not value:
            missing.append(f"live keys: {env} is not set")
    url = getattr(settings, "binance_base_url", None) or ""
    if not url or "testnet" in url or "127.0.0.1" in url or "localhost" in url:
        missing.append(f"a live base URL: TRENDCAST_BINANCE_BASE_URL is {url or 'unset'} (testnet)")
    return missing


def gates(engine: Engine, dep: store.Deployment, limits: Thresholds, client=None) -> dict:
    """Each gate's (passed, what it got)."""
    from trendcast.trading.open_orders import open_orders_unknown
    from trendcast.trading.reconcile import reconcile

    with engine.connect() as conn:
        span = conn.execute(
            sa.text(
                "SELECT min(bar_time), max(bar_time) FROM trading.balances WHERE deployment_id = :d"
            ),
            {"d": dep.id},
        ).one()
        fills = conn.execute(
            sa.text(
                "SELECT count(*), max(abs(slippage)) FROM trading.fills WHERE deployment_id = :d"
            ),
            {"d": dep.id},
        ).one()
    days = (span[1] - span[0]).total_seconds() / 86400 if span[0] is not None else 0.0
    band = float(dep.risk.get("slippage_band") or 0.0)
    worst = float(fills[1] or 0.0)
    unknown = [c for c in open_orders_unknown(engine, dep)]
    unknown = [c for c in unknown if _status(engine, c) in ("intended", "unknown")]
    try:
        gap = reconcile(engine, dep.name, client=client).max_equity_diff if days else None
    except InputError:
        gap = None
    return {
        f"demo days >= {limits.demo_days:g}": (days >= limits.demo_days, f"{days:.2f}"),
        f"demo trades >= {limits.demo_trades}": (fills[0] >= limits.demo_trades, str(fills[0])),
        f"slippage <= {band:.4%}": (worst <= band, f"{worst:.4%}"),
        "no unreconciled orders": (not unknown, ", ".join(unknown) or "none"),
        f"equity within {limits.tolerance:g} of the backtest": (
            gap is not None and gap <= limits.tolerance,
            "no bars" if gap is None else f"{gap:.3g}",
        ),
    }


def _status(engine: Engine, coid: str) -> str:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT status FROM trading.orders WHERE client_order_id = :c"), {"c": coid}
        ).scalar_one()


def promote(engine: Engine, name: str, to: str, settings, limits: Thresholds, client=None) -> dict:
    """Move a demo deployment to live if every gate passes and live is possible."""
    if to != "live":
        raise InputError(f"--to {to!r}: deployments are promoted from demo to live only")
    dep = store.get(engine, name)
    if dep.stage != "demo" or dep.state in ("stopped", "killed"):
        raise InputError(
            f"deployment {name}: stage {dep.stage}, state {dep.state}; only a "
            "demo deployment that is not stopped can go live"
        )
    results = gates(engine, dep, limits, client)
    missing = live_requirements(dep, settings)
    failed = [f"{gate} (got {got})" for gate, (ok, got) in results.items() if not ok]
    shown = {gate: {"passed": ok, "got": got} for gate, (ok, got) in results.items()}
    passed = not failed and not missing
    with engine.begin() as conn:
        if passed:
            conn.execute(
                sa.text("UPDATE trading.deployments SET stage = 'live' WHERE id = :d"),
                {"d": dep.id},
            )
        store.event(
            conn,
            dep.id,
            "promotion",
            "live",
            {"passed": passed, "gates": shown, "missing": missing},
        )
    if not passed:
        parts = []
        if failed:
            parts.append("failed " + "; ".join(failed))
        if missing:
            parts.append("live needs " + "; ".join(missing))
        raise PromotionRefused(f"deploy promote {name} --to live refused: " + ". ".join(parts))
    return shown
