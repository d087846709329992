"""The command line: run (foreground), submit (queue a grid), worker, list, show, export.

Every input is validated before anything is written, and every error is one line on stderr
with a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import textwrap
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from bt_core.serve.config import shown_backend
from bt_core.serve.cores import requested_threads
from bt_core.serve.export import adapter_files, adapter_folder, dspy_state, program_document
from db import queries
from db.limits import EXPERIMENT_NAME_MAX
from db.models import Experiment, Run, RunStatus, Step, Training
from db.session import DatabaseError, Sessions, database_url, session_factory

THREADS_HELP = ("threads for the model, held as this machine's core slots (default: BT_THREADS, else the cores "
                "split among the workers alive here); a run waits while every core is held")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    try:
        if getattr(args, "threads", None) is not None:
            os.environ["BT_THREADS"] = args.threads
            requested_threads()  # a bad value is one line before anything is written
        return args.handler(args)
    except (ValueError, DatabaseError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bt_core", description="BetterTogether Studio")
    parser.add_argument("--db", help="SQLAlchemy URL (default: BT_DATABASE_URL or a SQLite file in BT_HOME)")
    sub = parser.add_subparsers(required=True)
    run = sub.add_parser("run", help="run one configuration in the foreground")
    run.add_argument("--task", required=True)
    run.add_argument("--model", default="smollm2-135m")
    run.add_argument("--strategy", default="p -> w -> p")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--budget", default="smoke")
    run.add_argument("--backend", default="auto", help="inference: auto (vLLM on a CUDA GPU that can serve the model "
                                                       "or for a task with long prompts such as HotPotQA, else "
                                                       "transformers), hf (transformers), hf-bf16 or vllm")
    run.add_argument("--name", default="", help="experiment name")
    run.add_argument("--threads", help=THREADS_HELP)
    run.set_defaults(handler=cmd_run)
    submit = sub.add_parser("submit", help="queue a grid (tasks x models x strategies x seeds) as one experiment "
                                           "for the workers, as the Launch page does")
    submit.add_argument("--task", action="append", required=True, help="repeat for several")
    submit.add_argument("--model", action="append", help="repeat for several (default: smollm2-135m)")
    submit.add_argument("--strategy", action="append", required=True, help='repeat for several, e.g. "p -> w -> p"')
    submit.add_argument("--seeds", default="0", help="'0,1,2' or a range like '0-2'")
    submit.add_argument("--budget", default="smoke")
    submit.add_argument("--backend", default="auto")
    submit.add_argument("--name", default="", help="experiment name")
    submit.set_defaults(handler=cmd_submit)
    worker = sub.add_parser("worker", help="serve queued runs, here or over a Ray cluster")
    worker.add_argument("--once", action="store_true", help="exit when the queue is empty (ray: and its runs ended)")
    worker.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="local: run here, one at a time; ray: each run as a Ray task on any node")
    worker.add_argument("--address", help="ray: a running cluster (HOST:PORT or auto); default: start one here")
    worker.add_argument("--threads", help=THREADS_HELP)
    worker.add_argument("--cpus-per-run", type=float, default=1.0, help="ray: CPUs each run reserves (its threads)")
    worker.add_argument("--gpus-per-run", type=float, default=1.0,
                        help="ray: GPUs each run of a model other than the embedded one reserves")
    worker.set_defaults(handler=cmd_worker)
    sub.add_parser("list", help="list runs").set_defaults(handler=cmd_list)
    show = sub.add_parser("show", help="show a run's steps and scores")
    show.add_argument("run_id", type=int)
    show.add_argument("--profile", action="store_true",
                      help="also what each step cost: time, LM calls, tokens computed, FLOP rate, peak memory")
    show.set_defaults(handler=cmd_show)
    export = sub.add_parser("export", help="write program.json and the PEFT adapter of a run")
    export.add_argument("run_id", type=int)
    export.add_argument("dir", type=Path)
    export.set_defaults(handler=cmd_export)
    for command in (run, submit, worker, show, export):
        command.add_argument("--db", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _sessions(args: argparse.Namespace) -> Sessions:
    return session_factory(database_url(args.db))


def cmd_run(args: argparse.Namespace) -> int:
    """In the foreground, but claimed and heartbeated like any worker's run: killed, it is
    re-queued once its heartbeat is stale and resumes on a worker; stopped (Ctrl-C, SIGTERM),
    it is handed back to the queue at once."""
    from bt_core.lm.backends import resolve_backend
    from bt_core.lm.models import resolve_model
    from bt_core.recording import watching
    from bt_core.serve.config import resolve_config
    from bt_core.serve.cores import machine_cores
    from bt_core.serve.progress_view import ProgressView
    from bt_core.serve.queue import experiment_name, new_run
    from bt_core.serve.worker import claim_new, execute_claimed, registered, wait_for_cores
    from bt_core.tasks import get_task

    config = resolve_config(args.task, args.model, args.strategy, args.seed, args.budget,
                            {"backend": args.backend})
    # This process executes the run: a request it cannot meet fails now, before anything is stored.
    backend = resolve_backend(config.backend, resolve_model(config.model), get_task(config.task).prefill_bound)
    name = experiment_name(args.name or f"{args.task} {config.strategy}")
    sessions = _sessions(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with registered(sessions) as me:
        share = wait_for_cores(sessions)
        try:
            lease = claim_new(sessions, me.worker, Experiment(name=name, runs=[new_run(config)]), threads=share.threads)
            print(f"run {lease.run_id}: {config.task} / {config.model} / {config.strategy} / seed {config.seed} / "
                  f"{config.budget} / {backend} / {share.threads} of {machine_cores()} cores", flush=True)
            view = ProgressView(sys.stderr)
            try:
                with watching(view):
                    status = execute_claimed(me, lease, share)
            finally:
                view.close()
        finally:
            share.release()
    cmd_show(argparse.Namespace(db=args.db, run_id=lease.run_id))
    return 0 if status == RunStatus.done else 1


def cmd_submit(args: argparse.Namespace) -> int:
    from bt_core.serve.queue import launch_experiment, parse_seeds, runs_of

    seeds = parse_seeds(args.seeds)
    models = args.model or ["smollm2-135m"]
    name = args.name or textwrap.shorten(f"{', '.join(args.task)} {', '.join(args.strategy)}",
                                         EXPERIMENT_NAME_MAX, placeholder=" …")
    sessions = _sessions(args)
    experiment_id = launch_experiment(sessions, name, args.task, models, args.strategy, seeds, args.budget,
                                      {"backend": args.backend})
    ids = [run.id for run in runs_of(sessions, experiment_id)]
    print(f"experiment {experiment_id}: {len(ids)} runs queued (ids {ids[0]}-{ids[-1]}); "
          "`python -m bt_core worker` serves them")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: deregister, hand back the run
    if args.executor == "ray":
        from bt_core.serve.ray_executor import RayOptions, serve_ray

        serve_ray(database_url(args.db), RayOptions(args.address, args.cpus_per_run, args.gpus_per_run),
                  once=args.once)
        return 0
    if args.address:
        raise ValueError("--address is for --executor ray")
    from bt_core.serve.worker import serve

    serve(_sessions(args), once=args.once)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _sessions(args)() as session:
        for run in session.scalars(select(Run).order_by(Run.id)):
            print(f"{run.id:>5}  {run.status.value:<9}  {run.task:<9} {run.strategy:<14} seed {run.seed}  "
                  f"{run.budget:<7} test {_pct(run.test_score)}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    sessions = _sessions(args)
    with sessions() as session:
        run = _get_run(session, args.run_id)
        print(f"run {run.id} [{run.status.value}] {run.task} / {run.model} / {run.strategy} / seed {run.seed} / "
              f"{_backend(run)}")
        skipped = dict(session.execute(select(Training.step_id, Training.error)
                                       .where(Training.run_id == run.id, Training.error.is_not(None))).all())
        for step in run.steps:
            took = (step.finished_at - step.started_at).total_seconds() if step.finished_at else None
            print(f"  step {step.index} {step.label:<14} {step.status.value:<7} val {_pct(step.val_score)}  "
                  f"test {_pct(step.test_score)}" + (f"  {took:.0f}s" if took is not None else ""))
            if step.id in skipped:
                print(f"    no LoRA job: {skipped[step.id]}")
        _print_test_interval(sessions, run.id)
        if best := queries.best_on_validation(sessions, run.id):
            print(f"  result: the final step's program; best on validation: step {best['index']} "
                  f"{best['label'] or best['kind']} (val {best['val_score']:.1%})")
        if run.error:
            print(f"  error: {run.error}")
        if run.finished_at and run.started_at:
            print(f"  wall time {(run.finished_at - run.started_at).total_seconds():.0f}s")
    if getattr(args, "profile", False):
        _print_profile(sessions, run.id)
    return 0


def _print_profile(sessions: Sessions, run_id: int) -> None:
    from bt_core.serve.profile import ceiling_note, profile_table

    profile = queries.step_profile(sessions, run_id)
    print(textwrap.indent(profile_table(profile).to_string(index=False), "  "))
    print(f"  {ceiling_note(profile)}")


def _print_test_interval(sessions: Sessions, run_id: int) -> None:
    """The final program's test score with its 95% Wilson interval: 30 examples move it 3.3 points each."""
    from bt_core.stats import wilson

    scores = queries.test_example_scores(sessions, [run_id])
    final = scores[scores["final"].astype(bool)]
    if len(final):
        interval, step = wilson(final["score"].tolist()), final["step_index"].iat[0]
        print(f"  test {_pct(final['score'].mean())}  95% CI [{_pct(interval.low).strip()}, "
              f"{_pct(interval.high).strip()}] (Wilson, {len(final)} test examples of step {step})")


