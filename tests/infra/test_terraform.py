"""Structure of the Terraform in infra/, parsed with python-hcl2 (no terraform binary here).

Each test names the promise of issue 9 it guards; removing the resource, the reference or the
setting it names makes it fail.
"""

from __future__ import annotations

import importlib
import json
import re
import tomllib

import pytest
from infra_support import (
    DATA_REF,
    INFRA,
    LOCAL_REF,
    MODULE_NAMES,
    MODULE_REF,
    REPO,
    RESOURCE_REF,
    VAR_REF,
    Module,
    load_all,
    load_module,
    one,
    parse,
    strings,
)

from trendcast.config import Settings
from trendcast.schedule import DEFAULT_INGEST_RATE, period_seconds

ALL = ["root", "bootstrap", *MODULE_NAMES]


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    """Every module by name: root, bootstrap and the five child modules."""
    return load_all()


def test_every_tf_file_parses_and_belongs_to_a_checked_module(modules):
    checked = {tf for m in modules.values() for tf in m.files}
    found = {p for p in INFRA.rglob("*.tf") if ".terraform" not in p.parts}
    assert found == checked, f"not covered by the checks: {sorted(found - checked)}"
    for path in found:
        parse(path)  # raises on a syntax error


def test_root_calls_the_five_modules_and_their_sources_exist(modules):
    root = modules["root"]
    assert set(root.modules) == set(MODULE_NAMES)
    for name, call in root.modules.items():
        source = (INFRA / call["source"]).resolve()
        assert source == (INFRA / "modules" / name).resolve(), call["source"]
        assert source.is_dir() and list(source.glob("*.tf")), f"module source {source} is empty"


@pytest.mark.parametrize("name", ALL)
def test_every_var_reference_is_declared_in_its_module(modules, name):
    module = modules[name]
    used = {ref for s in module.all_strings() for ref in VAR_REF.findall(s)}
    assert used, f"{name} uses no variables at all?"
    assert used <= set(module.variables), (
        f"{name}: undeclared {sorted(used - set(module.variables))}"
    )
    unused = set(module.variables) - used
    assert not unused, f"{name}: declared but never used: {sorted(unused)}"


@pytest.mark.parametrize("name", ALL)
def test_every_local_resource_and_data_reference_exists(modules, name):
    module = modules[name]
    texts = module.all_strings()
    locals_used = {ref for s in texts for ref in LOCAL_REF.findall(s)}
    assert locals_used <= set(module.locals), sorted(locals_used - set(module.locals))
    data_used = {ref for s in texts for ref in DATA_REF.findall(s)}
    assert data_used <= set(module.data), sorted(data_used - set(module.data))
    resources_used = {
        ref for s in texts for ref in RESOURCE_REF.findall(s) if not s.startswith("arn:")
    }
    # An IAM action list such as "aws_iam..." never occurs; every aws_x.y must be a resource here.
    missing = {ref for ref in resources_used if ref not in module.resources}
    assert not missing, f"{name}: references to undefined resources {sorted(missing)}"


def test_every_module_output_reference_exists(modules):
    root = modules["root"]
    refs = {ref for s in root.all_strings() for ref in MODULE_REF.findall(s)}
    assert refs, "the root uses no module outputs?"
    for module_name, output in refs:
        assert module_name in root.modules, f"module.{module_name} is not called"
        assert output in modules[module_name].outputs, f"module.{module_name}.{output} undefined"


def test_module_arguments_are_declared_and_required_ones_given(modules):
    meta = {"source", "version", "providers", "depends_on", "count", "for_each"}
    for name, call in modules["root"].modules.items():
        child = modules[name]
        given = set(call) - meta
        assert given <= set(child.variables), (
            f"{name}: unknown {sorted(given - set(child.variables))}"
        )
        required = {v for v, body in child.variables.items() if "default" not in body}
        assert required <= given, f"{name}: missing required {sorted(required - given)}"


