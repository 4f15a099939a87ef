"""The training label, defined once: training labels rows with it, the drift monitor and the
dashboard compare served predictions with the same realised value."""

from __future__ import annotations

import numpy as np


def forward_log_returns(close: np.ndarray, horizon: int) -> np.ndarray:
    """The label at bar t: log(close[t + horizon] / close[t]) by bar position (the next
    ``horizon`` stored bars), NaN for the last ``horizon`` bars."""
    close = np.asarray(close, dtype="float64")
    label = np.full(len(close), np.nan)
    if len(close) > horizon:
        label[:-horizon] = np.log(close[horizon:] / close[:-horizon])
    return label
