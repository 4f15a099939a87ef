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
clock, clock_name = data.exchange_clock()
st.subheader("Series: last bar age, bars overdue, gaps")
st.caption(
    f"Measured against the {clock_name} ({clock:%Y-%m-%d %H:%M} UTC). Fresh = at most one bar "
    "the instrument's calendar expects is overdue; weekends and holidays are never gaps."
)
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

st.subheader("Holes: missing bars and their repair")
holes = data.holes_by_status()
if holes.empty:
    st.success("No holes recorded.")
else:
    st.dataframe(holes, hide_index=True, width="stretch")

st.subheader("Ingestion runs")
runs = data.ingestion_runs()
if runs.empty:
    st.info("No ingestion runs recorded.")
else:
    abandoned = runs[runs["status"] == "abandoned"]
    if len(abandoned):
        st.warning(f"{len(abandoned)} run(s) abandoned: their process died while running.")
    st.dataframe(runs, hide_index=True, width="stretch")
