"""Vectorised backtest engine: target positions in, equity curve, trades and report out.

Execution model (never look-ahead): the position a strategy wants at bar t's close is traded at
bar t+1's open, at open x (1 ± half spread ± slippage), paying ``fee`` on the traded notional.
Positions are share-based like a broker account (buy weight x equity at the open, as far as the
cash goes, and hold the shares until the target changes; a new weight on the same side is
rebalanced to), which is also vectorbt's model (``targetpercent`` orders), so the two agree to
the last digits.
Stops (fractions of the entry price) are path-dependent and run in a Numba loop: a stop hit
inside a bar exits at the stop price (or the open, if the bar gapped through it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
import pandas as pd

from trendcast.errors import InputError, TrendcastError
from trendcast.strategy import Strategy

REASONS = ("signal", "stop_loss", "take_profit")


class LookAheadError(TrendcastError):
    """A strategy's past signals changed when later bars were added: it reads the future."""


@dataclass(frozen=True)
class Costs:
    fee: float = 0.001  # fraction of traded notional
    spread: float = 0.0  # full bid-ask spread as a fraction; half is paid on each trade
    slippage: float = 0.0  # fraction of price lost to market impact on each trade
    profile: str = "custom"  # the cost profile these numbers came from (trendcast.costs)

    @property
    def per_fill(self) -> float:
        """Fraction of notional lost on one fill: fee, half the spread, slippage."""
        return self.fee + self.spread / 2 + self.slippage

    @property
    def round_trip(self) -> float:
        """Fraction lost entering and leaving a position: what a trade must earn to break even."""
        return 2 * self.per_fill

    def as_dict(self) -> dict:
        return {
            "cost_profile": self.profile,
            "fee": self.fee,
            "spread": self.spread,
            "slippage": self.slippage,
            "round_trip_cost": self.round_trip,
        }

    def __post_init__(self) -> None:
        for name in ("fee", "spread", "slippage"):
            value = getattr(self, name)
            if not 0 <= value < 0.5:
                raise InputError(f"costs {name}={value}: must be in [0, 0.5)")


@dataclass
class BacktestResult:
    """Per-bar equity and position, plus the trade list."""

    open_time: np.ndarray
    equity: np.ndarray
    position: np.ndarray  # signed shares held at each bar's close
    exposure: np.ndarray  # signed weight targeted for each bar
    trades: pd.DataFrame = field(default_factory=pd.DataFrame)
    strategy: Strategy | None = None  # as run (round-trip cost filled in)
    costs: Costs | None = None
    inputs: dict = field(default_factory=dict)  # what the strategy's input checks recorded

    @property
    def equity_series(self) -> pd.Series:
        index = pd.DatetimeIndex(self.open_time).tz_localize("UTC")
        return pd.Series(self.equity, index=index, name="equity")


@numba.njit(cache=True)
def _record(trades, i, entry_bar, exit_bar, direction, entry_price, exit_price, ret, reason):
    trades[i, 0] = entry_bar
    trades[i, 1] = exit_bar
    trades[i, 2] = direction
    trades[i, 3] = entry_price
    trades[i, 4] = exit_price
    trades[i, 5] = ret
    trades[i, 6] = reason


@numba.njit(cache=True)
def _exit(trades, i, cash, shares, price, fee, entry_bar, bar, entry_price, reason):
    """Close ``shares`` at ``price``: returns the cash after fees and records the trade."""
    value = shares * price
    direction = np.sign(shares)
    trade_return = direction * (price / entry_price - 1.0) - 2 * fee
    _record(trades, i, entry_bar, bar, direction, entry_price, price, trade_return, reason)
    return cash + value - abs(value) * fee


NAN_TARGET = "target: NaN positions; use 0 for flat"


@numba.njit(cache=True)
def _max_trades(target):
    """An upper bound on the trades: every entry needs the wanted position to have changed
    (from flat at the start, after an exit on a signal, or after a stop), so there are no more
    trades than changes of ``target``. -1 when ``target`` holds a NaN."""
    count = 0
    last = 0.0
    for t in range(len(target)):
        x = target[t]
        if x != last:
            if x != x:
                return -1
            count += 1
            last = x
    return count


