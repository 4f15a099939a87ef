"""Drift: PSI per feature over time against the alert thresholds, IC and Sharpe over time,
and the open alerts."""

import plotly.graph_objects as go
import streamlit as st

from dashboard import data
from trendcast.drift import RULES

st.title("Drift")
catalog = data.drift_catalog()
open_alerts = data.alerts("open")

if catalog.empty:
    st.info(
        "No drift metrics yet. Compute them with `trendcast drift run` (yesterday) or "
        "`trendcast drift run --backfill START END` (history)."
    )
else:
    labels = [
        f"{r.model_name} v{r.model_version} ({r.source}, {r.days} days to {r.last})"
        for r in catalog.itertuples()
    ]
    chosen = st.selectbox("Model version and prediction source", range(len(labels)),
                          format_func=lambda i: labels[i])  # fmt: skip
    row = catalog.iloc[chosen]
    frame = data.drift_metrics(row["model_name"], int(row["model_version"]), row["source"])
    if row["source"] == "backfill":
        st.caption("Backfill: the model scored on the feature store's history, not live traffic.")

    psi = frame[frame["metric"] == "psi"].pivot_table(
        index="date", columns="feature", values="value"
    )
    fig = go.Figure()
    fig.add_hrect(y0=0.10, y1=0.25, fillcolor="orange", opacity=0.15, line_width=0,
                  annotation_text="warning > 0.10", annotation_position="top left")  # fmt: skip
    fig.add_hrect(y0=0.25, y1=max(0.5, float(psi.max().max()) if psi.size else 0.5),
                  fillcolor="red", opacity=0.12, line_width=0,
                  annotation_text="severe > 0.25", annotation_position="top left")  # fmt: skip
    for feature in psi.columns:
        fig.add_scatter(x=psi.index, y=psi[feature], name=feature, mode="lines")
    pred_psi = frame[frame["metric"] == "prediction_psi"]
    fig.add_scatter(x=pred_psi["date"], y=pred_psi["value"], name="prediction (PSI)",
                    mode="lines", line={"color": "black", "width": 3})  # fmt: skip
    fig.update_layout(title="PSI per feature against the training reference", height=420,
                      yaxis_title="PSI")  # fmt: skip
    st.plotly_chart(fig, width="stretch")

    ic = frame[frame["feature"] == ""].pivot_table(index="date", columns="metric", values="value")
    left, right = st.columns(2)
    ic_fig = go.Figure()
    for metric, style in (("ic", {}), ("rank_ic", {"dash": "dot"}), ("ic_5d", {"width": 3})):
        if metric in ic:
            ic_fig.add_scatter(x=ic.index, y=ic[metric], name=metric, mode="lines+markers",
                               line=style)  # fmt: skip
    ic_fig.add_hline(y=0.02, line_dash="dot", line_color="orange", annotation_text="0.02")
    ic_fig.add_hline(y=0.01, line_dash="dot", line_color="red", annotation_text="0.01")
    ic_fig.add_hline(y=0.0, line_color="darkred")
    ic_fig.update_layout(title="Information coefficient (daily and 5-day mean)", height=360)
    left.plotly_chart(ic_fig, width="stretch")
    sharpe_fig = go.Figure()
    for metric in ("sharpe_5d", "sharpe_20d"):
        if metric in ic:
            sharpe_fig.add_scatter(x=ic.index, y=ic[metric], name=metric, mode="lines")
    sharpe_fig.add_hline(y=0.5, line_dash="dot", line_color="orange", annotation_text="0.5")
    sharpe_fig.add_hline(y=0.0, line_color="red")
    sharpe_fig.update_layout(title="Strategy Sharpe on predictions", height=360)
    right.plotly_chart(sharpe_fig, width="stretch")

st.subheader(f"Open alerts ({len(open_alerts)})")
if open_alerts.empty:
    st.success("No open alerts.")
else:
    st.dataframe(open_alerts.drop(columns=["status", "resolved_at"]), hide_index=True,
                 width="stretch")  # fmt: skip

with st.expander("Alert rules (the response matrix)"):
    st.table(
        [
            {"rule": r.name, "severity": r.severity, "when": r.describe(), "action": r.action}
            for r in RULES
        ]
    )
