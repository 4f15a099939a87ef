"""The feature set's indicators per series, from each series' first changed bar on."""

from trendcast.feature_pipeline import compute_features
from trendcast.feature_sets import DEFAULT_FEATURE_SET

if "transformer" not in globals():
    from mage_ai.data_preparation.decorators import transformer
if "test" not in globals():
    from mage_ai.data_preparation.decorators import test

FEATURES = list(DEFAULT_FEATURE_SET.columns)
SERIES = ["symbol", "interval"]


@transformer
def compute_indicators(df, *args, **kwargs):
    return compute_features(df)


@test
def test_columns(df, *args) -> None:
    if df.empty:
        return
    missing = [c for c in [*SERIES, "event_time", "ingest_time", *FEATURES] if c not in df.columns]
    assert not missing, f"features lack columns {missing}"


@test
def test_event_time_increasing(df, *args) -> None:
    if df.empty:
        return
    for (symbol, interval), group in df.groupby(SERIES, sort=False):
        times = group["event_time"]
        increasing = times.is_monotonic_increasing and times.is_unique
        assert increasing, f"{symbol} {interval}: event_time is not strictly increasing"


@test
def test_no_nan_after_warm_up(df, *args) -> None:
    """NaN only in a series' first look-back rows (the windows' warm-up)."""
    if df.empty:
        return
    for (symbol, interval), group in df.groupby(SERIES, sort=False):
        lookback = DEFAULT_FEATURE_SET.lookback_bars(interval)
        late = group[FEATURES].iloc[lookback:]
        bad = late.columns[late.isna().any()].tolist()
        assert not bad, f"{symbol} {interval}: NaN after {lookback} warm-up rows in {bad}"
