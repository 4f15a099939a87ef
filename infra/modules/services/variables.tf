variable "name" {
  type        = string
  description = "Name prefix of every resource (trendcast-<environment>)."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 lower-case letters, digits or hyphens."
  }
}

variable "environment" {
  type        = string
  description = "dev or prod; prod protects the load balancer from deletion and runs two service tasks."
  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "region" {
  type        = string
  description = "AWS region (for the awslogs driver)."
  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name."
  }
}

variable "vpc_id" {
  type        = string
  description = "VPC of the tasks and the load balancer."
  validation {
    condition     = can(regex("^vpc-", var.vpc_id))
    error_message = "vpc_id must be a VPC ID."
  }
}

variable "public_subnet_ids" {
  type        = list(string)
  description = "Public subnets of the load balancer."
  validation {
    condition     = length(var.public_subnet_ids) >= 2
    error_message = "A load balancer needs subnets in two zones."
  }
}

variable "app_subnet_ids" {
  type        = list(string)
  description = "Private subnets of the tasks."
  validation {
    condition     = length(var.app_subnet_ids) >= 1
    error_message = "Give at least one subnet."
  }
}

variable "alb_security_group_id" {
  type        = string
  description = "Security group of the load balancer."
  validation {
    condition     = can(regex("^sg-", var.alb_security_group_id))
    error_message = "Must be a security group ID."
  }
}

variable "mlflow_security_group_id" {
  type        = string
  description = "Security group of the MLflow tasks."
  validation {
    condition     = can(regex("^sg-", var.mlflow_security_group_id))
    error_message = "Must be a security group ID."
  }
}

variable "service_security_group_id" {
  type        = string
  description = "Security group of the BentoML service tasks."
  validation {
    condition     = can(regex("^sg-", var.service_security_group_id))
    error_message = "Must be a security group ID."
  }
}

variable "dashboard_security_group_id" {
  type        = string
  description = "Security group of the dashboard tasks."
  validation {
    condition     = can(regex("^sg-", var.dashboard_security_group_id))
    error_message = "Must be a security group ID."
  }
}

variable "allowed_cidr_blocks" {
  type        = list(string)
  description = "Client networks allowed to reach the load balancer."
  default     = []
  validation {
    condition     = alltrue([for c in var.allowed_cidr_blocks : can(cidrnetmask(c)) && c != "0.0.0.0/0"])
    error_message = "allowed_cidr_blocks must be valid CIDRs other than 0.0.0.0/0."
  }
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate of the HTTPS listeners."
  validation {
    condition     = can(regex("^arn:aws:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key of the log groups, the image repository and the secrets."
  validation {
    condition     = can(regex("^arn:aws:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the services' log groups in days."
  validation {
    condition     = var.log_retention_days >= 365
    error_message = "Keep service logs at least a year."
  }
}

variable "artifact_bucket_name" {
  type        = string
  description = "MLflow artifact bucket."
  validation {
    condition     = length(var.artifact_bucket_name) >= 3
    error_message = "Give the bucket name."
  }
}

variable "artifact_bucket_arn" {
  type        = string
  description = "ARN of the MLflow artifact bucket."
  validation {
    condition     = can(regex("^arn:aws:s3:::", var.artifact_bucket_arn))
    error_message = "artifact_bucket_arn must be an S3 bucket ARN."
  }
}

variable "database_secret_arn" {
  type        = string
  description = "Secret with the application's database credentials (MLflow and the service)."
  validation {
    condition     = can(regex("^arn:aws:secretsmanager:", var.database_secret_arn))
    error_message = "Must be a Secrets Manager ARN."
  }
}

variable "database_readonly_secret_arn" {
  type        = string
  description = "Secret with the read-only database credentials (dashboard)."
  validation {
    condition     = can(regex("^arn:aws:secretsmanager:", var.database_readonly_secret_arn))
    error_message = "Must be a Secrets Manager ARN."
  }
}

variable "mlflow_image" {
  type        = string
  description = "Image of the MLflow tracking server: mlflow[auth], psycopg2 and boto3 plus the trendcast core package (its trendcast-auth app)."
  validation {
    condition     = length(var.mlflow_image) > 0
    error_message = "Give an image."
  }
}

variable "dashboard_image" {
  type        = string
  description = "Image of the Streamlit dashboard."
  validation {
    condition     = length(var.dashboard_image) > 0
    error_message = "Give an image."
  }
}

variable "service_image_tag" {
  type        = string
  description = "Tag of the service image for the first deployment (the bento workflow deploys later ones)."
  validation {
    condition     = length(var.service_image_tag) > 0 && var.service_image_tag != "latest"
    error_message = "Give a tag other than latest."
  }
}

variable "model_name" {
  type        = string
  description = "Registered model the service loads as models:/NAME@production."
  validation {
    condition     = length(var.model_name) > 0
    error_message = "Give a model name."
  }
}

variable "service_desired_count" {
  type        = number
  description = "Running BentoML tasks (0 = default: 2 in prod, 1 in dev)."
  default     = 0
  validation {
    condition     = var.service_desired_count >= 0 && var.service_desired_count <= 20
    error_message = "service_desired_count must be 0-20."
  }
}

variable "trading_deployments" {
  type        = list(string)
  description = "Deployments (trendcast deploy create NAME) the scheduled runner trades; one EventBridge rule each."
  default     = []
  validation {
    condition     = alltrue([for d in var.trading_deployments : can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", d))])
    error_message = "Deployment names are letters, digits, '_', '.' or '-' (at most 63)."
  }
}

variable "trading_schedule" {
  type        = string
  description = "How often the runner wakes to trade the newest closed bar (EventBridge rate)."
  default     = "rate(5 minutes)"
  validation {
    condition     = can(regex("^rate\\([0-9]+ (minute|minutes|hour|hours)\\)$", var.trading_schedule))
    error_message = "trading_schedule must be an EventBridge rate in minutes or hours."
  }
}
