"""Runs: every run's live status; click a row for its detail, actions and exports."""

from __future__ import annotations

import math

import streamlit as st

from db import queries
from ui.common import STATUS_COLORS, STATUS_ICONS, current_run, pick_experiment, sessions, set_current_run
from ui.runs_monitor import run_detail
from ui.tables import duration, percent

PAGE_SIZE = 50

db = sessions()
st.title("Runs")
left, right = st.columns([2, 3], vertical_alignment="bottom")
with left:
    experiment = pick_experiment(db, allow_all=True)
statuses = right.pills("Status", list(STATUS_ICONS), selection_mode="multi",
                       format_func=lambda s: f"{STATUS_ICONS[s]} {s}")


@st.fragment(run_every=2)
def runs_table() -> None:
    """Refreshes itself every 2 s; a click on a row reruns the page to show that run below."""
    pages = max(1, math.ceil(queries.count_runs(db, experiment, statuses) / PAGE_SIZE))
    page = st.session_state.get("runs_page", 1)
    runs = queries.runs_page(db, experiment, statuses, PAGE_SIZE, (min(page, pages) - 1) * PAGE_SIZE)
    table = runs.assign(elapsed=runs["elapsed_s"].map(duration), val=runs["val_score"].map(percent),
                        test=runs["test_score"].map(percent),
                        current_step=runs["current_step"].fillna(""),
                        message=runs["message"].where(runs["status"].isin(["queued", "running"])).fillna(""))
    event = st.dataframe(
        table, hide_index=True, placeholder="—", on_select="rerun", selection_mode="single-row", key="runs_table",
        column_order=["id", "status", "progress", "current_step", "strategy", "task", "model", "seed", "budget",
                      "val", "test", "elapsed", "worker", "message"],
        column_config={"id": st.column_config.NumberColumn("run", format="#%d", width="small"),
                       "status": st.column_config.MultiselectColumn(options=list(STATUS_COLORS),
                                                                    color=list(STATUS_COLORS.values())),
                       "progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1,
                                                                   format="percent"),
                       "current_step": "step", "val": "val %", "test": "test %",
                       "worker": st.column_config.TextColumn("ran on", help="host:pid of the worker or Ray task "
                                                                           "that last claimed the run"),
                       "message": st.column_config.TextColumn("message", width="large")})
    if pages > 1:
        st.pagination(pages, key="runs_page")
    picked = event.selection.rows
    if picked and int(runs["id"].iloc[picked[0]]) != st.session_state.get("run"):
        set_current_run(int(runs["id"].iloc[picked[0]]))
        st.rerun()


runs_table()
newest = queries.runs_page(db, experiment, statuses, limit=1)["id"].tolist()
run_id = current_run(newest[0] if newest else None)
if run_id is not None:
    st.divider()
    run_detail(db, run_id)
