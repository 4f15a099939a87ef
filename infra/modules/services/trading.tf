# The strategy deployment runner (`trendcast deploy run NAME`) as a scheduled ECS Fargate task.
# Hourly bars need a decision within seconds of the bar being stored, not a process idling all
# hour, and a Lambda zip cannot carry xgboost and the model: EventBridge starts one short task
# per deployment on the schedule; it reconciles with the venue, trades the newest closed bar and
# exits. Venue keys live in Secrets Manager (set out of band, never in Terraform state).

resource "aws_secretsmanager_secret" "binance" {
  #checkov:skip=CKV2_AWS_57:Exchange API keys are issued by the venue; rotate them there and store the new pair with `aws secretsmanager put-secret-value` (never through Terraform state).
  name                    = "${var.name}/trading/binance"
  description             = "Binance API key and secret of live deployments: JSON {\"api_key\", \"api_secret\"}, set out of band"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = local.is_prod ? 30 : 7
}

resource "aws_cloudwatch_log_group" "runner" {
  name              = "/trendcast/${var.name}/runner"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

locals {
  runner_secrets = {
    TRENDCAST_DATABASE_URL       = "${var.database_secret_arn}:url::"
    TRENDCAST_MLFLOW_PASSWORD    = "${aws_secretsmanager_secret.mlflow_reader.arn}:password::"
    TRENDCAST_BINANCE_API_KEY    = "${aws_secretsmanager_secret.binance.arn}:api_key::"
    TRENDCAST_BINANCE_API_SECRET = "${aws_secretsmanager_secret.binance.arn}:api_secret::"
  }
}

resource "aws_iam_role" "runner_execution" {
  name               = "${var.name}-runner-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "runner_execution" {
  statement {
    sid       = "PullImages"
    actions   = ["ecr:GetAuthorizationToken"] # supports no resource-level scoping
    resources = ["*"]
  }
  statement {
    sid       = "PullServiceImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [aws_ecr_repository.service.arn]
  }
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.runner.arn}:*"]
  }
  statement {
    sid     = "InjectOwnSecrets"
    actions = ["secretsmanager:GetSecretValue"]
    resources = [
      var.database_secret_arn,
      aws_secretsmanager_secret.mlflow_reader.arn,
      aws_secretsmanager_secret.binance.arn,
    ]
  }
  statement {
    sid       = "DecryptSecretAndImage"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "runner_execution" {
  name   = "execution"
  role   = aws_iam_role.runner_execution.id
  policy = data.aws_iam_policy_document.runner_execution.json
}

# The runner itself needs no AWS API: the database, MLflow and the venue are reached over the
# network with the injected credentials. An empty task role keeps it that way.
resource "aws_iam_role" "runner_task" {
  name               = "${var.name}-runner-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_ecs_task_definition" "runner" {
  family                   = "${var.name}-runner"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 512
  memory                   = 1024
  execution_role_arn       = aws_iam_role.runner_execution.arn
  task_role_arn            = aws_iam_role.runner_task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([
    {
      name                   = "runner"
      image                  = "${aws_ecr_repository.service.repository_url}:${var.service_image_tag}"
      essential              = true
      readonlyRootFilesystem = true
      command                = ["trendcast", "deploy", "list"] # each rule overrides it
      mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
      environment = [
        for k, v in {
          TRENDCAST_MLFLOW_TRACKING_URI = local.mlflow_internal_url
          TRENDCAST_MLFLOW_USERNAME     = "trendcast-reader"
          TRENDCAST_BINANCE_BASE_URL    = "https://api.binance.com"
          TMPDIR                        = "/tmp"
          HOME                          = "/tmp"
        } : { name = k, value = v }
      ]
      secrets = [for k, v in local.runner_secrets : { name = k, valueFrom = v }]
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.runner.name
          awslogs-region        = var.region
          awslogs-stream-prefix = "runner"
        }
      }
    }
  ])
}

data "aws_iam_policy_document" "events_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "runner_schedule" {
  name               = "${var.name}-runner-schedule"
  assume_role_policy = data.aws_iam_policy_document.events_assume.json
}

data "aws_iam_policy_document" "runner_schedule" {
  statement {
    sid       = "RunTheRunnerTask"
    actions   = ["ecs:RunTask"]
    resources = ["${replace(aws_ecs_task_definition.runner.arn, "/:\\d+$/", "")}:*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.main.arn]
    }
  }
  statement {
    sid       = "PassItsRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.runner_execution.arn, aws_iam_role.runner_task.arn]
  }
}

resource "aws_iam_role_policy" "runner_schedule" {
  name   = "run-task"
  role   = aws_iam_role.runner_schedule.id
  policy = data.aws_iam_policy_document.runner_schedule.json
}

resource "aws_cloudwatch_event_rule" "runner" {
  for_each            = toset(var.trading_deployments)
  name                = "${var.name}-deploy-${each.key}"
  description         = "Trade the newest closed bar of deployment ${each.key}"
  schedule_expression = var.trading_schedule
}

resource "aws_cloudwatch_event_target" "runner" {
  for_each = toset(var.trading_deployments)
  rule     = aws_cloudwatch_event_rule.runner[each.key].name
  arn      = aws_ecs_cluster.main.arn
  role_arn = aws_iam_role.runner_schedule.arn

  ecs_target {
    task_definition_arn = aws_ecs_task_definition.runner.arn
    launch_type         = "FARGATE"
    task_count          = 1
    network_configuration {
      subnets          = var.app_subnet_ids
      security_groups  = [var.service_security_group_id]
      assign_public_ip = false
    }
  }

  input = jsonencode({
    containerOverrides = [{ name = "runner", command = ["trendcast", "deploy", "run", each.key] }]
  })
}
