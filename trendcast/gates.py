"""The performance gates, defined once: the backtest filter, promotion and the dashboard all
name, evaluate and show the same gates (defaults from the spec)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from trendcast.errors import InputError


@dataclass(frozen=True)
class Gates:
    """Gates on a version's logged metrics (``backtest_*``, ``test_*``) or a backtest report.

    ``min_test_ic`` and ``min_backtest_dsr`` None skip their gates, and ``sealed_test=False``
    the test-window gate: a plain strategy backtest has no test IC, no trials and no selection.
    A gate file can never turn ``sealed_test`` off: promotion always refuses a version whose
    test window is not after everything its selection saw."""

    min_backtest_sharpe: float = 1.0
    max_backtest_drawdown: float = 0.30
    beat_buy_and_hold: bool = True
    min_test_ic: float | None = 0.02
    #: deflated Sharpe ratio (Bailey and López de Prado): P(skill is real | the trials behind it)
    min_backtest_dsr: float | None = 0.95
    sealed_test: bool = True

    @classmethod
    def from_file(cls, path: Path) -> Gates:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not a readable JSON gate file ({exc})") from None
        known = set(cls.__dataclass_fields__) - {"sealed_test"}
        if "sealed_test" in data:
            raise InputError(
                f"{path}: sealed_test: not a setting (a version tested on data its selection "
                "saw is always refused)"
            )
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{path}: unknown gate(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def differences(self) -> str:
        """How this profile differs from the defaults ('' when it does not)."""
        default = Gates()
        return ", ".join(
            f"{k} {v} (default {getattr(default, k)})"
            for k, v in asdict(self).items()
            if v != getattr(default, k)
        )

    def evaluate(self, metrics: dict[str, float]) -> dict[str, dict]:
        """Each gate with the value seen and whether it passed; a missing metric fails."""

        def gate(name: str, key: str, passes) -> tuple[str, dict]:
            value = metrics.get(key)
            return name, {
                "metric": key,
                "value": value,
                "passed": value is not None and bool(passes(value)),
            }

        results = dict(
            [
                gate(
                    f"backtest sharpe >= {self.min_backtest_sharpe}",
                    "backtest_sharpe",
                    lambda v: v >= self.min_backtest_sharpe,
                ),
                gate(
                    f"backtest max drawdown <= {self.max_backtest_drawdown:.0%}",
                    "backtest_max_drawdown",
                    lambda v: v <= self.max_backtest_drawdown,
                ),
            ]
        )
        if self.min_test_ic is not None:
            name, result = gate(
                f"test IC > {self.min_test_ic}", "test_ic", lambda v: v > self.min_test_ic
            )
            results[name] = result
        if self.min_backtest_dsr is not None:
            name, result = gate(
                f"backtest deflated sharpe >= {self.min_backtest_dsr}",
                "backtest_dsr",
                lambda v: v >= self.min_backtest_dsr,
            )
            results[name] = result
        if self.sealed_test:
            end, start = metrics.get("selection_end_ts"), metrics.get("test_start_ts")
            results["test window after selection"] = {
                "metric": "test_start_ts > selection_end_ts",
                "value": None if start is None or end is None else start - end,
                "passed": start is not None and end is not None and start > end,
            }
        if self.beat_buy_and_hold:
            ours = metrics.get("backtest_cumulative_return")
            bench = metrics.get("backtest_benchmark_cumulative_return")
            results["beats buy-and-hold"] = {
                "metric": "backtest_cumulative_return vs backtest_benchmark_cumulative_return",
                "value": ours,
                "passed": ours is not None and bench is not None and ours > bench,
            }
        return results

    def passes(self, metrics: dict[str, float]) -> bool:
        return all(r["passed"] for r in self.evaluate(metrics).values())

    def check_report(self, report) -> dict[str, bool]:
        """Gate name -> passed for a backtest report (its numbers as ``backtest_*`` metrics)."""
        from trendcast.recorder import report_metrics

        return {k: r["passed"] for k, r in self.evaluate(report_metrics(report)).items()}
