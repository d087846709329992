"""What the Ray executor buys on one machine: the same small grid served by the local worker
(one run at a time) and by the Ray executor (each run a task, as many at once as CPUs allow).

Each executor gets a fresh SQLite database, BT_HOME and a cold LM cache, so neither reuses the
other's generations; the wall time is the whole `python -m bt_core worker --once` command,
the Ray instance's start included. On a 2-core machine the Ray side runs two runs at once on
one thread each, where the local worker gives one run both threads.

    python benchmarks/grid_scaling.py [--strategies p w] [--seeds 0 1] [--cpus-per-run 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from bt_core.serve.queue import launch_experiment
from db.models import Run, RunStatus
from db.session import get_engine, session_factory

ROOT = Path(__file__).resolve().parents[1]


def serve_grid(args: argparse.Namespace, *executor: str) -> float:
    """Queue the grid in a fresh database, serve it with this executor; return the wall seconds."""
    with tempfile.TemporaryDirectory(prefix="bt-grid-") as folder:
        home = Path(folder)
        url = f"sqlite:///{home / 'grid.sqlite'}"
        sessions = session_factory(url)
        launch_experiment(sessions, "grid scaling", [args.task], ["smollm2-135m"], args.strategies, args.seeds,
                          "smoke")
        env = {**os.environ, "BT_HOME": str(home), "BT_LM_CACHE": str(home / "lm_cache.sqlite")}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bt_core", "--db", url, "worker", "--once", *executor], cwd=ROOT,
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        with sessions() as session:
            statuses = list(session.scalars(select(Run.status)))
        get_engine(url).dispose()
    if statuses != [RunStatus.done] * len(statuses):
        raise SystemExit(f"not every run finished: {[s.value for s in statuses]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="iris")
    parser.add_argument("--strategies", nargs="+", default=["p", "w"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--cpus-per-run", default="1")
    args = parser.parse_args()
    runs = len(args.strategies) * len(args.seeds)
    print(f"{runs} runs ({args.task}, {' / '.join(args.strategies)} x seeds {args.seeds}, smoke budget), "
          f"{os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}")
    local = serve_grid(args)
    print(f"local worker:  {local:7.1f} s")
    ray = serve_grid(args, "--executor", "ray", "--cpus-per-run", args.cpus_per_run)
    print(f"ray executor:  {ray:7.1f} s   ({args.cpus_per_run} CPU per run)")
    print(f"local / ray:   {local / ray:7.2f}x   (load average after {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
