"""The Runs page's detail panel: one run's actions, step timeline, training curves, candidates
and exports.

While the run is queued or running the panel is a fragment that refreshes itself every two
seconds; when the run ends it reruns the whole page once, so the table and the panel agree.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from bt_core.serve.config import shown_backend
from bt_core.serve.export import adapter_files, adapter_folder, dspy_state, program_document
from bt_core.serve.profile import ceiling_note, profile_table
from bt_core.serve.queue import delete_run, request_cancel, retry_run
from db import queries
from db.session import Sessions, artifacts_root
from ui.charts import loss_curves, step_timeline
from ui.common import PAGES, STATUS_ICONS, show_text
from ui.tables import candidate_val, duration, percent

ACTIVE = ("queued", "running")


def run_detail(db: Sessions, run_id: int) -> None:
    info = queries.run_info(db, run_id)
    if info is None:
        st.warning(f"Run #{run_id} no longer exists.")
        return
    live = info["status"] in ACTIVE
    st.fragment(run_every=2 if live else None)(_panel)(db, run_id, live)


def _panel(db: Sessions, run_id: int, live: bool) -> None:
    info = queries.run_info(db, run_id)
    if info is None or (live and info["status"] not in ACTIVE):
        st.rerun()
    _header(db, info)
    steps_tab, profile_tab, training_tab, candidates_tab, export_tab = st.tabs(
        ["Steps", "Profile", "Training", "Candidates", "Config & export"])
    with steps_tab:
        _steps(db, run_id)
    with profile_tab:
        _profile(db, run_id)
    with training_tab:
        _training(db, run_id)
    with candidates_tab:
        _candidates(db, run_id)
    with export_tab:
        _export(db, info)


def _header(db: Sessions, info: dict[str, Any]) -> None:
    title, actions = st.columns([3, 2], vertical_alignment="bottom")
    title.subheader(f"Run #{info['id']} · {info['strategy']}")
    backend = info["backend"] or f"{shown_backend(None, info['config'])} requested"
    title.caption(f"{info['task']} · {info['model']} · seed {info['seed']} · {info['budget']} budget · {backend} · "
                  f"experiment {info['experiment']!r}" + (f" · ran on {info['worker']}" if info["worker"] else ""))
    with actions.container(horizontal=True, horizontal_alignment="right"):
        _actions(db, info)
    cells = st.columns(5)
    cells[0].metric("Status", info["status"], icon=STATUS_ICONS[info["status"]])
    cells[1].metric("Progress", f"{100 * info['progress']:.0f}%")
    cells[2].metric("Validation", percent(info["val_score"]))
    cells[3].metric("Test", percent(info["test_score"]))
    cells[4].metric("Elapsed", duration(info["elapsed_s"]) or "—")
    if info["status"] in ACTIVE:
        st.progress(float(info["progress"]), text=" — ".join(
            filter(None, [info["current_step"] or "waiting for a worker", info["message"]])))
    if info["status"] == "failed":
        st.error("The run failed; its finished steps are kept and **Retry** resumes after them.")
        show_text(info["error"] or "no error recorded")


def _actions(db: Sessions, info: dict[str, Any]) -> None:
    run_id, status = info["id"], info["status"]
    if st.button("Cancel", icon=":material/stop_circle:", disabled=status not in ACTIVE or info["cancel_requested"]):
        request_cancel(db, run_id)
        st.rerun()
    if st.button("Retry", icon=":material/replay:", disabled=status not in ("failed", "cancelled")):
        retry_run(db, run_id)
        st.rerun()
    with st.popover("Delete", icon=":material/delete:", disabled=status == "running"):
        st.write(f"Delete run #{run_id} with its steps, programs, scores, traces and adapters? This cannot be undone.")
        if st.button("Delete for good", type="primary", icon=":material/delete_forever:"):
            try:
                delete_run(db, run_id, artifacts_root())
            except ValueError as exc:  # it started running meanwhile
                st.error(str(exc))
                return
            st.session_state.pop("run", None)
            st.query_params.pop("run", None)
            st.rerun()


def _steps(db: Sessions, run_id: int) -> None:
    steps = queries.steps(db, run_id)
    if steps.empty:
        st.info("No step has started yet.")
        return
    st.plotly_chart(step_timeline(steps), key=f"timeline-{run_id}")
    table = steps.assign(val=steps["val_score"].map(percent), test=steps["test_score"].map(percent),
                         took=steps["seconds"].map(duration))
    details = queries.detail_means(db, run_id, "test").map(percent).add_prefix("test ")
    table = table.join(details, on="index")
    st.dataframe(table, hide_index=True, placeholder="—",
                 column_order=["index", "label", "kind", "status", "val", "test", *details.columns, "took",
                               "adapter_path", "error"],
                 column_config={"index": "step", "label": "after", "val": "val %", "test": "test %",
                                "adapter_path": "LoRA adapter"})
    if best := queries.best_on_validation(db, run_id):
        st.caption(f"The run's result is its final step's program (as the paper's Table 1 reports); best on "
                   f"validation: step {best['index']} ({best['label'] or best['kind']}, "
                   f"val {percent(best['val_score'])}%).")


def _profile(db: Sessions, run_id: int) -> None:
    """What `python -m bt_core show RUN --profile` prints."""
    profile = queries.step_profile(db, run_id)
    if profile.empty:
        st.info("No step has started yet.")
        return
    st.dataframe(profile_table(profile), hide_index=True)
    st.caption(ceiling_note(profile))


def _training(db: Sessions, run_id: int) -> None:
    jobs = queries.trainings(db, run_id)
    if not jobs:
        st.info("No LoRA job: this run has no finished w step.")
        return
    st.plotly_chart(loss_curves(jobs), key=f"losses-{run_id}")
    for job in jobs:
        if job["error"]:
            st.warning(f"step {job['step_index']} ({job['step_label']}): no LoRA job, {job['error']}")
            continue
        st.caption(f"step {job['step_index']} ({job['step_label']}): {job['examples']} SFT conversations, "
                   f"{duration(job['seconds']) or '—'}, adapter {job['adapter_path'] or '—'}")
        st.dataframe(pd.DataFrame([job["hyperparams"]]).astype(str), hide_index=True)


def _candidates(db: Sessions, run_id: int) -> None:
    programs = queries.programs(db, run_id)
    candidates = programs[programs["role"] != "teacher"]
    if candidates.empty:
        st.info("No candidate program yet.")
        return
    table = candidates.assign(val=[candidate_val(row) for row in candidates.to_dict("records")],
                              chosen=candidates["chosen"].map({True: "★", False: ""}))
    st.dataframe(table, hide_index=True, column_order=["step_index", "step_label", "label", "role", "val", "chosen"],
                 column_config={"step_index": "step", "step_label": "after", "label": "program", "val": "val %"})
    st.page_link(PAGES["prompts"][0], label="Read the prompts and demos of every candidate",
                 icon=":material/article:", query_params={"run": run_id})


def _export(db: Sessions, info: dict[str, Any]) -> None:
    st.json(info["config"], expanded=1)
    final = queries.final_step(db, info["id"])
    if final is None:
        st.info("Nothing to export until a step finishes.")
        return
    program = program_document({**info, "backend": shown_backend(info["backend"], info["config"])}, final)
    left, middle, right = st.columns(3)
    left.download_button("Program JSON", json.dumps(program, indent=2), f"run-{info['id']}-program.json",
                         "application/json", icon=":material/download:", on_click="ignore")
    middle.download_button("Program for DSPy", json.dumps(dspy_state(final["program_state"]), indent=2),
                           f"run-{info['id']}-program.dspy.json", "application/json", icon=":material/download:",
                           on_click="ignore", help="DSPy 3.x saved state: load it with `program.load(path)` into a "
                           "DSPy program of the same shape (see the README's Export section)")
    try:
        adapter = adapter_folder(info["id"], final["adapter_path"])
    except ValueError as exc:
        right.error(str(exc))
        return
    if adapter is not None and adapter.is_dir():
        right.download_button("LoRA adapter (PEFT, zip)", lambda: _zip(adapter), f"run-{info['id']}-adapter.zip",
                              "application/zip", icon=":material/download:", on_click="ignore")
    else:
        right.caption("No LoRA adapter: the final program runs on the base model.")


def _zip(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in adapter_files(folder):
            archive.write(path, path.relative_to(folder))
    return buffer.getvalue()
