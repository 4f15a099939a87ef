"""Portfolios of strategies: return streams, walk-forward allocation with skfolio, applying the
weights to deployments' capital, and substituting members that leave their backtest band."""
