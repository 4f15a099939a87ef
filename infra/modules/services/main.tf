# MLflow, the BentoML service and the Streamlit dashboard as containers on ECS Fargate behind one
# application load balancer. Fargate, not EKS or EC2: three small stateless services need no
# cluster to run or patch, scale per task, and take the image the bento workflow builds as is.
# Listeners (HTTPS, the ACM certificate): 443 dashboard, 5000 MLflow, 3000 BentoML service.
# Inside the VPC the service and the dashboard reach MLflow at http://mlflow.<namespace>:5000.

locals {
  is_prod             = var.environment == "prod"
  namespace           = "${var.name}.internal"
  mlflow_internal_url = "http://mlflow.${local.namespace}:5000"

  apps = {
    mlflow = {
      port          = 5000
      listener_port = 5000
      health        = "/health"
      read_only     = true
      sg            = var.mlflow_security_group_id
      cpu           = 1024
      memory        = 2048
      desired       = 1
    }
    service = {
      port          = 3000
      listener_port = 3000
      health        = "/readyz"
      read_only     = false # BentoML writes $BENTOML_HOME/prometheus_multiproc_dir in the image
      sg            = var.service_security_group_id
      cpu           = 1024
      memory        = 2048
      desired       = var.service_desired_count > 0 ? var.service_desired_count : (local.is_prod ? 2 : 1)
    }
    dashboard = {
      port          = 8501
      listener_port = 443
      health        = "/_stcore/health"
      read_only     = true
      sg            = var.dashboard_security_group_id
      cpu           = 512
      memory        = 1024
      desired       = 1
    }
  }

  # Environment variables ECS fills from Secrets Manager at start (valueFrom "<arn>:<json key>::"
  # or a whole secret), and the secrets each app's execution role may read to do it. The
  # dashboard connects as a login role in trendcast_reader (SELECT only) through
  # TRENDCAST_DASHBOARD_DATABASE_URL.
  # MLflow runs with authentication (the trendcast-auth app): the admin, the CSRF key and the
  # promotion identity from the mlflow/admin secret (MLflow's task only); the read-only identity
  # the service and the dashboard use from mlflow/reader.
  app_secrets = {
    mlflow = {
      MLFLOW_BACKEND_STORE_URI           = "${var.database_secret_arn}:mlflow_url::"
      MLFLOW_AUTH_ADMIN_PASSWORD         = "${aws_secretsmanager_secret.mlflow_admin.arn}:admin_password::"
      MLFLOW_FLASK_SERVER_SECRET_KEY     = "${aws_secretsmanager_secret.mlflow_admin.arn}:flask_secret_key::"
      TRENDCAST_MLFLOW_PROMOTER_PASSWORD = "${aws_secretsmanager_secret.mlflow_promoter.arn}:password::"
      TRENDCAST_MLFLOW_READER_PASSWORD   = "${aws_secretsmanager_secret.mlflow_reader.arn}:password::"
    }
    service = {
      TRENDCAST_DATABASE_URL    = "${var.database_secret_arn}:url::"
      TRENDCAST_API_TOKEN       = aws_secretsmanager_secret.api_token.arn
      TRENDCAST_MLFLOW_PASSWORD = "${aws_secretsmanager_secret.mlflow_reader.arn}:password::"
    }
    dashboard = {
      TRENDCAST_DASHBOARD_DATABASE_URL = "${var.database_readonly_secret_arn}:url::"
      TRENDCAST_MLFLOW_PASSWORD        = "${aws_secretsmanager_secret.mlflow_reader.arn}:password::"
    }
  }
  app_secret_arns = {
    mlflow = [
      var.database_secret_arn,
      aws_secretsmanager_secret.mlflow_admin.arn,
      aws_secretsmanager_secret.mlflow_promoter.arn,
      aws_secretsmanager_secret.mlflow_reader.arn,
    ]
    service = [
      var.database_secret_arn,
      aws_secretsmanager_secret.api_token.arn,
      aws_secretsmanager_secret.mlflow_reader.arn,
    ]
    dashboard = [var.database_readonly_secret_arn, aws_secretsmanager_secret.mlflow_reader.arn]
  }

  app_environment = {
    mlflow = {
      MLFLOW_SERVER_ENABLE_JOB_EXECUTION = "false"
    }
    service = {
      TRENDCAST_MLFLOW_TRACKING_URI = local.mlflow_internal_url
      TRENDCAST_DATABASE_SECRET_ARN = var.database_secret_arn
      TRENDCAST_MODEL_NAME          = var.model_name
      TRENDCAST_MLFLOW_USERNAME     = "trendcast-reader"
    }
    dashboard = {
      TRENDCAST_MLFLOW_TRACKING_URI = local.mlflow_internal_url
      TRENDCAST_DATABASE_SECRET_ARN = var.database_readonly_secret_arn
      TRENDCAST_MLFLOW_USERNAME     = "trendcast-reader"
    }
  }

  # The ECR repository each app pulls from: the service's own; for MLflow and the dashboard the
  # repository named in their image reference when it is an ECR image (none for public images).
  image_repository_arns = {
    service = [aws_ecr_repository.service.arn]
    mlflow = [
      for m in regexall("^([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com/([^:@]+)", var.mlflow_image) :
      "arn:aws:ecr:${m[1]}:${m[0]}:repository/${m[2]}"
    ]
    dashboard = [
      for m in regexall("^([0-9]{12})\\.dkr\\.ecr\\.([a-z0-9-]+)\\.amazonaws\\.com/([^:@]+)", var.dashboard_image) :
      "arn:aws:ecr:${m[1]}:${m[0]}:repository/${m[2]}"
    ]
  }

  app_image = {
    mlflow    = var.mlflow_image
    service   = "${aws_ecr_repository.service.repository_url}:${var.service_image_tag}"
    dashboard = var.dashboard_image
  }

  app_command = {
    mlflow = [
      "mlflow", "server", "--app-name", "trendcast-auth",
      "--host", "0.0.0.0", "--port", "5000", "--workers", "1",
      "--artifacts-destination", "s3://${var.artifact_bucket_name}/",
      "--allowed-hosts", "${aws_lb.main.dns_name},${aws_lb.main.dns_name}:5000,mlflow.${local.namespace},mlflow.${local.namespace}:5000",
    ]
    service   = null # the bento image's own entrypoint (bentoml serve, port 3000)
    dashboard = null
  }
}

