"""Training: point-in-time datasets, XGBoost, MLflow tracking and registration."""