def _simulate(open_, high, low, close, target, fee, cost, capital, stop_loss, take_profit, flows):
    """One asset: (equity, shares held, exposure, trades). The outputs are allocated by NumPy,
    which asks the kernel for huge pages: on 10M bars, faulting in 240 MB page by page costs
    more than the loop itself."""
    n = len(close)
    equity, held, exposure = np.empty(n), np.empty(n), np.empty(n)
    bound = _max_trades(target)
    if bound < 0:
        raise ValueError(NAN_TARGET)
    # trades: entry bar, exit bar, direction, entry price, exit price, return, reason
    trades = np.empty((bound, 7))
    n_trades = _simulate_into(
        open_,
        high,
        low,
        close,
        target,
        fee,
        cost,
        capital,
        stop_loss,
        take_profit,
        flows,
        equity,
        held,
        exposure,
        trades,
    )
    return equity, held, exposure, trades[:n_trades]


@numba.njit(cache=True)
def _column_bounds(target):
    m = target.shape[1]
    bounds = np.empty(m, dtype=np.int64)
    for j in range(m):
        bounds[j] = _max_trades(target[:, j])
        if bounds[j] < 0:
            raise ValueError(NAN_TARGET)
    return bounds


def _simulate_batch(open_, high, low, close, target, fee, cost, capital, stop_loss, take_profit):
    """Each column of the (bars, assets) column-major inputs through ``_simulate_into``, one
    after the other: the single-asset loop itself, so a batch cannot drift from ``run``."""
    n, m = close.shape
    # column-major like the inputs: each asset's curve is contiguous
    equity, held, exposure = (np.empty((m, n)).T for _ in range(3))
    bounds = _column_bounds(target)
    trades = np.empty((int(bounds.sum()), 7))
    counts = _simulate_columns(
        open_,
        high,
        low,
        close,
        target,
        fee,
        cost,
        capital,
        stop_loss,
        take_profit,
        equity,
        held,
        exposure,
        trades,
        bounds,
    )
    return equity, held, exposure, trades, bounds, counts


@numba.njit(cache=True)
def _simulate_columns(
    open_,
    high,
    low,
    close,
    target,
    fee,
    cost,
    capital,
    stop_loss,
    take_profit,
    equity,
    held,
    exposure,
    trades,
    bounds,
):
    m = close.shape[1]
    flows = np.empty(0)
    counts = np.empty(m, dtype=np.int64)
    start = 0
    for j in range(m):
        counts[j] = _simulate_into(
            open_[:, j],
            high[:, j],
            low[:, j],
            close[:, j],
            target[:, j],
            fee,
            cost,
            capital,
            stop_loss,
            take_profit,
            flows,
            equity[:, j],
            held[:, j],
            exposure[:, j],
            trades[start : start + bounds[j]],
        )
        start += bounds[j]
    return counts


@numba.njit(cache=True)
def _simulate_into(
    open_,
    high,
    low,
    close,
    target,
    fee,
    cost,
    capital,
    stop_loss,
    take_profit,
    flows,
    equity,
    held,
    exposure,
    trades,
):
    """The execution loop for one asset, writing into the given arrays; returns the number of
    trades recorded."""
    n = len(close)
    n_trades = 0
    cash = capital
    shares = 0.0
    direction = 0.0
    entry_price = 0.0
    entry_bar = -1
    stopped = False  # after a stop, wait for the signal to change before re-entering
    last_target = 0.0
    weight = 0.0  # the target weight the held shares were sized for
    for t in range(n):
        want = target[t - 1] if t > 0 else 0.0
        if want != last_target:
            stopped = False
        last_target = want
        if stopped:
            want = 0.0
        exposure[t] = want
        # 1. trade at the open when the wanted position differs from the one held
        if shares != 0.0 and np.sign(want) != direction:
            price = open_[t] * (1.0 - cost * direction)
            cash = _exit(trades, n_trades, cash, shares, price, fee, entry_bar, t, entry_price, 0)
            n_trades += 1
            shares = 0.0
            direction = 0.0
        if shares == 0.0 and want != 0.0:
            direction = np.sign(want)
            price = open_[t] * (1.0 + cost * direction)
            affordable = cash / (price * (1.0 + fee))
            if direction > 0:  # weight x equity at the open, as far as the cash goes
                shares = min(want * cash / open_[t], affordable)
            else:
                shares = -abs(want) * affordable
            cash -= shares * price + abs(shares * price) * fee
            entry_price = price
            entry_bar = t
            weight = want
        elif shares != 0.0 and want != weight:
            # same side, new weight: rebalance to weight x equity at the open
            delta = want * (cash + shares * open_[t]) / open_[t] - shares
            side = np.sign(delta)
            price = open_[t] * (1.0 + cost * side)
            if side > 0 and direction > 0:
                delta = min(delta, cash / (price * (1.0 + fee)))
            cash -= delta * price + abs(delta * price) * fee
            shares += delta
            weight = want
        # 2. stops inside the bar (stop first when both levels are touched)
        if shares != 0.0 and (stop_loss > 0.0 or take_profit > 0.0):
            exit_price = 0.0
            reason = 0
            if direction > 0:
                if stop_loss > 0.0 and low[t] <= entry_price * (1.0 - stop_loss):
                    exit_price = min(open_[t], entry_price * (1.0 - stop_loss))
                    reason = 1
                elif take_profit > 0.0 and high[t] >= entry_price * (1.0 + take_profit):
                    exit_price = max(open_[t], entry_price * (1.0 + take_profit))
                    reason = 2
            else:
                if stop_loss > 0.0 and high[t] >= entry_price * (1.0 + stop_loss):
                    exit_price = max(open_[t], entry_price * (1.0 + stop_loss))
                    reason = 1
                elif take_profit > 0.0 and low[t] <= entry_price * (1.0 - take_profit):
                    exit_price = min(open_[t], entry_price * (1.0 - take_profit))
                    reason = 2
            if reason > 0:
                price = exit_price * (1.0 - cost * direction)
                cash = _exit(
                    trades, n_trades, cash, shares, price, fee, entry_bar, t, entry_price, reason
                )
                n_trades += 1
                shares = 0.0
                direction = 0.0
                stopped = True
        # 3. money moved in (> 0) or out (< 0) at the close, before the next decision sizes
        if len(flows):
            cash += flows[t]
        held[t] = shares
        equity[t] = cash + shares * close[t]
    return n_trades