# Bearer token of the BentoML service (TRENDCAST_API_TOKEN): every endpoint but /livez, /readyz
# and /metrics asks for it. Clients read it from this secret (output service_api_token_secret_arn).
resource "random_password" "api_token" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "api_token" {
  #checkov:skip=CKV2_AWS_57:A static bearer token; rotate with terraform apply -replace=module.services.random_password.api_token, then a forced new deployment of the service.
  name                    = "${var.name}/service/api-token"
  description             = "Bearer token of the Trendcast prediction service (TRENDCAST_API_TOKEN)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = local.is_prod ? 30 : 7
}

resource "aws_secretsmanager_secret_version" "api_token" {
  secret_id     = aws_secretsmanager_secret.api_token.id
  secret_string = random_password.api_token.result
}

# MLflow's own authentication (trendcast/mlflow_auth.py): the admin created from this secret
# when the user tables are new, the static CSRF key every worker shares, and two identities:
# trendcast-promoter (the only one that may set aliases; CI and engineers promote as it, see
# output mlflow_promoter_secret_arn) and trendcast-reader (the service and the dashboard).
resource "random_password" "mlflow" {
  for_each = toset(["admin", "flask_secret_key", "promoter", "reader"])
  length   = 40
  special  = false
}

resource "aws_secretsmanager_secret" "mlflow_admin" {
  #checkov:skip=CKV2_AWS_57:Bootstrap-only admin password and CSRF key; rotate with terraform apply -replace=module.services.random_password.mlflow["admin"], then a new MLflow deployment and the update-password API.
  name                    = "${var.name}/mlflow/admin"
  description             = "MLflow admin password and CSRF key (MLflow task only)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = local.is_prod ? 30 : 7
}

resource "aws_secretsmanager_secret_version" "mlflow_admin" {
  secret_id = aws_secretsmanager_secret.mlflow_admin.id
  secret_string = jsonencode({
    username         = "admin"
    admin_password   = random_password.mlflow["admin"].result
    flask_secret_key = random_password.mlflow["flask_secret_key"].result
  })
}

