locals {
  name    = "trendcast-${var.environment}"
  is_prod = var.environment == "prod"
}

data "aws_caller_identity" "current" {}

# One customer-managed key for the stack's data at rest: RDS, secrets, the artifact bucket,
# log groups, the Lambda's environment, the dead-letter queue and the image repository.
resource "aws_kms_key" "main" {
  description             = "${local.name}: data at rest"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.main.key_id
}

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_111:A key policy's "*" resource is the key itself; the account-root statement is AWS's default key policy, which hands access control to IAM.
  #checkov:skip=CKV_AWS_356:Same key policy: "*" means this key, not every resource.
  #checkov:skip=CKV_AWS_109:Same key policy: only the account root (that is, IAM) may manage the key.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy "*" means this key
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "ServicesUseKey"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type = "Service"
      identifiers = [
        "logs.${var.region}.amazonaws.com",
        "events.amazonaws.com",
        "sqs.amazonaws.com",
      ]
    }
  }
}

module "network" {
  source = "./modules/network"

  name               = local.name
  vpc_cidr           = var.vpc_cidr
  availability_zones = var.availability_zones
  single_nat_gateway = !local.is_prod
  kms_key_arn        = aws_kms_key.main.arn
  log_retention_days = var.log_retention_days
}

module "database" {
  source = "./modules/database"

  name                  = local.name
  environment           = var.environment
  subnet_ids            = module.network.database_subnet_ids
  security_group_id     = module.network.database_security_group_id
  instance_class        = var.db_instance_class
  allocated_storage_gb  = var.db_allocated_storage_gb
  backup_retention_days = var.db_backup_retention_days
  kms_key_arn           = aws_kms_key.main.arn
  log_retention_days    = var.log_retention_days
}

module "artifacts" {
  source = "./modules/artifacts"

  bucket_name = "${local.name}-mlflow-artifacts-${data.aws_caller_identity.current.account_id}"
  kms_key_arn = aws_kms_key.main.arn
}

module "ingestion" {
  source = "./modules/ingestion"

  name                = local.name
  zip_path            = var.lambda_zip_path
  schedule_expression = var.ingest_schedule
  subnet_ids          = module.network.app_subnet_ids
  security_group_id   = module.network.lambda_security_group_id
  database_secret_arn = module.database.app_secret_arn
  kms_key_arn         = aws_kms_key.main.arn
  log_retention_days  = var.log_retention_days
  symbols             = var.symbols
  intervals           = var.intervals
  exchange_url        = var.exchange_url
}

module "services" {
  source = "./modules/services"

  name                         = local.name
  environment                  = var.environment
  region                       = var.region
  vpc_id                       = module.network.vpc_id
  public_subnet_ids            = module.network.public_subnet_ids
  app_subnet_ids               = module.network.app_subnet_ids
  alb_security_group_id        = module.network.alb_security_group_id
  mlflow_security_group_id     = module.network.mlflow_security_group_id
  service_security_group_id    = module.network.service_security_group_id
  dashboard_security_group_id  = module.network.dashboard_security_group_id
  allowed_cidr_blocks          = var.allowed_cidr_blocks
  certificate_arn              = var.certificate_arn
  kms_key_arn                  = aws_kms_key.main.arn
  log_retention_days           = var.log_retention_days
  artifact_bucket_name         = module.artifacts.bucket_name
  artifact_bucket_arn          = module.artifacts.bucket_arn
  database_secret_arn          = module.database.app_secret_arn
  database_readonly_secret_arn = module.database.readonly_secret_arn
  mlflow_image                 = var.mlflow_image
  dashboard_image              = var.dashboard_image
  service_image_tag            = var.service_image_tag
  model_name                   = var.model_name
  trading_deployments          = var.trading_deployments
  trading_schedule             = var.trading_schedule
}

module "cluster" {
  source = "./modules/cluster"

  name                       = local.name
  region                     = var.region
  vpc_id                     = module.network.vpc_id
  app_subnet_ids             = module.network.app_subnet_ids
  ecs_cluster_name           = module.services.cluster_name
  namespace_id               = module.services.namespace_id
  namespace_name             = module.services.namespace_name
  image_tag                  = var.cluster_image_tag
  worker_cpu                 = var.dask_worker_cpu
  worker_memory              = var.dask_worker_memory
  min_workers                = var.dask_min_workers
  max_workers                = var.dask_max_workers
  mlflow_internal_url        = module.services.mlflow_internal_url
  artifact_bucket_name       = module.artifacts.bucket_name
  artifact_bucket_arn        = module.artifacts.bucket_arn
  database_secret_arn        = module.database.app_secret_arn
  database_security_group_id = module.network.database_security_group_id
  mlflow_security_group_id   = module.network.mlflow_security_group_id
  kms_key_arn                = aws_kms_key.main.arn
  log_retention_days         = var.log_retention_days
}
