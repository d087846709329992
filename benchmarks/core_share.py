"""What a second busy worker on the same machine costs a run, now that they share the cores.

Times the embedded model's smoke Iris `p -> w -> p` (claim to end, by the run's own timestamps)
served by a worker alone on the machine, then by one of two workers while the other is busy
on another run (Iris `p -> w -> p` at the default budget, long enough to outlast it). Each
phase has a fresh database and BT_HOME, and each worker its own cold LM cache, so every call is
computed; nothing sets BT_THREADS or OMP_NUM_THREADS, so each worker takes the share
bt_core/serve/cores.py gives it. Prints both times, the ratio, and the threads each run recorded.
It refuses to print a ratio when the busy run ended before the timed one: then the two never
shared the machine for the whole timed run.

    python benchmarks/core_share.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from bt_core.serve.cores import machine_cores
from bt_core.serve.queue import launch_experiment
from db.models import Run, RunStatus
from db.session import Sessions, session_factory

STRATEGY = "p -> w -> p"


def start_worker(home: Path, url: str, index: int) -> subprocess.Popen:
    env = {**os.environ, "BT_HOME": str(home), "BT_DATABASE_URL": url, "HF_HUB_OFFLINE": "1",
           "BT_LM_CACHE": str(home / f"lm_cache-{index}.sqlite")}
    for setting in ("BT_THREADS", "OMP_NUM_THREADS"):
        env.pop(setting, None)
    return subprocess.Popen([sys.executable, "-m", "bt_core", "worker"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

ROOT = Path(__file__).resolve().parents[1]


def queue(sessions: Sessions, budget: str, seed: int) -> int:
    launch_experiment(sessions, budget, ["iris"], ["smollm2-135m"], [STRATEGY], [seed], budget, {"backend": "hf"})
    with sessions() as session:
        return session.scalar(select(Run.id).order_by(Run.id.desc()).limit(1))


def wait_run(sessions: Sessions, run_id: int, status: RunStatus) -> Run:
    while True:
        with sessions() as session:
            run = session.get(Run, run_id)
        if run.status == status or run.status in (RunStatus.failed, RunStatus.cancelled):
            if run.status != status:
                raise SystemExit(f"run {run_id} {run.status.value}: {run.error}")
            return run
        time.sleep(1)


def phase(workers: int) -> tuple[float, list[int | None]]:
    """Seconds the timed run took with `workers` workers alive, one of them busy when workers > 1."""
    with tempfile.TemporaryDirectory(prefix="bt-core-share-") as folder:
        home = Path(folder)
        url = f"sqlite:///{home / 'studio.sqlite'}"
        sessions = session_factory(url)
        processes = [start_worker(home, url, i) for i in range(workers)]
        try:
            if workers > 1:
                wait_run(sessions, queue(sessions, "default", seed=1), RunStatus.running)
            run = wait_run(sessions, queue(sessions, "smoke", seed=0), RunStatus.done)
            with sessions() as session:
                runs = list(session.scalars(select(Run).order_by(Run.id)))
            if workers > 1 and runs[0].status != RunStatus.running:  # it must have computed all along
                raise SystemExit(f"the busy run ended ({runs[0].status.value}: {runs[0].error}) before the timed one")
            return (run.finished_at - run.started_at).total_seconds(), [r.cpu_threads for r in runs]
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait()


def main() -> None:
    alone, alone_threads = phase(workers=1)
    shared, shared_threads = phase(workers=2)
    print(f"machine: {machine_cores()} cores; timed: smoke Iris {STRATEGY}, embedded model, transformers, cold cache")
    print(f"one worker, alone:               {alone:6.0f} s   threads per run {alone_threads}")
    print(f"two workers, the other one busy: {shared:6.0f} s   threads per run (busy, timed) {shared_threads}")
    print(f"ratio: {shared / alone:.2f}x")


if __name__ == "__main__":
    main()
