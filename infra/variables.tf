variable "environment" {
  type        = string
  description = "Deployment environment; prod turns on deletion protection, Multi-AZ and longer backups."
  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be dev or prod."
  }
}

variable "region" {
  type        = string
  description = "AWS region of the whole stack."
  default     = "eu-central-1"
  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-central-1."
  }
}

variable "vpc_cidr" {
  type        = string
  description = "CIDR block of the VPC; subnets are carved out of it (/20 each)."
  default     = "10.40.0.0/16"
  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && try(tonumber(split("/", var.vpc_cidr)[1]) <= 18, false)
    error_message = "vpc_cidr must be a valid IPv4 CIDR of /18 or larger."
  }
}

variable "availability_zones" {
  type        = list(string)
  description = "Availability zones to spread subnets over (RDS subnet groups need two)."
  validation {
    condition     = length(var.availability_zones) >= 2 && length(var.availability_zones) <= 4
    error_message = "Give 2 to 4 availability zones."
  }
}

variable "allowed_cidr_blocks" {
  type        = list(string)
  description = "Client networks allowed to reach the load balancer (office or VPN ranges)."
  validation {
    condition     = length(var.allowed_cidr_blocks) > 0 && alltrue([for c in var.allowed_cidr_blocks : can(cidrnetmask(c)) && c != "0.0.0.0/0"])
    error_message = "allowed_cidr_blocks must be valid IPv4 CIDRs and must not include 0.0.0.0/0."
  }
}

variable "certificate_arn" {
  type        = string
  description = "ACM certificate for the load balancer's HTTPS listeners."
  validation {
    condition     = can(regex("^arn:aws:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "db_instance_class" {
  type        = string
  description = "RDS instance class of the PostgreSQL server."
  default     = "db.t4g.medium"
  validation {
    condition     = can(regex("^db\\.", var.db_instance_class))
    error_message = "db_instance_class must be an RDS class such as db.t4g.medium."
  }
}

variable "db_allocated_storage_gb" {
  type        = number
  description = "Initial storage of the database in GiB (storage autoscaling may grow it 4x)."
  default     = 50
  validation {
    condition     = var.db_allocated_storage_gb >= 20 && var.db_allocated_storage_gb <= 16384
    error_message = "db_allocated_storage_gb must be between 20 and 16384."
  }
}

variable "db_backup_retention_days" {
  type        = number
  description = "Days RDS keeps automated backups (point-in-time recovery window)."
  default     = 7
  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be 1-35 (0 would turn automated backups off)."
  }
}

variable "lambda_zip_path" {
  type        = string
  description = "Path of the ingestion Lambda's deployment zip, built by `make lambda-zip`."
  default     = "../dist/ingestion_lambda.zip"
  validation {
    condition     = endswith(var.lambda_zip_path, ".zip")
    error_message = "lambda_zip_path must point at a .zip file."
  }
}

variable "ingest_schedule" {
  type        = string
  description = "EventBridge schedule of the ingestion Lambda; the default is trendcast.schedule.DEFAULT_INGEST_RATE, the rate `trendcast ingest --scheduled` uses locally."
  default     = "rate(1 minute)"
  validation {
    condition     = can(regex("^(rate\\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\\)|cron\\(.+\\))$", var.ingest_schedule))
    error_message = "ingest_schedule must be an EventBridge expression: rate(N unit) or cron(...)."
  }
}

variable "symbols" {
  type        = list(string)
  description = "Symbols the Lambda ingests (TRENDCAST_SYMBOLS)."
  default     = ["EURUSD"]
  validation {
    condition     = length(var.symbols) > 0 && alltrue([for s in var.symbols : can(regex("^[A-Z0-9._-]{1,32}$", s))])
    error_message = "symbols must be 1-32 upper-case letters, digits, '.', '_' or '-'."
  }
}

variable "intervals" {
  type        = list(string)
  description = "Bar intervals the Lambda ingests (TRENDCAST_INTERVALS)."
  default     = ["1h"]
  validation {
    condition     = length(var.intervals) > 0 && alltrue([for i in var.intervals : contains(["1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M"], i)])
    error_message = "intervals must be Binance intervals (1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M)."
  }
}

variable "exchange_url" {
  type        = string
  description = "Binance-compatible REST API the Lambda fetches bars from (TRENDCAST_EXCHANGE_URL)."
  default     = "https://api.binance.com"
  validation {
    condition     = can(regex("^https://", var.exchange_url))
    error_message = "exchange_url must be an https:// URL."
  }
}

variable "log_retention_days" {
  type        = number
  description = "Retention of every CloudWatch log group (Lambda, services, VPC flow logs)."
  default     = 365
  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention value of at least one year (365, 400, 545, 731, ...)."
  }
}

variable "mlflow_image" {
  type        = string
  description = "Container image of the MLflow tracking server (mlflow 3.17 with psycopg2 and boto3)."
  validation {
    condition     = length(var.mlflow_image) > 0 && !endswith(var.mlflow_image, ":latest")
    error_message = "mlflow_image must be a pinned image reference (not :latest)."
  }
}

variable "dashboard_image" {
  type        = string
  description = "Container image of the Streamlit dashboard."
  validation {
    condition     = length(var.dashboard_image) > 0 && !endswith(var.dashboard_image, ":latest")
    error_message = "dashboard_image must be a pinned image reference (not :latest)."
  }
}

variable "service_image_tag" {
  type        = string
  description = "Tag in the service's ECR repository for the first deployment; later deployments come from the bento workflow."
  default     = "initial"
  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.service_image_tag)) && var.service_image_tag != "latest"
    error_message = "service_image_tag must be a valid image tag other than latest (the repository is immutable)."
  }
}

