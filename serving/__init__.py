"""The BentoML prediction service: the model behind an MLflow alias, hot-swapped, logged."""