#: Every one of the first DENSE_DECISIONS decisions is recomputed from its own prefix.
DENSE_DECISIONS = 1024
#: Beyond them, the prefixes ending at these fractions of the series are recomputed too.
SPREAD_CUTS = (0.25, 0.5, 0.75)


def causal_cuts(n: int, dense: int = DENSE_DECISIONS) -> list[int]:
    """Prefix lengths the guard recomputes: every one up to ``dense`` bars (so each of those
    decisions is checked against the signal computed from the bars up to it alone), then the
    quarter points of the series."""
    cuts = set(range(1, min(n, dense + 1)))
    cuts |= {int(n * f) for f in SPREAD_CUTS if dense < int(n * f) < n}
    return sorted(cuts)


def check_causal(
    strategy: Strategy, frame: pd.DataFrame, dense: int = DENSE_DECISIONS
) -> np.ndarray:
    """The strategy's signals, verified not to change when later bars are removed: each of the
    first ``dense`` decisions is recomputed from the bars up to it alone (the strategy is
    never handed the future for them), the rest at the quarter points. A signal that depends
    on the future fails here instead of flattering a backtest.

    Cost: about ``dense``² / 2 bars of strategy work (fixed) plus 1.5 times the full series."""
    full = np.asarray(strategy.signals(frame), dtype="float64")
    if len(full) != len(frame):
        raise InputError(f"{strategy.name}: {len(full)} signals for {len(frame)} bars")
    for cut in causal_cuts(len(frame), dense):
        prefix = np.asarray(strategy.signals(frame.iloc[:cut]), dtype="float64")
        if len(prefix) != cut:
            raise InputError(f"{strategy.name}: {len(prefix)} signals for {cut} bars")
        same = (prefix == full[:cut]) | (np.isnan(prefix) & np.isnan(full[:cut]))
        if not same.all():
            first = int(np.flatnonzero(~same)[0])
            raise LookAheadError(
                f"{strategy.name}: the signal at bar {first} "
                f"({frame['open_time'].iloc[first]}) changes when bars after {cut} are removed: "
                "it reads the future"
            )
    return full


#: Rows ``prepare_row_wise`` re-computes, shuffled, to prove ``prepare`` is row-wise.
ROW_WISE_SAMPLE = 4096


