"""The run profile: per-step arithmetic on known rows (tokens sent and computed, cache hits, the
FLOP rate against the run's own ceiling, training time left out), and the process measures it
rests on (the peak-memory reset, the matrix-product ceiling)."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from bt_core.serve.config import resolve_config
from bt_core.serve.profile import matmul_gflops, peak_memory_mb, profile_table, reset_peak_memory
from bt_core.serve.queue import new_run
from db import queries
from db.models import Experiment, Program, RunStatus, Step, StepStatus, Trace, Training
from db.session import session_factory

START = datetime(2026, 1, 1, 12, 0, 0)
PARAMS, CEILING = 100_000_000, 200.0


def trace(run_id: int, step_id: int, program_id: int, prompt: int, computed: int | None, completion: int,
          hit: bool) -> Trace:
    return Trace(run_id=run_id, step_id=step_id, program_id=program_id, split="val", example_index=0, position=0,
                 module="m", messages=[], completion="", prompt_tokens=prompt, completion_tokens=completion,
                 latency_ms=0.0, cache_hit=hit, computed_prompt_tokens=computed)


@pytest.fixture
def profiled(tmp_path) -> tuple[str, int]:
    """A run of two steps: vanilla (10 s; a computed call, a reused-prefix call, a cache hit, and an
    older row without computed tokens) and w (30 s, 20 of them training)."""
    url = f"sqlite:///{tmp_path / 'profile.sqlite'}"
    with session_factory(url).begin() as session:
        run = new_run(resolve_config("iris", "smollm2-135m", "w", 0, "smoke", {"backend": "hf"}))
        run.experiment = Experiment(name="profile")
        run.status, run.model_params, run.matmul_gflops, run.cpu_threads = RunStatus.done, PARAMS, CEILING, 2
        session.add(run)
        session.flush()
        for index, kind, seconds, peak in ((0, "vanilla", 10, 900.0), (1, "w", 30, 2048.0)):
            step = Step(run_id=run.id, index=index, kind=kind, label=kind if index else "vanilla",
                        status=StepStatus.done, started_at=START, finished_at=START + timedelta(seconds=seconds),
                        peak_rss_mb=peak)
            session.add(step)
            session.flush()
            program = Program(run_id=run.id, step_id=step.id, label="result", state={})
            session.add(program)
            session.flush()
            if index == 0:
                session.add_all([trace(run.id, step.id, program.id, 1000, 1000, 50, False),
                                 trace(run.id, step.id, program.id, 1000, 200, 50, False),
                                 trace(run.id, step.id, program.id, 1000, 0, 50, True),
                                 trace(run.id, step.id, program.id, 500, None, 25, False)])
            else:
                session.add(trace(run.id, step.id, program.id, 800, 800, 200, False))
                session.add(Training(run_id=run.id, step_id=step.id, examples=4, hyperparams={}, losses=[],
                                     seconds=20.0))
        return url, run.id


def test_each_step_counts_what_was_sent_computed_and_cached(profiled):
    url, run_id = profiled
    profile = queries.step_profile(session_factory(url), run_id).set_index("index")
    vanilla, w = profile.loc[0], profile.loc[1]
    assert (vanilla["calls"], vanilla["cache_hits"]) == (4, 1)
    assert (vanilla["prompt_sent"], vanilla["prompt_computed"], vanilla["completion_tokens"]) == (3500, 1700, 175)
    # a cache hit generated nothing: its 50 completion tokens are shown, not counted in the rate
    assert vanilla["gflops"] == pytest.approx(2 * PARAMS * (1700 + 125) / 10 / 1e9)
    assert vanilla["of_ceiling"] == pytest.approx(vanilla["gflops"] / CEILING)
    assert w["training_s"] == 20 and w["gflops"] == pytest.approx(2 * PARAMS * 1000 / 10 / 1e9)  # 30 s less 20 training
    table = profile_table(profile.reset_index())
    assert list(table["LM calls (cached)"]) == ["4 (1)", "1 (0)"]
    assert list(table["peak memory"]) == ["0.9 GB", "2.0 GB"]
    assert table["GFLOP/s (of ceiling)"].iat[0] == f"{vanilla['gflops']:.0f} ({vanilla['of_ceiling']:.0%})"


def test_the_peak_memory_restarts_at_each_reset():
    reset_peak_memory()
    baseline = peak_memory_mb()
    block = np.ones(400 * 2**20 // 8)  # 400 MB, touched
    with_block = peak_memory_mb()
    del block
    reset_peak_memory()
    assert with_block - baseline >= 350
    assert peak_memory_mb() < with_block - 300, "the reset did not start a new peak"


def test_the_ceiling_is_a_measured_rate():
    assert 0.1 < matmul_gflops(0.1) < 100_000