resource "aws_secretsmanager_secret" "mlflow_promoter" {
  #checkov:skip=CKV2_AWS_57:Static MLflow identity; rotate with terraform apply -replace=module.services.random_password.mlflow["promoter"] and the update-password API.
  name                    = "${var.name}/mlflow/promoter"
  description             = "MLflow identity trendcast-promoter: the only one that may move aliases"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = local.is_prod ? 30 : 7
}

resource "aws_secretsmanager_secret_version" "mlflow_promoter" {
  secret_id = aws_secretsmanager_secret.mlflow_promoter.id
  secret_string = jsonencode({
    username = "trendcast-promoter"
    password = random_password.mlflow["promoter"].result
  })
}

resource "aws_secretsmanager_secret" "mlflow_reader" {
  #checkov:skip=CKV2_AWS_57:Static MLflow identity; rotate with terraform apply -replace=module.services.random_password.mlflow["reader"] and the update-password API.
  name                    = "${var.name}/mlflow/reader"
  description             = "MLflow identity trendcast-reader (read only): the service and the dashboard"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = local.is_prod ? 30 : 7
}

resource "aws_secretsmanager_secret_version" "mlflow_reader" {
  secret_id = aws_secretsmanager_secret.mlflow_reader.id
  secret_string = jsonencode({
    username = "trendcast-reader"
    password = random_password.mlflow["reader"].result
  })
}

resource "aws_ecs_cluster" "main" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE"]
  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

# The image of the BentoML service: `bentoml containerize` in .github/workflows/bento.yml pushes
# here, tagged with the commit SHA (tags are immutable, so a deployment names exactly one build).
resource "aws_ecr_repository" "service" {
  name                 = "${var.name}-service"
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }
}

resource "aws_ecr_lifecycle_policy" "service" {
  repository = aws_ecr_repository.service.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 50 newest images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 50 }
      action       = { type = "expire" }
    }]
  })
}

resource "aws_service_discovery_private_dns_namespace" "main" {
  name        = local.namespace
  description = "Service discovery inside the Trendcast VPC"
  vpc         = var.vpc_id
}

resource "aws_service_discovery_service" "mlflow" {
  name = "mlflow"
  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.main.id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "A"
      ttl  = 10
    }
  }
  health_check_custom_config {
    failure_threshold = 1
  }
}

resource "aws_cloudwatch_log_group" "app" {
  for_each          = local.apps
  name              = "/trendcast/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

# ---- IAM: one execution role (pull, logs, inject its one secret) and one task role per app ----

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  for_each           = local.apps
  name               = "${var.name}-${each.key}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  for_each = local.apps
  statement {
    sid       = "PullImages"
    actions   = ["ecr:GetAuthorizationToken"] # supports no resource-level scoping
    resources = ["*"]
  }
  dynamic "statement" {
    for_each = length(local.image_repository_arns[each.key]) > 0 ? [1] : []
    content {
      sid       = "PullOwnImage"
      actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
      resources = local.image_repository_arns[each.key]
    }
  }
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.app[each.key].arn}:*"]
  }
  statement {
    sid       = "InjectOwnSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.app_secret_arns[each.key]
  }
  statement {
    sid       = "DecryptSecretAndImage"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  for_each = local.apps
  name     = "execution"
  role     = aws_iam_role.execution[each.key].id
  policy   = data.aws_iam_policy_document.execution[each.key].json
}

