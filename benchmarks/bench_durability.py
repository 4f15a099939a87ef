"""The cost of durable commits: history loads and ingestion-sized commits with
``synchronous_commit`` on (what Trendcast runs) against the same work with it off.

Fair baseline: the same code, data and server in the same run; only the setting differs
(``ALTER DATABASE … SET synchronous_commit = off`` on a twin database). Two workloads:

- a history load of N one-minute bars (one large transaction: one WAL flush at commit);
- ingestion-sized commits: K transactions of 60 bars each through ``write_bars``, as the
  ingestion commits page by page (one flush per commit is where durability costs most).

Each is timed three times per setting, alternating, and the median reported. Durability is
what the kill -9 test in ``tests/test_durability.py`` checks; this measures what it costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import sqlalchemy as sa

from benchmarks._harness import banner, scratch_database
from trendcast.bar_store import write_bars
from trendcast.bars import validate_bars
from trendcast.db import driver_cursor
from trendcast.history import load_frame
from trendcast.schema import series_key
from trendcast.synth import synth_bars


def reset(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("TRUNCATE market.bars, market.bar_changes, market.ingestion_runs CASCADE")
        )


def history_load(engine: sa.Engine, bars) -> float:
    reset(engine)
    began = time.perf_counter()
    load_frame(engine, bars, symbol="SYN", interval="1m", source="bench", origin="bench")
    return time.perf_counter() - began


def small_commits(engine: sa.Engine, pages: list) -> float:
    reset(engine)
    key = series_key("SYN", "1m")
    began = time.perf_counter()
    for page in pages:
        with driver_cursor(engine) as cur:
            write_bars(cur, key, page, "bench")
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=500_000)
    parser.add_argument("--commits", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    banner("Durable commits: synchronous_commit on vs off")
    bars = synth_bars(args.bars, interval="1m", seed=3)
    small = validate_bars(synth_bars(args.commits * 60, interval="1m", seed=4), "1m").good
    pages = [small.iloc[i : i + 60] for i in range(0, len(small), 60)]
    with scratch_database() as durable_url, scratch_database() as fast_url:
        durable, fast = sa.create_engine(durable_url), sa.create_engine(fast_url)
        with fast.connect() as conn:
            conn.execute(
                sa.text(f'ALTER DATABASE "{fast_url.database}" SET synchronous_commit = off')
            )
            conn.commit()
        fast.dispose()
        fast = sa.create_engine(fast_url)
        with fast.connect() as conn:
            assert conn.execute(sa.text("SHOW synchronous_commit")).scalar_one() == "off"
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeats):
            for setting, engine in (("on", durable), ("off", fast)):
                times.setdefault(("load", setting), []).append(history_load(engine, bars))
                times.setdefault(("commits", setting), []).append(small_commits(engine, pages))
        durable.dispose()
        fast.dispose()
    median = {k: statistics.median(v) for k, v in times.items()}
    load_on, load_off = median[("load", "on")], median[("load", "off")]
    commits_on, commits_off = median[("commits", "on")], median[("commits", "off")]
    print(f"   history load, {args.bars:,} bars, one transaction (median of {args.repeats}):")
    print(f"     synchronous_commit on : {load_on:7.2f} s  ({args.bars / load_on:,.0f} bars/s)")
    print(f"     synchronous_commit off: {load_off:7.2f} s  ({args.bars / load_off:,.0f} bars/s)")
    print(f"     cost of durability: {load_on / load_off:.3f}x")
    print(f"   {args.commits} commits of 60 bars each (ingestion-sized pages):")
    print(
        f"     synchronous_commit on : {commits_on:7.2f} s  "
        f"({commits_on / args.commits * 1000:.2f} ms per commit)"
    )
    print(
        f"     synchronous_commit off: {commits_off:7.2f} s  "
        f"({commits_off / args.commits * 1000:.2f} ms per commit)"
    )
    print(f"     cost of durability: {commits_on / commits_off:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
