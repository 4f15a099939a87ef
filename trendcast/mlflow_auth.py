"""MLflow with authentication: MLflow's own basic-auth app, plus one rule of ours.

MLflow's permissions are per resource (READ / EDIT / MANAGE): whoever may register a version of
a model may also move its aliases. Trendcast separates the two — data scientists log runs and
register versions, only the promotion identity (``TRENDCAST_MLFLOW_PROMOTERS``, CI or an
engineer's role) sets or deletes an alias — so this app answers 403 to any other user's alias
request before MLflow handles it. Started by ``mlflow server --app-name trendcast-auth`` (an
``mlflow.app`` entry point); the users live in MLflow's auth store.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from trendcast.config import Settings, get_settings

ALIAS_PATH = "/2.0/mlflow/registered-models/alias"  # under /api and /ajax-api
READER = "trendcast-reader"
PROMOTER = "trendcast-promoter"
SCIENTIST = "trendcast-scientist"
ROLES = {READER: "reads only", PROMOTER: "sets aliases", SCIENTIST: "logs runs, registers"}


def create_app(app=None):
    """MLflow's basic-auth app with the alias rule in front of every alias change, and the
    standard identities created from the environment (in every worker, idempotently)."""
    _write_config_from_environment()
    from flask import jsonify, request
    from mlflow.server import app as flask_app
    from mlflow.server.auth import create_app as basic_auth_app

    flask = app or flask_app
    served = basic_auth_app(flask)
    _ensure_identities()
    promoters = set(get_settings().mlflow_promoters)

    def only_promoters_move_aliases():
        if request.method not in ("POST", "DELETE") or not request.path.endswith(ALIAS_PATH):
            return None
        user = request.authorization.username if request.authorization else None
        if user in promoters:
            return None
        return (
            jsonify(
                error_code="PERMISSION_DENIED",
                message=f"user {user!r} may not set or delete aliases: only the promotion "
                f"identity ({', '.join(sorted(promoters))}) moves aliases, through "
                "`trendcast promote` (gated and audited)",
            ),
            403,
        )

    # Registered after basic-auth's own hook, so the user is authenticated first.
    flask.before_request(only_promoters_move_aliases)
    return served


def _password_variable(user: str) -> str:
    """``trendcast-reader`` -> ``TRENDCAST_MLFLOW_READER_PASSWORD`` (setting
    ``mlflow_reader_password``)."""
    return f"TRENDCAST_MLFLOW_{user.removeprefix('trendcast-').upper()}_PASSWORD"


def _password_setting(settings: Settings, user: str) -> str | None:
    secret = getattr(settings, f"mlflow_{user.removeprefix('trendcast-')}_password")
    return secret.get_secret_value() if secret is not None else None


def _write_config_from_environment() -> None:
    """In a container there is no config file to mount: write MLflow's auth config (users in
    the MLflow database, tables of their own; everyone READ by default) from the environment
    before ``mlflow.server.auth`` reads it at import."""
    settings = get_settings()
    if settings.mlflow_auth_config_path:
        return
    database = settings.mlflow_auth_database_uri or settings.mlflow_backend_store_uri
    if not database:
        raise RuntimeError(
            "trendcast-auth: set MLFLOW_AUTH_CONFIG_PATH, TRENDCAST_MLFLOW_AUTH_DATABASE_URI or "
            "MLFLOW_BACKEND_STORE_URI (where the users are stored)"
        )
    folder = Path(tempfile.mkdtemp(prefix="trendcast-auth-"))
    config = folder / "basic_auth.ini"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(_config_text(database, get_settings().mlflow_admin_username))
    os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(config)


def _config_text(database_uri: str, admin: str) -> str:
    return (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri.replace('%', '%%')}\n"
        f"admin_username = {admin}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )


def _ensure_identities() -> None:
    """Create each standard identity whose password the environment carries (from Secrets
    Manager in production, from files under home locally); the promoter is an MLflow admin,
    since it must update every model's aliases."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth import store

    settings = get_settings()
    for user in ROLES:
        password = _password_setting(settings, user)
        if not password or store.has_user(user):
            continue
        try:
            store.create_user(user, password, is_admin=user == PROMOTER)
        except MlflowException as exc:  # another worker was first
            if "already exists" not in str(exc):
                raise


def auth_dir(settings: Settings) -> Path:
    return settings.home / "mlflow-auth"


def _kept_secret(path: Path) -> str:
    """A random secret generated once and kept in ``path`` (mode 0600)."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


def admin_password(settings: Settings) -> str:
    if settings.mlflow_admin_password is not None:
        return settings.mlflow_admin_password.get_secret_value()
    return _kept_secret(auth_dir(settings) / "admin.password")


def server_environment(settings: Settings) -> dict[str, str]:
    """What `mlflow server --app-name trendcast-auth` needs: its config file (users in a SQLite
    store under home, everyone READ by default), the admin's bootstrap password and the CSRF
    key — all through the environment, never on the command line."""
    directory = auth_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)  # the user store holds password hashes
    config = directory / "basic_auth.ini"
    config.write_text(
        _config_text(f"sqlite:///{directory / 'users.db'}", settings.mlflow_admin_username)
    )
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password(settings),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": _kept_secret(directory / "flask.secret"),
        "TRENDCAST_MLFLOW_PROMOTERS": ",".join(settings.mlflow_promoters),
        **{_password_variable(u): _kept_secret(directory / f"{u}.password") for u in ROLES},
    }


def client_environment(settings: Settings) -> dict[str, str]:
    """The credentials our MLflow clients send (MLflow's own variable names)."""
    if settings.mlflow_username is None or settings.mlflow_password is None:
        return {}
    return {
        "MLFLOW_TRACKING_USERNAME": settings.mlflow_username,
        "MLFLOW_TRACKING_PASSWORD": settings.mlflow_password.get_secret_value(),
    }


def identity_environment(settings: Settings, user: str) -> dict[str, str]:
    """Run a child process of the local stack as one of the standard identities (the service
    and the dashboard read only); nothing when auth is off or the user is already set."""
    if not settings.mlflow_auth or settings.mlflow_username is not None:
        return {}
    password = (auth_dir(settings) / f"{user}.password").read_text().strip()
    return {
        "TRENDCAST_MLFLOW_USERNAME": user,
        "TRENDCAST_MLFLOW_PASSWORD": password,
        "MLFLOW_TRACKING_USERNAME": user,
        "MLFLOW_TRACKING_PASSWORD": password,
    }
