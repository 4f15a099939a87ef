"""Portfolio allocation, pure parts: bounds, causality, equality with skfolio called directly,
the substitution rule at its boundary, and bad configs refused naming the field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trendcast.errors import InputError
from trendcast.portfolio.allocate import CASH, walk_forward
from trendcast.portfolio.config import parse_config
from trendcast.portfolio.substitution import best_candidate, judge

METHODS = ("equal", "inverse-vol", "risk-parity", "hrp", "mean-cvar")


def returns(days: int = 700, members: int = 6, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    scale = np.linspace(0.5, 3.0, members)
    index = pd.date_range("2020-01-01", periods=days, freq="D")
    data = rng.normal(0.0004, 0.01, (days, members)) * scale
    frame = pd.DataFrame(data, index=index, columns=[f"m{i}" for i in range(members)])
    frame.iloc[:150, -1] = np.nan  # a member that starts late
    return frame


def config(method: str = "hrp", **extra) -> dict:
    frame = extra.pop("frame", None)
    names = list(frame.columns) if frame is not None else [f"m{i}" for i in range(6)]
    return {
        "name": "test",
        "method": method,
        "lookback_days": 200,
        "min_history_days": 60,
        "members": [{"name": n, "strategy": "sma-crossover", "symbols": ["X"]} for n in names],
        **extra,
    }


@pytest.mark.parametrize("method", METHODS)
def test_weights_respect_bounds_and_sum_to_one(method):
    frame = returns()
    cfg = parse_config(config(method, risk={"min_weight": 0.05, "max_weight": 0.3}))
    run = walk_forward(frame, cfg)
    assert len(run.weights) >= 20  # monthly over ~23 months
    w = run.weights
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-9)
    members = w.drop(columns=CASH)
    held = members.where(members > 0)
    assert (held.min(axis=1) >= 0.05 - 1e-6).all(), held.min(axis=1).min()
    assert (members.max(axis=1) <= 0.3 + 1e-6).all(), members.max(axis=1).max()
    # the late member enters once min_history_days of its returns are in the past
    early = w.index < frame.index[150 + 60]
    assert (w.loc[early, "m5"] == 0).all()
    assert (w.loc[~early, "m5"] > 0).all()


def test_per_member_bound_overrides_the_global_one():
    raw = config("hrp", risk={"max_weight": 0.6})
    raw["members"][0]["max_weight"] = 0.02
    run = walk_forward(returns(), parse_config(raw))
    assert (run.weights["m0"] <= 0.02 + 1e-9).all()
    assert run.weights["m1"].max() > 0.02


def test_target_vol_keeps_the_rest_in_cash():
    cfg = parse_config(config("hrp", risk={"target_vol": 0.05}))
    run = walk_forward(returns(), cfg)
    assert (run.weights[CASH] > 0.3).all()  # the members run at ~20 % vol: most is in cash
    realised = run.returns.std(ddof=1) * np.sqrt(365)
    assert realised < 0.07


@pytest.mark.parametrize("method", ("hrp", "mean-cvar"))
def test_weights_never_use_returns_at_or_after_the_rebalance(method):
    """The cheat: from each rebalance on, an oracle member earns +5 % a day and the others'
    futures are scrambled. Weights chosen on or before that day must not move."""
    frame = returns()
    frame["oracle"] = np.random.default_rng(3).normal(0, 0.01, len(frame))
    cfg = parse_config(config(method, frame=frame, risk={"max_weight": 0.5}))
    honest = walk_forward(frame, cfg)
    assert (honest.fits["fit_end"] < honest.fits.index).all()
    assert (honest.fits["observations"] <= 200).all()
    for cut in honest.weights.index[::5]:
        cheat = frame.copy()
        after = cheat.index >= cut
        cheat.loc[after, "oracle"] = 0.05
        cheat.loc[after, frame.columns[:-1]] = np.random.default_rng(9).normal(
            0, 0.05, (after.sum(), frame.shape[1] - 1)
        )
        seen = walk_forward(cheat, cfg)
        upto = honest.weights.index <= cut
        pd.testing.assert_frame_equal(seen.weights[upto], honest.weights[upto])
        # the cheat does move the weights once it is in the past (so a leak would show)
        if cut < honest.weights.index[-3]:
            assert not np.allclose(seen.weights.iloc[-1], honest.weights.iloc[-1])
            if method == "mean-cvar":  # a return-seeking method finds the oracle
                assert seen.weights["oracle"].iloc[-1] == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("method", ("risk-parity", "hrp", "mean-cvar", "inverse-vol"))
def test_weights_equal_skfolio_called_directly(method):
    from skfolio import RiskMeasure
    from skfolio.optimization import (
        HierarchicalRiskParity,
        InverseVolatility,
        MeanRisk,
        ObjectiveFunction,
        RiskBudgeting,
    )

    frame = returns()
    cfg = parse_config(config(method, risk={"cvar_limit": 0.04, "max_drawdown": 0.5}))
    run = walk_forward(frame, cfg)
    assert (run.fits["fallback"] == "").mean() > 0.8
    for day, fit in run.fits.iterrows():
        window = frame.loc[fit.fit_start : fit.fit_end].dropna(axis=1)
        direct = {
            "risk-parity": lambda: RiskBudgeting(risk_measure=RiskMeasure.VARIANCE),
            "hrp": lambda: HierarchicalRiskParity(),
            "inverse-vol": lambda: InverseVolatility(),
            "mean-cvar": lambda: MeanRisk(
                objective_function=ObjectiveFunction.MAXIMIZE_RATIO,
                risk_measure=RiskMeasure.CVAR,
                max_cvar=0.04,
                max_max_drawdown=0.5,
            ),
        }[method]()
        if fit.fallback:  # the optimiser failed for us: it fails when called directly too
            with pytest.raises(Exception):  # noqa: B017 - skfolio's solver errors vary
                direct.fit(window)
            continue
        direct.fit(window)
        ours = run.weights.loc[day, window.columns].to_numpy()
        np.testing.assert_allclose(ours, direct.weights_, atol=1e-6, err_msg=str(day))


def test_drift_band_rebalances_only_past_the_band():
    frame = returns()
    cfg = parse_config(config("equal", rebalance={"rule": "drift", "band": 0.02}))
    run = walk_forward(frame, cfg)
    drifted = run.drifted
    for day in run.weights.index[1:]:
        previous = run.weights[run.weights.index < day].iloc[-1].drop(CASH)
        assert (drifted.loc[day] - previous).abs().max() > 0.02
    # and on no other day did the drift exceed the band without a rebalance
    targets = run.weights.drop(columns=CASH).reindex(drifted.index).ffill().shift(1)
    gap = (drifted - targets).abs().max(axis=1).iloc[1:]
    others = gap.index.difference(run.weights.index)
    assert (gap.loc[others] <= 0.02).all()


def test_costs_are_paid_on_turnover():
    frame = returns()
    free = walk_forward(frame, parse_config(config("hrp", costs={"bps": 0})))
    paid = walk_forward(frame, parse_config(config("hrp", costs={"bps": 50})))
    diff = (free.returns - paid.returns).loc[paid.turnover.index]
    np.testing.assert_allclose(diff, paid.turnover * 50e-4, atol=1e-12)
    assert (free.returns - paid.returns).drop(paid.turnover.index).abs().max() == 0


def test_the_report_compares_with_equal_weight_and_the_best_member():
    from trendcast.portfolio.evaluate import evaluate

    frame = returns()
    report = evaluate(frame, parse_config(config("hrp")))
    rows = list(report.summary.index)
    assert rows[:2] == ["portfolio", "equal_weight"]
    assert rows[2] == f"best member ({report.best_member})"
    best = report.summary.loc[list(frame.columns), "sharpe"].idxmax()
    assert report.best_member == best
    assert report.summary["deflated_sharpe"].between(0, 1).all()
    assert report.contributions.sum() == pytest.approx(1.0)
    assert set(report.contributions.index) <= set(frame.columns)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"method": "markowitz"}, "method"),
        ({"risk": {"max_weight": 1.5}}, "risk.max_weight"),
        ({"risk": {"min_weight": 0.5}}, "min_weight"),
        ({"risk": {"min_weight": 0.3, "max_weight": 0.2}}, "min_weight"),
        ({"rebalance": {"rule": "sometimes"}}, "rebalance.rule"),
        ({"rebalance": {"band": 0}}, "rebalance.band"),
        ({"costs": {"bps": -1}}, "costs.bps"),
        ({"members": []}, "members"),
        ({"risk": {"target_vol": -0.1}}, "risk.target_vol"),
        ({"lookback_days": 20}, "lookback_days"),
        ({"substitution": {"days": 0}}, "substitution.days"),
        ({"rebalance": {"every": "monthly", "oops": 1}}, "rebalance.oops"),
    ],
)
def test_bad_configs_are_refused_naming_the_field(change, field):
    with pytest.raises(InputError) as caught:
        parse_config({**config(), **change}, "P.yaml")
    message = str(caught.value)
    assert message.startswith("P.yaml: ") and field in message and "\n" not in message


def test_repeated_member_names_are_refused():
    raw = config()
    raw["members"][1]["name"] = raw["members"][0]["name"]
    with pytest.raises(InputError, match="unique"):
        parse_config(raw)


def test_member_id_ignores_order_and_names_the_four_parts():
    from trendcast.portfolio.config import member_id

    a = member_id("sma", {"fast": 5, "slow": 20}, ["A", "B"], "M@production")
    assert a == member_id("sma", {"slow": 20, "fast": 5}, ["B", "A"], "M@production")
    assert a != member_id("sma", {"fast": 5, "slow": 20}, ["A", "B"], "M@challenger")
    assert a != member_id("sma", {"fast": 6, "slow": 20}, ["A", "B"], "M@production")


# --- substitution ---------------------------------------------------------------------------


def _live_with_bad_days(bad: int, window: int = 20) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(11)
    index = pd.date_range("2021-01-01", periods=400, freq="D")
    backtest = pd.Series(rng.normal(0.002, 0.01, 400), index=index)
    live_index = pd.date_range("2022-03-01", periods=window + 40, freq="D")
    live = pd.Series(backtest.to_numpy()[: len(live_index)], index=live_index)
    if bad:
        live.iloc[-bad:] = -0.03  # every one of the last `bad` days pulls the Sharpe down
    return live, backtest


@pytest.mark.parametrize("metric", ("rolling_sharpe", "drawdown"))
def test_substitution_triggers_exactly_at_k_days(metric):
    from trendcast.portfolio.config import Substitution

    rule = Substitution(metric=metric, window=20, quantile=0.05, days=4)
    live, backtest = _live_with_bad_days(bad=12)
    verdict = judge("m", live, backtest, rule)
    run = verdict.run_length
    assert run >= 4
    # cut the live series so the run outside the band is exactly K-1, then exactly K days
    end_of_run = live.index[-1]
    short = live.loc[: end_of_run - pd.Timedelta(days=run - 3)]
    exact = live.loc[: end_of_run - pd.Timedelta(days=run - 4)]
    below, at = judge("m", short, backtest, rule), judge("m", exact, backtest, rule)
    assert (below.run_length, below.flagged) == (3, False)
    assert (at.run_length, at.flagged) == (4, True)
    assert at.flagged_on == exact.index[-1]
    healthy, _ = _live_with_bad_days(bad=0)
    assert not judge("m", healthy, backtest, rule).flagged


def test_best_candidate_passes_the_gates():
    from trendcast.portfolio.config import Substitution

    rng = np.random.default_rng(5)
    index = pd.date_range("2021-01-01", periods=500, freq="D")
    bench = {
        "steady": pd.Series(rng.normal(0.002, 0.01, 500), index=index),  # Sharpe ~3.8
        "wild": pd.Series(rng.normal(0.004, 0.05, 500), index=index),  # deep drawdowns
        "losing": pd.Series(rng.normal(-0.001, 0.01, 500), index=index),  # Sharpe < 0
    }
    best, results = best_candidate(bench, Substitution())
    assert best == "steady"
    assert not all(r["passed"] for r in results["losing"].values())
    assert best_candidate(bench, Substitution(), exclude={"steady"})[0] is None