def cmd_export(args: argparse.Namespace) -> int:
    with _sessions(args)() as session:
        run = _get_run(session, args.run_id)
        done = [s for s in run.steps if s.program_state is not None]
        if not done:
            raise ValueError(f"run {run.id} has no finished step to export")
        final: Step = done[-1]
        adapter = adapter_folder(run.id, final.adapter_path)  # checked before anything is written
        if adapter is not None and not adapter.is_dir():
            raise ValueError(f"run {run.id}'s adapter folder {adapter} is missing")
        args.dir.mkdir(parents=True, exist_ok=True)
        program = program_document({"task": run.task, "model": run.model, "strategy": run.strategy,
                                    "backend": shown_backend(run.backend, run.config)},
                                   {"label": final.label, "val_score": final.val_score,
                                    "test_score": final.test_score, "program_state": final.program_state})
        (args.dir / "program.json").write_text(json.dumps(program, indent=2))
        (args.dir / "program.dspy.json").write_text(json.dumps(dspy_state(final.program_state), indent=2))
        if adapter is not None:
            for file in adapter_files(adapter):
                target = args.dir / "adapter" / file.relative_to(adapter)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, target)
    print(f"wrote {args.dir / 'program.json'}, {args.dir / 'program.dspy.json'}"
          + (f" and {args.dir / 'adapter'}" if adapter else ""))
    return 0


def _backend(run: Run) -> str:
    """What the run ran on, or for a run no worker has started, its request."""
    return run.backend or f"{shown_backend(None, run.config)} (requested)"


def _get_run(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise ValueError(f"no run {run_id} in {session.bind.url!r}")
    return run


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{100 * value:5.1f}%"

