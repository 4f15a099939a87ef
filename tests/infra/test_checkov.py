"""checkov over infra/: no failed check; every suppression carries its reason inline."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from infra_support import INFRA, tool

SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def checkov(directory: Path, home: Path, *extra: str) -> tuple[int, dict]:
    """Run checkov offline (--skip-download: no calls to the vendor's platform)."""
    result = subprocess.run(
        [
            str(tool("checkov")),
            "-d",
            str(directory),
            "--framework",
            "terraform",
            "--skip-download",
            "-o",
            "json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home), "LOG_LEVEL": "ERROR"},
    )
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return result.returncode, report


def _failures(report: dict) -> str:
    return "\n".join(
        f"{c['check_id']} {c['resource']} ({c['file_path']}:{c['file_line_range'][0]})"
        for c in report["results"]["failed_checks"]
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    code, report = checkov(INFRA, tmp_path_factory.mktemp("checkov-home"))
    assert code == 0, _failures(report)
    return report


def test_checkov_finds_no_failed_check_in_infra(report):
    summary = report["summary"]
    assert summary["failed"] == 0, _failures(report)
    assert summary["parsing_errors"] == 0
    # It really looked: every module's resources were scanned and hundreds of checks passed.
    assert summary["resource_count"] >= 100
    assert summary["passed"] >= 300


def test_every_suppression_is_justified_inline(report):
    for check in report["results"]["skipped_checks"]:
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) >= 20, f"{check['check_id']} on {check['resource']}: no reason"
    comments = [
        (path, match) for path in INFRA.rglob("*.tf") for match in SKIP.finditer(path.read_text())
    ]
    assert comments
    for path, match in comments:
        assert match.group(2) and len(match.group(2).strip()) >= 20, f"{path}: {match.group(0)}"
    # Every comment suppresses something checkov ran (none is stale).
    assert len(report["results"]["skipped_checks"]) >= len(comments)


def test_checkov_fails_an_open_database_and_bucket(tmp_path):
    """The harness itself: a public, unencrypted database is reported and exits non-zero."""
    (tmp_path / "tf").mkdir()
    (tmp_path / "tf" / "main.tf").write_text(
        'resource "aws_db_instance" "open" {\n'
        '  engine              = "postgres"\n'
        '  instance_class      = "db.t4g.micro"\n'
        "  publicly_accessible = true\n"
        "  storage_encrypted   = false\n"
        "}\n"
    )
    code, report = checkov(tmp_path / "tf", tmp_path, "--check", "CKV_AWS_16,CKV_AWS_17")
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert code != 0
    assert failed == {"CKV_AWS_16", "CKV_AWS_17"}
