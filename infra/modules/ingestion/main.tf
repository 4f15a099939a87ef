data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  function_name = "${var.name}-ingestion"
  account       = data.aws_caller_identity.current.account_id
  region        = data.aws_region.current.name
}

# Events the Lambda could not process after its retries (async invocations) and events
# EventBridge could not deliver land here.
resource "aws_sqs_queue" "dlq" {
  name                      = "${local.function_name}-dlq"
  message_retention_seconds = 1209600 # 14 days, the maximum
  kms_master_key_id         = var.kms_key_arn
}

data "aws_iam_policy_document" "dlq" {
  statement {
    sid       = "EventBridgeDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.schedule.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.dlq.json
}

resource "aws_cloudwatch_log_group" "lambda" {
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name               = "${local.function_name}-role"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

# Least privilege: read the one database secret, write the one log group, manage the VPC
# network interfaces in its own subnets and security group, send to its own dead-letter queue,
# and use the key those are encrypted with (through those services only).
data "aws_iam_policy_document" "lambda" {
  statement {
    sid       = "ReadDatabaseSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.database_secret_arn]
  }
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }
  statement {
    sid     = "VpcNetworkInterfaces"
    actions = ["ec2:CreateNetworkInterface"]
    resources = concat(
      ["arn:aws:ec2:${local.region}:${local.account}:network-interface/*"],
      [for s in var.subnet_ids : "arn:aws:ec2:${local.region}:${local.account}:subnet/${s}"],
      ["arn:aws:ec2:${local.region}:${local.account}:security-group/${var.security_group_id}"],
    )
  }
  statement {
    sid = "ManageOwnNetworkInterfaces"
    actions = [
      "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses",
      "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["arn:aws:ec2:${local.region}:${local.account}:network-interface/*"]
  }
  statement {
    sid       = "DescribeNetworkInterfaces"
    actions   = ["ec2:DescribeNetworkInterfaces"] # supports no resource-level scoping
    resources = ["*"]
  }
  statement {
    sid       = "SendToDeadLetterQueue"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dlq.arn]
  }
  statement {
    sid       = "DecryptThroughServices"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values = [
        "secretsmanager.${local.region}.amazonaws.com",
        "sqs.${local.region}.amazonaws.com",
        "lambda.${local.region}.amazonaws.com",
      ]
    }
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = "least-privilege"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

resource "aws_lambda_function" "ingestion" {
  #checkov:skip=CKV_AWS_50:X-Ray tracing would add xray:Put* on "*" to a role issue 9 limits to the secret, its log group, VPC ENIs; each run is recorded in market.ingestion_runs and the log group.
  #checkov:skip=CKV_AWS_272:The zip is built reproducibly by `make lambda-zip` from pinned wheels; AWS Signer code signing is not set up for this account.
  function_name    = local.function_name
  description      = "Trendcast ingestion: exchange klines -> market.bars (run by EventBridge)"
  role             = aws_iam_role.lambda.arn
  runtime          = "python3.11"
  architectures    = ["x86_64"]
  handler          = "ingestion_lambda.handler.handler"
  filename         = var.zip_path
  source_code_hash = filebase64sha256(var.zip_path)
  timeout          = var.timeout_s
  memory_size      = var.memory_mb
  kms_key_arn      = var.kms_key_arn

  # One run at a time: a run that overlaps the next tick would fetch the same bars twice.
  reserved_concurrent_executions = 1

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = [var.security_group_id]
  }

  dead_letter_config {
    target_arn = aws_sqs_queue.dlq.arn
  }

  environment {
    variables = {
      TRENDCAST_DATABASE_SECRET_ARN = var.database_secret_arn
      TRENDCAST_SYMBOLS             = join(",", var.symbols)
      TRENDCAST_INTERVALS           = join(",", var.intervals)
      TRENDCAST_EXCHANGE_URL        = var.exchange_url
      TRENDCAST_EXCHANGE_SOURCE     = "exchange"
      TRENDCAST_INGEST_BUDGET_S     = tostring(var.timeout_s - 20)
    }
  }

  depends_on = [aws_cloudwatch_log_group.lambda, aws_iam_role_policy.lambda]
}

resource "aws_lambda_function_event_invoke_config" "ingestion" {
  function_name                = aws_lambda_function.ingestion.function_name
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 3600
}

resource "aws_cloudwatch_event_rule" "schedule" {
  name                = "${local.function_name}-schedule"
  description         = "Run the ingestion Lambda (same rate as `trendcast ingest --scheduled`)"
  schedule_expression = var.schedule_expression
}

resource "aws_cloudwatch_event_target" "lambda" {
  rule = aws_cloudwatch_event_rule.schedule.name
  arn  = aws_lambda_function.ingestion.arn

  retry_policy {
    maximum_retry_attempts       = 3
    maximum_event_age_in_seconds = 3600
  }

  dead_letter_config {
    arn = aws_sqs_queue.dlq.arn
  }
}

resource "aws_lambda_permission" "eventbridge" {
  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.ingestion.function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule.arn
}

# Anything in the dead-letter queue means runs were lost: alarm on it.
resource "aws_cloudwatch_metric_alarm" "dlq" {
  alarm_name          = "${local.function_name}-dead-letters"
  alarm_description   = "Ingestion events failed after retries (see the SQS queue ${aws_sqs_queue.dlq.name})"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
}
