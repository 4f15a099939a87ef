# A Dask cluster for the wide jobs (grids, all-asset backtests, feature backfills): one scheduler
# task and an autoscaled service of one-thread workers on ECS Fargate, in the private app
# subnets. A long-lived service rather than dask-cloudprovider's per-job FargateCluster: the
# scheduler has a stable address (dask-scheduler.<namespace>:8786) a data scientist sets once in
# TRENDCAST_DASK_SCHEDULER, jobs start without waiting ~1-2 min for tasks, and Terraform (not
# the job's credentials) owns the roles, security groups and logs. Reachable only from tasks in
# the dask_client security group (jobs that use it), never from the load balancer or the internet.

locals {
  scheduler_port = 8786
  worker_port    = 9000 # workers listen on fixed ports: the security groups name them
  nanny_port     = 9001
  scheduler_host = "dask-scheduler.${var.namespace_name}"
  scheduler_url  = "tcp://${local.scheduler_host}:${local.scheduler_port}"
  parts = {
    scheduler = {
      cpu     = 1024
      memory  = 4096
      command = ["dask", "scheduler", "--port", tostring(local.scheduler_port), "--no-dashboard"]
    }
    worker = {
      cpu    = var.worker_cpu
      memory = var.worker_memory
      command = [
        "dask", "worker", local.scheduler_url, "--nthreads", "1", "--no-dashboard",
        "--worker-port", tostring(local.worker_port), "--nanny-port", tostring(local.nanny_port),
        "--local-directory", "/tmp/dask",
      ]
    }
  }
  environment = {
    TRENDCAST_MLFLOW_TRACKING_URI = var.mlflow_internal_url
    TRENDCAST_ARTIFACTS_URI       = "s3://${var.artifact_bucket_name}/"
    TMPDIR                        = "/tmp"
    HOME                          = "/tmp"
  }
}

# The image of the workers and the scheduler: Trendcast with its `full` extra (dask, xgboost,
# training/), built and pushed by CI, tagged with the commit SHA so every worker runs one build.
resource "aws_ecr_repository" "cluster" {
  name                 = "${var.name}-cluster"
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = var.kms_key_arn
  }
}

resource "aws_ecr_lifecycle_policy" "cluster" {
  repository = aws_ecr_repository.cluster.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 50 newest images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 50 }
      action       = { type = "expire" }
    }]
  })
}

# ---- Security groups: clients -> scheduler -> workers, workers <-> workers ----

