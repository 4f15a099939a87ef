"""AWS Lambda that keeps market.bars current (see handler.py)."""
