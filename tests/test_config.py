"""Settings: one object, paths that do not depend on the working directory, and children that
see the effective values (not just the inherited environment)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from trendcast.config import PROJECT_DIR, Settings

REPO = Path(__file__).resolve().parents[1]


def settings_seen_from(cwd: Path, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRENDCAST_")}
    code = "from trendcast.config import Settings; s = Settings(); print(s.home); "
    code += "print(s.artifacts_destination)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split()


def test_paths_never_depend_on_the_working_directory(tmp_path):
    assert PROJECT_DIR == REPO
    here = settings_seen_from(REPO)
    elsewhere = settings_seen_from(tmp_path)
    assert here == elsewhere == [str(REPO / ".trendcast"), str(REPO / ".trendcast/mlartifacts")]
    relative = settings_seen_from(tmp_path, TRENDCAST_HOME="state", TRENDCAST_ARTIFACTS_URI="a")
    assert relative == [str(REPO / "state"), str(REPO / "state/a")]
    assert settings_seen_from(tmp_path, TRENDCAST_ARTIFACTS_URI="s3://b/p")[1] == "s3://b/p"


def test_children_get_the_effective_settings_not_only_the_inherited_environment(monkeypatch):
    monkeypatch.setenv("TRENDCAST_MODEL_ALIAS", "from-the-shell")
    settings = Settings(shadow_alias=None).model_copy(
        update={"model_alias": "set-in-code", "bentoml_port": 4321, "symbols": ["A", "B"]}
    )
    env = settings.child_env()
    assert env["TRENDCAST_MODEL_ALIAS"] == "set-in-code"
    assert env["TRENDCAST_BENTOML_PORT"] == "4321" and env["TRENDCAST_SYMBOLS"] == "A,B"
    assert env["TRENDCAST_HOME"] == str(settings.home)  # absolute: the child's cwd differs
    assert "TRENDCAST_SHADOW_ALIAS" not in settings.as_env()  # unset stays unset
    # A child reading that environment agrees with the parent on every setting.
    monkeypatch.setattr(os, "environ", env)
    assert Settings(_env_file=None).model_dump() == settings.model_dump() | {
        "shadow_alias": "challenger"  # None cannot be written as a variable: the default returns
    }


def test_mlflow_s3_endpoint_is_read_under_mlflows_own_name(monkeypatch):
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    settings = Settings()
    assert settings.s3_endpoint_url == "http://127.0.0.1:9"
    assert settings.as_env()["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:9"