@pytest.mark.parametrize("name", ALL)
def test_variables_have_type_description_and_validation(modules, name):
    for var, body in modules[name].variables.items():
        assert "type" in body, f"{name}: variable {var} has no type"
        assert len(body.get("description", "")) > 10, f"{name}: variable {var} has no description"
        if body["type"] != "${bool}" and body["type"] != "bool":
            assert body.get("validation"), f"{name}: variable {var} has no validation"


@pytest.mark.parametrize("name", ALL)
def test_outputs_have_descriptions(modules, name):
    for output, body in modules[name].outputs.items():
        assert len(body.get("description", "")) > 5, f"{name}: output {output}"


def test_root_outputs_urls_bucket_and_database_endpoint(modules):
    outputs = modules["root"].outputs
    for required in ("dashboard_url", "mlflow_url", "service_url", "artifact_bucket"):
        assert required in outputs
    assert outputs["database_endpoint"]["value"] == "${module.database.endpoint}"


# ---- state: bootstrap and backend ----


def _bucket_settings(module: Module, bucket: str) -> None:
    """Versioned, KMS-encrypted, all public access blocked, TLS-only."""
    ref = f"${{aws_s3_bucket.{bucket}.id}}"
    versioning = [
        b for b in module.of_type("aws_s3_bucket_versioning").values() if b["bucket"] == ref
    ]
    assert one(one(versioning)["versioning_configuration"])["status"] == "Enabled"
    sse = [
        b
        for b in module.of_type("aws_s3_bucket_server_side_encryption_configuration").values()
        if b["bucket"] == ref
    ]
    default = one(one(one(sse)["rule"])["apply_server_side_encryption_by_default"])
    assert default["sse_algorithm"] == "aws:kms"
    blocks = [
        b
        for b in module.of_type("aws_s3_bucket_public_access_block").values()
        if b["bucket"] == ref
    ]
    block = one(blocks)
    for flag in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert block[flag] is True, flag
    policies = [b for b in module.of_type("aws_s3_bucket_policy").values() if b["bucket"] == ref]
    document = module.data[("aws_iam_policy_document", one(policies)["policy"].split(".")[2])]
    statement = one(document["statement"])
    assert (
        statement["effect"] == "Deny"
        and one(statement["condition"])["variable"] == "aws:SecureTransport"
    )


def test_bootstrap_state_bucket_and_lock_table(modules):
    boot = modules["bootstrap"]
    boot.resource("aws_s3_bucket", "state")
    _bucket_settings(boot, "state")
    table = boot.resource("aws_dynamodb_table", "locks")
    assert table["hash_key"] == "LockID"  # the attribute Terraform's S3 backend locks on
    assert one(table["attribute"]) == {"name": "LockID", "type": "S"}
    assert one(table["point_in_time_recovery"])["enabled"] is True
    assert one(table["server_side_encryption"])["enabled"] is True
    assert not any("backend" in block for block in boot.terraform), "bootstrap keeps local state"


def test_root_uses_a_partial_s3_backend_with_the_lock_table(modules):
    backend = one([b["backend"] for b in modules["root"].terraform if "backend" in b])
    s3 = one(backend)["s3"]
    assert s3.get("encrypt") is True
    assert "bucket" not in s3 and "dynamodb_table" not in s3, "comes from -backend-config"
    boot_outputs = modules["bootstrap"].outputs
    for env in ("dev", "prod"):
        config = parse(INFRA / "environments" / f"{env}.s3.tfbackend")
        assert set(config) >= {"bucket", "key", "region", "dynamodb_table"}, config
        assert config["key"] == f"trendcast/{env}/terraform.tfstate"
    assert "${aws_dynamodb_table.locks.name}" in boot_outputs["lock_table"]["value"]


# ---- network ----


