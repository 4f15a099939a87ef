variable "name" {
  type        = string
  description = "Name prefix of every resource (trendcast-<environment>)."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 lower-case letters, digits or hyphens."
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
  description = "VPC of the cluster."
  validation {
    condition     = can(regex("^vpc-", var.vpc_id))
    error_message = "vpc_id must be a VPC ID."
  }
}

variable "app_subnet_ids" {
  type        = list(string)
  description = "Private app subnets the scheduler and the workers run in."
  validation {
    condition     = length(var.app_subnet_ids) >= 1 && alltrue([for id in var.app_subnet_ids : can(regex("^subnet-", id))])
    error_message = "app_subnet_ids must hold at least one subnet ID."
  }
}

variable "ecs_cluster_name" {
  type        = string
  description = "ECS cluster the Dask services run in (the stack's)."
  validation {
    condition     = length(var.ecs_cluster_name) > 0
    error_message = "ecs_cluster_name must not be empty."
  }
}

variable "namespace_id" {
  type        = string
  description = "Private DNS namespace the scheduler registers in."
  validation {
    condition     = can(regex("^ns-", var.namespace_id))
    error_message = "namespace_id must be a Cloud Map namespace ID."
  }
}

variable "namespace_name" {
  type        = string
  description = "That namespace's domain (the scheduler is dask-scheduler.<namespace_name>)."
  validation {
    condition     = length(var.namespace_name) > 0
    error_message = "namespace_name must not be empty."
  }
}

variable "image_tag" {
  type        = string
  description = "Tag (commit SHA) of the Trendcast image in the cluster repository."
  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{1,128}$", var.image_tag))
    error_message = "image_tag must be a valid image tag."
  }
}

variable "worker_cpu" {
  type        = number
  description = "CPU units of one worker task (1024 = one vCPU; one thread per worker)."
  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.worker_cpu)
    error_message = "worker_cpu must be a Fargate CPU size."
  }
}

variable "worker_memory" {
  type        = number
  description = "Memory of one worker task in MiB."
  validation {
    condition     = var.worker_memory >= 512 && var.worker_memory <= 30720
    error_message = "worker_memory must be between 512 and 30720 MiB."
  }
}

variable "min_workers" {
  type        = number
  description = "Workers kept running when idle."
  validation {
    condition     = var.min_workers >= 0
    error_message = "min_workers must not be negative."
  }
}

variable "max_workers" {
  type        = number
  description = "Most workers the autoscaler starts."
  validation {
    condition     = var.max_workers >= 1 && var.max_workers <= 500
    error_message = "max_workers must be between 1 and 500."
  }
}

variable "mlflow_internal_url" {
  type        = string
  description = "MLflow inside the VPC; the workers log their grid runs there."
  validation {
    condition     = can(regex("^https?://", var.mlflow_internal_url))
    error_message = "mlflow_internal_url must be an http(s) URL."
  }
}

variable "artifact_bucket_name" {
  type        = string
  description = "The artifact bucket (training-set exports)."
  validation {
    condition     = length(var.artifact_bucket_name) >= 3
    error_message = "artifact_bucket_name must be a bucket name."
  }
}

variable "artifact_bucket_arn" {
  type        = string
  description = "ARN of that bucket."
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::", var.artifact_bucket_arn))
    error_message = "artifact_bucket_arn must be an S3 bucket ARN."
  }
}

variable "database_secret_arn" {
  type        = string
  description = "Secret with the application's database credentials (TRENDCAST_DATABASE_SECRET_ARN)."
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:secretsmanager:", var.database_secret_arn))
    error_message = "database_secret_arn must be a Secrets Manager ARN."
  }
}

variable "database_security_group_id" {
  type        = string
  description = "The database's security group (the workers are let in on 5432)."
  validation {
    condition     = can(regex("^sg-", var.database_security_group_id))
    error_message = "database_security_group_id must be a security group ID."
  }
}

variable "mlflow_security_group_id" {
  type        = string
  description = "MLflow's security group (the workers are let in on 5000)."
  validation {
    condition     = can(regex("^sg-", var.mlflow_security_group_id))
    error_message = "mlflow_security_group_id must be a security group ID."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for the logs, the image repository and the bucket's objects."
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Days the scheduler's and the workers' logs are kept."
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention value."
  }
}
