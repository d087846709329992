"""Prompts: every candidate program of a run, step by step (instructions and demos per module),
and a diff between any two."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from db import queries
from ui.common import pick_run, sessions, show_text
from ui.tables import candidate_val, program_diff, program_text

db = sessions()
st.title("Prompts")
run_id = pick_run(queries.runs_page(db, limit=500))
if run_id is None:
    st.stop()
programs = queries.programs(db, run_id, with_state=True)
if not st.toggle("Show teacher programs", help="The programs whose traces became demos or fine-tuning data."):
    programs = programs[programs["role"] != "teacher"]
if programs.empty:
    st.info("No program stored for this run yet.")
    st.stop()

name = lambda row, step=True: (f"{'★ ' if row['chosen'] else ''}"
                               + (f"step {row['step_index']} ({row['step_label']}) · " if step else "")
                               + f"{row['label']} · {row['role']} · val {candidate_val(row)}")
named = {row["id"]: row for row in programs.to_dict("records")}
browse_tab, diff_tab = st.tabs(["Candidates", "Diff two programs"])
with browse_tab:
    for (index, label), group in programs.groupby(["step_index", "step_label"], sort=True):
        st.subheader(f"Step {index} · {label}")
        for row in group.to_dict("records"):
            with st.expander(name(row, step=False), expanded=bool(row["chosen"]) and row["role"] != "teacher"):
                for module, predictor in row["state"].items():
                    st.markdown(f"**Module `{module}`** · {len(predictor['demos'])} demos")
                    st.caption("INSTRUCTIONS")
                    show_text(predictor["signature"]["instructions"])
                    if predictor["demos"]:
                        st.dataframe(pd.DataFrame(predictor["demos"]).astype(str), hide_index=True)
with diff_tab:
    ids = list(named)
    chosen = [0] + [ids.index(i) for i in ids if named[i]["chosen"]]  # default: what the last step changed
    left, right = st.columns(2)
    before = left.selectbox("From", ids, index=chosen[-2] if len(chosen) > 2 else 0,
                            format_func=lambda i: name(named[i]))
    after = right.selectbox("To", ids, index=chosen[-1] if len(chosen) > 1 else len(ids) - 1,
                            format_func=lambda i: name(named[i]))
    diff = program_diff(program_text(named[before]["state"]), program_text(named[after]["state"]),
                        f"program {before}", f"program {after}")
    if diff:
        st.code(diff, language="diff")
    else:
        st.success("The two programs have the same instructions and demos.")