variable "model_name" {
  type        = string
  description = "Registered MLflow model the BentoML service loads as models:/NAME@production."
  default     = "EURUSD_1h_h4"
  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+$", var.model_name))
    error_message = "model_name must be letters, digits, '_', '.' or '-'."
  }
}

variable "trading_deployments" {
  type        = list(string)
  description = "Strategy deployments the scheduled runner trades (see `trendcast deploy`)."
  default     = []
  validation {
    condition     = length(distinct(var.trading_deployments)) == length(var.trading_deployments)
    error_message = "trading_deployments must not repeat a name."
  }
}

variable "trading_schedule" {
  type        = string
  description = "EventBridge rate at which the deployment runner wakes (hourly bars: every few minutes)."
  default     = "rate(5 minutes)"
  validation {
    condition     = startswith(var.trading_schedule, "rate(")
    error_message = "trading_schedule must be an EventBridge rate expression."
  }
}

variable "cluster_image_tag" {
  type        = string
  description = "Tag (commit SHA) of the Trendcast image in the Dask cluster's ECR repository."
  default     = "initial"
  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.cluster_image_tag)) && var.cluster_image_tag != "latest"
    error_message = "cluster_image_tag must be a valid image tag other than latest (the repository is immutable)."
  }
}

variable "dask_worker_cpu" {
  type        = number
  description = "CPU units of one Dask worker task (1024 = one vCPU; each worker runs one thread)."
  default     = 1024
  validation {
    condition     = contains([256, 512, 1024, 2048, 4096], var.dask_worker_cpu)
    error_message = "dask_worker_cpu must be a Fargate CPU size."
  }
}

variable "dask_worker_memory" {
  type        = number
  description = "Memory of one Dask worker task in MiB."
  default     = 4096
  validation {
    condition     = var.dask_worker_memory >= 512 && var.dask_worker_memory <= 30720
    error_message = "dask_worker_memory must be between 512 and 30720 MiB."
  }
}

variable "dask_min_workers" {
  type        = number
  description = "Dask workers kept running when idle (CPU scaling cannot start from zero)."
  default     = 2
  validation {
    condition     = var.dask_min_workers >= 1
    error_message = "dask_min_workers must be at least 1."
  }
}

variable "dask_max_workers" {
  type        = number
  description = "Most Dask workers the autoscaler starts."
  default     = 32
  validation {
    condition     = var.dask_max_workers >= 1 && var.dask_max_workers <= 500
    error_message = "dask_max_workers must be between 1 and 500."
  }
}