def test_network_has_private_tiers_and_database_reachable_only_from_its_clients(modules):
    net = modules["network"]
    net.resource("aws_vpc", "main")
    for tier in ("public", "app", "database"):
        net.resource("aws_subnet", tier)
    assert "map_public_ip_on_launch" not in net.resource("aws_subnet", "app")
    # The database route table has no route out.
    assert "route" not in net.resource("aws_route_table", "database")
    clients = net.locals["database_clients"]
    assert set(clients) == {"lambda", "mlflow", "service", "dashboard"}
    assert set(clients.values()) == {
        f"${{aws_security_group.{n}.id}}" for n in ("lambda", "mlflow", "service", "dashboard")
    }
    db_sg = "${aws_security_group.database.id}"
    ingress = [
        rule
        for rule in net.of_type("aws_vpc_security_group_ingress_rule").values()
        if rule["security_group_id"] == db_sg
    ]
    assert len(ingress) == 1, "one rule set for the database: from the client groups only"
    rule = ingress[0]
    assert rule["for_each"] == "${local.database_clients}"
    assert rule["referenced_security_group_id"] == "${each.value}"
    assert "cidr_ipv4" not in rule and "cidr_ipv6" not in rule
    assert (rule["from_port"], rule["to_port"]) == (5432, 5432)
    # No old-style inline rules that could open the database another way.
    for sg in net.of_type("aws_security_group").values():
        assert "ingress" not in sg and "egress" not in sg


# ---- database ----


def test_database_private_encrypted_backed_up_and_protected_in_prod(modules):
    db = modules["database"]
    instance = db.resource("aws_db_instance", "main")
    assert instance["engine"] == "postgres"
    assert instance["publicly_accessible"] is False
    assert instance["storage_encrypted"] is True
    assert instance["iam_database_authentication_enabled"] is True
    assert instance["backup_retention_period"] == "${var.backup_retention_days}"
    validation = one(db.variables["backup_retention_days"]["validation"])
    assert ">= 1" in validation["condition"]
    assert instance["deletion_protection"] == "${local.is_prod}"
    assert db.locals["is_prod"] == '${var.environment == "prod"}'
    assert instance["skip_final_snapshot"] is False
    assert instance["db_subnet_group_name"] == "${aws_db_subnet_group.main.name}"
    assert db.resource("aws_db_subnet_group", "main")["subnet_ids"] == "${var.subnet_ids}"
    root_call = modules["root"].modules["database"]
    assert root_call["subnet_ids"] == "${module.network.database_subnet_ids}"
    params = {
        p["name"]: p["value"] for p in db.resource("aws_db_parameter_group", "main")["parameter"]
    }
    assert params["rds.force_ssl"] == "1"


def _secret_keys(module: Module, name: str) -> set[str]:
    version = module.resource("aws_secretsmanager_secret_version", name)
    match = re.fullmatch(r"\$\{jsonencode\(\{(.*)\}\)\}", version["secret_string"], re.S)
    assert match, version["secret_string"]
    return set(re.findall(r"(?:^|,)\s*([a-z_]+)\s*=(?!=)", match.group(1).strip()))


def test_database_secret_holds_what_the_lambda_handler_reads(modules, monkeypatch):
    """Feed database_url_from_secret a secret with exactly the keys Terraform writes."""
    import boto3

    from ingestion_lambda import handler as lambda_handler

    keys = _secret_keys(modules["database"], "app")
    assert {"username", "password", "host", "port", "dbname"} <= keys
    values = {
        "username": "u",
        "password": "p",
        "host": "db.internal",
        "port": 5432,
        "dbname": "trendcast",
        "url": "postgresql+psycopg2://u:p@db.internal:5432/trendcast?sslmode=require",
        "mlflow_url": "postgresql+psycopg2://u:p@db.internal:5432/mlflow?sslmode=require",
    }
    assert keys <= set(values), f"new secret keys to cover here: {sorted(keys - set(values))}"

    class FakeSecrets:
        secret: dict

        def get_secret_value(self, SecretId):
            return {"SecretString": json.dumps(self.secret)}

    fake = FakeSecrets()
    monkeypatch.setattr(boto3, "client", lambda service, **kw: fake)
    fake.secret = {k: values[k] for k in keys}
    assert lambda_handler.database_url_from_secret("arn") == values["url"]
    fake.secret = {k: values[k] for k in keys - {"url", "mlflow_url"}}
    assert lambda_handler.database_url_from_secret("arn") == (
        "postgresql+psycopg2://u:p@db.internal:5432/trendcast"
    )


