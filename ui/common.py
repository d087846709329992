"""Streamlit pieces the pages share: the database handle, run and experiment pickers, and the
renderers for stored text.

Model output (completions, parsed fields, demos, predictions) only ever reaches the screen
through `show_text` and `show_fields`, which render it as plain text: a completion that
contains Markdown or HTML is shown, never interpreted.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import streamlit as st

from db import queries
from db.session import Sessions, database_url, session_factory

# url path -> (script, title, icon). The folder is app_pages/, not pages/, so Streamlit's legacy
# multipage mode never serves a page without app.py's st.navigation around it.
PAGES = {"launch": ("app_pages/launch_experiment.py", "Launch", ":material/rocket_launch:"),
         "runs": ("app_pages/runs_monitor.py", "Runs", ":material/monitoring:"),
         "compare": ("app_pages/compare_strategies.py", "Compare", ":material/leaderboard:"),
         "traces": ("app_pages/trace_explorer.py", "Traces", ":material/account_tree:"),
         "prompts": ("app_pages/prompt_browser.py", "Prompts", ":material/article:")}
STATUS_ICONS = {"queued": ":material/schedule:", "running": ":material/sync:", "done": ":material/check_circle:",
                "failed": ":material/error:", "cancelled": ":material/cancel:"}
STATUS_COLORS = {"queued": "gray", "running": "blue", "done": "green", "failed": "red", "cancelled": "orange"}
SPLITS = ("test", "val", "train")


def sessions() -> Sessions:
    """The app's database (raises db.session.DatabaseError on a bad URL; app.py reports it)."""
    return session_factory(database_url())


def run_label(run: Mapping[str, Any]) -> str:
    return f"#{run['id']} {run['strategy']} · {run['task']} · {run['model']} · seed {run['seed']} ({run['status']})"


def current_run(default: int | None = None) -> int | None:
    """The run the user looks at, shared by pages: ?run= in the URL, else the last one picked."""
    for wanted in (st.query_params.get("run"), st.session_state.get("run")):
        if wanted is not None and str(wanted).isdigit():
            return int(wanted)
    return default


def set_current_run(run_id: int) -> None:
    st.session_state["run"] = run_id
    st.query_params["run"] = str(run_id)


def pick_run(runs: pd.DataFrame, label: str = "Run") -> int | None:
    """A run selectbox over `runs` (newest first) that remembers the pick across pages."""
    if runs.empty:
        st.info("No runs yet: queue some on the **Launch** page.", icon=":material/info:")
        return None
    labels = {row["id"]: run_label(row) for row in runs.to_dict("records")}
    ids = list(labels)
    wanted = current_run()
    run_id = st.selectbox(label, ids, index=ids.index(wanted) if wanted in ids else 0, format_func=labels.__getitem__)
    set_current_run(run_id)
    return run_id


def pick_experiment(db: Sessions, allow_all: bool = False) -> int | None:
    """An experiment selectbox, newest first; None means all experiments (when allowed)."""
    options: dict[int | None, str] = {None: "All experiments"} if allow_all else {}
    options.update({e["id"]: f"#{e['id']} {e['name']} ({e['runs']} runs)" for e in queries.experiments(db)})
    if not options:
        st.info("No experiments yet: queue one on the **Launch** page.")
        st.stop()
    return st.selectbox("Experiment", list(options), format_func=options.__getitem__)


def show_text(text: Any) -> None:
    st.code(str(text), language=None, wrap_lines=True)


def show_fields(values: Mapping[str, Any] | None) -> None:
    """Field names and values as a two-column table of plain text."""
    rows = [{"field": k, "value": v if isinstance(v, str) else repr(v)} for k, v in (values or {}).items()]
    st.dataframe(pd.DataFrame(rows, columns=["field", "value"]), hide_index=True, width="stretch")


def show_messages(messages: list[dict[str, str]]) -> None:
    for message in messages:
        st.caption(message["role"].upper())
        show_text(message["content"])
