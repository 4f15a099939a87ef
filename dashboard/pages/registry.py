"""Registry: registered models, versions with key metrics, where each alias points (and whether
the move is on record), the audited alias moves with their reasons and gate results, links into
the MLflow UI."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data

st.title("Registry")
events = data.alias_events()

if not data.mlflow_up():
    st.warning(
        f"The MLflow tracking server at {data.tracking_uri()} is not answering: start it with "
        "`trendcast up`. The audited alias moves below come from the database."
    )
else:
    models, versions = data.registry()
    if models.empty:
        st.info(
            "No registered model yet: train one with "
            "`trendcast train --symbol EURUSD --interval 1h --horizon 4`."
        )
    else:
        st.subheader("Models and aliases")
        outside = models[models["audit"] != "every alias move on record"]
        for row in outside.itertuples():
            st.error(
                f"{row.model}: {row.audit}. Someone moved the alias straight through MLflow; "
                "the service keeps the previous version. Promote the version with `trendcast "
                "promote` (through the gates, or `--force --reason`) or move the alias back."
            )
        st.dataframe(models, hide_index=True, width="stretch",
                     column_config={"link": st.column_config.LinkColumn("MLflow")})  # fmt: skip
        st.subheader("Versions")
        st.dataframe(
            versions.drop(columns=["run_id"]), hide_index=True, width="stretch",
            column_config={"link": st.column_config.LinkColumn("MLflow", display_text="open")},
        )  # fmt: skip
        fig = go.Figure()
        for name, group in versions.groupby("model"):
            fig.add_bar(x=[f"{name} v{v}" for v in group["version"]], y=group["test_ic"],
                        name=f"{name} test IC")  # fmt: skip
        fig.add_hline(y=0.02, line_dash="dot", annotation_text="gate: test IC > 0.02")
        fig.update_layout(title="Test IC per version", height=320)
        st.plotly_chart(fig, width="stretch")

st.subheader("Alias history (registry.alias_events)")
if events.empty:
    st.info(
        "No alias moves recorded: promote a version with "
        "`trendcast promote NAME --version latest --alias production`."
    )
else:
    forced = events[events["forced"]]
    for row in forced.head(5).itertuples():  # newest first: the overrides a reader must see
        failed = [part[2:] for part in row.gates.split("; ") if part.startswith("✗")]
        st.markdown(
            f"**Forced** {row.model_name}@{row.alias} → v{row.to_version} by {row.moved_by}, "
            f"{pd.Timestamp(row.moved_at):%Y-%m-%d %H:%M} UTC, past "
            f"{', '.join(failed) or 'no failing gate'}: *{row.reason or 'no reason recorded'}*"
        )
    st.dataframe(events, hide_index=True, width="stretch")