# ---- artifacts ----


def test_artifact_bucket_versioned_encrypted_private_with_lifecycle(modules):
    art = modules["artifacts"]
    art.resource("aws_s3_bucket", "artifacts")
    _bucket_settings(art, "artifacts")
    lifecycle = art.resource("aws_s3_bucket_lifecycle_configuration", "artifacts")
    rule = one(lifecycle["rule"])
    assert rule["status"] == "Enabled"
    assert one(rule["noncurrent_version_expiration"])["noncurrent_days"]


# ---- ingestion ----


def test_lambda_handler_runtime_and_zip_match_the_code(modules):
    fn = modules["ingestion"].resource("aws_lambda_function", "ingestion")
    module_name, _, attribute = fn["handler"].rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    assert callable(handler)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    version = re.search(r">=(\d+\.\d+)", project["requires-python"]).group(1)
    assert fn["runtime"] == f"python{version}"
    assert fn["filename"] == "${var.zip_path}"
    assert fn["source_code_hash"] == "${filebase64sha256(var.zip_path)}"
    assert modules["root"].modules["ingestion"]["zip_path"] == "${var.lambda_zip_path}"
    default = modules["root"].variables["lambda_zip_path"]["default"]
    # terraform runs in infra/; `make lambda-zip` writes dist/ingestion_lambda.zip
    assert (INFRA / default).resolve() == REPO / "dist" / "ingestion_lambda.zip"
    assert "ingestion_lambda/build_zip.py" in (REPO / "Makefile").read_text()
    assert '"dist" / "ingestion_lambda.zip"' in (REPO / "ingestion_lambda/build_zip.py").read_text()


def test_lambda_environment_names_are_trendcast_settings(modules):
    fn = modules["ingestion"].resource("aws_lambda_function", "ingestion")
    variables = one(fn["environment"])["variables"]
    assert variables["TRENDCAST_DATABASE_SECRET_ARN"] == "${var.database_secret_arn}"
    assert modules["root"].modules["ingestion"]["database_secret_arn"] == (
        "${module.database.app_secret_arn}"
    )
    for name in variables:
        assert name.startswith("TRENDCAST_"), name
        assert name.removeprefix("TRENDCAST_").lower() in Settings.model_fields, name


def test_schedule_matches_the_local_scheduler(modules):
    ingestion = modules["ingestion"]
    rule = ingestion.resource("aws_cloudwatch_event_rule", "schedule")
    assert rule["schedule_expression"] == "${var.schedule_expression}"
    assert ingestion.variables["schedule_expression"]["default"] == DEFAULT_INGEST_RATE
    root = modules["root"]
    assert root.modules["ingestion"]["schedule_expression"] == "${var.ingest_schedule}"
    assert root.variables["ingest_schedule"]["default"] == DEFAULT_INGEST_RATE
    for env in ("dev", "prod"):
        tfvars = parse(INFRA / "environments" / f"{env}.tfvars")
        assert tfvars.get("ingest_schedule", DEFAULT_INGEST_RATE) == DEFAULT_INGEST_RATE
    period_seconds(DEFAULT_INGEST_RATE)  # the local scheduler accepts it
    # The Terraform validation accepts it too.
    condition = one(root.variables["ingest_schedule"]["validation"])["condition"]
    pattern = re.search(r'regex\("(.*)", var\.ingest_schedule\)', condition).group(1)
    assert re.fullmatch(pattern.encode().decode("unicode_escape"), DEFAULT_INGEST_RATE)


