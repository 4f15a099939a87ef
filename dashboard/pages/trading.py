"""Trading: each deployment's stage and state, kill switch, positions, orders and fills
(intended against executed price), slippage, equity against the backtest of the same bars,
drawdown, and days since the last failure."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import trading_data as data

st.title("Trading")
deployments = data.deployments()
if deployments.empty:
    st.info(
        "No deployment yet: `trendcast deploy create NAME --strategy … --broker paper …`, "
        "then `trendcast deploy run NAME`."
    )
    st.stop()

st.dataframe(
    deployments.drop(columns=["id"]), hide_index=True, width="stretch",
    column_config={"drawdown": st.column_config.NumberColumn(format="percent")},
)  # fmt: skip
name = st.selectbox("Deployment", deployments["name"].tolist())
dep = deployments[deployments["name"] == name].iloc[0]
killed = dep["state"] == "killed"
last_failure = data.last_failure(int(dep["id"]))
since = last_failure if last_failure is not None else pd.Timestamp(dep["created_at"])
days = (pd.Timestamp.now(tz="UTC") - since).total_seconds() / 86400

cols = st.columns(5)
cols[0].metric("Stage", dep["stage"])
cols[1].metric("State", dep["state"])
cols[2].metric("Kill switch", "TRIPPED" if killed else "armed")
cols[3].metric("Equity", "-" if pd.isna(dep["equity"]) else f"{dep['equity']:,.2f}")
cols[4].metric(
    "Days since last failure" if last_failure is not None else "Days without failure",
    f"{days:.1f}",
)
if killed:
    st.error(f"Kill switch: {dep['state_reason']}")

balances = data.balances(int(dep["id"]))
left, right = st.columns(2)
with left:
    curve, summary = data.backtest_equity(name, bool(dep["model_name"]))
    fig = go.Figure()
    fig.add_scatter(x=balances["bar_time"], y=balances["equity"], name="live (recorded)")
    if curve is not None:
        fig.add_scatter(x=curve["bar_time"], y=curve["backtest"], name="backtest, same bars",
                        line={"dash": "dot"})  # fmt: skip
    fig.update_layout(title="Equity against the backtest of the same bars", height=340)
    st.plotly_chart(fig, width="stretch")
    st.caption(summary if curve is not None else f"Backtest unavailable: {summary}")
with right:
    dd = go.Figure(go.Scatter(x=balances["bar_time"], y=-balances["drawdown"], fill="tozeroy"))
    dd.update_layout(title="Drawdown", height=340, yaxis_tickformat=".2%")
    st.plotly_chart(dd, width="stretch")

fills = data.fills(int(dep["id"]))
left, right = st.columns(2)
with left:
    st.subheader("Positions")
    st.dataframe(data.positions(int(dep["id"])), hide_index=True, width="stretch")
with right:
    hist = go.Figure(go.Histogram(x=fills["slippage"] * 1e4, nbinsx=30))
    hist.update_layout(title="Slippage per fill (bp, adverse > 0)", height=300)
    st.plotly_chart(hist, width="stretch")

st.subheader("Orders: intended against executed")
st.dataframe(data.orders(int(dep["id"])), hide_index=True, width="stretch")
st.subheader("Audit log")
st.dataframe(data.events(int(dep["id"])), hide_index=True, width="stretch")
