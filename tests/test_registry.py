"""Gated promotion, rollback and the audit trail against a real MLflow tracking server."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa
from conftest import run_cli
from mlflow import MlflowClient

from trendcast.errors import InputError
from trendcast.registry import (
    Gates,
    PromotionRefused,
    alias_version,
    history,
    promote,
    rollback,
)

pytestmark = pytest.mark.slow

PASSING = {
    "backtest_sharpe": 1.4,
    "backtest_max_drawdown": 0.12,
    "backtest_cumulative_return": 0.30,
    "backtest_benchmark_cumulative_return": 0.10,
    "test_ic": 0.05,
    "backtest_dsr": 0.97,
    "selection_end_ts": 1_500_000_000.0,
    "test_start_ts": 1_500_003_600.0,
}


def register(client: MlflowClient, name: str, metrics: dict) -> int:
    experiment = client.get_experiment_by_name("registry-tests") or None
    experiment_id = (
        experiment.experiment_id if experiment else client.create_experiment("registry-tests")
    )
    run = client.create_run(experiment_id)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    version = client.create_model_version(
        name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    return int(version.version)


@pytest.fixture
def client(mlflow_url) -> MlflowClient:
    return MlflowClient(mlflow_url, registry_uri=mlflow_url)


@pytest.fixture
def name() -> str:
    return f"EURUSD_1h_{uuid.uuid4().hex[:6]}"


def test_promote_refuse_force_and_roll_back_are_audited(client, engine, name, monkeypatch):
    monkeypatch.setenv("TRENDCAST_USER", "alice")
    good = register(client, name, PASSING)
    bad = register(client, name, {**PASSING, "backtest_sharpe": 0.4, "test_ic": 0.001})

    first = promote(client, engine, name, good, "production")
    assert (first.from_version, first.to_version, first.forced) == (None, good, False)
    assert client.get_model_version_by_alias(name, "production").version == str(good)

    with pytest.raises(
        PromotionRefused, match=r"failed backtest sharpe >= 1.0 \(got 0.4\); test IC"
    ):
        promote(client, engine, name, bad, "production")
    assert client.get_model_version_by_alias(name, "production").version == str(good)
    assert len(history(engine, name)) == 1  # a refusal moves nothing

    with pytest.raises(InputError, match="--reason: required with --force"):
        promote(client, engine, name, bad, "production", force=True)
    assert len(history(engine, name)) == 1
    forced = promote(client, engine, name, bad, "production", force=True, reason="hotfix INC-7")
    assert forced.forced and client.get_model_version_by_alias(name, "production").version == str(
        bad
    )

    back = rollback(client, engine, name, "production")
    assert (back.from_version, back.to_version) == (bad, good)
    assert client.get_model_version_by_alias(name, "production").version == str(good)

    events = history(engine, name)
    assert [(e["action"], e["from_version"], e["to_version"], e["forced"]) for e in events] == [
        ("promote", None, good, False),
        ("promote", good, bad, True),
        ("rollback", bad, good, False),
    ]
    assert {e["moved_by"] for e in events} == {"alice"}
    assert [e["reason"] for e in events] == [None, "hotfix INC-7", None]
    assert events[1]["gate_results"]["backtest sharpe >= 1.0"]["passed"] is False
    assert [e["reason"] for e in events] == [None, "hotfix INC-7", None]
    with pytest.raises(InputError, match="no earlier version"):
        rollback(client, engine, name, "production")


def test_missing_metrics_fail_their_gates_and_unknown_versions_are_named(client, engine, name):
    version = register(client, name, {"backtest_sharpe": 2.0})
    with pytest.raises(PromotionRefused, match="got no metric"):
        promote(client, engine, name, version)
    with pytest.raises(InputError, match="has no version 99"):
        promote(client, engine, name, 99)


def test_cli_promote_rollback_and_gate_file(client, engine, env, mlflow_url, name, tmp_path):
    cli_env = {**env, "TRENDCAST_MLFLOW_TRACKING_URI": mlflow_url}
    loose = register(client, name, {**PASSING, "backtest_sharpe": 0.6})
    refused = run_cli("promote", name, "--version", str(loose), env=cli_env)
    assert refused.returncode == 1 and "backtest sharpe >= 1.0 (got 0.6)" in refused.stderr
    gate_file = tmp_path / "gates.json"
    gate_file.write_text(json.dumps({"min_backtest_sharpe": 0.5}))
    moved = run_cli("promote", name, "-v", str(loose), "--gates", str(gate_file), env=cli_env)
    assert moved.returncode == 0, moved.stderr
    assert f"{name}@production: - -> {loose}" in moved.stdout
    listed = run_cli("alias-history", name, env=cli_env)
    assert "promote" in listed.stdout
    unexplained = run_cli("promote", name, "-v", str(loose), "--force", env=cli_env)
    assert unexplained.returncode == 1
    assert "--reason: required with --force" in unexplained.stderr
    bad_gates = tmp_path / "bad.json"
    bad_gates.write_text(json.dumps({"min_sharp": 1}))
    wrong = run_cli("promote", name, "-v", str(loose), "--gates", str(bad_gates), env=cli_env)
    assert wrong.returncode == 1 and "unknown gate(s) ['min_sharp']" in wrong.stderr
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM registry.alias_events")).scalar_one()
    assert count == 1


def test_gates_defaults_match_the_spec():
    gates = Gates()
    results = gates.evaluate(PASSING)
    assert all(r["passed"] for r in results.values())
    assert set(results) == {
        "backtest sharpe >= 1.0",
        "backtest max drawdown <= 30%",
        "test IC > 0.02",
        "beats buy-and-hold",
        "backtest deflated sharpe >= 0.95",
        "test window after selection",
    }


def test_best_ranks_versions_and_promote_takes_the_best_passing(
    client, engine, env, mlflow_url, name, tmp_path
):
    cli_env = {**env, "TRENDCAST_MLFLOW_TRACKING_URI": mlflow_url}
    strong = register(client, name, {**PASSING, "backtest_sharpe": 2.5})
    failing = register(client, name, {**PASSING, "backtest_sharpe": 3.0, "test_ic": -0.1})
    decent = register(client, name, {**PASSING, "backtest_sharpe": 1.2, "test_ic": 0.08})

    ranked = run_cli("best", name, "--metric", "sharpe", env=cli_env)
    assert ranked.returncode == 0, ranked.stderr
    assert f"best {name} on backtest_sharpe: version {failing}" in ranked.stdout
    by_ic = run_cli("best", name, "--metric", "ic", env=cli_env)
    assert f"on test_ic: version {decent}" in by_ic.stdout
    gated = run_cli("best", name, "--metric", "sharpe", "--passing", env=cli_env)
    assert f"on backtest_sharpe: version {strong}" in gated.stdout  # the 3.0 fails test IC
    unknown = run_cli("best", name, "--metric", "sharp", env=cli_env)
    assert unknown.returncode == 1 and "--metric 'sharp': unknown metric" in unknown.stderr

    first = run_cli("promote", name, "--version", "best", env=cli_env)
    assert f"{name}@production: - -> {strong}" in first.stdout, first.stderr
    second = run_cli("promote", name, "-v", "best:2", "--alias", "challenger", env=cli_env)
    assert f"{name}@challenger: - -> {decent}" in second.stdout, second.stderr
    none_left = run_cli("promote", name, "-v", "best:3", "--alias", "canary", env=cli_env)
    assert none_left.returncode == 1 and "2 version(s) pass the gates" in none_left.stderr

    listed = run_cli("models", name, env=cli_env)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("│")[2].strip(): line for line in listed.stdout.splitlines() if name in line}
    assert "production" in rows[str(strong)] and "challenger" in rows[str(decent)]
    assert "2.5" in rows[str(strong)] and "-" in rows[str(failing)].split("│")[3]


@pytest.mark.parametrize("fails_at", ["insert", "commit"])
def test_an_alias_never_moves_without_its_audit_row(client, engine, name, fails_at):
    """The audit row and the alias move are one unit: when the row cannot be written (at the
    insert, or at the commit after the alias already moved) the alias stays or is put back."""
    first = register(client, name, PASSING)
    second = register(client, name, PASSING)
    promote(client, engine, name, first, "production")
    if fails_at == "insert":
        ddl = (
            "ALTER TABLE registry.alias_events ADD CONSTRAINT audit_down "
            "CHECK (model_name <> '{name}') NOT VALID"
        )
        undo = "ALTER TABLE registry.alias_events DROP CONSTRAINT audit_down"
    else:  # a deferred trigger fails the transaction at COMMIT, after the alias moved
        ddl = (
            "CREATE FUNCTION registry.audit_down() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'audit store down'; END $$; "
            "CREATE CONSTRAINT TRIGGER audit_down AFTER INSERT ON registry.alias_events "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "WHEN (NEW.model_name = '{name}') EXECUTE FUNCTION registry.audit_down()"
        )
        undo = (
            "DROP TRIGGER audit_down ON registry.alias_events; DROP FUNCTION registry.audit_down()"
        )
    with engine.begin() as conn:
        conn.exec_driver_sql(ddl.format(name=name))
    try:
        with pytest.raises(sa.exc.DBAPIError):
            promote(client, engine, name, second, "production")
        with pytest.raises(sa.exc.DBAPIError):
            promote(client, engine, name, second, "challenger")
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(undo)
    assert client.get_model_version_by_alias(name, "production").version == str(first)
    assert registry_alias_missing(client, name, "challenger")
    assert [(e["alias"], e["to_version"]) for e in history(engine, name)] == [("production", first)]


def registry_alias_missing(client: MlflowClient, name: str, alias: str) -> bool:
    from trendcast.registry import alias_version

    return alias_version(client, name, alias) is None


def test_forced_moves_carry_a_reason_and_outside_moves_are_marked(
    client, engine, env, mlflow_url, name
):
    cli_env = {**env, "TRENDCAST_MLFLOW_TRACKING_URI": mlflow_url, "TRENDCAST_USER": "bob"}
    weak = register(client, name, {**PASSING, "backtest_sharpe": 0.2})
    bare = run_cli("promote", name, "-v", str(weak), "--force", env=cli_env)
    assert bare.returncode == 1 and "--reason: required with --force" in bare.stderr
    assert "Traceback" not in bare.stderr
    blank = run_cli("promote", name, "-v", str(weak), "--force", "--reason", "  ", env=cli_env)
    assert blank.returncode == 1 and "--reason" in blank.stderr
    assert history(engine, name) == []  # nothing moved, nothing recorded
    assert alias_version(client, name, "production") is None

    forced = run_cli(
        "promote", name, "-v", str(weak), "--force", "--reason", "desk asked, INC-42", env=cli_env
    )
    assert forced.returncode == 0, forced.stderr
    listed = run_cli("alias-history", name, env=cli_env)
    assert "desk asked, INC-42" in listed.stdout and "bob" in listed.stdout
    models = run_cli("models", name, env=cli_env)
    assert models.returncode == 0 and "moved outside Trendcast" not in models.stdout

    # Straight through MLflow, behind the CLI's back: marked, and named on stderr.
    other = register(client, name, PASSING)
    client.set_registered_model_alias(name, "production", str(other))
    models = run_cli("models", name, env=cli_env)
    assert "production (moved outside Trendcast)" in " ".join(models.stdout.split())
    assert f"version {other} was moved outside Trendcast" in " ".join(models.stderr.split())
