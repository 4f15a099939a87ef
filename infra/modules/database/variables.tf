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
  description = "dev or prod; prod gets deletion protection and Multi-AZ."
  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private database subnets (at least two zones)."
  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "RDS needs subnets in at least two availability zones."
  }
}

variable "security_group_id" {
  type        = string
  description = "Security group of the database (ingress from the client groups only)."
  validation {
    condition     = can(regex("^sg-", var.security_group_id))
    error_message = "security_group_id must be a security group ID."
  }
}

variable "instance_class" {
  type        = string
  description = "RDS instance class."
  validation {
    condition     = can(regex("^db\\.", var.instance_class))
    error_message = "instance_class must be an RDS class such as db.t4g.medium."
  }
}

variable "engine_version" {
  type        = string
  description = "PostgreSQL major version (the local stack runs 16)."
  default     = "16"
  validation {
    condition     = can(regex("^1[6-9](\\.[0-9]+)?$", var.engine_version))
    error_message = "engine_version must be PostgreSQL 16 or newer."
  }
}

variable "allocated_storage_gb" {
  type        = number
  description = "Initial storage in GiB; autoscaling may grow it to four times this."
  validation {
    condition     = var.allocated_storage_gb >= 20
    error_message = "allocated_storage_gb must be at least 20."
  }
}

variable "backup_retention_days" {
  type        = number
  description = "Days of automated backups (point-in-time recovery window)."
  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be 1-35 (0 turns automated backups off)."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for storage, Performance Insights, the secrets and the log groups."
  validation {
    condition     = can(regex("^arn:aws:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the PostgreSQL log groups in days."
  validation {
    condition     = var.log_retention_days >= 365
    error_message = "Keep database logs at least a year."
  }
}

variable "database_name" {
  type        = string
  description = "Database Trendcast uses (TRENDCAST_DATABASE_NAME); MLflow uses a database `mlflow` on the same server."
  default     = "trendcast"
  validation {
    condition     = can(regex("^[a-z][a-z0-9_]{0,62}$", var.database_name))
    error_message = "database_name must be a lower-case PostgreSQL identifier."
  }
}
