"""Write changed feature rows to the feature store and mark the bar changes consumed."""

from mage_pipelines.utils.trendcast_db import trendcast_engine
from trendcast.feature_pipeline import BuildFailed, summary_line, write_features

if "data_exporter" not in globals():
    from mage_ai.data_preparation.decorators import data_exporter

PRODUCER = "mage:derive_indicators"


def run_id(kwargs: dict) -> str | None:
    """Mage's pipeline run id (triggered runs), else the execution partition, else None (the
    feature store then records a fresh uuid). `mage run` from the shell passes neither."""
    for key in ("pipeline_run_id", "execution_partition"):
        if kwargs.get(key) not in (None, ""):
            return str(kwargs[key])
    return None


@data_exporter
def export_features(df, *args, **kwargs) -> dict:
    engine = trendcast_engine()
    try:
        summary = write_features(engine, df, producer=PRODUCER, run_id=run_id(kwargs))
    finally:
        engine.dispose()
    message = summary_line(summary)
    logger = kwargs.get("logger")
    if logger is not None:
        logger.info(message)
    else:  # `mage run` passes no logger; Mage captures stdout into the block's log
        print(message)
    if summary["failed"]:  # the run fails (exit 1) after the other series were built
        raise BuildFailed(summary)
    return summary