resource "aws_iam_role" "task" {
  for_each           = local.apps
  name               = "${var.name}-${each.key}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

# MLflow: read and write the artifact bucket, read the database secret.
data "aws_iam_policy_document" "task_mlflow" {
  statement {
    sid       = "ListArtifacts"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [var.artifact_bucket_arn]
  }
  statement {
    sid       = "ReadWriteArtifacts"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${var.artifact_bucket_arn}/*"]
  }
  statement {
    sid       = "ReadDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.database_secret_arn]
  }
  statement {
    sid       = "UseKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

# Service: read the artifact bucket, read the database secret.
data "aws_iam_policy_document" "task_service" {
  statement {
    sid       = "ListArtifacts"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [var.artifact_bucket_arn]
  }
  statement {
    sid       = "ReadArtifacts"
    actions   = ["s3:GetObject"]
    resources = ["${var.artifact_bucket_arn}/*"]
  }
  statement {
    sid       = "ReadDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.database_secret_arn]
  }
  statement {
    sid       = "DecryptOnly"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

# Dashboard: the read-only database secret, nothing else.
data "aws_iam_policy_document" "task_dashboard" {
  statement {
    sid       = "ReadReadonlyDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.database_readonly_secret_arn]
  }
  statement {
    sid       = "DecryptOnly"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "task" {
  for_each = {
    mlflow    = data.aws_iam_policy_document.task_mlflow.json
    service   = data.aws_iam_policy_document.task_service.json
    dashboard = data.aws_iam_policy_document.task_dashboard.json
  }
  name   = "task"
  role   = aws_iam_role.task[each.key].id
  policy = each.value
}

# ---- Task definitions and services ----

resource "aws_ecs_task_definition" "app" {
  #checkov:skip=CKV_AWS_336:MLflow and the dashboard run with a read-only root; the BentoML service cannot yet (it writes $BENTOML_HOME/prometheus_multiproc_dir inside the image). checkov cannot see per-app values through for_each, so this says it.
  for_each                 = local.apps
  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution[each.key].arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp" # the only writable path where the root filesystem is read-only
  }

  container_definitions = jsonencode([
    merge(
      {
        name                   = each.key
        image                  = local.app_image[each.key]
        essential              = true
        readonlyRootFilesystem = each.value.read_only
        portMappings           = [{ containerPort = each.value.port, protocol = "tcp" }]
        mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
        environment            = [for k, v in merge(local.app_environment[each.key], { TMPDIR = "/tmp", HOME = "/tmp" }) : { name = k, value = v }]
        secrets = [
          for env_name, value_from in local.app_secrets[each.key] :
          { name = env_name, valueFrom = value_from }
        ]
        logConfiguration = {
          logDriver = "awslogs"
          options = {
            awslogs-group         = aws_cloudwatch_log_group.app[each.key].name
            awslogs-region        = var.region
            awslogs-stream-prefix = each.key
          }
        }
      },
      # `command` only where the image's own entrypoint is not used.
      { for key, value in { command = local.app_command[each.key] } : key => value if value != null },
    )
  ])
}

resource "aws_lb" "main" {
  #checkov:skip=CKV2_AWS_28:The load balancer only accepts allowed_cidr_blocks (office/VPN ranges, 0.0.0.0/0 rejected by validation); add a WAF web ACL before opening it to the internet.
  #checkov:skip=CKV_AWS_91:ALB access logs need a separate log bucket with the ELB log-delivery policy (not built yet); each app logs to its own CloudWatch group.
  name                       = "${var.name}-alb"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.public_subnet_ids
  security_groups            = [var.alb_security_group_id]
  drop_invalid_header_fields = true
  enable_deletion_protection = local.is_prod
}

resource "aws_vpc_security_group_ingress_rule" "alb" {
  for_each = {
    for pair in setproduct(var.allowed_cidr_blocks, [for a in values(local.apps) : a.listener_port]) :
    "${pair[0]}-${pair[1]}" => { cidr = pair[0], port = pair[1] }
  }
  security_group_id = var.alb_security_group_id
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  description       = "HTTPS ${each.value.port} from an allowed client network"
}

resource "aws_lb_target_group" "app" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; the hop to the task stays inside the VPC between two security groups that admit only each other.
  for_each    = local.apps
  name        = "${var.name}-${each.key}"
  port        = each.value.port
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id

  health_check {
    path                = each.value.health
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "app" {
  for_each          = local.apps
  load_balancer_arn = aws_lb.main.arn
  port              = each.value.listener_port
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.app[each.key].arn
  }
}

resource "aws_ecs_service" "app" {
  for_each               = local.apps
  name                   = each.key
  cluster                = aws_ecs_cluster.main.id
  task_definition        = aws_ecs_task_definition.app[each.key].arn
  desired_count          = each.value.desired
  launch_type            = "FARGATE"
  propagate_tags         = "SERVICE"
  enable_execute_command = false

  network_configuration {
    subnets          = var.app_subnet_ids
    security_groups  = [each.value.sg]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.app[each.key].arn
    container_name   = each.key
    container_port   = each.value.port
  }

  dynamic "service_registries" {
    for_each = each.key == "mlflow" ? [aws_service_discovery_service.mlflow.arn] : []
    content {
      registry_arn = service_registries.value
    }
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # The bento workflow registers new task-definition revisions of the service (new image tag);
  # Terraform must not roll them back on the next apply.
  lifecycle {
    ignore_changes = [task_definition]
  }

  depends_on = [aws_lb_listener.app]
}
