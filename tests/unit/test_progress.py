"""A foreground run shows its progress: plain lines in a log, and library noise kept out."""

import io
import subprocess
import sys
from pathlib import Path

from bt_core.recording import Count, Recorder, recording
from bt_core.serve.config import resolve_config
from bt_core.serve.progress_view import ProgressView
from bt_core.serve.runner import score_step
from bt_core.tasks import get_task
from tests.conftest import REPO, bt
from tests.scripted import scripted_iris_lm
from tests.tiny_model import TINY_MODEL_ENV


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_line_per_step_and_at_most_one_every_interval_with_an_eta():
    stream, clock = io.StringIO(), Clock()
    view = ProgressView(stream, interval_s=5.0, clock=clock)
    view("p", "candidate 1/9: zero-shot", Count("candidates", 0, 9))
    for done, at in ((0, 1.0), (10, 3.0), (20, 7.0)):
        clock.now = at
        view("p", f"val: {done}/40 examples", Count("examples", done, 40))
    clock.now = 8.0
    view("p -> w", "running the teacher on 15 training examples", None)
    assert stream.getvalue().splitlines() == [
        "[p] candidate 1/9: zero-shot",
        "[p] candidate 1/9: zero-shot | val: 20/40 examples, ETA 00:06",
        "[p -> w] running the teacher on 15 training examples",
    ]


def test_the_known_library_noise_is_filtered_and_other_warnings_still_show():
    code = ("import warnings, bt_core.lm.lora\n"
            "from bt_core.lm.converted import _quiet_gguf_conversion\n"
            "from transformers import modeling_gguf_pytorch_utils as gguf\n"
            "warnings.warn('Could not find a config file in /m - will assume that the vocabulary was not modified.')\n"
            "with _quiet_gguf_conversion():\n"
            "    list(gguf.tqdm(range(3), desc='Converting and de-quantizing GGUF tensors...'))\n"
            "warnings.warn('another warning')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**TINY_MODEL_ENV, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "another warning" in result.stderr
    assert "Could not find a config file" not in result.stderr and "GGUF" not in result.stderr


def test_a_run_in_a_log_prints_plain_progress_lines_naming_its_steps(tiny_model: Path, tmp_path: Path):
    result = bt("--db", f"sqlite:///{tmp_path / 'tiny.sqlite'}", "run", "--task", "iris", "--model",
                str(tiny_model), "--strategy", "p -> w -> p", "--budget", "smoke", "--backend", "hf",
                env=TINY_MODEL_ENV, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    for step in ("vanilla", "p", "p -> w", "p -> w -> p"):
        assert any(line.startswith(f"[{step}] ") for line in lines), result.stderr
    assert any("candidate 1/" in line for line in lines), result.stderr
    assert "\r" not in result.stderr and "Warning" not in result.stderr, result.stderr


def test_scoring_a_step_reports_it_rather_than_leaving_the_optimizers_last_message():
    """A w step's scoring used to show "running the teacher on N training examples" for minutes."""
    messages = []

    class Watched(Recorder):
        def progress(self, message: str, count: Count | None = None) -> None:
            messages.append(message)

        def mark_chosen(self, program_id: int | None) -> None:
            pass

    task = get_task("iris")
    config = resolve_config("iris", budget="smoke")
    splits = task.load(2, 2, 2, seed=0)
    program = task.program()
    program.set_lm(scripted_iris_lm())
    with recording(Watched()) as watched:
        score_step(program, watched, task, splits, config, last=True, known_val=None)
    assert messages[0] == "scoring the step's result"
    assert [m for m in messages[1:] if not m.startswith(("val: ", "test: "))] == []
