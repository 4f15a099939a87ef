variable "region" {
  type        = string
  description = "AWS region of the state bucket and lock table (use the same region as the stacks)."
  default     = "eu-central-1"
  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-central-1."
  }
}

variable "state_bucket_name" {
  type        = string
  description = "Globally unique name of the S3 bucket that holds every Terraform state of Trendcast."
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.state_bucket_name))
    error_message = "state_bucket_name must be a valid S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)."
  }
}

variable "lock_table_name" {
  type        = string
  description = "Name of the DynamoDB table Terraform uses to lock the state (one apply at a time)."
  default     = "trendcast-terraform-locks"
  validation {
    condition     = can(regex("^[a-zA-Z0-9_.-]{3,255}$", var.lock_table_name))
    error_message = "lock_table_name must be 3-255 characters of letters, digits, '_', '-' or '.'."
  }
}

variable "noncurrent_version_days" {
  type        = number
  description = "Days a superseded state version is kept before it expires."
  default     = 90
  validation {
    condition     = var.noncurrent_version_days >= 30
    error_message = "Keep superseded state versions at least 30 days."
  }
}
