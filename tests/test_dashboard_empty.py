"""Every dashboard page on an empty database with MLflow down: no exception, and an empty
state that names the command to run (st.info) instead of a crash."""

from __future__ import annotations

import pytest
from conftest import REPO

EMPTY = {
    "performance.py": "trendcast drift run --backfill",
    "drift.py": "trendcast drift run",
    "registry.py": "trendcast promote",
    "data_health.py": "trendcast load-sample",
    "trading.py": "trendcast deploy create",
    "portfolio.py": "trendcast portfolio backtest",
}


@pytest.fixture
def empty_app(engine, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from trendcast.config import get_settings

    monkeypatch.setenv("TRENDCAST_MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens
    get_settings.cache_clear()

    def run(page: str) -> AppTest:
        st.cache_data.clear()
        st.cache_resource.clear()
        at = AppTest.from_file(str(REPO / "dashboard" / "pages" / page), default_timeout=30)
        return at.run()

    yield run
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.mark.parametrize("page", sorted(EMPTY))
def test_empty_page_says_what_to_run(empty_app, page):
    at = empty_app(page)
    assert not at.exception, [e.value for e in at.exception]
    assert any(EMPTY[page] in i.value for i in at.info), [i.value for i in at.info]
    assert not at.get("plotly_chart")


def test_pages_needing_mlflow_say_how_to_start_it(empty_app):
    for page in ("registry.py", "backtests.py"):
        at = empty_app(page)
        assert not at.exception, [e.value for e in at.exception]
        assert any("trendcast up" in w.value for w in at.warning), page
