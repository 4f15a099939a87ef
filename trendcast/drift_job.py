"""The drift job as `trendcast drift run` runs it: daily evaluation with the settings'
thresholds and webhook, a model-info cache across days, and backfills of the served aliases."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

from trendcast import drift, governance
from trendcast.config import Settings
from trendcast.errors import InputError, TrendcastError

#: Longest backfill accepted in one call, in days.
MAX_BACKFILL_DAYS = 400


class DriftJob:
    """One monitoring job: an engine, the settings, and an MLflow client made on first need."""

    def __init__(self, settings: Settings, client_factory: Callable[[], object]) -> None:
        from trendcast.db import get_engine

        self.settings = settings
        self.engine = get_engine(settings)
        self._client_factory = client_factory
        self._client = None
        self._infos: dict = {}

    @property
    def client(self):
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def model_info(self, name: str, version: int) -> drift.ModelInfo:
        if (name, version) not in self._infos:
            self._infos[name, version] = drift.load_model_info(self.client, name, version)
        return self._infos[name, version]

    def day(self, day: dt.date, sources: tuple[str, ...] = drift.SOURCES) -> list:
        """Evaluate, store and alert for ``day``; alerts of ``sources`` go to the webhook."""
        return drift.run_day(
            self.engine,
            day,
            self.model_info,
            psi_window_days=self.settings.drift_psi_window_days,
            webhook=self.settings.alert_webhook,
            attempts=self.settings.alert_webhook_attempts,
            notify_sources=sources,
        )

    def served_aliases(self) -> tuple[str, ...]:
        return tuple(a for a in (self.settings.model_alias, self.settings.shadow_alias) if a)

    def backfill(
        self,
        start: dt.date,
        end: dt.date,
        on_skipped: Callable[[governance.Verdict], None] | None = None,
        where=None,
    ) -> Iterator[tuple[str, str, int, int]]:
        """Score every served alias's version on START..END; yields (model, alias, version,
        predictions written) per alias. An alias moved outside Trendcast (no audited move on
        record) is skipped and reported to ``on_skipped``. ``where``: a Dask placement scores
        each version x day as a task (each replaces that day's backfill rows, so a rerun task
        writes the same rows once); the days are then evaluated here, in order."""
        if end < start:
            raise InputError(f"--backfill {start} {end}: END must not be before START")
        if (end - start).days > MAX_BACKFILL_DAYS:
            raise InputError(
                f"--backfill {start} {end}: at most {MAX_BACKFILL_DAYS} days at a time"
            )
        aliases = self.served_aliases()
        served, refused = governance.split_audited(
            self.engine, drift.served_versions(self.client, aliases)
        )
        for verdict in refused:
            if on_skipped is not None:
                on_skipped(verdict)
        if not served:
            raise TrendcastError(
                f"no registered model has a {' or '.join(aliases)} alias with an audited move "
                "to backfill: promote one, e.g. `trendcast promote NAME --version latest "
                "--alias challenger`"
            )
        if where is not None and where.distributed:
            yield from self._backfill_on(where, served, start, end)
            return
        for name, alias, version in served:
            info = self.model_info(name, version)
            yield (
                name,
                alias,
                version,
                drift.backfill_predictions(
                    self.engine, info, alias, start, end, primary_alias=self.settings.model_alias
                ),
            )

    def _backfill_on(self, where, served, start: dt.date, end: dt.date):
        from trendcast.cluster import map_unordered
        from trendcast.db import database_url

        url = database_url("trendcast", self.settings).render_as_string(hide_password=False)
        days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
        tasks = [
            (
                f"drift-backfill-{name}-{version}-{alias}-{day.isoformat()}",
                (url, self.model_info(name, version), alias, day, self.settings.model_alias),
            )
            for name, alias, version in served
            for day in days
        ]
        written: dict[tuple[str, str, int], int] = {}
        for key, count in map_unordered(where, _backfill_day_on_worker, tasks):
            written[key] = written.get(key, 0) + count
        for name, alias, version in served:
            yield name, alias, version, written.get((name, alias, version), 0)


def _backfill_day_on_worker(url: str, info, alias: str, day: dt.date, primary_alias: str):
    """One version's backfill of one day, on a Dask worker with a connection of its own."""
    import sqlalchemy as sa

    from trendcast.db import normalize_url

    engine = sa.create_engine(normalize_url(url), poolclass=sa.pool.NullPool)
    try:
        count = drift.backfill_predictions(
            engine, info, alias, day, day, primary_alias=primary_alias
        )
    finally:
        engine.dispose()
    return (info.name, alias, info.version), count
