"""`trendcast up` refuses a taken port before it starts anything, and says how to move it."""

from __future__ import annotations

import os
import socket

from conftest import run_cli


def test_up_names_a_taken_port_its_holder_and_variable_and_starts_nothing(tmp_path):
    home = tmp_path / "h"
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            free_port = free.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRENDCAST_")}
        env.update(
            TRENDCAST_HOME=str(home),
            TRENDCAST_MLFLOW_PORT=str(free_port),
            TRENDCAST_REPLAY_PORT=str(port),
        )
        result = run_cli("up", "--with", "replay", env=env, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert f"port {port} on 127.0.0.1 is taken" in message
    assert f"pid {os.getpid()}" in message  # this test's process holds it
    assert "TRENDCAST_REPLAY_PORT" in message
    assert "nothing was started" in message
    assert not (home / "pg").exists(), "the embedded PostgreSQL was started anyway"
    assert not any((home / "run").glob("*.json")), "a part was recorded as started"
