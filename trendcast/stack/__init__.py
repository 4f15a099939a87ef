"""The local stack: embedded PostgreSQL, the MLflow tracking server, later the services."""
