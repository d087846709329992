"""What prefix reuse does to a whole run: the same run with `BT_PREFIX_REUSE=0` and with reuse.

Runs `python -m bt_core run` (Iris `p -> w -> p` at the default budget on transformers unless
told otherwise) twice, each in a fresh BT_HOME with a cold LM cache, so every call is computed;
reuse off first. Prints each run's per-step profile (`show --profile`: seconds, tokens sent and
computed, FLOP rate against the ceiling the run's own process measured, peak memory), the wall
times, their ratio, and whether both runs ended at the same scores (they decode the same
greedy answers, so they should).

    python benchmarks/run_speed.py [--task iris] [--strategy "p -> w -> p"] [--budget default]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import select

from db.models import Run, Step
from db.session import get_engine, session_factory

ROOT = Path(__file__).resolve().parents[1]


def timed_run(args: argparse.Namespace, reuse: bool) -> tuple[float, list[tuple[float | None, float | None]]]:
    """Wall seconds of the run (claim to end) and each step's (val, test) scores; prints its profile."""
    with tempfile.TemporaryDirectory(prefix="bt-run-speed-") as folder:
        home = Path(folder)
        url = f"sqlite:///{home / 'studio.sqlite'}"
        env = {**os.environ, "BT_HOME": str(home), "BT_LM_CACHE": str(home / "lm_cache.sqlite"),
               "BT_PREFIX_REUSE": "1" if reuse else "0", "BT_AUTOSTART_WORKER": "0"}
        command = [sys.executable, "-m", "bt_core", "--db", url]
        subprocess.run([*command, "run", "--task", args.task, "--strategy", args.strategy, "--budget", args.budget,
                        "--backend", args.backend], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shown = subprocess.run([*command, "show", "1", "--profile"], cwd=ROOT, env=env, check=True,
                               capture_output=True, text=True).stdout
        print(f"--- prefix reuse {'on' if reuse else 'off'} ---\n{shown}")
        sessions = session_factory(url)
        with sessions() as session:
            run = session.get(Run, 1)
            seconds = (run.finished_at - run.started_at).total_seconds()
            scores = [(s.val_score, s.test_score) for s in session.scalars(
                select(Step).where(Step.run_id == 1).order_by(Step.index))]
        get_engine(url).dispose()
    return seconds, scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="iris")
    parser.add_argument("--strategy", default="p -> w -> p")
    parser.add_argument("--budget", default="default")
    parser.add_argument("--backend", default="hf")
    args = parser.parse_args()
    off, off_scores = timed_run(args, reuse=False)
    on, on_scores = timed_run(args, reuse=True)
    print(f"{args.task} {args.strategy!r} at the {args.budget} budget on {args.backend}, cold LM cache each")
    print(f"prefix reuse off: {off:6.0f} s")
    print(f"prefix reuse on:  {on:6.0f} s   {off / on:.2f}x faster")
    print("same scores at every step" if off_scores == on_scores else
          f"scores differ (val, test per step): off {off_scores}, on {on_scores}")


if __name__ == "__main__":
    main()
