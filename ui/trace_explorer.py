"""The Traces page's pieces: which program a "view" shows, and one example under one view.

A view is one column of the side-by-side display: a run's step and the program that step
scored on the chosen split (its chosen result, as db.queries.evaluated_steps picks it).
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import streamlit as st

from db import queries
from db.session import Sessions
from ui.common import current_run, pick_run, run_label, show_fields, show_messages, show_text

View = Mapping[str, Any]
MAX_VIEWS = 4  # columns side by side


def pick_run_views(db: Sessions, runs: pd.DataFrame, split: str) -> dict[str, View]:
    """Runs picked by the user, each shown at its last step scored on `split`."""
    labels = {row["id"]: run_label(row) for row in runs.to_dict("records")}
    wanted = current_run()
    default = [wanted if wanted in labels else next(iter(labels))] if labels else []
    picked = st.multiselect("Runs", list(labels), default, format_func=labels.__getitem__, max_selections=MAX_VIEWS)
    strategy = dict(zip(runs["id"], runs["strategy"]))
    scored = {run_id: queries.evaluated_steps(db, run_id, split) for run_id in picked}
    return {f"#{run_id} {strategy[run_id]}": steps[-1] for run_id, steps in scored.items() if steps}


def pick_step_views(db: Sessions, runs: pd.DataFrame, split: str) -> dict[str, View]:
    """Steps of one run picked by the user; the first and the last by default."""
    run_id = pick_run(runs)
    steps = {f"step {s['index']} · {s['label']}": s for s in queries.evaluated_steps(db, run_id, split)} \
        if run_id is not None else {}
    default = list(dict.fromkeys([next(iter(steps)), next(reversed(steps))])) if steps else []
    return {title: steps[title] for title in st.multiselect("Steps", list(steps), default,
                                                            max_selections=MAX_VIEWS)}


def score_badge(score: float | None, error: str | None = None) -> None:
    if score is None:
        st.badge("not scored", color="gray")
    elif score >= 1:
        st.badge(f"correct · {score:g}", icon=":material/check:", color="green")
    else:
        st.badge(f"wrong · {score:g}", icon=":material/close:", color="red")
    if error:
        st.caption("error")
        show_text(error)


def show_example_under(db: Sessions, title: str, view: View, split: str, index: int) -> None:
    """One example under one program: its score and prediction, then every LM call in order."""
    st.subheader(title)
    st.caption(f"step {view['index']} ({view['label']}) · program: {view['program_label']}")
    result = queries.example_result(db, view["program_id"], split, index)
    if result is None:
        st.info("This example was not scored here.")
        return
    score_badge(result["score"], result["error"])
    if result["details"]:
        st.caption("MEASURES")
        show_fields({name: f"{value:.2f}" for name, value in result["details"].items()})
    st.caption("PREDICTION")
    show_fields(result["prediction"])
    for call in queries.traces(db, view["program_id"], split, index):
        st.markdown(f"**{call['position'] + 1}. `{call['module']}`**")
        st.caption(f"{call['prompt_tokens']} prompt + {call['completion_tokens']} completion tokens · "
                   f"{call['latency_ms']:.0f} ms" + (" · cache hit" if call["cache_hit"] else ""))
        with st.expander(f"Prompt: {len(call['messages'])} messages"):
            show_messages(call["messages"])
        st.caption("COMPLETION")
        show_text(call["completion"])
        if call["parse_error"]:
            st.warning("The completion did not parse:", icon=":material/error:")
            show_text(call["parse_error"])
        else:
            st.caption("PARSED FIELDS")
            show_fields(call["parsed"])
