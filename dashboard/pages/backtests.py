"""Backtests: reports logged to MLflow (experiments `backtests` and `training`), equity
against buy-and-hold, and breakdowns by asset and by period."""

import plotly.graph_objects as go
import plotly.io as pio
import streamlit as st

from dashboard import data

st.title("Backtests")
if not data.mlflow_up():
    st.warning(
        f"The MLflow tracking server at {data.tracking_uri()} is not answering: start it with "
        "`trendcast up`."
    )
    st.stop()
runs = data.backtest_runs()
if runs.empty:
    st.info(
        "No backtest reports in MLflow yet: run "
        "`trendcast backtest --strategy sma-crossover --symbols all --log-to-mlflow`."
    )
    st.stop()

st.subheader("By asset and strategy")
st.dataframe(
    runs.drop(columns=["run_id"]).dropna(axis=1, how="all"), hide_index=True, width="stretch"
)
labels = [f"{r.run} ({r.experiment}, {r.started:%Y-%m-%d %H:%M})" for r in runs.itertuples()]
chosen = st.selectbox("Report", range(len(labels)), format_func=lambda i: labels[i])
run = runs.iloc[chosen]
report = data.backtest_report(run["run_id"])
if report is None:
    st.info("This run has no backtest/report.json artifact.")
    st.stop()

cols = st.columns(5)
for col, (label, key, fmt) in zip(
    cols,
    [
        ("Return", "cumulative_return", "{:+.1%}"),
        ("Buy-and-hold", "benchmark_cumulative_return", "{:+.1%}"),
        ("Sharpe", "sharpe", "{:.2f}"),
        ("Max drawdown", "max_drawdown", "{:.1%}"),
        ("Trades", "trades", "{:,}"),
    ],
    strict=True,
):
    value = report.get(key)
    col.metric(label, fmt.format(value) if value is not None else "-")

equity_json = data.backtest_figure_json(run["run_id"], "equity")
if equity_json:
    st.plotly_chart(pio.from_json(equity_json), width="stretch")
else:
    st.info("No equity figure logged with this report (backtest/equity.html).")
drawdown_json = data.backtest_figure_json(run["run_id"], "drawdown")
if drawdown_json:
    st.plotly_chart(pio.from_json(drawdown_json), width="stretch")

st.subheader("By period")
periods = report.get("by_period") or {}
tabs = st.tabs([p.title() for p in ("month", "quarter", "year")])
for tab, period in zip(tabs, ("month", "quarter", "year"), strict=True):
    values = periods.get(period) or {}
    with tab:
        if not values:
            st.info(f"No {period}ly returns in this report.")
            continue
        bar = go.Figure(go.Bar(x=list(values), y=list(values.values())))
        bar.update_layout(
            height=280, yaxis_tickformat=".1%", xaxis_type="category",
            title=f"Strategy return by {period}",
        )  # fmt: skip
        st.plotly_chart(bar, width="stretch")
        st.dataframe(
            [{"period": k, "return": v} for k, v in values.items()], hide_index=True,
            column_config={"return": st.column_config.NumberColumn(format="%.4f")},
        )  # fmt: skip
with st.expander("Full report"):
    st.json({k: v for k, v in report.items() if k != "by_period"})
