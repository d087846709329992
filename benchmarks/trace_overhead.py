"""What recording every trace costs: the same evaluation with the database recorder and without.

Runs Iris validation with the embedded model (no LM cache, so both runs generate) once with
the no-op Recorder and once with RunRecorder on a SQLite file, and times the recorder's own
calls, which is the overhead independent of generation noise.

    python benchmarks/trace_overhead.py [--examples 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from bt_core.evaluate import evaluate
from bt_core.lm.hf import HFLM
from bt_core.lm.models import resolve_model
from bt_core.recording import Count, recording
from bt_core.serve.queue import launch_experiment
from bt_core.serve.recording_db import RunRecorder
from bt_core.tasks import get_task
from db.models import Step
from db.session import session_factory


class TimedRecorder(RunRecorder):
    """RunRecorder that adds up the seconds spent in its own methods."""

    seconds = 0.0

    def evaluation(self, *args, **kwargs):
        start = time.perf_counter()
        super().evaluation(*args, **kwargs)
        TimedRecorder.seconds += time.perf_counter() - start

    def program(self, *args, **kwargs):
        start = time.perf_counter()
        result = super().program(*args, **kwargs)
        TimedRecorder.seconds += time.perf_counter() - start
        return result

    def progress(self, message: str, count: Count | None = None) -> None:
        start = time.perf_counter()
        super().progress(message, count)
        TimedRecorder.seconds += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=32)
    args = parser.parse_args()
    iris = get_task("iris")
    examples = iris.load(0, 0, args.examples, seed=0).test
    spec = resolve_model("smollm2-135m")
    lm = HFLM(spec)  # no cache
    lm.tokenizer  # loads the weights outside the timing
    program = iris.program()
    program.set_lm(lm)

    start = time.perf_counter()
    evaluate(program, examples, iris.metric, split="val")
    plain = time.perf_counter() - start

    sessions = session_factory(f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite")
    launch_experiment(sessions, "bench", ["iris"], ["smollm2-135m"], ["vanilla"], [0], "smoke")
    with sessions.begin() as session:
        step = Step(run_id=1, index=0, kind="vanilla", label="vanilla")
        session.add(step)
        session.flush()
        step_id = step.id
    recorder = TimedRecorder(sessions, 1, step_id, "vanilla")
    start = time.perf_counter()
    with recording(recorder):
        evaluate(program, examples, iris.metric, split="val", program_id=recorder.program(program, "bench"))
    recorded = time.perf_counter() - start

    print(f"{args.examples} Iris examples, embedded model, no LM cache")
    print(f"without recording: {plain:6.2f} s")
    print(f"with recording   : {recorded:6.2f} s  (wall-clock ratio {recorded / plain:.3f})")
    print(f"time inside the recorder: {TimedRecorder.seconds:.3f} s = {100 * TimedRecorder.seconds / recorded:.2f}% "
          "of the recorded run (goal < 5%)")


if __name__ == "__main__":
    main()
