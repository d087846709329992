"""Compare: strategies side by side in the shape of the paper's Table 1, with deltas and curves."""

from __future__ import annotations

import streamlit as st

from db import queries
from ui.charts import score_bars, step_curves
from ui.common import pick_experiment, run_label, sessions
from ui.tables import BASELINES, strategy_grid, strategy_summary, with_vanilla_baseline

db = sessions()
st.title("Compare strategies")
source = st.segmented_control("Compare", ["An experiment", "Chosen runs"], default="An experiment", required=True)
if source == "An experiment":
    runs = queries.compare_runs(db, experiment_id=pick_experiment(db))
else:
    done = queries.runs_page(db, statuses=["done"], limit=500)
    labels = {row["id"]: run_label(row) for row in done.to_dict("records")}
    picked = st.multiselect("Runs", list(labels), format_func=labels.__getitem__, placeholder="Pick finished runs")
    runs = queries.compare_runs(db, run_ids=picked)

steps = queries.step_scores(db, runs.loc[runs["status"] == "done", "id"].tolist())
summary = strategy_summary(with_vanilla_baseline(runs, steps))
unfinished = int((runs["status"] != "done").sum())
if unfinished:
    st.caption(f"{unfinished} of {len(runs)} runs are not finished and are left out until they are.")
if summary.empty:
    st.info("No finished run to compare yet.")
    st.stop()

st.subheader("Test score (%), mean ± std over seeds")
st.caption("The best strategy of each row is highlighted; the table below gives each cell's number of seeds. "
           "Without vanilla runs, vanilla is the runs' step 0 (the unoptimized program on the same test split).")
st.dataframe(strategy_grid(summary), hide_index=True)

st.subheader("Deltas against vanilla, p and w (points)")
deltas = [f"Δ {b}" for b in BASELINES if summary[f"Δ {b}"].notna().any()]
st.dataframe(summary, hide_index=True, placeholder="—",
             column_order=["task", "model", "strategy", "mean", "std", "seeds", *deltas],
             column_config={"mean": st.column_config.NumberColumn("test %", format="%.1f"),
                            "std": st.column_config.NumberColumn(format="%.1f"),
                            **{d: st.column_config.NumberColumn(format="%+.1f") for d in deltas}})
st.download_button("Download CSV", summary.to_csv(index=False), "bettertogether-compare.csv", "text/csv",
                   icon=":material/download:", on_click="ignore")

bars, curves = st.columns(2)
bars.plotly_chart(score_bars(summary))
curves.plotly_chart(step_curves(steps, summary["strategy"]))
