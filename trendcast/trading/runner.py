"""The deployment runner: on each newly closed bar, the backtest's own strategy decides, and the
orders that move the account there are sent, audited and reconciled.

For each bar t (stored by ingestion) and symbol:

1. sync with the venue: every order not yet final is asked for (``order``), its fills recorded
   (``fills``; unique per venue trade id, so a replayed sync records nothing twice);
2. the balance at t's close is snapshot (equity, cash, drawdown); the drawdown and daily-loss
   limits are checked there and, when one trips, the account is flattened and the deployment
   killed (audited, alerted);
3. no decision on a stale bar (closed more than two intervals ago) or missing features;
4. the SAME ``Strategy`` the backtest runs decides on the history up to t (``signals`` of the
   prefix, last value: the backtest's look-ahead guard proves a strategy's past decisions do not
   change when bars are added, so this equals the vectorised backtest's decision at t);
5. the legs that move the sleeve there are planned exactly as ``backtest._simulate`` trades at
   t+1's open (exit, entry sized in quote currency "as far as the cash goes", rebalance), their
   intents and the decision are committed, then each is submitted and its answer recorded.

Client order ids are derived from (deployment, symbol, bar, leg) and written before the order
is sent, so a runner killed between submit and record finds the intent on restart, asks the
venue, and never sends a second order.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
from collections.abc import Callable

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trendcast.backtest import Costs, with_costs
from trendcast.gaps import step_offset
from trendcast.strategy import make_strategy
from trendcast.trading import deployments as store
from trendcast.trading.broker import (
    Broker,
    OrderRejected,
    OrderRequest,
    VenueUnavailable,
)
from trendcast.trading.capital import fund, shifted, stepping
from trendcast.trading.inputs import (
    ModelRefused,
    ServedModels,
    decided_versions,
    load_verified,
    strategy_frame,
)
from trendcast.trading.legs import Leg, client_order_id, plan_legs
from trendcast.trading.open_orders import late_fill, open_order

log = logging.getLogger("trendcast.trading")


def _fault(point: str) -> None:
    """Test hook: die exactly here, as kill -9 would (``TRENDCAST_DEPLOY_FAULT_POINT``)."""
    from trendcast.config import get_settings

    if get_settings().deploy_fault_point == point:
        os.kill(os.getpid(), signal.SIGKILL)


class Runner:
    """Trades one deployment bar by bar on ``broker``."""

    def __init__(
        self,
        engine: Engine,
        dep: store.Deployment,
        broker: Broker,
        *,
        client=None,
        clock: Callable[[], dt.datetime] | None = None,
        replayed: bool = False,
    ) -> None:
        self.engine = engine
        self.dep = dep
        self.broker = broker
        self.client = client
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.replayed = replayed  # stored history stepped as if live: no staleness
        self.step_len = pd.Timedelta(step_offset(dep.interval))
        self.models = ServedModels(dep.model_name) if dep.model_name else None
        self.costs = {s: Costs(**dep.costs[s]) for s in dep.symbols}

    # -- state from the database -----------------------------------------------------------

    def sleeve(
        self, conn, symbol: str, bar=None, *, held: bool = False
    ) -> tuple[float, float, float]:
        """(cash, shares, weight) of a symbol's sleeve from its fills before ``bar`` closed (a
        restart may already have recorded later fills of orders it sent before dying; a live
        venue stamps a fill a moment after the open it traded at, so not "up to the open").

        ``held``: what the account holds when deciding at ``bar``: every fill of the orders
        decided before it, a late one (filled after ``bar`` closed) included, so a delayed
        entry is never entered a second time."""
        n = len(self.dep.symbols)
        moves = store.transfers(conn, self.dep)
        cash = store.capital_at(store.initial_capital(conn, self.dep), moves, bar) / n
        shares = 0.0
        for side, qty, price, fee in conn.execute(
            sa.text(
                "SELECT f.side, f.quantity, f.price, f.fee FROM trading.fills f "
                "JOIN trading.orders o ON o.id = f.order_id "
                "WHERE f.deployment_id = :d AND f.symbol = :s "
                "AND (CAST(:e AS timestamptz) IS NULL OR f.time < :e "
                "OR (:held AND o.bar_time < :b)) ORDER BY f.time, f.id"
            ),
            {
                "d": self.dep.id,
                "s": symbol,
                "e": None if bar is None else bar + self.step_len,
                "b": bar,
                "held": held,
            },
        ).all():
            signed = qty if side == "buy" else -qty
            cash -= signed * price + fee
            shares += signed
        weight = conn.execute(
            sa.text(
                "SELECT target FROM trading.orders WHERE deployment_id = :d AND symbol = :s "
                "AND purpose IN ('entry', 'carry', 'rebalance') AND status = 'filled' "
                "AND (CAST(:b AS timestamptz) IS NULL OR bar_time < :b) "
                "ORDER BY bar_time DESC LIMIT 1"
            ),
            {"d": self.dep.id, "s": symbol, "b": bar},
        ).scalar()
        return cash, shares, float(weight or 0.0)

    def versions(self, symbol: str) -> dict[pd.Timestamp, int]:
        return decided_versions(self.engine, self.dep.id, symbol)

    # -- the venue -------------------------------------------------------------------------

    def sync(self) -> None:
        """Ask the venue about every order not final and record what it did (idempotent)."""
        with self.engine.connect() as conn:
            open_rows = conn.execute(
                sa.text(
                    "SELECT id, client_order_id, symbol, status, bar_time FROM trading.orders "
                    "WHERE deployment_id = :d AND status NOT IN "
                    "('filled', 'canceled', 'rejected', 'expired') ORDER BY id"
                ),
                {"d": self.dep.id},
            ).all()
        touched = set()
        for row in open_rows:
            try:
                state = self.broker.order(row.symbol, row.client_order_id)
            except VenueUnavailable as exc:
                self._venue_down(exc)
                raise
            if state is None:
                self._never_received(row)
            else:
                self._record_state(row.id, state)
            touched.add(row.symbol)
        for symbol in sorted(touched):
            self._record_fills(symbol)

    def _never_received(self, row) -> None:
        """An intent the venue never got (the runner died before submitting): send it now if
        its fill bar is still ahead (or, replaying stored bars, its step never finished), else
        it expired unsent."""
        unfinished = self.dep.last_bar is None or row.bar_time > self.dep.last_bar
        if (self.replayed and unfinished) or self._bar_after(row.symbol, row.bar_time) is None:
            with self.engine.connect() as conn:
                order = conn.execute(
                    sa.text("SELECT * FROM trading.orders WHERE id = :i"), {"i": row.id}
                ).one()
            self._submit(order)
            return
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE trading.orders SET status = 'expired', updated_at = now(), "
                    "reason = 'never reached the venue; its bar has passed' WHERE id = :i"
                ),
                {"i": row.id},
            )
            store.event(
                conn,
                self.dep.id,
                "order_expired",
                row.client_order_id,
                {"reason": "never reached the venue"},
            )

    def _bar_after(self, symbol: str, bar_time) -> pd.Timestamp | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT min(open_time) FROM market.bars WHERE symbol = :s AND "
                    "interval = CAST(:i AS market.bar_interval) AND open_time > :t"
                ),
                {"s": symbol, "i": self.dep.interval, "t": bar_time},
            ).scalar()

    def _record_state(self, order_id: int, state) -> None:
        with self.engine.begin() as conn:
            before, bar_time = conn.execute(
                sa.text("SELECT status, bar_time FROM trading.orders WHERE id = :i FOR UPDATE"),
                {"i": order_id},
            ).one()
            conn.execute(
                sa.text(
                    "UPDATE trading.orders SET status = :s, venue_order_id = :v, "
                    "filled_quantity = :f, reason = coalesce(:r, reason), updated_at = now() "
                    "WHERE id = :i"
                ),
                {
                    "s": state.status,
                    "v": state.venue_order_id,
                    "f": state.filled_quantity,
                    "r": state.reason,
                    "i": order_id,
                },
            )
            if before != state.status:
                store.event(
                    conn,
                    self.dep.id,
                    "order_" + state.status,
                    state.client_order_id,
                    {
                        "from": before,
                        "filled": state.filled_quantity,
                        "reason": state.reason,
                        # the decision bar: reconcile dates the divergence by it, not by now
                        "bar": pd.Timestamp(bar_time).isoformat(),
                    },
                )
        if state.status == "rejected" and before != "rejected":
            store.alert(
                self.engine,
                self.dep,
                "order_rejected",
                f"{self.dep.name}: order {state.client_order_id} on {state.symbol} rejected: "
                f"{state.reason}",
                action="check the account's balances and the order size",
                symbol=state.symbol,
            )

    def _record_fills(self, symbol: str) -> None:
        try:
            fills = self.broker.fills(symbol, self.dep.start_bar)
        except VenueUnavailable as exc:
            self._venue_down(exc)
            raise
        band = float(self.dep.risk.get("slippage_band") or 0.0)
        with self.engine.begin() as conn:
            ours = {
                r.client_order_id: r
                for r in conn.execute(
                    sa.text(
                        "SELECT id, client_order_id, intended_price, bar_time "
                        "FROM trading.orders WHERE deployment_id = :d AND symbol = :s"
                    ),
                    {"d": self.dep.id, "s": symbol},
                ).all()
            }
            wide = []
            for fill in fills:
                order = ours.get(fill.client_order_id)
                if order is None:
                    continue  # not this deployment's order
                sign = 1.0 if fill.side == "buy" else -1.0
                slippage = sign * (fill.price / order.intended_price - 1.0)
                new = conn.execute(
                    sa.text(
                        "INSERT INTO trading.fills (order_id, deployment_id, venue_trade_id, "
                        "symbol, side, quantity, price, fee, intended_price, slippage, time) "
                        "VALUES (:o, :d, :t, :s, :side, :q, :p, :f, :ip, :sl, :time) "
                        "ON CONFLICT (order_id, venue_trade_id) DO NOTHING RETURNING id"
                    ),
                    {
                        "o": order.id,
                        "d": self.dep.id,
                        "t": fill.venue_trade_id,
                        "s": symbol,
                        "side": fill.side,
                        "q": fill.quantity,
                        "p": fill.price,
                        "f": fill.fee,
                        "ip": order.intended_price,
                        "sl": slippage,
                        "time": fill.time,
                    },
                ).first()
                if new is not None:
                    store.event(
                        conn,
                        self.dep.id,
                        "fill",
                        fill.client_order_id,
                        {"price": fill.price, "quantity": fill.quantity, "slippage": slippage},
                    )
                    late_fill(conn, self.dep, symbol, order, fill)
                    if band and slippage > band:
                        wide.append((fill, slippage))
        for fill, slippage in wide:
            store.alert(
                self.engine,
                self.dep,
                "slippage",
                f"{self.dep.name}: fill {fill.venue_trade_id} on {symbol} slipped "
                f"{slippage:.4%} (band {band:.4%})",
                severity="warning",
                action="compare the venue's fills with the bars; widen the band or the costs",
                value=slippage,
                threshold=band,
                symbol=symbol,
            )

    def _venue_down(self, exc: Exception) -> None:
        with self.engine.begin() as conn:
            store.event(
                conn, self.dep.id, "venue_unreachable", self.broker.name, {"error": str(exc)}
            )
        store.alert(
            self.engine,
            self.dep,
            "venue_unreachable",
            f"{self.dep.name}: venue {self.broker.name} unreachable: {exc}",
            action="the runner reconciles and resumes on its next run; check the venue",
        )

    def _submit(self, order) -> None:
        """Send a recorded intent and record the venue's answer."""
        request = OrderRequest(
            order.client_order_id,
            order.symbol,
            order.side,
            float(order.quantity),
            float(order.intended_price),
            order.intended_time,
            order.quote_quantity,
        )
        _fault("before_submit")
        try:
            state = self.broker.submit(request)
        except OrderRejected as exc:
            from trendcast.trading.broker import OrderState

            state = OrderState(
                request.client_order_id,
                "",
                request.symbol,
                request.side,
                request.quantity,
                0.0,
                "rejected",
                str(exc),
            )
        except VenueUnavailable as exc:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.text("UPDATE trading.orders SET status = 'unknown' WHERE id = :i"),
                    {"i": order.id},
                )
            self._venue_down(exc)
            raise
        _fault("after_submit")
        self._record_state(order.id, state)
        if state.filled_quantity > 0:  # a venue that fills at once (Binance): record it now,
            self._record_fills(order.symbol)  # sync only asks about orders still open

    # -- one bar ---------------------------------------------------------------------------

    def pending_bars(self, until=None, limit: int | None = None) -> list[pd.Timestamp]:
        """Stored bars not yet stepped (from the start bar on), oldest first."""
        after = self.dep.last_bar
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT DISTINCT open_time FROM market.bars WHERE symbol = ANY(:s) "
                    "AND interval = CAST(:i AS market.bar_interval) AND open_time >= :start "
                    "AND (CAST(:after AS timestamptz) IS NULL OR open_time > :after) "
                    "AND (CAST(:until AS timestamptz) IS NULL OR open_time <= :until) "
                    "ORDER BY open_time LIMIT :n"
                ),
                {
                    "s": self.dep.symbols,
                    "i": self.dep.interval,
                    "start": self.dep.start_bar,
                    "after": after,
                    "until": until,
                    "n": limit,
                },
            ).scalars()
            return [pd.Timestamp(t).tz_convert("UTC") for t in rows]

    def _current_version(self) -> int | None:
        if self.models is None:
            return None
        from trendcast.trading.inputs import resolve_alias

        try:
            version = resolve_alias(
                self.client, self.engine, self.dep.model_name, self.dep.model_alias
            )
        except ModelRefused as exc:
            with self.engine.begin() as conn:
                store.event(
                    conn, self.dep.id, "model_refused", self.dep.model_alias, {"reason": str(exc)}
                )
            with self.engine.connect() as conn:
                last = conn.execute(
                    sa.text(
                        "SELECT model_version FROM trading.decisions WHERE deployment_id = :d "
                        "AND model_version IS NOT NULL ORDER BY bar_time DESC LIMIT 1"
                    ),
                    {"d": self.dep.id},
                ).scalar()
            if last is None:
                raise
            version = int(last)  # keep the last version traded, like the service keeps serving
            log.warning("%s: %s; still trading version %d", self.dep.name, exc, version)
        if version not in self.models.models:
            self.models.models[version] = load_verified(self.client, self.dep.model_name, version)
            with self.engine.begin() as conn:
                store.event(
                    conn, self.dep.id, "model_loaded", self.dep.model_alias, {"version": version}
                )
        return version

    def step(self, bar: pd.Timestamp) -> dict:
        """Sync, snapshot, check the limits, decide and send for bar ``bar``, holding the
        deployment's step lock throughout: a capital change made meanwhile waits for the
        step to end and takes effect from the next bar, never half-way through this one."""
        with stepping(self.engine, self.dep.id):
            return self._step(bar)

    def _step(self, bar: pd.Timestamp) -> dict:
        self.dep = store.get(self.engine, self.dep.name)
        if self.dep.state in ("stopped", "killed"):
            raise store.DeploymentStopped(
                f"deployment {self.dep.name} is {self.dep.state}: {self.dep.state_reason}"
            )
        self.sync()
        self._fund(bar)
        closes = self._closes(bar)
        with self.engine.connect() as conn:
            sleeves = {s: self.sleeve(conn, s, bar) for s in self.dep.symbols}
            held = {s: self.sleeve(conn, s, bar, held=True) for s in self.dep.symbols}
        equity = self._snapshot(bar, sleeves, closes)
        tripped = self._limits(bar, equity)
        if tripped:
            self.flatten(bar, held, closes, kind="kill_switch", reason=tripped)
            return {"bar": bar, "killed": tripped}
        now = self.clock()
        stale = not self.replayed and now - (bar + self.step_len) > 2 * self.step_len
        version = None if stale else self._current_version()
        decided = {}
        for symbol in self.dep.symbols:
            decided[symbol] = self._decide(bar, symbol, held[symbol], closes, stale, version, now)
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE trading.deployments SET last_bar = :b, last_step_at = now(), "
                    "state = CASE WHEN state = 'created' THEN 'running' ELSE state END "
                    "WHERE id = :d"
                ),
                {"b": bar, "d": self.dep.id},
            )
        self.dep.last_bar = bar
        return {"bar": bar, "equity": equity, "targets": decided}

    def _fund(self, bar: pd.Timestamp) -> None:
        fund(self.engine, self.dep, self.broker, bar)

    def _closes(self, bar: pd.Timestamp) -> dict[str, float | None]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT DISTINCT ON (symbol) symbol, open_time, close FROM market.bars "
                    "WHERE symbol = ANY(:s) AND interval = CAST(:i AS market.bar_interval) "
                    "AND open_time <= :b ORDER BY symbol, open_time DESC"
                ),
                {"s": self.dep.symbols, "i": self.dep.interval, "b": bar},
            ).all()
        found = {r.symbol: (pd.Timestamp(r.open_time), float(r.close)) for r in rows}
        return {s: (found[s][1] if s in found else None) for s in self.dep.symbols} | {
            f"{s}@": found[s][0] for s in found
        }

    def _snapshot(self, bar, sleeves, closes) -> float:
        cash = sum(c for c, _, _ in sleeves.values())
        parts = {}
        for symbol, (c, shares, _) in sleeves.items():
            close = closes.get(symbol) or 0.0
            parts[symbol] = {"cash": c, "shares": shares, "equity": c + shares * close}
        equity = sum(p["equity"] for p in parts.values())
        with self.engine.begin() as conn:
            prev = conn.execute(
                sa.text(
                    "SELECT bar_time, peak FROM trading.balances WHERE deployment_id = :d "
                    "AND bar_time < :b ORDER BY bar_time DESC LIMIT 1"
                ),
                {"d": self.dep.id, "b": bar},
            ).first()
            # the peak moves with the money moved in or out: a transfer is no gain or loss
            peak = max(shifted(conn, self.dep, prev and (prev.bar_time, prev.peak), bar), equity)
            conn.execute(
                sa.text(
                    "INSERT INTO trading.balances (deployment_id, bar_time, equity, cash, peak, "
                    "drawdown, positions) VALUES (:d, :b, :e, :c, :p, :dd, CAST(:j AS jsonb)) "
                    "ON CONFLICT (deployment_id, bar_time) DO UPDATE SET equity = :e, "
                    "cash = :c, peak = :p, drawdown = :dd, positions = CAST(:j AS jsonb)"
                ),
                {
                    "d": self.dep.id,
                    "b": bar,
                    "e": equity,
                    "c": cash,
                    "p": peak,
                    "dd": 1.0 - equity / peak,
                    "j": pd.Series(parts).to_json(),
                },
            )
            for symbol, part in parts.items():
                conn.execute(
                    sa.text(
                        "INSERT INTO trading.positions (deployment_id, symbol, quantity) "
                        "VALUES (:d, :s, :q) ON CONFLICT (deployment_id, symbol) DO UPDATE "
                        "SET quantity = :q, updated_at = now()"
                    ),
                    {"d": self.dep.id, "s": symbol, "q": part["shares"]},
                )
        return equity

    def _limits(self, bar: pd.Timestamp, equity: float) -> str | None:
        """Which loss limit the equity at ``bar`` trips (at or beyond its threshold)."""
        risk = self.dep.risk
        with self.engine.connect() as conn:
            peak = conn.execute(
                sa.text(
                    "SELECT peak FROM trading.balances WHERE deployment_id = :d AND bar_time = :b"
                ),
                {"d": self.dep.id, "b": bar},
            ).scalar_one()
            day_start = conn.execute(
                sa.text(
                    "SELECT bar_time, equity FROM trading.balances WHERE deployment_id = :d AND "
                    "bar_time < date_trunc('day', CAST(:b AS timestamptz) AT TIME ZONE 'UTC') "
                    "AT TIME ZONE 'UTC' ORDER BY bar_time DESC LIMIT 1"
                ),
                {"d": self.dep.id, "b": bar},
            ).first()
            day_start = shifted(conn, self.dep, day_start and tuple(day_start), bar)
        drawdown = 1.0 - equity / float(peak)
        loss = 1.0 - equity / day_start
        if risk.get("max_drawdown") and drawdown >= float(risk["max_drawdown"]):
            return f"drawdown {drawdown:.4%} reached the limit {float(risk['max_drawdown']):.4%}"
        if risk.get("daily_loss") and loss >= float(risk["daily_loss"]):
            return f"daily loss {loss:.4%} reached the limit {float(risk['daily_loss']):.4%}"
        return None

    def _decide(self, bar, symbol, sleeve, closes, stale, version, now) -> float | None:
        with self.engine.connect() as conn:
            done = conn.execute(
                sa.text(
                    "SELECT target, skipped FROM trading.decisions WHERE deployment_id = :d "
                    "AND symbol = :s AND bar_time = :b"
                ),
                {"d": self.dep.id, "s": symbol, "b": bar},
            ).first()
        if done is not None:  # decided before a restart: its orders were synced above
            return done.target
        skipped, waiting = None, None
        if stale:
            skipped = f"stale: bar closed {bar + self.step_len}, now {now:%Y-%m-%d %H:%M}"
        elif closes.get(f"{symbol}@") != bar:
            skipped = "no bar for this symbol"
        elif (waiting := open_order(self.engine, self.dep.id, symbol)) is not None:
            skipped = f"waiting: order {waiting} is still open at the venue"
        frame = None
        if skipped is None:
            versions = self.versions(symbol)
            if version is not None:
                versions[bar] = version
            for used in set(versions.values()) - set(self.models.models if self.models else ()):
                self.models.models[used] = load_verified(self.client, self.dep.model_name, used)
            frame = strategy_frame(
                self.engine,
                symbol,
                self.dep.interval,
                self.dep.history_start,
                bar,
                now,
                self.models,
                versions,
            )
            if self.models is not None and frame[self.models.features].iloc[-1].isna().any():
                skipped = "missing features"
        if skipped is not None:
            with self.engine.begin() as conn:
                self._decision(conn, symbol, bar, version, None, None, skipped)
                store.event(
                    conn,
                    self.dep.id,
                    "decision_waiting" if waiting else "decision_skipped",
                    symbol,
                    {"bar": bar, "reason": skipped} | ({"order": waiting} if waiting else {}),
                )
            return None
        strategy = with_costs(
            make_strategy(self.dep.strategy, model=self.models, **self.dep.params),
            self.costs[symbol],
        )
        prepared = strategy.prepare(frame)
        signal_ = np.asarray(strategy.signals(prepared), dtype="float64")[-1]
        cap = float(self.dep.risk.get("max_weight") or 1.0)
        want = float(np.nan_to_num(np.clip(signal_, -cap, cap), nan=0.0))
        prediction = None
        if self.models is not None and "prediction__scored" in prepared:
            prediction = float(prepared["prediction__scored"].iloc[-1])
        cash, shares, weight = sleeve
        price = float(closes[symbol])
        legs = plan_legs(shares, cash, weight, want, price, self.costs[symbol])
        legs = self._risk_filter(bar, symbol, legs, shares, price)
        intents = []
        with self.engine.begin() as conn:
            self._decision(conn, symbol, bar, version, prediction, want, None)
            for leg in legs:
                coid = client_order_id(self.dep.name, symbol, bar, leg.purpose)
                row = conn.execute(
                    sa.text(
                        "INSERT INTO trading.orders (deployment_id, client_order_id, symbol, "
                        "bar_time, side, quantity, intended_price, intended_time, purpose, "
                        "target, quote_quantity, model_version) VALUES (:d, :c, :s, :b, :side, "
                        ":q, :p, :t, :purpose, :target, :qq, :v) "
                        "ON CONFLICT (client_order_id) DO NOTHING RETURNING *"
                    ),
                    {
                        "d": self.dep.id,
                        "c": coid,
                        "s": symbol,
                        "b": bar,
                        "side": leg.side,
                        "q": leg.quantity,
                        "p": price,
                        "t": (bar + self.step_len).to_pydatetime(),
                        "purpose": leg.purpose,
                        "target": want,
                        "qq": leg.quote_quantity,
                        "v": version,
                    },
                ).first()
                if row is not None:
                    store.event(
                        conn,
                        self.dep.id,
                        "order_intended",
                        coid,
                        {
                            "side": leg.side,
                            "quantity": leg.quantity,
                            "purpose": leg.purpose,
                            "price": price,
                        },
                    )
                    intents.append(row)
        for row in intents:
            self._submit(row)
        return want

    def _decision(self, conn, symbol, bar, version, prediction, target, skipped) -> None:
        conn.execute(
            sa.text(
                "INSERT INTO trading.decisions (deployment_id, symbol, bar_time, model_version, "
                "prediction, target, skipped) VALUES (:d, :s, :b, :v, :p, :t, :k) "
                "ON CONFLICT DO NOTHING"
            ),
            {
                "d": self.dep.id,
                "s": symbol,
                "b": bar,
                "v": version,
                "p": prediction,
                "t": target,
                "k": skipped,
            },
        )

    def _risk_filter(self, bar, symbol, legs, shares, price) -> list[Leg]:
        """Entries and rebalances that would leave the position beyond ``max_position`` (units)
        or ``max_notional`` (value at the decision close) are not sent (audited, alerted)."""
        risk = self.dep.risk
        kept = []
        after = shares
        for leg in legs:
            signed = leg.quantity if leg.side == "buy" else -leg.quantity
            if leg.purpose in ("exit", "flatten"):
                after += signed
                kept.append(leg)
                continue
            position = abs(after + signed)
            broken = None
            if risk.get("max_position") and position > float(risk["max_position"]):
                broken = ("max_position", position, float(risk["max_position"]))
            elif risk.get("max_notional") and position * price > float(risk["max_notional"]):
                broken = ("max_notional", position * price, float(risk["max_notional"]))
            if broken is None:
                after += signed
                kept.append(leg)
                continue
            limit, value, threshold = broken
            with self.engine.begin() as conn:
                store.event(
                    conn,
                    self.dep.id,
                    "order_blocked",
                    symbol,
                    {
                        "bar": bar,
                        "limit": limit,
                        "value": value,
                        "threshold": threshold,
                        "leg": leg.purpose,
                    },
                )
            store.alert(
                self.engine,
                self.dep,
                "risk_limit",
                f"{self.dep.name}: {leg.purpose} on {symbol} at {bar} not sent: {limit} "
                f"{value:.6g} > {threshold:.6g}",
                severity="warning",
                action="raise the limit or lower the capital",
                value=value,
                threshold=threshold,
                symbol=symbol,
            )
        return kept

    def flatten(self, bar, sleeves, closes, *, kind: str, reason: str) -> None:
        """Close every position at the next open and stop (``kill_switch``) or record a
        requested stop (``stopped``); audited, and alerted for the kill switch."""
        intents = []
        with self.engine.begin() as conn:
            for symbol, (_, shares, _) in sleeves.items():
                if shares == 0:
                    continue
                coid = client_order_id(self.dep.name, symbol, bar, "flatten")
                row = conn.execute(
                    sa.text(
                        "INSERT INTO trading.orders (deployment_id, client_order_id, symbol, "
                        "bar_time, side, quantity, intended_price, intended_time, purpose, "
                        "target) VALUES (:d, :c, :s, :b, :side, :q, :p, :t, 'flatten', 0) "
                        "ON CONFLICT (client_order_id) DO NOTHING RETURNING *"
                    ),
                    {
                        "d": self.dep.id,
                        "c": coid,
                        "s": symbol,
                        "b": bar,
                        "side": "sell" if shares > 0 else "buy",
                        "q": abs(shares),
                        "p": float(closes.get(symbol) or 0.0),
                        "t": (bar + self.step_len).to_pydatetime(),
                    },
                ).first()
                if row is not None:
                    intents.append(row)
        state = "killed" if kind == "kill_switch" else "stopped"
        store.set_state(
            self.engine,
            self.dep,
            state,
            reason,
            kind,
            {"bar": bar, "flatten_orders": [r.client_order_id for r in intents]},
            stage="stopped",
        )
        for row in intents:
            self._submit(row)
        if kind == "kill_switch":
            store.alert(
                self.engine,
                self.dep,
                "kill_switch",
                f"{self.dep.name}: kill switch at {bar}: {reason}; positions flattened, "
                "deployment stopped",
                action="review the deployment; create a new one to trade again",
            )