def test_eventbridge_invokes_the_lambda_with_permission_retries_and_dead_letters(modules):
    ing = modules["ingestion"]
    target = ing.resource("aws_cloudwatch_event_target", "lambda")
    assert target["rule"] == "${aws_cloudwatch_event_rule.schedule.name}"
    assert target["arn"] == "${aws_lambda_function.ingestion.arn}"
    queues = {f"${{aws_sqs_queue.{name}.arn}}" for name in ing.of_type("aws_sqs_queue")}
    assert one(target["dead_letter_config"])["arn"] in queues
    assert one(target["retry_policy"])["maximum_retry_attempts"] >= 1
    fn = ing.resource("aws_lambda_function", "ingestion")
    assert one(fn["dead_letter_config"])["target_arn"] in queues
    permission = ing.resource("aws_lambda_permission", "eventbridge")
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["action"] == "lambda:InvokeFunction"
    assert permission["source_arn"] == "${aws_cloudwatch_event_rule.schedule.arn}"
    assert permission["function_name"] == "${aws_lambda_function.ingestion.function_name}"


def test_lambda_log_group_has_retention(modules):
    ing = modules["ingestion"]
    group = ing.resource("aws_cloudwatch_log_group", "lambda")
    assert group["name"] == "/aws/lambda/${local.function_name}"
    assert ing.resource("aws_lambda_function", "ingestion")["function_name"] == (
        "${local.function_name}"
    )
    assert group["retention_in_days"] == "${var.log_retention_days}"


def test_lambda_role_is_least_privilege(modules):
    ing = modules["ingestion"]
    role = ing.resource("aws_iam_role", "lambda")
    attached = [
        p
        for p in ing.of_type("aws_iam_role_policy").values()
        if p["role"] == "${aws_iam_role.lambda.id}"
    ]
    policy = one(attached)["policy"]
    assert policy == "${data.aws_iam_policy_document.lambda.json}"
    assert not ing.of_type("aws_iam_role_policy_attachment"), "no managed policies"
    assert "managed_policy_arns" not in role
    grants: dict[str, list[str]] = {}
    for statement in ing.data[("aws_iam_policy_document", "lambda")]["statement"]:
        assert statement.get("effect", "Allow") == "Allow"
        for action in statement["actions"]:
            grants[action] = strings(statement["resources"])
    secret = "${var.database_secret_arn}"
    log_streams = "${aws_cloudwatch_log_group.lambda.arn}:*"
    eni = "arn:aws:ec2:${local.region}:${local.account}:network-interface/*"
    assert grants == {
        "secretsmanager:GetSecretValue": [secret],
        "logs:CreateLogStream": [log_streams],
        "logs:PutLogEvents": [log_streams],
        "ec2:CreateNetworkInterface": grants["ec2:CreateNetworkInterface"],
        "ec2:DeleteNetworkInterface": [eni],
        "ec2:AssignPrivateIpAddresses": [eni],
        "ec2:UnassignPrivateIpAddresses": [eni],
        "ec2:DescribeNetworkInterfaces": ["*"],
        "sqs:SendMessage": ["${aws_sqs_queue.dlq.arn}"],
        "kms:Decrypt": ["${var.kms_key_arn}"],
        "kms:GenerateDataKey": ["${var.kms_key_arn}"],
    }
    assert eni in " ".join(grants["ec2:CreateNetworkInterface"])
    assert "*" not in grants["ec2:CreateNetworkInterface"]


# ---- services ----


