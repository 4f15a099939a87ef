output "endpoint" {
  description = "host:port of the PostgreSQL server."
  value       = aws_db_instance.main.endpoint
}

output "address" {
  description = "Host name of the PostgreSQL server."
  value       = aws_db_instance.main.address
}

output "app_secret_arn" {
  description = "Secret with the application's credentials (username, password, host, port, dbname)."
  value       = aws_secretsmanager_secret.app.arn
}

output "readonly_secret_arn" {
  description = "Secret with the read-only credentials (dashboard)."
  value       = aws_secretsmanager_secret.readonly.arn
}
