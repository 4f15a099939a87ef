locals {
  identifier = "${var.name}-postgres"
  is_prod    = var.environment == "prod"
}

resource "aws_db_subnet_group" "main" {
  name       = "${var.name}-database"
  subnet_ids = var.subnet_ids
}

resource "aws_db_parameter_group" "main" {
  name   = "${var.name}-postgres${split(".", var.engine_version)[0]}"
  family = "postgres${split(".", var.engine_version)[0]}"

  parameter {
    name  = "rds.force_ssl" # TLS for every connection
    value = "1"
  }
  parameter {
    name  = "log_statement" # schema changes are logged
    value = "ddl"
  }
  parameter {
    name  = "log_min_duration_statement" # and statements slower than 1 s
    value = "1000"
  }
}

# Created before the instance so that RDS writes into groups with retention and encryption.
resource "aws_cloudwatch_log_group" "postgres" {
  for_each          = toset(["postgresql", "upgrade"])
  name              = "/aws/rds/instance/${local.identifier}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

data "aws_iam_policy_document" "monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "monitoring" {
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.monitoring_assume.json
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  role       = aws_iam_role.monitoring.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# The application's credentials. The password never leaves Terraform state (encrypted in the
# state bucket) and Secrets Manager; URL-safe characters only, since MLflow takes it in a URL.
resource "random_password" "app" {
  length           = 40
  special          = true
  override_special = "-_.~"
}

resource "aws_db_instance" "main" {
  identifier     = local.identifier
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class
  db_name        = var.database_name
  username       = "trendcast"
  password       = random_password.app.result
  port           = 5432

  allocated_storage     = var.allocated_storage_gb
  max_allocated_storage = var.allocated_storage_gb * 4
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.kms_key_arn

  db_subnet_group_name   = aws_db_subnet_group.main.name
  vpc_security_group_ids = [var.security_group_id]
  parameter_group_name   = aws_db_parameter_group.main.name
  publicly_accessible    = false
  multi_az               = local.is_prod

  iam_database_authentication_enabled = true

  backup_retention_period   = var.backup_retention_days
  backup_window             = "02:00-03:00"
  maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = local.is_prod
  skip_final_snapshot       = false
  final_snapshot_identifier = "${local.identifier}-final"

  auto_minor_version_upgrade      = true
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]
  monitoring_interval             = 60
  monitoring_role_arn             = aws_iam_role.monitoring.arn
  performance_insights_enabled    = true
  performance_insights_kms_key_id = var.kms_key_arn

  depends_on = [aws_cloudwatch_log_group.postgres]
}

# Secret in the format ingestion_lambda.handler.database_url_from_secret reads (it takes `url`
# when present, else username, password, host, port, dbname).
resource "aws_secretsmanager_secret" "app" {
  #checkov:skip=CKV2_AWS_57:Rotation needs a rotation Lambda that rewrites the RDS password; the instance has IAM database authentication on for token-based roles, and infra/README.md documents rotating this password by replacing random_password.app.
  name                    = "${var.name}/database/app"
  description             = "Trendcast database credentials (TRENDCAST_DATABASE_SECRET_ARN)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = local.is_prod ? 30 : 7
}

resource "aws_secretsmanager_secret_version" "app" {
  secret_id = aws_secretsmanager_secret.app.id
  secret_string = jsonencode({
    username = aws_db_instance.main.username
    password = random_password.app.result
    host     = aws_db_instance.main.address
    port     = aws_db_instance.main.port
    dbname   = var.database_name
    # Ready-made URLs: ECS injects them as TRENDCAST_DATABASE_URL / MLFLOW_BACKEND_STORE_URI.
    url        = "postgresql+psycopg2://${aws_db_instance.main.username}:${random_password.app.result}@${aws_db_instance.main.endpoint}/${var.database_name}?sslmode=require"
    mlflow_url = "postgresql+psycopg2://${aws_db_instance.main.username}:${random_password.app.result}@${aws_db_instance.main.endpoint}/mlflow?sslmode=require"
  })
}

# Read-only credentials for the dashboard: login role trendcast_dashboard, a member of
# trendcast_reader (SELECT only; created by migration 0005), with the password stored here
# (infra/README.md, apply order step 4).
resource "random_password" "readonly" {
  length           = 40
  special          = true
  override_special = "-_.~"
}

resource "aws_secretsmanager_secret" "readonly" {
  #checkov:skip=CKV2_AWS_57:Same as the app secret: no rotation Lambda; rotate by replacing random_password.readonly and re-running the role step in infra/README.md.
  name                    = "${var.name}/database/readonly"
  description             = "Trendcast read-only database credentials (dashboard)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = local.is_prod ? 30 : 7
}

resource "aws_secretsmanager_secret_version" "readonly" {
  secret_id = aws_secretsmanager_secret.readonly.id
  secret_string = jsonencode({
    username = "trendcast_dashboard"
    password = random_password.readonly.result
    host     = aws_db_instance.main.address
    port     = aws_db_instance.main.port
    dbname   = var.database_name
    url      = "postgresql+psycopg2://trendcast_dashboard:${random_password.readonly.result}@${aws_db_instance.main.endpoint}/${var.database_name}?sslmode=require"
  })
}