def test_services_on_fargate_with_ports_health_checks_and_private_tasks(modules):
    svc = modules["services"]
    apps = svc.locals["apps"]
    assert {name: (a["port"], a["health"]) for name, a in apps.items()} == {
        "mlflow": (5000, "/health"),
        "service": (3000, "/readyz"),
        "dashboard": (8501, "/_stcore/health"),
    }
    service = svc.resource("aws_ecs_service", "app")
    assert service["for_each"] == "${local.apps}"
    assert service["launch_type"] == "FARGATE"
    assert one(service["network_configuration"])["assign_public_ip"] is False
    definition = svc.resource("aws_ecs_task_definition", "app")
    assert definition["requires_compatibilities"] == ["FARGATE"]
    assert "readonlyRootFilesystem = each.value.read_only" in definition["container_definitions"]
    assert apps["mlflow"]["read_only"] is True and apps["dashboard"]["read_only"] is True
    health = one(svc.resource("aws_lb_target_group", "app")["health_check"])
    assert health["path"] == "${each.value.health}"
    listener = svc.resource("aws_lb_listener", "app")
    assert listener["protocol"] == "HTTPS"


def _grants(module: Module, document: str) -> dict[str, list[str]]:
    grants: dict[str, list[str]] = {}
    for statement in module.data[("aws_iam_policy_document", document)]["statement"]:
        for action in statement["actions"]:
            grants.setdefault(action, []).extend(strings(statement["resources"]))
    return grants


def test_task_roles_grant_what_each_app_needs_and_no_more(modules):
    svc = modules["services"]
    bucket_objects = "${var.artifact_bucket_arn}/*"
    mlflow = _grants(svc, "task_mlflow")
    assert {"s3:GetObject", "s3:PutObject"} <= set(mlflow)
    assert mlflow["s3:PutObject"] == [bucket_objects]
    assert mlflow["secretsmanager:GetSecretValue"] == ["${var.database_secret_arn}"]
    service = _grants(svc, "task_service")
    assert service["s3:GetObject"] == [bucket_objects]
    assert not {
        a for a in service if a.startswith("s3:") and a.split(":")[1].startswith(("Put", "Delete"))
    }
    assert service["secretsmanager:GetSecretValue"] == ["${var.database_secret_arn}"]
    dashboard = _grants(svc, "task_dashboard")
    assert set(dashboard) == {"secretsmanager:GetSecretValue", "kms:Decrypt"}
    assert dashboard["secretsmanager:GetSecretValue"] == ["${var.database_readonly_secret_arn}"]
    reader = "${aws_secretsmanager_secret.mlflow_reader.arn}"
    assert svc.locals["app_secret_arns"]["dashboard"] == [
        "${var.database_readonly_secret_arn}",
        reader,
    ]
    injected = svc.locals["app_secrets"]
    readonly_url = "${var.database_readonly_secret_arn}:url::"
    assert injected["dashboard"] == {
        "TRENDCAST_DASHBOARD_DATABASE_URL": readonly_url,
        "TRENDCAST_MLFLOW_PASSWORD": f"{reader}:password::",  # MLflow as the read-only user
    }
    assert (
        injected["service"]["TRENDCAST_API_TOKEN"] == "${aws_secretsmanager_secret.api_token.arn}"
    )
    assert injected["service"]["TRENDCAST_MLFLOW_PASSWORD"] == f"{reader}:password::"
    for app, variables in injected.items():  # each execution role reads exactly what it injects
        arns = {re.sub(r":[a-z_]+::$", "", value) for value in variables.values()}
        assert arns == set(svc.locals["app_secret_arns"][app]), app
    # The MLflow admin (and the promotion identity) reach no task but MLflow's own.
    for app in ("service", "dashboard"):
        assert not [a for a in svc.locals["app_secret_arns"][app] if "mlflow_admin" in a]
        assert not [a for a in svc.locals["app_secret_arns"][app] if "mlflow_promoter" in a]
    assert "trendcast-auth" in svc.locals["app_command"]["mlflow"]
    for grants in (mlflow, service, dashboard):
        assert all(r != "*" for resources in grants.values() for r in resources)


def test_service_image_comes_from_the_repository_the_bento_workflow_pushes_to(modules):
    svc = modules["services"]
    repo = svc.resource("aws_ecr_repository", "service")
    assert repo["image_tag_mutability"] == "IMMUTABLE"
    assert svc.locals["app_image"]["service"].startswith(
        "${aws_ecr_repository.service.repository_url}:"
    )
    lifecycle = one(svc.resource("aws_ecs_service", "app")["lifecycle"])
    assert "task_definition" in str(lifecycle["ignore_changes"])
    assert modules["root"].outputs["service_ecr_repository_url"]


