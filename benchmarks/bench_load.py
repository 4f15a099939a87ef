"""History bulk load: `load-history` against row-by-row INSERT, and a full re-load.

2M synthetic one-minute bars (Parquet) are loaded into a fresh database through the same code
path as `trendcast load-history`; the baseline inserts a 50k-row slice one row at a time (one
transaction). Prints bars/s for each, their ratio, the re-load time, and for reference the
staging-table + INSERT … ON CONFLICT design the loader replaced.
Targets (SPEC §4): ≥ 300k bars/s; ≥ 30x row-by-row; re-load inserts nothing.
"""

from __future__ import annotations

import argparse
import io
import sys

import sqlalchemy as sa

from benchmarks._harness import DATA, banner, scratch_database, timed
from trendcast.bar_store import _COPY_HEADER, _COPY_TRAILER, copy_payload
from trendcast.history import load_history
from trendcast.schema import series_key
from trendcast.synth import synth_bars, write_bars


def row_by_row(engine: sa.Engine, bars, symbol: str) -> None:
    raw = engine.raw_connection()
    try:
        with raw.driver_connection.cursor() as cur:
            for row in bars.itertuples(index=False):
                cur.execute(
                    "INSERT INTO market.bars (symbol, interval, open_time, open, high, low, "
                    "close, volume, trades, source) VALUES (%s, '1m', %s, %s, %s, %s, %s, %s, "
                    "%s, 'synthetic') ON CONFLICT DO NOTHING",
                    (
                        symbol,
                        row.open_time.to_pydatetime(),
                        row.open,
                        row.high,
                        row.low,
                        row.close,
                        row.volume,
                        int(row.trades),
                    ),
                )
        raw.driver_connection.commit()
    finally:
        raw.close()


def staging_on_conflict(engine: sa.Engine, bars, symbol: str) -> None:
    """The design the issue sketched: COPY to a temp table, INSERT … ON CONFLICT DO NOTHING."""
    key = series_key(symbol, "1m")
    raw = engine.raw_connection()
    try:
        with raw.driver_connection.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE stage (LIKE market.bars INCLUDING DEFAULTS) ON COMMIT DROP"
            )
            payload = _COPY_HEADER + copy_payload(bars, key, "synthetic") + _COPY_TRAILER
            cur.copy_expert(
                "COPY stage (symbol, interval, open_time, open, high, low, close, volume, "
                "trades, source) FROM STDIN WITH (FORMAT binary)",
                io.BytesIO(payload),
            )
            cur.execute("INSERT INTO market.bars SELECT * FROM stage ON CONFLICT DO NOTHING")
        raw.driver_connection.commit()
    finally:
        raw.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=2_000_000)
    parser.add_argument("--slice", type=int, default=50_000)
    parser.add_argument("--skip-reference", action="store_true", help="skip ON CONFLICT path")
    args = parser.parse_args()

    banner(f"bench_load: {args.bars:,} synthetic 1m bars")
    path = DATA / f"synth_1m_{args.bars}.parquet"
    if not path.exists():
        write_bars(synth_bars(args.bars, interval="1m", seed=11), path)
    bars = synth_bars(args.slice, interval="1m", seed=11)
    t: dict[str, float] = {}
    with scratch_database() as url:
        engine = sa.create_engine(url)
        with timed(t, "load"):
            first = load_history(engine, path, symbol="SYNLOAD", interval="1m", source="bench")
        with timed(t, "reload"):
            again = load_history(engine, path, symbol="SYNLOAD", interval="1m", source="bench")
        with timed(t, "row"):
            row_by_row(engine, bars, "SYNROW")
        if not args.skip_reference:
            full = synth_bars(args.bars, interval="1m", seed=11)
            with timed(t, "staging"):
                staging_on_conflict(engine, full, "SYNSTAGE")
        engine.dispose()

    load_rate = first.inserted / t["load"]
    row_rate = args.slice / t["row"]
    ratio = load_rate / row_rate
    print(
        f"   load-history        {first.inserted:>10,} bars  {t['load']:7.2f} s  "
        f"{load_rate:>10,.0f} bars/s"
    )
    print(
        f"   row-by-row INSERT   {args.slice:>10,} bars  {t['row']:7.2f} s  "
        f"{row_rate:>10,.0f} bars/s  (baseline)"
    )
    print(
        f"   re-load             {again.read:>10,} bars  {t['reload']:7.2f} s  "
        f"inserted {again.inserted}"
    )
    if "staging" in t:
        print(
            f"   reference: staging + ON CONFLICT  {t['staging']:7.2f} s  "
            f"{args.bars / t['staging']:>10,.0f} bars/s"
        )
    print(f"   ratio load-history / row-by-row: {ratio:.1f}x")
    checks = {
        ">= 300k bars/s": load_rate >= 300_000,
        ">= 30x row-by-row": ratio >= 30,
        "re-load inserts nothing": again.inserted == 0 and first.inserted == args.bars,
    }
    for name, ok in checks.items():
        print(f"   target {name:<26} {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