resource "aws_security_group" "scheduler" {
  name        = "${var.name}-dask-scheduler"
  description = "Dask scheduler: 8786 from the workers and the client group only"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "worker" {
  name        = "${var.name}-dask-worker"
  description = "Dask workers: worker and nanny ports from the scheduler, the clients and each other"
  vpc_id      = var.vpc_id
}

resource "aws_security_group" "client" {
  #checkov:skip=CKV2_AWS_5:Attached by the jobs that use the cluster (a training task, a data scientist's workstation task); this module exports its ID for them.
  name        = "${var.name}-dask-client"
  description = "Jobs that submit work to the Dask cluster"
  vpc_id      = var.vpc_id
}

locals {
  # (group receiving, group sending, port range, what)
  rules = {
    scheduler_from_clients = { to = aws_security_group.scheduler.id, from = aws_security_group.client.id, ports = [local.scheduler_port, local.scheduler_port] }
    scheduler_from_workers = { to = aws_security_group.scheduler.id, from = aws_security_group.worker.id, ports = [local.scheduler_port, local.scheduler_port] }
    workers_from_scheduler = { to = aws_security_group.worker.id, from = aws_security_group.scheduler.id, ports = [local.worker_port, local.nanny_port] }
    workers_from_clients   = { to = aws_security_group.worker.id, from = aws_security_group.client.id, ports = [local.worker_port, local.nanny_port] }
    workers_from_workers   = { to = aws_security_group.worker.id, from = aws_security_group.worker.id, ports = [local.worker_port, local.nanny_port] }
  }
}

resource "aws_vpc_security_group_ingress_rule" "dask" {
  for_each                     = local.rules
  security_group_id            = each.value.to
  referenced_security_group_id = each.value.from
  ip_protocol                  = "tcp"
  from_port                    = each.value.ports[0]
  to_port                      = each.value.ports[1]
  description                  = replace(each.key, "_", " ")
}

resource "aws_vpc_security_group_egress_rule" "dask" {
  for_each                     = local.rules
  security_group_id            = each.value.from
  referenced_security_group_id = each.value.to
  ip_protocol                  = "tcp"
  from_port                    = each.value.ports[0]
  to_port                      = each.value.ports[1]
  description                  = "reverse of ${replace(each.key, "_", " ")}"
}

# Workers run the jobs' tasks: PostgreSQL, MLflow inside the VPC, and HTTPS (S3, ECR, logs).
resource "aws_vpc_security_group_egress_rule" "workers_to_database" {
  security_group_id            = aws_security_group.worker.id
  referenced_security_group_id = var.database_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "Dask workers to PostgreSQL"
}

resource "aws_vpc_security_group_ingress_rule" "database_from_workers" {
  security_group_id            = var.database_security_group_id
  referenced_security_group_id = aws_security_group.worker.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "PostgreSQL from the Dask workers"
}

resource "aws_vpc_security_group_egress_rule" "workers_to_mlflow" {
  security_group_id            = aws_security_group.worker.id
  referenced_security_group_id = var.mlflow_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5000
  to_port                      = 5000
  description                  = "Dask workers to MLflow"
}

resource "aws_vpc_security_group_ingress_rule" "mlflow_from_workers" {
  security_group_id            = var.mlflow_security_group_id
  referenced_security_group_id = aws_security_group.worker.id
  ip_protocol                  = "tcp"
  from_port                    = 5000
  to_port                      = 5000
  description                  = "MLflow from the Dask workers"
}

resource "aws_vpc_security_group_egress_rule" "https_out" {
  for_each = {
    scheduler = aws_security_group.scheduler.id
    worker    = aws_security_group.worker.id
  }
  security_group_id = each.value
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "HTTPS to S3, ECR and CloudWatch Logs (through NAT)"
}

# ---- Service discovery: the scheduler's stable name ----

resource "aws_service_discovery_service" "scheduler" {
  name = "dask-scheduler"
  dns_config {
    namespace_id   = var.namespace_id
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

# ---- Logs and IAM ----

resource "aws_cloudwatch_log_group" "dask" {
  for_each          = local.parts
  name              = "/trendcast/${var.name}/dask-${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

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
  name               = "${var.name}-dask-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "PullImages"
    actions   = ["ecr:GetAuthorizationToken"] # supports no resource-level scoping
    resources = ["*"]
  }
  statement {
    sid       = "PullOwnImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [aws_ecr_repository.cluster.arn]
  }
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for group in aws_cloudwatch_log_group.dask : "${group.arn}:*"]
  }
  statement {
    sid       = "InjectDatabaseUrl"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.database_secret_arn]
  }
  statement {
    sid       = "DecryptSecretImageAndLogs"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# The cluster's own role: read and write objects of the artifact bucket (training-set exports;
# MLflow artifacts go through the tracking server), nothing else. The database URL is injected
# by the execution role from its secret, so the task role cannot read any secret.
resource "aws_iam_role" "task" {
  name               = "${var.name}-dask-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task" {
  statement {
    sid       = "ListArtifacts"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [var.artifact_bucket_arn]
  }
  statement {
    sid       = "ReadWriteExports"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${var.artifact_bucket_arn}/*"]
  }
  statement {
    sid       = "UseKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "task"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# ---- Task definitions and services ----

resource "aws_ecs_task_definition" "dask" {
  for_each                 = local.parts
  family                   = "${var.name}-dask-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp" # the only writable path: the root filesystem is read-only
  }

  container_definitions = jsonencode([{
    name                   = "dask-${each.key}"
    image                  = "${aws_ecr_repository.cluster.repository_url}:${var.image_tag}"
    essential              = true
    readonlyRootFilesystem = true
    command                = each.value.command
    portMappings = [
      for port in(each.key == "scheduler" ? [local.scheduler_port] : [local.worker_port, local.nanny_port]) :
      { containerPort = port, protocol = "tcp" }
    ]
    mountPoints = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    environment = [for k, v in local.environment : { name = k, value = v }]
    secrets     = [{ name = "TRENDCAST_DATABASE_URL", valueFrom = "${var.database_secret_arn}:url::" }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.dask[each.key].name
        awslogs-region        = var.region
        awslogs-stream-prefix = "dask-${each.key}"
      }
    }
  }])
}

resource "aws_ecs_service" "scheduler" {
  name            = "${var.name}-dask-scheduler"
  cluster         = var.ecs_cluster_name
  task_definition = aws_ecs_task_definition.dask["scheduler"].arn
  desired_count   = 1
  launch_type     = "FARGATE"

  network_configuration {
    subnets          = var.app_subnet_ids
    security_groups  = [aws_security_group.scheduler.id]
    assign_public_ip = false
  }

  service_registries {
    registry_arn = aws_service_discovery_service.scheduler.arn
  }
}

resource "aws_ecs_service" "worker" {
  name            = "${var.name}-dask-worker"
  cluster         = var.ecs_cluster_name
  task_definition = aws_ecs_task_definition.dask["worker"].arn
  desired_count   = var.min_workers
  launch_type     = "FARGATE"

  network_configuration {
    subnets          = var.app_subnet_ids
    security_groups  = [aws_security_group.worker.id]
    assign_public_ip = false
  }

  lifecycle {
    ignore_changes = [desired_count] # the autoscaler owns it
  }
}

# Workers scale on CPU: a grid keeps every one-thread worker busy, an idle cluster shrinks to
# min_workers.
resource "aws_appautoscaling_target" "worker" {
  service_namespace  = "ecs"
  resource_id        = "service/${var.ecs_cluster_name}/${aws_ecs_service.worker.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_workers
  max_capacity       = var.max_workers
}

resource "aws_appautoscaling_policy" "worker_cpu" {
  name               = "${var.name}-dask-worker-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.worker.service_namespace
  resource_id        = aws_appautoscaling_target.worker.resource_id
  scalable_dimension = aws_appautoscaling_target.worker.scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = 70
    scale_in_cooldown  = 300
    scale_out_cooldown = 60
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}
