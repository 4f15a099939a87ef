"""Portfolio: weights over time, risk contributions, equity against equal weight and the best
member, members' live returns against their backtest band, and the audit of substitutions and
capital moves (tables `portfolio.*`, filled by `trendcast portfolio backtest` and `check`)."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data

st.title("Portfolio")
runs = data.portfolio_runs()
if runs.empty:
    st.info(
        "No portfolio backtest yet: run "
        "`trendcast portfolio backtest --config portfolios/demo.yaml`."
    )
    st.stop()

name = st.selectbox("Portfolio", runs["portfolio"].tolist())
run = runs[runs["portfolio"] == name].iloc[0]
report, config = run["report"], run["config"]
summary = report["summary"]
mine = summary.get("portfolio", {})
cols = st.columns(5)
for col, (label, value, fmt) in zip(
    cols,
    [
        ("Rebalances", report["rebalances"], "{:,}"),
        ("Sharpe", mine.get("sharpe"), "{:.2f}"),
        ("Deflated Sharpe", mine.get("deflated_sharpe"), "{:.2f}"),
        ("Max drawdown", mine.get("max_drawdown"), "{:.1%}"),
        ("Turnover / year", report.get("turnover_per_year"), "{:.2f}"),
    ],
    strict=True,
):
    col.metric(label, fmt.format(value) if value is not None else "-")
rebalance = config["rebalance"]
when = rebalance["every"] if rebalance["rule"] == "calendar" else f"band {rebalance['band']}"
st.caption(
    f"Method `{config['method']}`, rebalanced {rebalance['rule']} ({when}),"
    f" costs {config['costs']['bps']} bp; run {run['id']} at {run['created_at']:%Y-%m-%d %H:%M}"
    f" by {run['created_by']}. Weights at each rebalance fitted on returns before it only."
)
for line in report.get("breaches") or []:
    st.error(f"Risk appetite breached: {line}")

weights = data.portfolio_weights(int(run["id"]))
area = go.Figure()
for member in weights.columns:
    area.add_trace(
        go.Scatter(x=weights.index, y=weights[member], name=member, stackgroup="w", mode="lines")
    )
area.update_layout(height=340, yaxis_tickformat=".0%", title="Weights at each rebalance")
st.plotly_chart(area, width="stretch")

left, right = st.columns(2)
contributions = report.get("risk_contributions") or {}
latest = {k: v for k, v in (report.get("latest_weights") or {}).items() if v > 0}
bars = go.Figure()
bars.add_trace(go.Bar(x=list(latest), y=list(latest.values()), name="weight"))
bars.add_trace(
    go.Bar(x=list(contributions), y=list(contributions.values()), name="share of volatility")
)
bars.update_layout(height=320, yaxis_tickformat=".0%", title="Latest weights and risk shares")
left.plotly_chart(bars, width="stretch")

returns = data.portfolio_returns(int(run["id"]))
best = report["best_member"]
equity = go.Figure()
for series in ("portfolio", "equal_weight", best):
    if series in returns:
        curve = (1 + returns[series].fillna(0)).cumprod()
        label = f"best member ({series})" if series == best else series
        equity.add_trace(go.Scatter(x=curve.index, y=curve, name=label, mode="lines"))
equity.update_layout(height=320, title="Equity against equal weight and the best member")
right.plotly_chart(equity, width="stretch")

st.subheader("Members: live returns against their backtest band")
rule = config["substitution"]
bands = data.portfolio_bands(name, int(run["id"]))
if bands.empty:
    st.caption(
        "No member has live returns yet (a member names its `deployment`; its equity in "
        "trading.balances becomes a live stream when `trendcast portfolio check` runs)."
    )
else:
    live = go.Figure()
    for member, frame in bands.groupby("member"):
        live.add_trace(
            go.Scatter(x=frame["day"], y=frame["value"], name=f"{member} live", mode="lines")
        )
        live.add_trace(
            go.Scatter(
                x=frame["day"], y=frame["edge"], name=f"{member} band edge",
                mode="lines", line={"dash": "dash"},
            )
        )  # fmt: skip
    what = (
        f"rolling {rule['window']}-day Sharpe" if rule["metric"] == "rolling_sharpe" else "drawdown"
    )
    live.update_layout(
        height=320,
        title=f"Live {what} against the backtest's {rule['quantile']:.0%} band; "
        f"flagged after {rule['days']} days outside",
    )
    st.plotly_chart(live, width="stretch")

st.subheader("Members, substitutions and capital moves")
members = data.portfolio_members(name)
st.dataframe(members, hide_index=True, width="stretch")
events = data.portfolio_events(name)
if events.empty:
    st.caption("No substitution, proposal or capital move recorded for this portfolio yet.")
else:
    st.dataframe(events, hide_index=True, width="stretch")
with st.expander("Comparison table"):
    st.dataframe(
        pd.DataFrame(summary).T.replace({None: np.nan}), width="stretch"
    )  # fmt: skip
