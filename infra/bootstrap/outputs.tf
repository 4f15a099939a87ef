output "state_bucket" {
  description = "S3 bucket for the root module's backend (-backend-config bucket=...)."
  value       = aws_s3_bucket.state.id
}

output "lock_table" {
  description = "DynamoDB lock table for the root module's backend (-backend-config dynamodb_table=...)."
  value       = aws_dynamodb_table.locks.name
}

output "kms_key_arn" {
  description = "KMS key encrypting the state (-backend-config kms_key_id=...)."
  value       = aws_kms_key.state.arn
}
