output "function_name" {
  description = "Name of the ingestion Lambda."
  value       = aws_lambda_function.ingestion.function_name
}

output "function_arn" {
  description = "ARN of the ingestion Lambda."
  value       = aws_lambda_function.ingestion.arn
}

output "dead_letter_queue_url" {
  description = "URL of the dead-letter queue."
  value       = aws_sqs_queue.dlq.id
}

output "schedule_expression" {
  description = "The EventBridge schedule in force."
  value       = aws_cloudwatch_event_rule.schedule.schedule_expression
}
