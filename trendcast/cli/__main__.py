"""``python -m trendcast.cli`` (the local stack starts the exchange replay this way)."""

from trendcast.cli import main

main()
