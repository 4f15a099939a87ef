"""Bars of every series with changes the feature set has not consumed, plus look-back."""

from mage_pipelines.utils.trendcast_db import flag, trendcast_engine
from trendcast.feature_pipeline import BAR_COLUMNS, load_new_bars

if "data_loader" not in globals():
    from mage_ai.data_preparation.decorators import data_loader
if "test" not in globals():
    from mage_ai.data_preparation.decorators import test

COLUMNS = ["symbol", "interval", *BAR_COLUMNS, "ingest_time", "compute_from", "change_ids"]


@data_loader
def load_bars(*args, **kwargs):
    """Pipeline variable ``full`` (default false) recomputes every series from its first bar."""
    engine = trendcast_engine()
    try:
        return load_new_bars(engine, full=flag(kwargs.get("full", False)))
    finally:
        engine.dispose()


@test
def test_columns(df, *args) -> None:
    assert df is not None, "the loader returned nothing"
    missing = [c for c in COLUMNS if c not in df.columns]
    assert not missing, f"bars lack columns {missing}"