# ---- tfvars examples ----


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_tfvars_examples_hold_declared_placeholders_only(modules, env):
    root = modules["root"]
    path = INFRA / "environments" / f"{env}.tfvars"
    values = parse(path)
    assert set(values) <= set(root.variables), sorted(set(values) - set(root.variables))
    required = {v for v, body in root.variables.items() if "default" not in body}
    assert required <= set(values), f"{path.name} misses {sorted(required - set(values))}"
    assert values["environment"] == env
    text = path.read_text()
    accounts = re.findall(r"arn:aws:[a-z0-9-]+:[a-z0-9-]*:(\d{12}):", text)
    accounts += re.findall(r"\b(\d{12})\.dkr\.ecr\.", text)
    assert accounts, "the examples name the placeholder account"
    for account in accounts:
        assert account == "123456789012", f"{path.name}: real-looking account id {account}"
    for key in values:
        assert not re.search(r"password|secret|token|access_key", key), key
    for cidr in values["allowed_cidr_blocks"]:
        assert cidr != "0.0.0.0/0"


def test_bootstrap_example_holds_declared_placeholders_only(modules):
    values = parse(INFRA / "bootstrap" / "example.tfvars")
    boot = modules["bootstrap"].variables
    assert set(values) <= set(boot)
    assert {v for v, body in boot.items() if "default" not in body} <= set(values)
    assert values["state_bucket_name"].startswith("example-")


def test_module_directory_listing_is_what_the_checks_cover():
    on_disk = {p.name for p in (INFRA / "modules").iterdir() if p.is_dir()}
    assert on_disk == set(MODULE_NAMES)
    for name in MODULE_NAMES:
        assert isinstance(load_module(INFRA / "modules" / name), Module)


# ---- formatting ----

_ASSIGN = re.compile(r"^(\s*)([A-Za-z0-9_\-\".]+)(\s*)=(?!=)(.*)$")


def _net_brackets(text: str) -> int:
    """Brackets an attribute's value opens and leaves open (a trailing comment excluded)."""
    quoted, cut = False, len(text)
    for i, char in enumerate(text):
        if char == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif char == "#" and not quoted:
            cut = i
            break
    value = text[:cut]
    return sum(value.count(c) for c in "([{") - sum(value.count(c) for c in ")]}")


def misaligned(text: str) -> list[int]:
    """Lines `terraform fmt` would change, by its alignment rule (hclwrite's formatCells).

    Consecutive lines that each hold a whole one-line attribute form a chain whose `=` signs
    line up one space after the longest name; any other line (blank, comment, block, a value
    that opens a bracket it does not close) ends the chain. A check of the rule terraform fmt
    applies most, not of everything it does: CI runs the real `terraform fmt -check`.
    """
    bad: list[int] = []
    chain: list[tuple[int, int, int]] = []

    def close() -> None:
        if chain:
            width = max(name_end for _, name_end, _ in chain)
            bad.extend(n for n, _, equals in chain if equals != width + 1)
            chain.clear()

    for number, line in enumerate(text.splitlines(), 1):
        match = _ASSIGN.match(line)
        if match and not line.lstrip().startswith("#") and _net_brackets(match.group(4)) == 0:
            indent, name, space, value = match.groups()
            chain.append((number, len(indent) + len(name), len(indent) + len(name) + len(space)))
            if not value.startswith(" ") or value.startswith("  "):
                bad.append(number)
            continue
        close()
        if line != line.rstrip():
            bad.append(number)
    close()
    return bad