def prepare_row_wise(strategy: Strategy, frame: pd.DataFrame) -> pd.DataFrame:
    """``strategy.prepare(frame)``, proven row-wise: the same output for a random sample of the
    rows handed over alone and shuffled (all of them when there are few). ``prepare`` runs once
    on the whole frame, before the look-ahead guard sees any prefix, so a column that mixed rows
    could carry the future past the guard; one that mixes rows is refused here."""
    prepared = strategy.prepare(frame)
    if prepared is frame:
        return frame
    if len(prepared) != len(frame):
        raise InputError(
            f"{strategy.name}: prepare() returned {len(prepared)} rows for {len(frame)}"
        )
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(frame))[:ROW_WISE_SAMPLE]
    alone = strategy.prepare(frame.iloc[rows]).reset_index(drop=True)
    whole = prepared.iloc[rows].reset_index(drop=True)
    for column in prepared.columns:
        a = whole[column].to_numpy()
        b = alone[column].to_numpy() if column in alone else None
        if b is None or not _same(a, b):
            raise InputError(
                f"{strategy.name}: the prepared column {column!r} of a row depends on other "
                "rows; prepare() must work row by row (e.g. a model scoring point-in-time "
                "features)"
            )
    return prepared


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype.kind in "fc" and b.dtype.kind in "fc":
        return bool(np.allclose(a, b, rtol=1e-6, atol=1e-12, equal_nan=True))
    return bool(np.array_equal(a, b))


def run(
    frame: pd.DataFrame,
    strategy: Strategy,
    costs: Costs | None = None,
    *,
    capital: float = 10_000.0,
    max_position: float = 1.0,
    trade_from: int = 0,
    flows: np.ndarray | None = None,
) -> BacktestResult:
    """Backtest ``strategy`` on one symbol's bars (open_time, open, high, low, close, ...).
    ``trade_from``: the account starts at that row; earlier rows are history the strategy sees
    (warm-up), as a deployment that started there saw them. ``flows``: cash deposited (> 0) or
    withdrawn (< 0) at each row's close (a deployment's capital transfers), aligned to ``frame``."""
    costs = costs or Costs()
    strategy = with_costs(strategy, costs)
    if capital <= 0:
        raise InputError(f"capital {capital}: must be > 0")
    if not 0 < max_position <= 1:
        raise InputError(f"max_position {max_position}: must be in (0, 1] (no leverage)")
    frame = frame.reset_index(drop=True)
    inputs = strategy.check_inputs(frame)
    frame = prepare_row_wise(strategy, frame)
    target = np.clip(check_causal(strategy, frame), -max_position, max_position)
    target = np.nan_to_num(target, nan=0.0)
    if not 0 <= trade_from < len(frame):
        raise InputError(f"trade_from {trade_from}: must be a row of the {len(frame)} bars")
    if flows is not None:
        flows = np.asarray(flows, dtype="float64")
        if len(flows) != len(frame):
            raise InputError(f"flows: {len(flows)} values for {len(frame)} bars")
    if trade_from:
        frame, target = frame.iloc[trade_from:].reset_index(drop=True), target[trade_from:]
        flows = None if flows is None else flows[trade_from:]
    result = simulate(
        frame,
        target,
        costs,
        capital=capital,
        stop_loss=float(strategy.params.get("stop_loss") or 0.0),
        take_profit=float(strategy.params.get("take_profit") or 0.0),
        flows=flows,
    )
    result.strategy, result.inputs = strategy, inputs
    return result


TRADE_COLUMNS = ["entry", "exit", "direction", "entry_price", "exit_price", "return", "reason"]


def _check_account(capital: float, stop_loss: float, take_profit: float) -> None:
    if capital <= 0:
        raise InputError(f"capital {capital}: must be > 0")
    if not 0 <= stop_loss < 1:
        raise InputError(f"stop_loss {stop_loss}: must be a fraction of the entry price in [0, 1)")
    if not take_profit >= 0:
        raise InputError(f"take_profit {take_profit}: must be a fraction >= 0 of the entry price")


