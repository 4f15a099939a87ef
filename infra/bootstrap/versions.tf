# Bootstrap keeps its own state locally (terraform.tfstate in this folder, git-ignored): it
# creates the bucket and the lock table every other state lives in. Apply it once per account.
terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.60"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      Project   = "trendcast"
      Component = "terraform-state"
      ManagedBy = "terraform"
    }
  }
}
