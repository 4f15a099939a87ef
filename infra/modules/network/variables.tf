variable "name" {
  type        = string
  description = "Name prefix of every resource (trendcast-<environment>)."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,30}$", var.name))
    error_message = "name must be 3-31 lower-case letters, digits or hyphens."
  }
}

variable "vpc_cidr" {
  type        = string
  description = "CIDR block of the VPC."
  validation {
    condition     = can(cidrnetmask(var.vpc_cidr))
    error_message = "vpc_cidr must be a valid IPv4 CIDR."
  }
}

variable "availability_zones" {
  type        = list(string)
  description = "Availability zones; one public, one application and one database subnet in each."
  validation {
    condition     = length(var.availability_zones) >= 2
    error_message = "Give at least two availability zones (RDS subnet groups need two)."
  }
}

variable "single_nat_gateway" {
  type        = bool
  description = "One NAT gateway for all zones (cheaper, dev) instead of one per zone (prod)."
  default     = true
}

variable "kms_key_arn" {
  type        = string
  description = "KMS key encrypting the VPC flow-log group."
  validation {
    condition     = can(regex("^arn:aws:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Retention of the VPC flow-log group in days."
  validation {
    condition     = var.log_retention_days >= 365
    error_message = "Keep flow logs at least a year."
  }
}
