"""Secret scan of the repository with detect-secrets: nothing but audited false positives.

Every file git tracks or would add (untracked, not ignored) is scanned with the plugins and
filters recorded in .secrets.baseline; any finding not in the baseline fails. The baseline holds
only audited false positives, each named in AUDITED with its reason.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from detect_secrets.core.secrets_collection import SecretsCollection
from detect_secrets.settings import transient_settings
from infra_support import REPO

BASELINE = REPO / ".secrets.baseline"
AUDITED = {
    ("mage_pipelines/metadata.yaml", "Hex High Entropy String"): "Mage's project_uuid, an id",
    ("tests/test_cli.py", "Basic Auth Credentials"): "URL of an unreachable server (port 1)",
    ("tests/test_ingest.py", "Secret Keyword"): "secret created in moto's mocked Secrets Manager",
    ("tests/test_ingest.py", "Basic Auth Credentials"): "the URL built from that mocked secret",
    ("trendcast/feature_sets.py", "Hex High Entropy String"): "a feature set's code fingerprint",
    ("tests/test_indicators.py", "Hex High Entropy String"): "the same fingerprint, asserted",
}


def repository_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [name for name in listed if (REPO / name).is_file()]


def scan(root: Path, files: list[str]) -> dict[tuple[str, str, str], int]:
    """Findings {(path relative to root, type, secret hash): line}, with the baseline settings."""
    with transient_settings(json.loads(BASELINE.read_text())):
        found = SecretsCollection(root=str(root))
        found.scan_files(*files, num_processors=1)
    return {
        (os.path.relpath(s.filename, root), s.type, s.secret_hash): s.line_number for _, s in found
    }


def known() -> set[tuple[str, str, str]]:
    data = json.loads(BASELINE.read_text())
    return {
        (name, item["type"], item["hashed_secret"])
        for name, items in data["results"].items()
        for item in items
    }


def test_no_secret_outside_the_audited_baseline():
    files = [name for name in repository_files() if name != BASELINE.name]
    assert len(files) > 50 and "infra/environments/prod.tfvars" in files
    found = scan(REPO, files)
    new = sorted(
        f"{name}:{line} {type_}"
        for (name, type_, h), line in found.items()
        if (name, type_, h) not in known()
    )
    assert not new, "possible secrets (remove them, or audit and add to the baseline):\n" + (
        "\n".join(new)
    )
    # The scan sees what the baseline records (the comparison is not vacuous).
    assert known() <= set(found)


def test_baseline_holds_only_audited_false_positives():
    data = json.loads(BASELINE.read_text())
    entries = [(name, item) for name, items in data["results"].items() for item in items]
    assert {(name, item["type"]) for name, item in entries} == set(AUDITED)
    for name, item in entries:
        assert item.get("is_secret") is False, f"{name}:{item['line_number']} not audited"


def test_the_scan_catches_a_planted_key(tmp_path):
    planted = tmp_path / "settings.tfvars"
    key_id = "AKIA" + "QW3RTY7UIOPASDF2"  # built here so this file holds no key-shaped literal
    planted.write_text(f'access_key = "{key_id}"\ndb_password = "{"Zx9" * 6}"\n')
    found = scan(tmp_path, ["settings.tfvars"])
    assert {type_ for _, type_, _ in found} >= {"AWS Access Key", "Secret Keyword"}, found
