output "dashboard_url" {
  description = "Streamlit dashboard."
  value       = "https://${aws_lb.main.dns_name}/"
}

output "mlflow_url" {
  description = "MLflow tracking server."
  value       = "https://${aws_lb.main.dns_name}:5000/"
}

output "service_url" {
  description = "BentoML service (health at /readyz)."
  value       = "https://${aws_lb.main.dns_name}:3000/"
}

output "mlflow_internal_url" {
  description = "MLflow inside the VPC (service discovery)."
  value       = local.mlflow_internal_url
}

output "service_repository_url" {
  description = "ECR repository of the BentoML service image."
  value       = aws_ecr_repository.service.repository_url
}

output "cluster_name" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.main.name
}

output "service_ecs_service_name" {
  description = "ECS service running the BentoML container."
  value       = aws_ecs_service.app["service"].name
}

output "service_api_token_secret_arn" {
  description = "Secret holding the service's bearer token (TRENDCAST_API_TOKEN)."
  value       = aws_secretsmanager_secret.api_token.arn
}

output "mlflow_promoter_secret_arn" {
  description = "Secret with the MLflow promotion identity (trendcast-promoter), the only user that may move aliases: CI reads it into TRENDCAST_MLFLOW_USERNAME / TRENDCAST_MLFLOW_PASSWORD."
  value       = aws_secretsmanager_secret.mlflow_promoter.arn
}

output "namespace_id" {
  description = "Private DNS namespace of the stack's services (Cloud Map)."
  value       = aws_service_discovery_private_dns_namespace.main.id
}

output "namespace_name" {
  description = "That namespace's domain."
  value       = aws_service_discovery_private_dns_namespace.main.name
}
