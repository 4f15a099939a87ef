"""Model performance: predicted vs realised growth, MSE, IC, rolling Sharpe and drawdown of
the model-threshold strategy on the logged predictions (live and backfill kept apart)."""

import datetime as dt

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data
from trendcast import metrics
from trendcast.strategy import logged_threshold

st.title("Model performance")
catalog = data.prediction_catalog()
if catalog.empty:
    st.info(
        "No predictions logged yet. Score the served models on history with "
        "`trendcast drift run --backfill START END` (or start the serving service), then reload."
    )
    st.stop()

versions_info = data.registry()[1] if data.mlflow_up() else pd.DataFrame()
left, middle, right = st.columns(3)
symbol = left.selectbox("Symbol", sorted(catalog["symbol"].unique()))
in_symbol = catalog[catalog["symbol"] == symbol]
model_name = middle.selectbox("Model", sorted(in_symbol["model_name"].unique()))
in_model = in_symbol[in_symbol["model_name"] == model_name]
first = pd.Timestamp(in_model["first"].min()).tz_convert("UTC")
last = pd.Timestamp(in_model["last"].max()).tz_convert("UTC")
default_start = max(first, last - pd.Timedelta(days=30))
start_day = right.date_input(
    "Start date (UTC)", value=default_start.date(), min_value=first.date(), max_value=last.date()
)
start_time = right.time_input("Start time (UTC)", value=dt.time(0, 0))
start = pd.Timestamp(dt.datetime.combine(start_day, start_time), tz="UTC")

pick_by = left.radio("Pick the model by", ["alias", "version", "algorithm"], horizontal=True)
aliases = None
if pick_by == "alias":
    # production first: what is served is what a reader asks about first
    alias = middle.selectbox(
        "Alias", sorted(in_model["alias"].dropna().unique(), key=lambda a: (a != "production", a))
    )
    aliases = (alias,)
    versions = tuple(sorted(in_model.loc[in_model["alias"] == alias, "model_version"].unique()))
elif pick_by == "version":
    choice = middle.selectbox(
        "Version", sorted(in_model["model_version"].unique(), reverse=True), format_func=str
    )
    versions = (int(choice),)
else:
    known = versions_info[versions_info["model"] == model_name] if len(versions_info) else None
    algorithm_of = (
        dict(zip(known["version"], known["algorithm"], strict=True)) if known is not None else {}
    )
    logged = sorted(in_model["model_version"].unique())
    algorithms = sorted({algorithm_of.get(v, "xgboost") for v in logged})
    algorithm = middle.selectbox("Algorithm", algorithms)
    versions = tuple(v for v in logged if algorithm_of.get(v, "xgboost") == algorithm)
versions = tuple(int(v) for v in versions)
sources = tuple(
    right.multiselect("Prediction source", ["live", "backfill"], default=["live", "backfill"])
)
if not sources:
    st.info("Choose at least one prediction source.")
    st.stop()

preds = data.predictions(model_name, versions, aliases, symbol, start, sources)
if preds.empty:
    st.info(
        f"No {' or '.join(sources)} predictions of {model_name} since {start:%Y-%m-%d %H:%M}: "
        "pick an earlier start, or run `trendcast drift run --backfill START END`."
    )
    st.stop()
interval = preds["interval"].iloc[0]
horizon = data.horizon_of(model_name, versions[-1], versions_info)
bars = data.closes(symbol, interval, start)
joined = data.outcomes(preds, bars, horizon)
st.caption(
    f"{len(preds):,} predictions of {model_name} v{', v'.join(map(str, versions))} on {symbol} "
    f"{interval}; actual = realised log return over the next {horizon} bars."
)

