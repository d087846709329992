"""BetterTogether Studio: the dashboard's entry point.

It routes to the pages and keeps a worker alive: runs are executed by a separate
`python -m bt_core worker` process, so they go on when the browser or this server goes away.
Set BT_AUTOSTART_WORKER=0 to manage workers yourself (tests do).

    streamlit run app.py            # BT_DATABASE_URL or BT_HOME choose the database
"""

from __future__ import annotations

import os
import subprocess
import time

import streamlit as st
from sqlalchemy.engine import make_url

from bt_core.serve.cores import machine_cores
from bt_core.serve.queue import start_worker_process, worker_alive, workers_here
from db import queries
from db.session import DatabaseError, Sessions, data_dir, database_url
from ui.common import PAGES, STATUS_ICONS, sessions

WORKER_START_GRACE_S = 30  # a started worker needs this long to load and heartbeat
WORKER_BADGES = {"alive": ("Worker running", ":material/check_circle:", "green"),
                 "starting": ("Worker starting", ":material/hourglass_top:", "orange"),
                 "none": ("No worker", ":material/error:", "red")}

st.set_page_config(page_title="BetterTogether Studio", page_icon=":material/handshake:", layout="wide")


@st.cache_resource
def _worker_starts() -> dict[str, tuple[float, subprocess.Popen]]:
    """The worker this server last started per database, and when; shared by all browser sessions."""
    return {}


def worker_state(db: Sessions, url: str) -> str:
    """"alive", "starting" or "none"; starts a worker when none is alive and none started lately."""
    if worker_alive(db):
        return "alive"
    starts = _worker_starts()
    started_at, _ = starts.get(url, (0.0, None))
    if time.time() - started_at < WORKER_START_GRACE_S:
        return "starting"
    if os.environ.get("BT_AUTOSTART_WORKER", "1") == "0":
        return "none"
    starts[url] = (time.time(), start_worker_process(url))
    return "starting"


def worker_exit(url: str) -> str | None:
    """Why the worker this server started has died, from its exit code and its log's last line."""
    _, process = _worker_starts().get(url, (0.0, None))
    if process is None or process.poll() in (None, 0):
        return None
    log = data_dir() / "worker.log"
    lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
    return f"exit code {process.returncode}: {lines[-1] if lines else 'no log'} (full log: {log})"


@st.fragment(run_every=5)
def worker_status(db: Sessions, url: str) -> None:
    state = worker_state(db, url)
    label, icon, color = WORKER_BADGES[state]
    st.badge(label, icon=icon, color=color)
    if state != "alive" and (died := worker_exit(url)):
        st.error(f"The worker this dashboard started stopped: {died}", icon=":material/error:")
    if state == "none":
        st.caption("Queued runs wait for `python -m bt_core worker`.")
    if here := workers_here(db):
        shares = ", ".join(f"{worker.rpartition(':')[2]}: "
                           f"{f'{threads} of {machine_cores()} cores' if threads else 'idle'}"
                           for worker, threads in here)
        st.caption(f"{len(here)} alive on this machine (pid: share) · {shares}")
    counts = queries.status_counts(db)
    st.caption(" · ".join(f"{STATUS_ICONS[s]} {counts.get(s, 0)} {s}" for s in ("queued", "running", "done",
                                                                                 "failed")))


page = st.navigation([st.Page(script, title=title, icon=icon, url_path=path)
                      for path, (script, title, icon) in PAGES.items()])
url = database_url()
try:
    db = sessions()
except DatabaseError as exc:
    st.error(f"**Cannot open the database.** {exc}")
    st.info("Set BT_DATABASE_URL to a SQLAlchemy URL such as sqlite:////path/to/studio.sqlite, or BT_HOME "
            "to a writable folder, and restart the dashboard.")
    st.stop()
with st.sidebar:
    st.caption("DATABASE")
    st.code(make_url(url).render_as_string(hide_password=True), language=None, wrap_lines=True)
    worker_status(db, url)
page.run()
