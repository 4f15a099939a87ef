output "dashboard_url" {
  description = "Streamlit dashboard (HTTPS on the load balancer)."
  value       = module.services.dashboard_url
}

output "mlflow_url" {
  description = "MLflow tracking server and UI (HTTPS on the load balancer)."
  value       = module.services.mlflow_url
}

output "service_url" {
  description = "BentoML prediction service (HTTPS on the load balancer; health at /readyz)."
  value       = module.services.service_url
}

output "artifact_bucket" {
  description = "S3 bucket of the MLflow artifacts (TRENDCAST_ARTIFACTS_URI=s3://<bucket>/)."
  value       = module.artifacts.bucket_name
}

output "database_endpoint" {
  description = "host:port of the RDS PostgreSQL server (private; reachable from the VPC only)."
  value       = module.database.endpoint
}

output "database_secret_arn" {
  description = "Secrets Manager secret with the application's database credentials (TRENDCAST_DATABASE_SECRET_ARN)."
  value       = module.database.app_secret_arn
}

output "ingestion_function_name" {
  description = "Name of the ingestion Lambda (aws lambda invoke --function-name ...)."
  value       = module.ingestion.function_name
}

output "ingestion_dead_letter_queue_url" {
  description = "SQS queue receiving ingestion events that failed after retries."
  value       = module.ingestion.dead_letter_queue_url
}

output "service_ecr_repository_url" {
  description = "ECR repository the bento workflow pushes the service image to."
  value       = module.services.service_repository_url
}

output "ecs_cluster_name" {
  description = "ECS cluster running MLflow, the service and the dashboard."
  value       = module.services.cluster_name
}

output "service_ecs_service_name" {
  description = "ECS service of the BentoML container (the bento workflow deploys to it)."
  value       = module.services.service_ecs_service_name
}

output "service_api_token_secret_arn" {
  description = "Secrets Manager secret with the prediction service's bearer token (TRENDCAST_API_TOKEN)."
  value       = module.services.service_api_token_secret_arn
}

output "mlflow_promoter_secret_arn" {
  description = "Secret with the MLflow promotion identity (trendcast-promoter), the only user that may move aliases."
  value       = module.services.mlflow_promoter_secret_arn
}

output "dask_scheduler" {
  description = "TRENDCAST_DASK_SCHEDULER for jobs in the VPC that carry the dask client security group."
  value       = module.cluster.scheduler_address
}

output "dask_client_security_group_id" {
  description = "Security group a job attaches to use the Dask cluster."
  value       = module.cluster.client_security_group_id
}
