"""Trendcast dashboard: `trendcast dashboard` (or `streamlit run dashboard/app.py`).

Seven pages, every query read-only (role trendcast_reader, read-only transactions) and cached
for a short time; each page says which command fills it when it has nothing to show.
"""

from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="Trendcast", page_icon=":material/trending_up:", layout="wide")

PAGES = [
    st.Page(
        HERE / "pages" / "performance.py",
        title="Model performance",
        icon=":material/query_stats:",
        default=True,
    ),
    st.Page(HERE / "pages" / "drift.py", title="Drift", icon=":material/waves:"),
    st.Page(HERE / "pages" / "registry.py", title="Registry", icon=":material/inventory_2:"),
    st.Page(HERE / "pages" / "data_health.py", title="Data health", icon=":material/ecg_heart:"),
    st.Page(HERE / "pages" / "backtests.py", title="Backtests", icon=":material/bar_chart:"),
    st.Page(HERE / "pages" / "trading.py", title="Trading", icon=":material/candlestick_chart:"),
    st.Page(HERE / "pages" / "portfolio.py", title="Portfolio", icon=":material/pie_chart:"),
]

page = st.navigation(PAGES)
with st.sidebar:
    st.caption("Read-only: queries run as database role `trendcast_reader`; cached 30 s.")
page.run()
