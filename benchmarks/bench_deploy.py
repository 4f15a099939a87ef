"""Deployment runner: bar stored -> order acknowledged, p50 / p99 over 200 bars, and 50
deployments stepping on the same bar; paper broker, sma-crossover, fresh database.

Each bar is stored (as ingestion would), then the clock starts and ``run_pending`` runs one
step: venue sync, balance snapshot, risk limits, the strategy on the history up to the bar, the
decision and order intents committed, the orders submitted and acknowledged by the paper venue.

Baseline, measured in the same run on the same bars: the bare decision (read the history,
``strategy.signals`` on it, take the last value) with no audit, no venue and no risk checks; the
ratio says what the audit trail and the venue round trip cost on top of deciding at all.
Target (issue 19): p99 <= 1 s.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import sqlalchemy as sa

from benchmarks._harness import scratch_database
from benchmarks._results import Recorder
from trendcast.catalog import read_bars
from trendcast.config import get_settings
from trendcast.history import load_frame
from trendcast.strategy import make_strategy
from trendcast.synth import synth_bars
from trendcast.trading.lifecycle import create, run_pending

HISTORY = 600
STEPS = 200
FLEET = 50
PARAMS = {"fast": 3, "slow": 8}  # short windows: many crossings, many orders


def store(engine, bars: pd.DataFrame) -> None:
    load_frame(engine, bars, symbol="SYN", interval="1h", source="bench", origin="bench")


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def main() -> None:
    rec = Recorder(
        "deploy",
        "Deployment runner: bar stored to order acknowledged (paper broker)",
        script=__file__,
        description=(
            "Each bar is stored (as ingestion would), then `run_pending` runs one step of an "
            "sma-crossover deployment on the paper broker: venue sync, balance snapshot, risk "
            "limits, the strategy on the history up to the bar, the decision and order intents "
            "committed, the orders submitted and acknowledged. Baseline on the same bars in the "
            "same run: the bare decision (read the history, `strategy.signals`, take the last "
            "value) with no audit, venue or risk checks. Then a fleet of deployments stepping on "
            "one bar in one process."
        ),
        params={"history_bars": HISTORY, "steps": STEPS, "fleet": FLEET},
    )
    bars = synth_bars(HISTORY + STEPS + 2, interval="1h", seed=11)
    with scratch_database() as db:
        os.environ["TRENDCAST_DATABASE_URL"] = db.render_as_string(hide_password=False)
        get_settings.cache_clear()
        engine = sa.create_engine(db)
        store(engine, bars.iloc[:HISTORY])
        start = pd.Timestamp(bars["open_time"].iloc[HISTORY - 1])
        dep = create(engine, name="bench", strategy="sma-crossover", params=PARAMS,
                     model=None, symbols=["SYN"], interval="1h", broker="paper",
                     capital=10_000.0, risk={}, start=start, warmup=300)  # fmt: skip
        strategy = make_strategy("sma-crossover", **PARAMS)
        step_s, acked_s, bare_s = [], [], []
        for i in range(HISTORY, HISTORY + STEPS):
            store(engine, bars.iloc[i : i + 1])
            with engine.connect() as conn:
                before = conn.execute(sa.text("SELECT count(*) FROM trading.orders")).scalar()
            began = time.perf_counter()
            run_pending(engine, dep.name, bars=1)
            took = time.perf_counter() - began
            with engine.connect() as conn:
                after = conn.execute(
                    sa.text("SELECT count(*) FROM trading.orders WHERE status <> 'intended'")
                ).scalar()
            step_s.append(took)
            if after > before:
                acked_s.append(took)
            began = time.perf_counter()  # the baseline: the bare decision on the same bars
            frame = read_bars(engine, "SYN", "1h", str(dep.history_start),
                              str(bars["open_time"].iloc[i]))  # fmt: skip
            float(strategy.signals(frame)[-1])
            bare_s.append(time.perf_counter() - began)
        for q in (50, 99):
            rec.figure(f"step_p{q}", ms(step_s, q), "ms", label=f"every step ({STEPS} bars), p{q}")
            rec.figure(
                f"acked_p{q}",
                ms(acked_s, q),
                "ms",
                label=f"steps that sent orders ({len(acked_s)} bars), p{q}",
            )
            rec.figure(
                f"bare_p{q}",
                ms(bare_s, q),
                "ms",
                role="baseline",
                label=f"bare decision on the same bars, p{q}",
            )
        rec.figure(
            "ratio_p50", ms(step_s, 50) / ms(bare_s, 50), "x", label="step / bare decision at p50"
        )
        rec.target(
            "acked_p99", "bar stored to order acknowledged, p99", ms(acked_s, 99), "<=", 1000, " ms"
        )

        fleet = [
            create(
                engine,
                name=f"fleet-{k:02d}",
                strategy="sma-crossover",
                params=PARAMS,
                model=None,
                symbols=["SYN"],
                interval="1h",
                broker="paper",
                capital=10_000.0,
                risk={},
                start=pd.Timestamp(bars["open_time"].iloc[HISTORY + STEPS - 1]),
                warmup=300,
            ).name
            for k in range(FLEET)
        ]
        for d in fleet:  # warm: each steps its start bar
            run_pending(engine, d, bars=1)
        store(engine, bars.iloc[HISTORY + STEPS : HISTORY + STEPS + 1])
        each = []
        began = time.perf_counter()
        for d in fleet:
            t0 = time.perf_counter()
            run_pending(engine, d, bars=1)
            each.append(time.perf_counter() - t0)
        total = time.perf_counter() - began
        rec.figure(
            "fleet_total_s",
            total,
            "s",
            label=f"{FLEET} deployments stepping on one bar, one process, in all",
        )
        rec.figure("fleet_each_p99", ms(each, 99), "ms", label="fleet: each deployment, p99")
    rec.write()


if __name__ == "__main__":
    main()
