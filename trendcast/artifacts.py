"""Names and checksums of the artefacts a training run logs, shared by the units that write
them (training) and read them (serving, the drift monitor, the dashboard)."""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Run artifact holding the training split's features (the drift monitor's PSI reference).
REFERENCE_ARTIFACT = "reference/train_features.parquet"
#: Run artifact holding the backtest report (JSON) logged by :mod:`trendcast.recorder`.
BACKTEST_REPORT = "backtest/report.json"
#: Run artifact holding the gate results of a strategy backtest.
BACKTEST_GATES = "backtest/gates.json"


def backtest_figure(name: str) -> str:
    """Run artifact of a backtest figure (``equity``, ``drawdown``): plotly HTML."""
    return f"backtest/{name}.html"


#: Model-version tag holding the SHA-256 of the stored model file.
CHECKSUM_TAG = "sha256"


def sha256_file(path: Path | str) -> str:
    """SHA-256 of a file's bytes: training tags it at registration, serving verifies it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
