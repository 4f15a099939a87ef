"""``market.ingestion_runs``: one row per run of a loader, opened first so that a run that dies
still leaves a trace, with counters added as each batch commits."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from psycopg2.extras import Json
from sqlalchemy.engine import Engine

from trendcast.schema import SeriesKey


def open_run(engine: Engine, kind: str, source: str, key: SeriesKey, details: dict) -> str:
    run_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO market.ingestion_runs (run_id, kind, source, symbol, interval, details) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            (run_id, kind, source, key.symbol, key.interval, Json(details)),
        )
    return run_id


def add_counts(cur, run_id: str, **counts: int) -> None:
    """Add to a run's counters inside the caller's transaction (so counts match what committed)."""
    sets = ", ".join(f"{name} = {name} + %s" for name in counts)
    cur.execute(
        f"UPDATE market.ingestion_runs SET {sets} WHERE run_id = %s", (*counts.values(), run_id)
    )


def close_run(
    engine: Engine,
    run_id: str,
    status: str,
    *,
    gaps_found: int = 0,
    gaps_filled: int = 0,
    error: str | None = None,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE market.ingestion_runs SET finished_at = clock_timestamp(), "
                "status = :status, gaps_found = :found, gaps_filled = :filled, error = :error "
                "WHERE run_id = :run_id"
            ),
            {
                "status": status,
                "found": gaps_found,
                "filled": gaps_filled,
                "error": error,
                "run_id": run_id,
            },
        )


def abandon_stale(
    engine: Engine, key: SeriesKey, budget_s: float, margin_s: float, current: str
) -> int:
    """Mark the series' runs still ``running`` past their budget plus a margin as
    ``abandoned`` (their process was killed: a live run always closes its row); returns how many.
    """
    with engine.begin() as conn:
        return conn.execute(
            sa.text(
                "UPDATE market.ingestion_runs SET status = 'abandoned', "
                "finished_at = clock_timestamp(), error = coalesce(error, '') || "
                "'abandoned: still running ' || CAST(:limit AS text) || ' s after it started "
                "(budget + margin); its process died' "
                "WHERE symbol = :s AND interval = :i AND status = 'running' "
                "AND run_id <> CAST(:current AS uuid) "
                "AND started_at < clock_timestamp() - make_interval(secs => :limit)"
            ),
            {
                "s": key.symbol,
                "i": key.interval,
                "current": current,
                "limit": float(budget_s + margin_s),
            },
        ).rowcount


def ingestion_note(url) -> str:
    """One line for ``trendcast status``: abandoned ingestion runs, per series (empty when
    there are none or the table is not there yet)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT symbol, interval, count(*) AS n FROM market.ingestion_runs "
                    "WHERE status = 'abandoned' GROUP BY 1, 2 ORDER BY 1, 2"
                )
            ).all()
    except sa.exc.DBAPIError:
        return ""
    finally:
        engine.dispose()
    if not rows:
        return ""
    listed = ", ".join(f"{r.symbol} {r.interval} x{r.n}" for r in rows)
    return f"ingestion: {sum(r.n for r in rows)} abandoned run(s) ({listed})"