colours = {"live": "#1f77b4", "backfill": "#ff7f0e"}
present = [s for s in sources if (joined["source"] == s).any()]
cols = st.columns(len(present) * 3)
HOW_TO_SCORE = {
    "live": "`trendcast predict --symbols SYMBOL` with the service up (`trendcast up --with "
    "serving`), then wait the label horizon",
    "backfill": "`trendcast drift run --backfill START END`",
}
for i, source in enumerate(present):
    part = joined[joined["source"] == source]
    pred, real = part["prediction"].to_numpy(float), part["realised"].to_numpy(float)
    scored = int((np.isfinite(pred) & np.isfinite(real)).sum())
    if scored < 3:
        for k, name in enumerate(("MSE", "IC", "rank IC")):
            cols[3 * i + k].metric(f"{name} ({source})", "none yet")
        st.caption(
            f"No {source} prediction has a realised outcome yet ({scored} scored): "
            f"make some with {HOW_TO_SCORE[source]}."
        )
        continue
    cols[3 * i].metric(f"MSE ({source})", f"{metrics.mse(real, pred):.3g}")
    cols[3 * i + 1].metric(f"IC ({source})", f"{metrics.information_coefficient(pred, real):.3f}")
    cols[3 * i + 2].metric(
        f"rank IC ({source})", f"{metrics.rank_information_coefficient(pred, real):.3f}"
    )

growth = go.Figure()
for source in present:
    part = joined[joined["source"] == source]
    growth.add_scatter(
        x=part["event_time"], y=part["prediction"], name=f"predicted ({source})",
        mode="lines", line={"color": colours[source]},
    )  # fmt: skip
realised = joined.drop_duplicates("event_time")
growth.add_scatter(
    x=realised["event_time"], y=realised["realised"], name="actual", mode="lines",
    line={"color": "#2ca02c", "width": 1},
)  # fmt: skip
growth.update_layout(
    title=f"Predicted vs actual growth (log return over {horizon} bars)", height=380,
    yaxis_title="log return", legend={"orientation": "h"},
)  # fmt: skip
st.plotly_chart(growth, width="stretch")

report = None  # the training backtest's threshold when logged, else the strategy's default
if len(versions_info):
    hit = versions_info[
        (versions_info["model"] == model_name) & (versions_info["version"] == versions[-1])
    ]
    report = data.backtest_report(hit["run_id"].iloc[0]) if len(hit) else None
threshold, _ = logged_threshold(report)
st.caption(
    "Strategy: model-threshold (long when the prediction beats the threshold; the training "
    "backtest's threshold by default), close to close, no costs: what the drift monitor's "
    "Sharpe measures."
)
threshold = st.number_input(
    "Strategy threshold (predicted log return)", value=threshold, format="%.6f", step=0.0001
)
equity_fig, drawdown_fig, sharpe_fig = go.Figure(), go.Figure(), go.Figure()
ppy = data.periods_per_year(symbol, interval)  # the instrument's calendar
for source in present:
    curve = data.strategy_curve(joined[joined["source"] == source], bars, threshold)
    if curve.empty:
        continue
    equity_fig.add_scatter(x=curve["event_time"], y=curve["equity"], name=source)
    drawdown_fig.add_scatter(
        x=curve["event_time"], y=curve["drawdown"], name=source, fill="tozeroy"
    )
    returns = curve["return"].to_numpy()[1:]
    window = int(min(max(2, ppy / 365 * 5), max(2, len(returns) - 1)))
    rolling = metrics.rolling_sharpe(returns, window, ppy) if len(returns) >= 2 else np.array([])
    sharpe_fig.add_scatter(
        x=curve["event_time"].iloc[1:], y=np.where(np.isfinite(rolling), rolling, np.nan),
        name=f"{source} ({window} bars)",
    )  # fmt: skip
sharpe_fig.add_hline(y=0.5, line_dash="dot", annotation_text="0.5 warn")
sharpe_fig.add_hline(y=0.0, line_dash="dot", line_color="red")
equity_fig.update_layout(title="Strategy equity on predictions", height=320)
drawdown_fig.update_layout(title="Drawdown", height=320, yaxis_tickformat=".1%")
sharpe_fig.update_layout(title="Rolling Sharpe (annualised)", height=320)
a, b = st.columns(2)
a.plotly_chart(equity_fig, width="stretch")
b.plotly_chart(drawdown_fig, width="stretch")
st.plotly_chart(sharpe_fig, width="stretch")
