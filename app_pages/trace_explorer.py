"""Traces: one example through the pipeline, module by module, side by side under several runs
(strategies) or several steps of one run."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from db import queries
from ui.common import SPLITS, sessions
from ui.tables import example_matrix, filter_examples
from ui.trace_explorer import pick_run_views, pick_step_views, show_example_under

MARKS = {1.0: "✓", 0.0: "✗"}

db = sessions()
st.title("Traces")
mode_cell, split_cell = st.columns([1, 2])
mode = mode_cell.segmented_control("Side by side", ["Runs", "Steps of one run"], default="Runs", required=True)
split = split_cell.segmented_control("Split", SPLITS, default="test", required=True)
runs = queries.runs_page(db, statuses=["done", "running", "failed", "cancelled"], limit=500)
views = (pick_run_views if mode == "Runs" else pick_step_views)(db, runs, split)
if not views:
    st.info(f"Nothing scored on the {split} split for this choice yet.")
    st.stop()

matrix = example_matrix({title: queries.example_scores(db, v["program_id"], split) for title, v in views.items()})
failures_cell, disagree_cell, search_cell = st.columns([1, 1, 2], vertical_alignment="bottom")
failures = failures_cell.toggle("Only failures")
disagree = disagree_cell.toggle("Only disagreements", disabled=len(views) < 2,
                                help="Examples the columns score differently.")
search = search_cell.text_input("Search inputs and outputs", placeholder="e.g. virginica")
program_ids = [v["program_id"] for v in views.values()]
matching = queries.search_examples(db, program_ids, split, search.strip()) if search.strip() else None
shown = filter_examples(matrix, failures, disagree, matching)
st.caption(f"{len(shown)} of {len(matrix)} {split} examples · " + " · ".join(
    f"{title}: {100 * matrix[title].mean():.1f}%" for title in matrix))
if shown.empty:
    st.info("No example matches these filters.")
    st.stop()

mark = lambda score: "·" if pd.isna(score) else MARKS.get(float(score), f"{score:.2f}")
index = st.selectbox("Example", shown.index.tolist(), format_func=lambda i: f"example {i}  —  " + "   ".join(
    f"{mark(score)} {title}" for title, score in shown.loc[i].items()))
example = queries.example_result(db, program_ids[0], split, index)
st.caption("INPUTS AND GOLD LABELS")
st.dataframe(pd.DataFrame([example["example"] if example else {}]).astype(str), hide_index=True)
for column, (title, view) in zip(st.columns(len(views), border=True), views.items()):
    with column:
        show_example_under(db, title, view, split, index)
