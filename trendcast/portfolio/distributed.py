"""The portfolio backtest's walk-forward on a Dask cluster, identical to the in-process walk.

With a calendar rule every rebalance and its fit window are known before the walk, and a fit
depends on its window alone: each rebalance of the configured method is a task (the window
travels inside it), and the walk then runs in the driver on the fitted weights, exactly as it
would have fitted them itself. A drift band rebalances when the weights have drifted since
the last one, so its walk is one task. Equal weight, the comparison, is cheap and walks here.
"""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd

from trendcast.cluster import Placement, map_unordered
from trendcast.portfolio.allocate import (
    WalkForward,
    calendar_windows,
    prepared,
    try_fit,
    walk_forward,
)
from trendcast.portfolio.config import PortfolioConfig


def _fit_on_worker(
    day: pd.Timestamp, window: pd.DataFrame, config: PortfolioConfig
) -> tuple[pd.Timestamp, tuple[np.ndarray | None, str]]:
    return day, try_fit(window, config)


def _walk_on_worker(returns: pd.DataFrame, config: PortfolioConfig) -> WalkForward:
    return walk_forward(returns, config)


def walks_on(
    where: Placement, returns: pd.DataFrame, config: PortfolioConfig
) -> tuple[WalkForward, WalkForward]:
    """The configured method's walk (its fits on the cluster) and equal weight's."""
    run = uuid.uuid4().hex[:12]
    windows = calendar_windows(prepared(returns), config)
    if windows is None:
        tasks = [(f"portfolio-{run}-walk", (returns, config))]
        (walk,) = map_unordered(where, _walk_on_worker, tasks)
    else:
        tasks = [
            (f"portfolio-{run}-fit-{day:%Y%m%d}", (day, window, config)) for day, window in windows
        ]
        fitted = dict(map_unordered(where, _fit_on_worker, tasks))
        walk = walk_forward(returns, config, fitted=fitted)
    return walk, walk_forward(returns, config, method="equal")
