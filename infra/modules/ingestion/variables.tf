variable "name" {
  type        = string
  description = "Name prefix of every resource (trendcast-<environment>)."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 lower-case letters, digits or hyphens."
  }
}

variable "zip_path" {
  type        = string
  description = "Deployment zip built by `make lambda-zip` (dist/ingestion_lambda.zip), relative to where terraform runs."
  validation {
    condition     = endswith(var.zip_path, ".zip")
    error_message = "zip_path must point at a .zip file."
  }
}

variable "schedule_expression" {
  type        = string
  description = "EventBridge schedule; defaults to trendcast.schedule.DEFAULT_INGEST_RATE."
  default     = "rate(1 minute)"
  validation {
    condition     = can(regex("^(rate\\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\\)|cron\\(.+\\))$", var.schedule_expression))
    error_message = "schedule_expression must be rate(N unit) or cron(...)."
  }
}

variable "subnet_ids" {
  type        = list(string)
  description = "Private application subnets the Lambda runs in (out through NAT)."
  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "Give at least one subnet."
  }
}

variable "security_group_id" {
  type        = string
  description = "Security group of the Lambda."
  validation {
    condition     = can(regex("^sg-", var.security_group_id))
    error_message = "security_group_id must be a security group ID."
  }
}

variable "database_secret_arn" {
  type        = string
  description = "Secrets Manager secret with the database credentials (TRENDCAST_DATABASE_SECRET_ARN)."
  validation {
    condition     = can(regex("^arn:aws:secretsmanager:", var.database_secret_arn))
    error_message = "database_secret_arn must be a Secrets Manager ARN."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key of the environment variables, the log group, the queue and the secret."
  validation {
    condition     = can(regex("^arn:aws:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the Lambda's log group in days."
  validation {
    condition     = var.log_retention_days >= 365
    error_message = "Keep ingestion logs at least a year."
  }
}

variable "timeout_s" {
  type        = number
  description = "Lambda timeout; the handler stops 10 s before it (TRENDCAST_INGEST_BUDGET_S caps it too)."
  default     = 300
  validation {
    condition     = var.timeout_s >= 30 && var.timeout_s <= 900
    error_message = "timeout_s must be 30-900 seconds."
  }
}

variable "memory_mb" {
  type        = number
  description = "Lambda memory (pandas and numpy need a few hundred MB)."
  default     = 1024
  validation {
    condition     = var.memory_mb >= 512 && var.memory_mb <= 10240
    error_message = "memory_mb must be 512-10240."
  }
}

variable "symbols" {
  type        = list(string)
  description = "Symbols to ingest (TRENDCAST_SYMBOLS)."
  validation {
    condition     = length(var.symbols) > 0
    error_message = "Give at least one symbol."
  }
}

variable "intervals" {
  type        = list(string)
  description = "Bar intervals to ingest (TRENDCAST_INTERVALS)."
  validation {
    condition     = length(var.intervals) > 0
    error_message = "Give at least one interval."
  }
}

variable "exchange_url" {
  type        = string
  description = "Binance-compatible REST API (TRENDCAST_EXCHANGE_URL)."
  validation {
    condition     = can(regex("^https?://", var.exchange_url))
    error_message = "exchange_url must be an http(s) URL."
  }
}
