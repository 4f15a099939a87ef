output "bucket_name" {
  description = "Name of the artifact bucket."
  value       = aws_s3_bucket.artifacts.id
}

output "bucket_arn" {
  description = "ARN of the artifact bucket (for task-role policies)."
  value       = aws_s3_bucket.artifacts.arn
}
