"""One typed settings object, read from ``TRENDCAST_*`` variables and ``.env``, with local defaults.

Every unit (CLI, Lambda, Mage blocks, serving, dashboard) reads configuration through
:func:`get_settings`, so a variable means the same thing everywhere.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: The checkout holding this package: ``.env`` and the default home live here, so a command
#: means the same from any working directory.
PROJECT_DIR = Path(__file__).resolve().parents[1]

#: The model the service serves when TRENDCAST_MODEL_NAME is unset (the demo's model).
DEFAULT_MODEL = "EURUSD_1h_h4"


class Settings(BaseSettings):
    """Trendcast configuration. Field ``x`` is read from ``TRENDCAST_X``."""

    model_config = SettingsConfigDict(
        env_prefix="TRENDCAST_",
        env_file=PROJECT_DIR / ".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    home: Path = Field(
        default=PROJECT_DIR / ".trendcast",
        description="Local state: embedded PostgreSQL data, MLflow artifacts, pids and logs "
        "(a relative path is taken from the project folder, never the working directory).",
    )
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL server URL for the `trendcast` database; unset = embedded.",
    )
    mlflow_database_url: str | None = Field(
        default=None,
        description="MLflow backend store URL; unset = database `mlflow` on the same server.",
    )
    database_name: str = "trendcast"
    mlflow_database_name: str = "mlflow"

    host: str = Field(default="127.0.0.1", description="Interface the local services bind to.")
    mlflow_port: int = 5000
    bentoml_port: int = 3000
    streamlit_port: int = 8501
    replay_port: int = 8900
    mlflow_tracking_uri: str | None = Field(
        default=None, description="Tracking server clients use; unset = the local stack's server."
    )
    artifacts_uri: str | None = Field(
        default=None,
        description="Where MLflow stores artifacts: a path or s3://bucket/prefix; "
        "unset = <home>/mlartifacts.",
    )
    mlflow_workers: int = Field(default=1, ge=1)
    dask_scheduler: str | None = Field(
        default=None,
        description="Dask scheduler (tcp://HOST:PORT) every wide job runs on; unset = in-process, "
        "or the local cluster part with --cluster (`trendcast up --with cluster`).",
    )
    dask_scheduler_port: int = Field(
        default=8786, description="Port of the local cluster part's `dask scheduler`."
    )
    dask_workers: int = Field(
        default=2, ge=1, description="Workers `trendcast up --with cluster` starts."
    )
    dask_worker_threads: int = Field(default=1, ge=1, description="Threads per local worker.")
    dask_connect_timeout_s: float = Field(
        default=10.0, gt=0, description="How long a command waits for the scheduler to answer."
    )
    startup_timeout_s: float = Field(default=90.0, gt=0)

    symbols: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["EURUSD"], description="Comma-separated symbols to ingest."
    )
    intervals: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["1h"], description="Comma-separated bar intervals to ingest."
    )

    exchange_url: str | None = Field(
        default=None,
        description="Binance-compatible REST API; unset means the local exchange replay "
        "(http://HOST:REPLAY_PORT). Production sets https://api.binance.com.",
    )
    exchange_source: str = Field(default="exchange", description="`source` stored with bars.")
    exchange_timeout_s: float = Field(default=5.0, gt=0)
    ingest_budget_s: float = Field(
        default=240.0, gt=0, description="Time budget of one ingestion invocation."
    )
    ingest_lookback_bars: int = Field(
        default=1000, ge=1, description="Bars fetched for a series with nothing stored yet."
    )
    ingest_repair_bars: int = Field(
        default=1440,
        ge=0,
        description="Bars before the exchange's clock every run rescans for holes.",
    )
    ingest_hole_attempts: int = Field(
        default=5, ge=1, description="Repair attempts before a hole is marked unfillable."
    )
    ingest_max_window_bars: int = Field(
        default=20_000, ge=1, description="Most bars a manual event's start..end may span."
    )
    ingest_abandon_margin_s: float = Field(
        default=60.0,
        ge=0,
        description="A run still `running` this long past the budget is marked abandoned.",
    )
    database_secret_arn: str | None = Field(
        default=None,
        description="AWS Secrets Manager secret with the database credentials (Lambda).",
    )
    replay_start: str = Field(
        default="2017-10-02T00:00:00Z", description="Data time the replay clock starts at."
    )
    replay_speed: float = Field(
        default=3600.0, gt=0, description="Replay data-seconds per wall-second."
    )
    replay_fee: float = Field(
        default=0.001, ge=0, lt=0.5, description="Replay order fee, fraction of notional."
    )
    replay_slippage: float = Field(
        default=0.0, ge=0, lt=0.5, description="Replay fill price offset, fraction of the open."
    )
    replay_fill_grace_s: float = Field(
        default=0.0,
        ge=0,
        le=86_400,
        description="Replay orders arriving this many data-seconds after a bar opened fill at "
        "that open (a runner's reaction time); 0 = the first open at or after arrival.",
    )
    binance_base_url: str = Field(
        default="https://testnet.binance.vision",
        description="Binance spot REST API the binance broker trades on: the testnet unless "
        "set (live: https://api.binance.com; tests and the demo: the exchange replay).",
    )
    binance_api_key: str | None = Field(
        default=None, description="Binance API key (or from TRENDCAST_BINANCE_SECRET_ARN)."
    )
    binance_api_secret: SecretStr | None = Field(
        default=None, description="Binance API secret (environment or a secret, never argv)."
    )
    binance_secret_arn: str | None = Field(
        default=None,
        description='AWS Secrets Manager secret holding {"api_key", "api_secret"} for '
        "the binance broker; used when the key and secret are not set directly.",
    )
    binance_recv_window_ms: int = Field(
        default=5000, ge=1, le=60_000, description="recvWindow of signed Binance requests."
    )
    binance_timeout_s: float = Field(default=5.0, gt=0, description="Binance HTTP timeout.")
    binance_attempts: int = Field(
        default=4, ge=1, description="Tries of one Binance request through 429s and 5xx."
    )
    model_alias: str = Field(default="production", description="Alias the service serves.")
    shadow_alias: str | None = Field(
        default="challenger", description="Alias scored in shadow (logged, never returned)."
    )
    serving_poll_s: float = Field(default=10.0, gt=0, description="Alias poll interval.")
    serving_max_batch: int = Field(default=1000, ge=1, description="Rows per predict call.")
    api_token: str | None = Field(
        default=None, description="Bearer token for every endpoint but health and metrics."
    )
    prediction_log_queue: int = Field(
        default=50_000,
        ge=1,
        description="Prediction-log rows held in memory before further ones spill to the journal.",
    )
    prediction_log_spill_bytes: int = Field(
        default=1 << 30,
        ge=0,
        description="Disk budget of the prediction-log journal (<home>/prediction-journal); "
        "rows are dropped and counted only beyond it.",
    )
    serving_max_body_bytes: int = Field(
        default=4 << 20, ge=1024, description="Largest request body the service reads (413)."
    )
    serving_switch_interval_ms: float = Field(
        default=0.5,
        gt=0,
        le=100,
        description="The service's GIL switch interval: how long a background thread (the "
        "prediction-log writer) may hold the interpreter before the event loop gets it back "
        "(Python's default is 5 ms).",
    )
    serving_framework_telemetry: bool = Field(
        default=False,
        description="BentoML's own per-request OpenTelemetry span and Prometheus middleware "
        "(off: they cost more than a prediction; the gateway counts requests itself).",
    )
    no_numba: bool = Field(
        default=False,
        description="Sum indicator windows with NumPy instead of the compiled kernel (same "
        "bits, slower; for a platform without Numba).",
    )
    model_name: str | None = Field(
        default=None,
        description="Registered model name for training and serving "
        "(default when training: SYMBOL_INTERVAL_hHORIZON; when serving: EURUSD_1h_h4).",
    )

    alert_webhook: str | None = Field(
        default=None,
        description="Slack-compatible incoming-webhook URL the drift monitor posts alerts to.",
    )
    alert_webhook_attempts: int = Field(default=3, ge=1, description="Webhook tries per alert.")
    dashboard_database_url: str | None = Field(
        default=None,
        description="URL of a read-only login role for the dashboard; unset = the Trendcast "
        "database as role trendcast_reader with read-only transactions.",
    )
    drift_psi_window_days: int = Field(
        default=20, ge=1, description="Days of predictions each daily PSI is computed over."
    )

    mlflow_auth: bool = Field(
        default=False,
        description="Start the local MLflow server with authentication (MLflow's basic-auth "
        "app; only the promoters may set or delete aliases).",
    )
    mlflow_username: str | None = Field(
        default=None, description="MLflow user our clients authenticate as (auth on)."
    )
    mlflow_password: SecretStr | None = Field(
        default=None, description="That user's password (environment or a secret, never argv)."
    )
    mlflow_admin_username: str = Field(
        default="admin", description="MLflow admin created when the auth store is new."
    )
    mlflow_admin_password: SecretStr | None = Field(
        default=None,
        description="The admin's password; unset locally = generated once and kept in "
        "<home>/mlflow-auth/ (mode 0600). Production reads it from Secrets Manager.",
    )
    mlflow_auth_database_uri: str | None = Field(
        default=None,
        description="Where the MLflow server keeps its users when no auth config file is "
        "given (a container); unset = the MLflow backend store (tables of their own).",
    )
    mlflow_auth_config_path: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_AUTH_CONFIG_PATH"),
        description="MLflow's auth config file (MLflow's own variable); unset in a container: "
        "written from the settings when the server starts.",
    )
    mlflow_backend_store_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_BACKEND_STORE_URI"),
        description="The MLflow server's backend store as MLflow reads it (MLflow's own "
        "variable; set in the server's environment only).",
        exclude=True,
    )
    mlflow_promoter_password: SecretStr | None = Field(
        default=None, description="Creates MLflow user trendcast-promoter (server side)."
    )
    mlflow_reader_password: SecretStr | None = Field(
        default=None, description="Creates MLflow user trendcast-reader (server side)."
    )
    mlflow_scientist_password: SecretStr | None = Field(
        default=None, description="Creates MLflow user trendcast-scientist (server side)."
    )
    mlflow_promoters: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["trendcast-promoter"],
        description="Comma-separated MLflow users allowed to set or delete aliases.",
    )

    user: str | None = Field(
        default=None, description="Who alias moves are recorded as; unset = the login name."
    )
    debug: bool = Field(default=False, description="Show tracebacks of unexpected errors.")
    git_sha: str | None = Field(
        default=None, description="Commit recorded as the feature producer; unset = git's HEAD."
    )
    test_database_url: str | None = Field(
        default=None,
        description="PostgreSQL server the tests and benchmarks use; unset = a throwaway one.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_S3_ENDPOINT_URL", "TRENDCAST_S3_ENDPOINT_URL"),
        description="S3-compatible endpoint for artifacts (MLflow's own variable name).",
    )
    serving_mlflow_retries: int = Field(
        default=1, ge=0, description="MLflow HTTP retries of the service's alias poller."
    )
    dashboard_mlflow_retries: int = Field(
        default=0, ge=0, description="MLflow HTTP retries of the dashboard (never wait long)."
    )
    mlflow_timeout_s: float = Field(
        default=5.0, gt=0, description="MLflow HTTP timeout of the service and the dashboard."
    )
    deploy_fault_point: str | None = Field(
        default=None,
        description="Test hook: the deployment runner kills itself (SIGKILL) at this point "
        "('before_submit', 'after_submit') to prove crash recovery; never set in production.",
    )
    deploy_demo_days: int = Field(
        default=5, ge=0, description="Demo days a deployment needs before going live."
    )
    deploy_demo_trades: int = Field(
        default=10, ge=0, description="Demo fills a deployment needs before going live."
    )
    deploy_equity_tolerance: float = Field(
        default=0.01, ge=0, description="Largest relative gap to the backtest to go live."
    )

    @field_validator("symbols", "intervals", "mlflow_promoters", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return (PROJECT_DIR / value.expanduser()).resolve()

    @property
    def exchange(self) -> str:
        """The exchange to ingest from: the configured URL, else the local replay."""
        return self.exchange_url or f"http://{self.host}:{self.replay_port}"

    @property
    def embedded_database(self) -> bool:
        """True when Trendcast runs its own PostgreSQL (pgserver) under ``home``."""
        return self.database_url is None

    @property
    def pgdata(self) -> Path:
        return self.home / "pg"

    @property
    def run_dir(self) -> Path:
        """Pid files and logs of the processes the local stack started."""
        return self.home / "run"

    @property
    def artifacts_destination(self) -> str:
        """The artifact store: a URI as given, a folder made absolute against ``home``."""
        if self.artifacts_uri and "://" in self.artifacts_uri:
            return self.artifacts_uri
        return str(self.home / (self.artifacts_uri or "mlartifacts"))

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"http://{self.host}:{self.mlflow_port}"

    def as_env(self, **overrides: object) -> dict[str, str]:
        """The effective settings as the variables that set them (``TRENDCAST_X``, and
        MLflow's own names): what a child process must see to agree with this one, including
        values read from ``.env`` or passed in code. Unset (None) values are left out."""
        values = {**self.model_dump(), **overrides}
        env = {}
        for name, value in values.items():
            if value is None:
                continue
            alias = type(self).model_fields[name].validation_alias
            key = alias.choices[0] if isinstance(alias, AliasChoices) else f"TRENDCAST_{name}"
            env[key.upper()] = _env_text(value)
        return env

    def child_env(self, **overrides: object) -> dict[str, str]:
        """The environment for a child process: the inherited one with the effective settings
        on top (so ``up``'s children never disagree with it)."""
        return {**os.environ, **self.as_env(**overrides)}

    @property
    def serving_model_name(self) -> str:
        """The registered model the service serves and the CLI asks about."""
        return self.model_name or DEFAULT_MODEL


def _env_text(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
