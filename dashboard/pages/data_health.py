"""Data health: freshness of each series against its interval, gaps, quarantine by reason,
ingestion runs, and how much of the live feed was missing and refilled."""

import plotly.graph_objects as go
import streamlit as st

from dashboard import data

st.title("Data health")
series = data.series_health()
if series.empty:
    st.info("No bars stored yet: load the sample history with `trendcast load-sample`.")
    st.stop()

stale = series[~series["fresh"]]
st.metric("Series", len(series), delta=f"{len(stale)} stale" if len(stale) else "all fresh",
          delta_color="inverse" if len(stale) else "normal")  # fmt: skip
st.subheader("Series: last bar age against the interval, gaps")
st.caption("Fresh = the last bar closed at most two intervals ago. Gaps include market closures.")
st.dataframe(series, hide_index=True, width="stretch")
fig = go.Figure()
names = series["symbol"] + " " + series["interval"]
fig.add_bar(x=names, y=series["missing_bars"], name="missing bars (in gaps)")
fig.add_bar(x=names, y=series["gaps"], name="gaps")
fig.update_layout(title="Gaps per series", height=320, barmode="group")
st.plotly_chart(fig, width="stretch")

left, right = st.columns(2)
with left:
    st.subheader("Quarantine by reason")
    quarantine = data.quarantine_by_reason()
    if quarantine.empty:
        st.success("Nothing quarantined.")
    else:
        q = go.Figure(go.Bar(x=quarantine["rows"], y=quarantine["reason"], orientation="h"))
        q.update_layout(height=300, title="Quarantined rows")
        st.plotly_chart(q, width="stretch")
        st.dataframe(quarantine, hide_index=True, width="stretch")
with right:
    st.subheader("Live feed: missing and refilled")
    feed = data.live_feed()
    if feed.empty:
        st.info("No live ingestion yet: run `trendcast ingest` (the replay serves bars).")
    else:
        st.dataframe(
            feed, hide_index=True, width="stretch",
            column_config={
                "missing_share": st.column_config.NumberColumn(format="percent"),
                "refilled_share": st.column_config.NumberColumn(format="percent"),
            },
        )  # fmt: skip

st.subheader("Ingestion runs")
runs = data.ingestion_runs()
if runs.empty:
    st.info("No ingestion runs recorded.")
else:
    st.dataframe(runs, hide_index=True, width="stretch")
