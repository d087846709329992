"""Dashboard render time on a one-run database and on a big one, printed side by side.

The big database holds 200 runs and about 200,000 LM-call traces: synthetic rows shaped like
real ones (Iris prompts rendered by the real chat adapter, candidates, teachers, LoRA losses).
Every page renders through AppTest, warm, a few times; the goal is each page under 1 s and
under 3x its one-run time, which holds only while the page queries stay indexed and paginated.

    python benchmarks/ui_render.py [--runs 200] [--traces 200000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bt_core.adapter import format_completion, render
from bt_core.strategy import format_strategy, parse_strategy
from bt_core.tasks.iris import FEATURES, SPECIES, IrisProgram
from db.models import ExampleScore, Experiment, Program, Run, RunStatus, Step, StepStatus, Trace, Training, utcnow
from db.session import session_factory
from ui.common import PAGES

STRATEGIES = ("p -> w -> p", "vanilla", "p", "w")
EVALUATIONS = 8  # split evaluations per run, averaged over STRATEGIES: sizes the splits
ACCURACY = {"vanilla": 0.3, "p": 0.6, "w": 0.4, "p -> w": 0.55, "p -> w -> p": 0.65}
SIGNATURE = IrisProgram().classify.signature


def fill(url: str, runs: int, traces: int, seed: int = 0) -> None:
    """Write `runs` finished runs with about `traces` traces in all."""
    sessions = session_factory(url)
    rng = random.Random(seed)
    examples = max(3, traces // runs // EVALUATIONS)
    with sessions.begin() as session:
        experiment = None
        for number in range(runs):
            if number % 12 == 0:
                experiment = Experiment(name=f"synthetic #{number // 12 + 1}", grid={})
                session.add(experiment)
            strategy = STRATEGIES[number % len(STRATEGIES)]
            run = _run(experiment, strategy, seed=number // len(STRATEGIES) % 3, rng=rng)
            session.add(run)
            session.flush()
            scores, calls = _steps(session, run, examples, rng)
            session.execute(insert(ExampleScore), scores)
            session.execute(insert(Trace), calls)


def _run(experiment: Experiment | None, strategy: str, seed: int, rng: random.Random) -> Run:
    started = utcnow() - timedelta(hours=1)
    return Run(experiment=experiment, task="iris", model="smollm2-135m", strategy=strategy, seed=seed,
               budget="smoke", config={}, config_hash="synthetic", status=RunStatus.done, progress=1.0,
               current_step=strategy, started_at=started, finished_at=started + timedelta(minutes=3),
               val_score=_accuracy(strategy, rng), test_score=_accuracy(strategy, rng))


def _accuracy(label: str, rng: random.Random) -> float:
    return min(1.0, max(0.0, ACCURACY.get(label, 0.5) + rng.uniform(-0.1, 0.1)))


def _steps(session: Any, run: Run, examples: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    chain = parse_strategy(run.strategy)
    scores: list[dict] = []
    calls: list[dict] = []
    for index, kind in enumerate(["vanilla", *chain]):
        label = format_strategy(chain[:index])
        demos = _demos(rng) if "p" in chain[:index] else []
        state = {"classify": {"signature": SIGNATURE.to_dict(), "demos": demos}}
        step = Step(run_id=run.id, index=index, kind=kind, label=label, status=StepStatus.done,
                    program_state=state, val_score=_accuracy(label, rng), test_score=_accuracy(label, rng),
                    finished_at=utcnow())
        session.add(step)
        session.flush()
        for program, splits in _programs(step, state, rng):
            session.add(program)
            session.flush()
            for split in splits:
                _evaluate(program, split, examples, demos, _accuracy(label, rng), rng, scores, calls)
        if kind == "w":
            session.add(Training(run_id=run.id, step_id=step.id, examples=examples, hyperparams={"rank": 8},
                                 losses=[[i, 2.5 * 0.9 ** i] for i in range(20)], seconds=42.0))
    return scores, calls


def _programs(step: Step, state: dict, rng: random.Random) -> list[tuple[Program, tuple[str, ...]]]:
    """A step's result (chosen, scored on val and test), plus a teacher and p candidates."""
    new = lambda label, role, chosen=False: Program(run_id=step.run_id, step_id=step.id, label=label, role=role,
                                                    state=state, val_score=rng.random(), chosen=chosen)
    out = [(new("result", "result", True), ("val", "test"))]
    if step.kind != "vanilla":
        out.append((new("teacher", "teacher"), ("train",)))
    if step.kind == "p":
        out += [(new(f"random #{i}", "candidate"), ("val",)) for i in range(1, 4)]
    return out


def _demos(rng: random.Random) -> list[dict]:
    return [{**_flower(rng), "reasoning": "Petals are long and wide.", "species": rng.choice(SPECIES)}
            for _ in range(3)]


def _flower(rng: random.Random) -> dict[str, float]:
    return {f: round(rng.uniform(0.1, 7.9), 1) for f in FEATURES}


def _evaluate(program: Program, split: str, examples: int, demos: list[dict], accuracy: float,
              rng: random.Random, scores: list[dict], calls: list[dict]) -> None:
    for index in range(examples):
        flower, gold = _flower(rng), SPECIES[index % 3]
        right = rng.random() < accuracy
        outputs = {"reasoning": "The petal length points to this species.",
                   "species": gold if right else SPECIES[(index + 1) % 3]}
        key = {"run_id": program.run_id, "step_id": program.step_id, "program_id": program.id,
               "split": split, "example_index": index}
        scores.append({**key, "score": float(right), "example": {**flower, "species": gold},
                       "prediction": outputs, "error": None, "details": {}})
        calls.append({**key, "position": 0, "module": "classify", "messages": render(SIGNATURE, demos, flower),
                      "completion": format_completion(SIGNATURE, outputs), "parsed": outputs,
                      "parse_error": None, "prompt_tokens": 240, "completion_tokens": 30,
                      "latency_ms": rng.uniform(200, 900), "cache_hit": rng.random() < 0.2})

ROOT = Path(__file__).resolve().parents[1]


def render_seconds(url: str, page: str, repeat: int) -> float:
    """Best warm render time of one page through AppTest."""
    from streamlit.testing.v1 import AppTest

    os.environ["BT_DATABASE_URL"] = url
    os.environ["BT_AUTOSTART_WORKER"] = "0"
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    app.switch_page(PAGES[page][0]).run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        app.run()
        times.append(time.perf_counter() - start)
    if app.exception:
        raise RuntimeError(f"{page} raised: {app.exception[0].value}")
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--traces", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the databases here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bt-ui-bench-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        urls = {"small": f"sqlite:///{folder / 'small.sqlite'}", "big": f"sqlite:///{folder / 'big.sqlite'}"}
        for name, runs, traces in (("small", 1, args.traces // args.runs), ("big", args.runs, args.traces)):
            start = time.perf_counter()
            fill(urls[name], runs, traces)
            print(f"filled {name}: {runs} runs in {time.perf_counter() - start:.1f} s", flush=True)
        print(f"{'page':<20}{'1 run (s)':>12}{f'{args.runs} runs (s)':>14}{'ratio':>8}  goal: < 1 s and < 3x")
        for page in PAGES:
            small, big = (render_seconds(urls[n], page, args.repeat) for n in ("small", "big"))
            verdict = "ok" if big < 1 and big < 3 * small else "SLOW"
            print(f"{page:<20}{small:>12.3f}{big:>14.3f}{big / small:>7.1f}x  {verdict}", flush=True)


if __name__ == "__main__":
    main()
