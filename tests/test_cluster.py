"""Scale-out on a real local Dask cluster started through the CLI (`up --with cluster`): a grid
on the cluster ranks exactly like the in-process one, survives a worker killed with -9 without
a duplicated run, and an unreachable or lost scheduler ends the command with one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from conftest import run_cli
from mlflow import MlflowClient

from trendcast.stack import processes

pytestmark = pytest.mark.slow

GRID = {
    "symbol": "EURUSD",
    "interval": "1h",
    "horizon": 4,
    "metric": "ic",
    "periods": [
        {"name": "q1", "start": "2017-06-01", "end": "2017-09-01"},
        {"name": "q2", "start": "2017-07-01", "end": "2017-09-05"},
    ],
    "params": {"max_depth": [2, 3], "n_estimators": [30]},
    "final": {"name": "h2", "start": "2017-06-01", "end": "2017-12-31"},
    "register_top": 0,
    "n_jobs": 2,
}


AWS = {  # moto's server takes any credentials: made per run, so no literal looks like a secret
    "AWS_ACCESS_KEY_ID": uuid.uuid4().hex,
    "AWS_SECRET_ACCESS_KEY": uuid.uuid4().hex,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """A whole local stack with a two-worker cluster, the sample EURUSD and its features."""
    base = Path(tempfile.mkdtemp(prefix="tccl"))
    home = base / "h"  # short: the embedded server's socket lives under it
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRENDCAST_")}
    env.update(
        TRENDCAST_HOME=str(home),
        TRENDCAST_MLFLOW_PORT=str(free_port()),
        TRENDCAST_DASK_SCHEDULER_PORT=str(free_port()),
        COLUMNS="200",
        **AWS,  # the workers read S3 exports from the S3 API server with these
    )
    try:
        up = run_cli("up", "--with", "cluster", "--workers", "2", env=env, timeout=600)
        assert up.returncode == 0, up.stderr + up.stdout
        loaded = run_cli("load-sample", "--until", "2017-10-02T00:00Z", env=env)
        assert loaded.returncode == 0, loaded.stderr
        built = run_cli("features", "build", env=env)
        assert built.returncode == 0, built.stderr
        yield env, home, base
    finally:
        run_cli("down", env=env)
        shutil.rmtree(base, ignore_errors=True)


def tracking(env) -> MlflowClient:
    url = f"http://127.0.0.1:{env['TRENDCAST_MLFLOW_PORT']}"
    return MlflowClient(url, registry_uri=url)


def grid_file(base: Path, name: str, **changes) -> Path:
    path = base / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**GRID, "model_name": name, **changes}))
    return path


def parents(client: MlflowClient) -> dict[str, object]:
    experiment = client.get_experiment_by_name("training")
    if experiment is None:
        return {}
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.grid_spec != ''")
    return {r.info.run_id: r for r in runs}


def children(client: MlflowClient, parent_id: str, deleted: bool = False) -> list:
    from mlflow.entities import ViewType

    experiment = client.get_run(parent_id).info.experiment_id
    return client.search_runs(
        [experiment],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        run_view_type=ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY,
    )


def worker_processes(home: Path) -> list[psutil.Process]:
    """The dask worker processes (the nannies' children), not the nanny process itself."""
    record = processes.read_record(home / "run", "cluster-workers")
    return [
        p
        for p in psutil.Process(record.pid).children()
        if "spawn_main" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE
    ]


def start_grid(env, path: Path, *args: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("trendcast")
    return subprocess.Popen(
        [str(exe), "train", "--grid", str(path), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_child(client, before, status: str, timeout_s: float = 120) -> str:
    """The new grid's parent run id, once one of its children has ``status``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for parent_id in set(parents(client)) - before:
            if any(c.info.status == status for c in children(client, parent_id)):
                return parent_id
        time.sleep(0.2)
    raise AssertionError(f"no grid child run {status} within {timeout_s} s")


def test_grid_on_the_cluster_ranks_like_in_process_even_with_a_worker_killed(cluster):
    env, home, base = cluster
    client = tracking(env)
    path = grid_file(base, "EURUSD_cluster")
    local = run_cli("train", "--grid", str(path), env=env)
    assert local.returncode == 0, local.stderr
    assert "grid ran in-process" in local.stdout

    before = set(parents(client))
    process = start_grid(env, path, "--cluster", "--compare-in-process")
    try:
        parent_id = wait_for_child(client, before, "RUNNING")
        killed = worker_processes(home)
        assert len(killed) == 2
        for worker in killed:  # both: whichever ran the task, it is gone mid-run
            worker.send_signal(signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stderr + stdout
    assert "grid ran on dask tcp://127.0.0.1:" in stdout and "(2 workers)" in stdout
    assert "ranking equals the in-process run" in stdout, stdout

    parent = client.get_run(parent_id)
    assert parent.data.tags["grid_status"] == "finished"
    assert parent.data.tags["grid_placement"] == "dask"
    live = children(client, parent_id)
    keys = [c.data.tags["grid_task"] for c in live]
    assert len(keys) == len(set(keys)) == 4  # one run per candidate x period, no duplicate
    assert all(c.info.status == "FINISHED" for c in live)
    cut_short = children(client, parent_id, deleted=True)
    assert cut_short, "no run was cut short by the kill"
    assert {c.info.status for c in cut_short} == {"KILLED"}
    replaced = ",".join(c.data.tags.get("grid_replaces", "") for c in live)
    assert all(c.info.run_id in replaced for c in cut_short)
    # the cluster healed: the nannies started new workers
    assert {p.pid for p in worker_processes(home)}.isdisjoint({p.pid for p in killed})


def backfill_rows(home: Path) -> list[tuple]:
    import sqlalchemy as sa

    engine = sa.create_engine(f"postgresql+psycopg2://postgres@/trendcast?host={home}/pg")
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT id, request_id, event_time, model_version, alias, inputs::text, "
                    "prediction FROM serving.predictions WHERE source = 'backfill' "
                    "ORDER BY request_id"
                )
            ).all()
    finally:
        engine.dispose()


def test_backtests_features_and_drift_backfill_on_the_cluster_equal_in_process(cluster):
    env, home, _ = cluster
    local = run_cli("backtest", "--symbols", "all", "--json", env=env)
    spread = run_cli("backtest", "--symbols", "all", "--json", "--cluster", env=env)
    assert local.returncode == 0 and spread.returncode == 0, local.stderr + spread.stderr
    assert len(json.loads(local.stdout)) >= 3
    assert spread.stdout == local.stdout  # every figure of every series, same order
    assert "backtest ran in-process" in local.stderr
    assert "backtest ran on dask" in spread.stderr and "(2 workers)" in spread.stderr

    # The store appends a row only when a value differs: a full rebuild on the cluster over the
    # in-process build writes nothing, series by series.
    local = run_cli("features", "build", "--full", "--runner", "python", env=env)
    spread = run_cli("features", "build", "--full", "--cluster", env=env)
    assert local.returncode == 0 and spread.returncode == 0, local.stderr + spread.stderr
    summary = local.stdout.splitlines()[0]
    assert summary.endswith(" 0 written") and spread.stdout.splitlines()[0] == summary
    assert "features ran on dask" in spread.stdout

    trained = run_cli("train", "-s", "EURUSD", "-p", "n_estimators=20", env=env)
    assert trained.returncode == 0, trained.stderr
    moved = run_cli(
        "promote", "EURUSD_1h_h4", "-v", "latest", "--force", "--reason", "test", env=env
    )
    assert moved.returncode == 0, moved.stderr
    window = ("--backfill", "2017-08-01", "2017-08-06")
    local = run_cli("drift", "run", *window, env=env)
    assert local.returncode == 0, local.stderr
    before = backfill_rows(home)
    spread = run_cli("drift", "run", *window, "--cluster", env=env)
    assert spread.returncode == 0, spread.stderr
    after = backfill_rows(home)
    assert "backfill scoring ran on dask" in spread.stdout
    assert len(before) > 50
    assert [r[1:] for r in after] == [r[1:] for r in before]  # every row, bit for bit
    assert min(r[0] for r in after) > max(r[0] for r in before)  # rewritten by the workers


def test_distributed_training_registers_like_a_local_model_and_is_deterministic(cluster):
    env, _, _ = cluster
    client = tracking(env)
    versions = {}
    for name, extra in (
        ("EURUSD_local", ()),
        ("EURUSD_dask_a", ("--distributed", "--cluster")),
        ("EURUSD_dask_b", ("--distributed", "--cluster")),
    ):
        done = run_cli(
            "train", "-s", "EURUSD", "-p", "n_estimators=20", "--model-name", name, *extra,
            env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        versions[name] = client.get_model_version(name, "1")
    assert "regressor and classifier fitted with xgboost.dask" in done.stdout
    assert "ran on dask" in done.stdout
    runs = {n: client.get_run(v.run_id) for n, v in versions.items()}
    exported = Path(runs["EURUSD_dask_a"].data.tags["export"])
    assert [p.name for p in exported.iterdir() if p.is_dir()] == ["symbol=EURUSD"]
    assert runs["EURUSD_dask_a"].data.tags["trained_on"].startswith("dask tcp://")
    local, first, second = (runs[n].data.metrics for n in versions)
    # same cluster shape: the same model again
    assert first == second
    # against the local model on the same rows: within a relative 1e-6 on every metric (one
    # symbol is one partition here, so the sketches agree and the boosters match)
    for key, value in local.items():
        assert first[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
    # registered, verified (sha256) and loaded by the service's own loader like a local version
    import mlflow

    from serving.models import load_version
    from trendcast.tracking import use_mlflow

    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    use_mlflow(f"http://127.0.0.1:{env['TRENDCAST_MLFLOW_PORT']}")  # tracking and registry
    try:
        loaded = {name: load_version(client, name, 1, "production") for name in versions}
    finally:
        mlflow.set_tracking_uri(before[0])
        mlflow.set_registry_uri(before[1])
    assert all(loaded[n].checksum == versions[n].tags["sha256"] for n in versions)
    row = np.full((1, len(loaded["EURUSD_local"].features)), 0.01)
    assert loaded["EURUSD_dask_a"].predict(row) == pytest.approx(
        loaded["EURUSD_local"].predict(row), rel=1e-6
    )


def test_training_set_exported_to_s3_trains_on_the_cluster_like_a_local_export(
    cluster, monkeypatch
):
    """The Parquet export through the S3 API (moto's server), read by the workers from there:
    the same booster as from a local export of the same rows."""
    import boto3
    import sqlalchemy as sa
    from distributed import Client
    from moto.server import ThreadedMotoServer

    from training.dataset import build_dataset
    from training.distributed import export_training_set, fit_on_cluster
    from training.train import model_checksum

    env, home, base = cluster
    for key, value in AWS.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    engine = sa.create_engine(f"postgresql+psycopg2://postgres@/trendcast?host={home}/pg")
    try:
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="artifacts")
        dataset = build_dataset(engine, "EURUSD", "1h", base / "datasets", horizon=4)
        exported = export_training_set(dataset, "s3://artifacts/exports", endpoint)
        prefix = exported.removeprefix("s3://artifacts/")
        assert prefix == f"exports/{dataset.snapshot.fingerprint[:16]}"
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="artifacts")["Contents"]}
        assert keys == {f"{prefix}/symbol=EURUSD/part-0.parquet", f"{prefix}.done"}
        stamp = s3.head_object(Bucket="artifacts", Key=f"{prefix}.done")["LastModified"]
        assert export_training_set(dataset, "s3://artifacts/exports", endpoint) == exported
        again = s3.head_object(Bucket="artifacts", Key=f"{prefix}.done")["LastModified"]
        assert again == stamp  # immutable: an export is written once
        local = export_training_set(dataset, str(base / "exports"))
        address = f"tcp://127.0.0.1:{env['TRENDCAST_DASK_SCHEDULER_PORT']}"
        with Client(address, timeout=10, set_as_default=False) as client:
            params = {"n_estimators": 20}
            from_s3 = fit_on_cluster(client, exported, dataset, params, endpoint)
            from_disk = fit_on_cluster(client, local, dataset, params)
        assert model_checksum(from_s3) == model_checksum(from_disk)
        assert from_s3.evals_result() == from_disk.evals_result()
    finally:
        engine.dispose()
        server.stop()


def test_an_unreachable_scheduler_is_one_clear_line(cluster):
    env, _, base = cluster
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    result = run_cli(
        "train",
        "--grid",
        str(grid_file(base, "EURUSD_nowhere")),
        env={**env, "TRENDCAST_DASK_SCHEDULER": nowhere, "TRENDCAST_DASK_CONNECT_TIMEOUT_S": "2"},
    )
    assert result.returncode == 1
    assert f"dask scheduler {nowhere}: unreachable within 2 s" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_scheduler_lost_mid_grid_fails_with_one_line_and_keeps_finished_runs(cluster):
    env, home, base = cluster
    client = tracking(env)
    before = set(parents(client))
    many = grid_file(base, "EURUSD_lost", params={"max_depth": [2, 3, 4, 5], "n_estimators": [40]})
    process = start_grid(env, many, "--cluster")
    try:
        parent_id = wait_for_child(client, before, "FINISHED")
        scheduler = processes.read_record(home / "run", "cluster")
        os.kill(scheduler.pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1, stderr
    assert "lost mid-run after" in stderr and "Traceback" not in stderr
    parent = client.get_run(parent_id)
    assert parent.info.status == "FAILED" and parent.data.tags["grid_status"] == "failed"
    finished = [c for c in children(client, parent_id) if c.info.status == "FINISHED"]
    assert finished and all("validation_ic" in c.data.metrics for c in finished)

    up = run_cli("up", env=env)  # the recorded cluster comes back
    assert up.returncode == 0, up.stderr + up.stdout
    parts = {p["name"]: p for p in json.loads(run_cli("status", "--json", env=env).stdout)}
    assert parts["cluster"]["state"] == "up" and "2 worker(s)" in parts["cluster"]["detail"]


def portfolio_rows(home: Path, run_id: int) -> tuple[list[tuple], list[tuple]]:
    """A stored portfolio run's weights and daily returns, in a fixed order."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"postgresql+psycopg2://postgres@/trendcast?host={home}/pg")
    try:
        with engine.connect() as conn:
            weights = conn.execute(
                sa.text(
                    "SELECT rebalance, member, weight FROM portfolio.run_weights "
                    "WHERE run_id = :r ORDER BY rebalance, member"
                ),
                {"r": run_id},
            ).all()
            returns = conn.execute(
                sa.text(
                    "SELECT series, day, ret FROM portfolio.run_returns WHERE run_id = :r "
                    "ORDER BY series, day"
                ),
                {"r": run_id},
            ).all()
        return [tuple(w) for w in weights], [tuple(r) for r in returns]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "rebalance",
    [{"rule": "calendar", "every": "monthly"}, {"rule": "drift", "band": 0.05}],
    ids=["calendar-a-task-per-rebalance", "drift-the-walk-a-task"],
)
def test_portfolio_backtest_on_the_cluster_equals_in_process(cluster, rebalance):
    env, home, base = cluster
    tested = run_cli("backtest", "--symbols", "all", env=env)  # the members' streams
    assert tested.returncode == 0, tested.stderr
    members = [
        {"name": f"sma-{s}", "strategy": "sma-crossover", "symbols": [s]}
        for s in ("GOOGL", "AAPL", "MSFT", "IBM")
    ] + [{"name": "bh-IBM", "strategy": "buy-and-hold", "symbols": ["IBM"]}]
    path = base / f"portfolio-{rebalance['rule']}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": f"cluster-{rebalance['rule']}",
                "method": "mean-cvar",
                "lookback_days": 120,
                "min_history_days": 30,
                "risk": {"max_weight": 0.5},
                "rebalance": rebalance,
                "members": members,
            }
        )
    )
    command = ("portfolio", "backtest", "--config", str(path), "--no-mlflow", "--json")
    local = run_cli(*command, env=env)
    spread = run_cli(*command, "--cluster", env=env)
    assert local.returncode == 0 and spread.returncode == 0, local.stderr + spread.stderr
    assert "portfolio backtest ran in-process" in local.stderr
    assert "portfolio backtest ran on dask tcp://127.0.0.1:" in spread.stderr
    assert "(2 workers)" in spread.stderr
    mine, theirs = json.loads(local.stdout), json.loads(spread.stdout)
    assert mine["rebalances"] >= (10 if rebalance["rule"] == "calendar" else 2)
    assert mine.pop("run") != theirs.pop("run")  # two recorded runs ...
    assert theirs == mine  # ... with every figure of the report the same, to the bit
    # and every stored weight and daily return
    assert portfolio_rows(home, json.loads(spread.stdout)["run"]) == portfolio_rows(
        home, json.loads(local.stdout)["run"]
    )
    shown = run_cli(*command[:-1], "--cluster", env=env)  # the table says where it ran too
    assert shown.returncode == 0 and "portfolio backtest ran on dask" in shown.stdout


def test_ctrl_c_on_a_cluster_grid_exits_like_in_process_and_leaves_the_cluster_idle(cluster):
    """Mirrors test_grid's Ctrl-C test on the cluster path: exit 130 with one line, finished
    runs kept, the rest KILLED, and no task still running on the workers afterwards."""
    from distributed import Client

    from trendcast.cluster import _running_keys

    env, _, base = cluster
    client = tracking(env)
    before = set(parents(client))
    many = grid_file(
        base,
        "EURUSD_interrupted",
        params={
            "max_depth": [2, 3, 4, 5, 6],
            "min_child_weight": [1, 2, 3, 4, 5, 6, 7, 8],
            "n_estimators": [25],
        },
    )
    tasks = 40 * len(GRID["periods"])
    exe = Path(sys.executable).with_name("trendcast")
    process = subprocess.Popen(
        [str(exe), "train", "--grid", str(many), "--cluster"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # as a terminal's process gets Ctrl-C (see test_grid: a background job ignores SIGINT)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        parent_id = wait_for_child(client, before, "FINISHED", timeout_s=180)
        finished = {
            c.info.run_id for c in children(client, parent_id) if c.info.status == "FINISHED"
        }
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted") and "Traceback" not in stderr
    parent = client.get_run(parent_id)
    assert parent.info.status == "KILLED" and parent.data.tags["grid_status"] == "interrupted"
    assert parent.data.tags["grid_placement"] == "dask"
    address = f"tcp://127.0.0.1:{env['TRENDCAST_DASK_SCHEDULER_PORT']}"
    with Client(address, timeout=10, set_as_default=False) as dask:
        running = dask.run(_running_keys)
        processing = dask.processing()
    assert len(running) == 2 and not any(running.values()), running  # the workers are idle
    assert not any(processing.values()), processing
    runs = children(client, parent_id)
    assert finished <= {c.info.run_id for c in runs if c.info.status == "FINISHED"}
    assert {c.info.status for c in runs} <= {"FINISHED", "KILLED"}  # none left RUNNING
    assert len(runs) < tasks  # it really stopped early
    time.sleep(3)  # nothing goes on writing after the command has gone
    later = children(client, parent_id)
    assert sorted((c.info.run_id, c.info.status) for c in later) == sorted(
        (c.info.run_id, c.info.status) for c in runs
    )


class _Stop(Exception):
    pass


def _stop(signum, frame):
    raise _Stop


def test_a_cancelled_task_stops_on_its_worker(cluster):
    """Dask cannot stop a running task; ours raise in their own thread once cancelled, so a
    command that stops (Ctrl-C, an error) leaves no task of its own running on the cluster
    (the grid's tasks are too short to show it: waiting them out would pass as well)."""
    from distributed import Client

    from trendcast.cluster import Placement, _running_keys, map_unordered

    def slow(marker: str) -> str:
        """A minute in Python (as a task between boosting rounds), marking start and end;
        local, so it travels by value (the workers cannot import this module)."""
        Path(f"{marker}.started").write_text("started")
        for _ in range(600):
            time.sleep(0.1)
        Path(f"{marker}.ended").write_text("ran to its end")
        return marker

    env, _, base = cluster
    address = f"tcp://127.0.0.1:{env['TRENDCAST_DASK_SCHEDULER_PORT']}"
    markers = [base / f"slow-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    previous = signal.signal(signal.SIGALRM, _stop)  # an interrupt while the tasks run
    try:
        with Client(address, timeout=10, set_as_default=False) as dask:
            where = Placement(dask, address, 2, timeout_s=10)
            tasks = [(f"slow-{m.name}", (str(m),)) for m in markers]
            signal.setitimer(signal.ITIMER_REAL, 8)
            stopped = time.monotonic()
            with pytest.raises(_Stop):
                list(map_unordered(where, slow, tasks))
            running = dask.run(_running_keys)
        waited = time.monotonic() - stopped
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert all(Path(f"{m}.started").exists() for m in markers), "the tasks never ran"
    assert not any(running.values()), running  # stopped on the workers, not left running
    assert waited < 8 + 5, waited  # stopped within moments, not waited out
    time.sleep(1)
    assert not any(Path(f"{m}.ended").exists() for m in markers)


def test_grid_tasks_log_as_the_commands_mlflow_user_with_auth_on(cluster):
    """With MLflow auth on, the workers (started without any MLflow identity) log the grid's
    nested runs as the user who ran the command; the password reaches no file or log."""
    from sqlalchemy.engine import make_url

    from trendcast.mlflow_auth import SCIENTIST
    from trendcast.stack import mlflow_server

    env, home, base = cluster
    server = make_url(f"postgresql+psycopg2://postgres@/trendcast?host={home}/pg")
    with mlflow_server.throwaway(server, base / "auth", auth=True) as (url, _):
        password = (base / "auth" / "mlflow-auth" / f"{SCIENTIST}.password").read_text().strip()
        as_scientist = {
            **env,
            "TRENDCAST_MLFLOW_TRACKING_URI": url,
            "TRENDCAST_MLFLOW_USERNAME": SCIENTIST,
            "TRENDCAST_MLFLOW_PASSWORD": password,
        }
        path = grid_file(base, "EURUSD_auth")
        done = run_cli("train", "--grid", str(path), "--cluster", env=as_scientist)
        assert done.returncode == 0, done.stderr + done.stdout
        assert "grid ran on dask" in done.stdout
        client = MlflowClient(url, registry_uri=url)
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = (
            SCIENTIST,
            password,
        )
        try:
            (parent_id,) = parents(client)
            runs = children(client, parent_id)
        finally:
            del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    # the workers have no identity of their own: without the command's, MLflow answers 401
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    leaked = [p for p in home.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
    assert not leaked, leaked  # not in the workers' logs, not anywhere under home
