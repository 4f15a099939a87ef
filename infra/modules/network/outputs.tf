output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.main.id
}

output "public_subnet_ids" {
  description = "Public subnets (load balancer, NAT gateways)."
  value       = aws_subnet.public[*].id
}

output "app_subnet_ids" {
  description = "Private application subnets (Lambda, ECS tasks), out through NAT."
  value       = aws_subnet.app[*].id
}

output "database_subnet_ids" {
  description = "Private database subnets (RDS), no route out."
  value       = aws_subnet.database[*].id
}

output "alb_security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.alb.id
}

output "lambda_security_group_id" {
  description = "Security group of the ingestion Lambda."
  value       = aws_security_group.lambda.id
}

output "mlflow_security_group_id" {
  description = "Security group of the MLflow tasks."
  value       = aws_security_group.mlflow.id
}

output "service_security_group_id" {
  description = "Security group of the BentoML service tasks."
  value       = aws_security_group.service.id
}

output "dashboard_security_group_id" {
  description = "Security group of the dashboard tasks."
  value       = aws_security_group.dashboard.id
}

output "database_security_group_id" {
  description = "Security group of RDS (PostgreSQL from the client groups only)."
  value       = aws_security_group.database.id
}
