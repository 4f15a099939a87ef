"""Trendcast: market-prediction models from exchange bars to a served, monitored model."""

__version__ = "0.1.0"