def test_alignment_rule_catches_what_terraform_fmt_would_change():
    assert misaligned("a   = 1\nbcd = 2\n\nx = {\n  y = 1\n}\n") == []
    assert misaligned("a = 1\nbcd = 2\n") == [1]
    assert misaligned('name = "x"\npolicy = jsonencode({\n  k = 1\n})\n') == []


def test_terraform_files_are_aligned_as_terraform_fmt_leaves_them():
    files = [p for p in INFRA.rglob("*") if p.suffix in {".tf", ".tfvars"}]
    assert len(files) > 20
    problems = [f"{p.relative_to(REPO)}:{n}" for p in files for n in misaligned(p.read_text())]
    assert not problems, "not terraform-fmt aligned:\n" + "\n".join(problems)


def test_execution_roles_may_pull_each_apps_image(modules):
    """The ECR repository ARN each execution role may pull from, for the example images."""
    svc = modules["services"]
    arns = svc.locals["image_repository_arns"]
    assert arns["service"] == ["${aws_ecr_repository.service.arn}"]
    for app, variable in (("mlflow", "mlflow_image"), ("dashboard", "dashboard_image")):
        expression = arns[app]
        pattern = re.search(r'regexall\("(.*)", var\.' + variable + r"\)", expression).group(1)
        pattern = pattern.encode().decode("unicode_escape")
        for env in ("dev", "prod"):
            image = parse(INFRA / "environments" / f"{env}.tfvars")[variable]
            groups = re.match(pattern, image).groups()
            assert groups[0] == "123456789012" and groups[2].startswith("trendcast-"), groups
        assert re.match(pattern, "ghcr.io/mlflow/mlflow:v3.17.0") is None  # public: no grant
    execution = svc.data[("aws_iam_policy_document", "execution")]
    pull = one(execution["dynamic"])["statement"]
    assert pull["content"][0]["resources"] == "${local.image_repository_arns[each.key]}"


def test_dask_cluster_private_reachable_only_from_its_clients_and_least_privilege(modules):
    """Issue 21: scheduler + autoscaled workers on Fargate in the private subnets, reachable
    only through the client, scheduler and worker groups, with a role of their own."""
    dask = modules["cluster"]
    for name in ("scheduler", "worker"):
        service = dask.resource("aws_ecs_service", name)
        assert service["launch_type"] == "FARGATE"
        network = one(service["network_configuration"])
        assert network["assign_public_ip"] is False
        assert network["subnets"] == "${var.app_subnet_ids}"
    assert modules["root"].modules["cluster"]["app_subnet_ids"] == (
        "${module.network.app_subnet_ids}"
    )
    # every way in names a security group, never an address range
    ingress = dask.resource("aws_vpc_security_group_ingress_rule", "dask")
    assert "referenced_security_group_id" in ingress and "cidr_ipv4" not in ingress
    senders = {rule["from"] for rule in dask.locals["rules"].values()}
    assert senders == {
        "${aws_security_group.client.id}",
        "${aws_security_group.scheduler.id}",
        "${aws_security_group.worker.id}",
    }
    # autoscaled on CPU between the configured bounds
    target = dask.resource("aws_appautoscaling_target", "worker")
    assert (target["min_capacity"], target["max_capacity"]) == (
        "${var.min_workers}",
        "${var.max_workers}",
    )
    policy = one(
        dask.resource("aws_appautoscaling_policy", "worker_cpu")[
            "target_tracking_scaling_policy_configuration"
        ]
    )
    assert one(policy["predefined_metric_specification"])["predefined_metric_type"] == (
        "ECSServiceAverageCPUUtilization"
    )
    # its own role: the artifact bucket's objects and the key, no secret, no wildcard
    task = _grants(dask, "task")
    assert task["s3:PutObject"] == ["${var.artifact_bucket_arn}/*"]
    assert not [a for a in task if a.startswith("secretsmanager:")]
    assert all(r != "*" for resources in task.values() for r in resources)
    readme = (INFRA / "README.md").read_text()
    assert "TRENDCAST_DASK_SCHEDULER" in readme and "dask_client_security_group_id" in readme