def simulate(
    frame: pd.DataFrame,
    target: np.ndarray,
    costs: Costs | None = None,
    *,
    capital: float = 10_000.0,
    stop_loss: float = 0.0,
    take_profit: float = 0.0,
    flows: np.ndarray | None = None,
) -> BacktestResult:
    """The engine alone: positions already decided (``target[t]`` wanted from bar t+1's open)
    traded on ``frame``'s bars. ``run`` calls it after the look-ahead guard has proven the
    strategy's positions causal; called directly, the caller vouches for ``target``."""
    costs = costs or Costs()
    _check_account(capital, stop_loss, take_profit)
    frame = frame.reset_index(drop=True)
    target = np.ascontiguousarray(target, dtype="float64")
    if len(target) != len(frame):
        raise InputError(f"target: {len(target)} positions for {len(frame)} bars")
    if flows is None:
        flows = np.empty(0)  # the loop skips an empty one
    else:
        flows = np.ascontiguousarray(flows, dtype="float64")
        if len(flows) != len(frame):
            raise InputError(f"flows: {len(flows)} values for {len(frame)} bars")
    columns = [frame[c].to_numpy(dtype="float64") for c in ("open", "high", "low", "close")]
    try:
        equity, held, exposure, raw = _simulate(
            *columns,
            target,
            costs.fee,
            costs.spread / 2 + costs.slippage,
            capital,
            stop_loss,
            take_profit,
            flows,
        )
    except ValueError as error:
        raise InputError(str(error)) from None
    # naive UTC datetime64: a tz-aware column would become 10M Timestamp objects
    times = pd.DatetimeIndex(frame["open_time"]).tz_convert("UTC").tz_localize(None).to_numpy()
    return BacktestResult(times, equity, held, exposure, _trade_frame(raw, times), None, costs, {})


def _trade_frame(raw: np.ndarray, times: np.ndarray | None = None) -> pd.DataFrame:
    """The loop's trade rows as a DataFrame: reasons named, entry and exit times when known.
    Built column by column in one call (inserting columns one at a time costs more than the
    loop on a short series)."""
    if not len(raw):
        return pd.DataFrame(raw, columns=TRADE_COLUMNS)
    columns = {name: raw[:, i] for i, name in enumerate(TRADE_COLUMNS)}
    columns["reason"] = np.asarray(REASONS)[raw[:, 6].astype(int)]
    if times is not None:
        columns["entry_time"] = pd.to_datetime(times[raw[:, 0].astype(int)], utc=True)
        columns["exit_time"] = pd.to_datetime(times[raw[:, 1].astype(int)], utc=True)
    return pd.DataFrame(columns)


@dataclass
class BatchResult:
    """Many assets' backtests: (bars, assets) arrays, column j being asset j's run."""

    equity: np.ndarray
    position: np.ndarray  # signed shares held at each bar's close
    exposure: np.ndarray  # signed weight targeted for each bar
    trades: pd.DataFrame  # TRADE_COLUMNS plus ``asset`` (the column index)


def simulate_batch(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    target: np.ndarray,
    costs: Costs | None = None,
    *,
    capital: float = 10_000.0,
    stop_loss: float = 0.0,
    take_profit: float = 0.0,
) -> BatchResult:
    """The engine on many assets in one call: (bars, assets) prices and decided positions,
    each asset its own account of ``capital``, every column exactly what ``simulate`` gives
    for it alone (the same compiled loop). Column-major inputs (a wide DataFrame's
    ``to_numpy()``) are used without a copy."""
    costs = costs or Costs()
    _check_account(capital, stop_loss, take_profit)
    arrays = {}
    for name, values in (
        ("open", open_),
        ("high", high),
        ("low", low),
        ("close", close),
        ("target", target),
    ):
        values = np.asfortranarray(values, dtype="float64")
        if values.ndim != 2:
            raise InputError(f"{name}: must be 2-D (bars, assets), got {values.ndim}-D")
        if values.shape != np.shape(close):
            raise InputError(f"{name}: shape {values.shape}, close has {np.shape(close)}")
        arrays[name] = values
    if 0 in arrays["close"].shape:
        raise InputError(f"close: shape {arrays['close'].shape}, need at least one bar and asset")
    try:
        equity, held, exposure, raw, bounds, counts = _simulate_batch(
            *arrays.values(),
            costs.fee,
            costs.spread / 2 + costs.slippage,
            capital,
            stop_loss,
            take_profit,
        )
    except ValueError as error:
        raise InputError(str(error)) from None
    # asset j's trades sit at the start of its slot of ``bounds[j]`` rows: keep those
    slot = np.cumsum(bounds) - bounds
    done = np.cumsum(counts) - counts
    rows = np.arange(counts.sum()) + np.repeat(slot - done, counts)
    trades = _trade_frame(raw[rows])
    trades.insert(0, "asset", np.repeat(np.arange(len(counts)), counts))
    return BatchResult(equity, held, exposure, trades)


def with_costs(strategy: Strategy, costs: Costs) -> Strategy:
    """The strategy told the round-trip cost when it asks for it (``round_trip_cost=None``)."""
    if "round_trip_cost" in strategy.params and strategy.params["round_trip_cost"] is None:
        return strategy.set_params(round_trip_cost=costs.round_trip)
    return strategy
