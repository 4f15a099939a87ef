output "scheduler_address" {
  description = "TRENDCAST_DASK_SCHEDULER for jobs inside the VPC (in the client security group)."
  value       = local.scheduler_url
}

output "client_security_group_id" {
  description = "Security group a job attaches to reach the scheduler and the workers."
  value       = aws_security_group.client.id
}

output "worker_service_name" {
  description = "ECS service of the autoscaled Dask workers."
  value       = aws_ecs_service.worker.name
}
