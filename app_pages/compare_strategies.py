"""Compare: strategies of like runs side by side in the shape of the paper's Table 1, every number
with its 95% interval, every delta paired per seed and test example with its p-value."""

from __future__ import annotations

import streamlit as st

from db import queries
from ui.charts import score_bars, step_curves
from ui.common import pick_experiment, run_label, sessions
from ui.compare_strategies import compare, csv_table, grid, pair_deltas, run_groups
from ui.tables import strategy_order

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

finished = runs.loc[runs["status"] == "done", "id"].tolist()
comparison = compare(runs, queries.test_example_scores(db, finished), queries.untrained_w_steps(db, finished))
cells, deltas = comparison.cells, comparison.deltas
unfinished = int((runs["status"] != "done").sum())
if unfinished:
    st.caption(f"{unfinished} of {len(runs)} runs are not finished and are left out until they are.")
if comparison.duplicates:
    st.caption(f"{comparison.duplicates} runs repeat a strategy and seed of their group; the newest of each counts.")
if cells.empty:
    st.info("No finished run to compare yet.")
    st.stop()

st.subheader("Test score (%): mean ± std over seeds [95% CI], test examples × seeds")
st.caption("Each run counts with its final program's test score, as the paper's Table 1. A row holds only runs of the "
           "same task, model, budget, backend and settings. The interval is a t-interval over the seeds' means, "
           "never narrower than the Wilson interval over all their test examples (one seed: Wilson alone). "
           "Without vanilla runs, vanilla is the runs' step 0 (the unoptimized program on the same test split). "
           "The best mean of each row is highlighted.")
st.dataframe(grid(cells), hide_index=True)
if cells["untrained_w_seeds"].any():
    st.warning("† a w step of this cell trained nothing in some seeds (no training trace passed the metric), so "
               "its weights stayed as they were: read it as prompts only, not as a w result.")

examples = ", ".join(f"{row.setting}: {row.examples} test examples × {row.seeds} seeds"
                     for row in cells.drop_duplicates(["setting", "examples", "seeds"]).itertuples())
VERDICT = st.column_config.TextColumn("verdict", help="distinguishable: the 95% interval excludes 0")
DELTA_CONFIG = {"delta": st.column_config.NumberColumn("Δ (points)", format="%+.1f"),
                "ci_low": st.column_config.NumberColumn("CI low", format="%+.1f"),
                "ci_high": st.column_config.NumberColumn("CI high", format="%+.1f"),
                "p_value": st.column_config.NumberColumn("p", format="%.4f"),
                "verdict": VERDICT, "untrained_w": "untrained w"}
DELTA_ORDER = ["setting", "strategy", "versus", "delta", "ci_low", "ci_high", "p_value", "verdict", "pairs", "seeds",
               "test", "untrained_w"]


st.subheader("Deltas against vanilla, p and w (points)")
st.caption("Each delta pairs the two strategies on the same seed's same test examples: the mean difference, a 95% "
           "paired bootstrap interval (10,000 resamples of examples within seeds) and a p-value (McNemar's exact "
           "test for 0/1 scores, else a sign-flip permutation test). **distinguishable**: the interval excludes 0; "
           f"**within noise**: it does not. These rest on {examples}.")
st.dataframe(deltas, hide_index=True, column_order=DELTA_ORDER, column_config=DELTA_CONFIG)

st.subheader("Any two strategies")
order = strategy_order(cells["strategy"])
left, right = st.columns(2)
strategy = left.selectbox("Strategy", order, index=len(order) - 1, key="strategy")
versus = right.selectbox("Against", order, index=0, key="versus")
picked = pair_deltas(comparison, strategy, versus)
if strategy == versus or picked.empty:
    st.caption("Pick two different strategies that share a row above.")
else:
    st.dataframe(picked, hide_index=True, column_order=DELTA_ORDER, column_config=DELTA_CONFIG)
st.download_button("Download CSV", csv_table(comparison).to_csv(index=False), "bettertogether-compare.csv",
                   "text/csv", icon=":material/download:", on_click="ignore")

steps = queries.step_scores(db, finished).merge(run_groups(runs)[["id", "setting"]], left_on="run_id", right_on="id")
bars, curves = st.columns(2)
bars.plotly_chart(score_bars(cells))
curves.plotly_chart(step_curves(steps, cells["strategy"]))
