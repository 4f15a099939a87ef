variable "bucket_name" {
  type        = string
  description = "Globally unique name of the MLflow artifact bucket."
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name."
  }
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key for server-side encryption of the artifacts."
  validation {
    condition     = can(regex("^arn:aws:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "noncurrent_version_days" {
  type        = number
  description = "Days an overwritten or deleted artifact version is kept before it expires."
  default     = 90
  validation {
    condition     = var.noncurrent_version_days >= 7
    error_message = "Keep superseded artifact versions at least 7 days."
  }
}

variable "infrequent_access_days" {
  type        = number
  description = "Days after which artifacts move to S3 Standard-IA (old runs are rarely read)."
  default     = 90
  validation {
    condition     = var.infrequent_access_days >= 30
    error_message = "S3 allows the move to Standard-IA after 30 days at the earliest."
  }
}
