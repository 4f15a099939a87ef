terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.60"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Partial configuration: bucket, key, region, dynamodb_table and kms_key_id come from
  # `terraform init -backend-config=environments/<env>.s3.tfbackend` (outputs of bootstrap/).
  backend "s3" {
    encrypt = true
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      Project     = "trendcast"
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}
