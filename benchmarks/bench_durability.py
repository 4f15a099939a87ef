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

from benchmarks._harness import scratch_database
from benchmarks._results import Recorder
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
    rec = Recorder(
        "durability",
        "Durable commits: synchronous_commit on against off",
        script=__file__,
        description=(
            "What `synchronous_commit = on` costs (Trendcast keeps it on, so a load that reported "
            "success survives a crash right after). Baseline: the same code and data on a twin "
            "database with `synchronous_commit = off`, same server, same run, alternating; the "
            "median of the repeats. Workloads: one history load in one transaction; many "
            "ingestion-sized commits of 60 bars through `write_bars`."
        ),
        params={"bars": args.bars, "commits": args.commits, "repeats": args.repeats},
    )
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
        with rec.phase(f"{args.repeats} alternating repeats of both workloads, on and off"):
            for _ in range(args.repeats):
                for setting, engine in (("on", durable), ("off", fast)):
                    times.setdefault(("load", setting), []).append(history_load(engine, bars))
                    times.setdefault(("commits", setting), []).append(small_commits(engine, pages))
        durable.dispose()
        fast.dispose()
    median = {k: statistics.median(v) for k, v in times.items()}
    load_on, load_off = median[("load", "on")], median[("load", "off")]
    commits_on, commits_off = median[("commits", "on")], median[("commits", "off")]
    label = f"history load, {args.bars:,} bars, one transaction"
    rec.figure("load_on_s", load_on, "s", label=f"{label}, synchronous_commit on")
    rec.figure("load_off_s", load_off, "s", label=f"{label}, off", role="baseline")
    rec.figure("load_on_rate", args.bars / load_on, "bars/s", label=f"{label}, on, rate")
    rec.figure("load_cost", load_on / load_off, "x", label="cost of durability, history load")
    label = f"{args.commits} commits of 60 bars"
    rec.figure("commits_on_ms", commits_on / args.commits * 1000, "ms/commit", label=f"{label}, on")
    rec.figure(
        "commits_off_ms",
        commits_off / args.commits * 1000,
        "ms/commit",
        label=f"{label}, off",
        role="baseline",
    )
    rec.figure("commits_cost", commits_on / commits_off, "x", label="cost of durability, commits")
    rec.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
