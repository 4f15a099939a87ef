"""Run the Mage pipeline ``derive_indicators`` headless in its own environment (``.venv-mage``,
see the README: mage-ai pins versions the main environment cannot share), handing it the
database URL through that child's environment only."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from trendcast.config import Settings
from trendcast.errors import TrendcastError

REPO = Path(__file__).resolve().parents[2]
PIPELINE = "derive_indicators"


def run_pipeline(settings: Settings, full: bool = False, repo: Path = REPO) -> str:
    """Run the pipeline with its block tests on; returns its summary line. A failure raises
    with the tail of Mage's output."""
    from trendcast.db import database_url

    mage = repo / ".venv-mage" / "bin" / "mage"
    if not mage.exists():
        raise TrendcastError(f"{mage} not found: run `make setup` to create the Mage environment")
    url = database_url("trendcast", settings).render_as_string(hide_password=False)
    command = [
        str(mage),
        "run",
        "mage_pipelines",
        PIPELINE,
        "--test",
        "--runtime-vars",
        json.dumps({"full": full}),
    ]
    env = settings.child_env(database_url=url)
    result = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0:
        failed = [line for line in lines if "series failed and were left unconsumed" in line]
        if failed:  # some series built, some not: the per-series summary, not Mage's log
            raise TrendcastError(failed[-1][failed[-1].index(f"{PIPELINE}:") :])
        tail = "\n".join(lines[-15:])
        raise TrendcastError(f"Mage pipeline {PIPELINE} failed:\n{tail}")
    summary = [line for line in lines if line.startswith(f"{PIPELINE}:")]
    return summary[-1] if summary else f"{PIPELINE}: done"
