"""BootstrapFinetune: LoRA-tune the program's LM on its own successful traces.

Every module call of every trace whose final answer passes the metric becomes one chat SFT
conversation: the prompt the student's module will see (its own demos) and the parsed output
as the answer; all modules' data are pooled because they share one LM. A program without
demos gets a labeled-demo teacher, so that "w" alone has traces to learn from. When no trace
passes (a weak model on a hard task), the step keeps the weights and records why, rather than
failing the run and losing the steps after it. A w after an earlier w continues training that
step's adapter (in `w -> p -> w` the second w starts from the LM the first made, as the paper's
chain does), and each result is still a plain PEFT adapter of the base model that PEFT and vLLM
load as is. It is written to a staging folder and renamed into place, so a killed training never
leaves a torn adapter under its final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import KW_ONLY, asdict, dataclass, field, replace
from pathlib import Path

from bt_core import adapter
from bt_core.evaluate import ExampleResult, Metric
from bt_core.lm.base import LM, LoraConfig, Messages, TrainingLog, adapter_fingerprint
from bt_core.modules import Example, Module
from bt_core.optimizers.bootstrap import bootstrap_traces, teacher_for
from bt_core.recording import recorder


@dataclass
class BootstrapFinetune:
    metric: Metric
    out_dir: Path  # adapters are written to folders inside it
    _: KW_ONLY
    lora: LoraConfig = field(default_factory=LoraConfig)
    max_labeled_demos: int = 3  # labeled demos a demo-less teacher gets to produce traces
    threads: int = 16

    def compile(self, student: Module, *, trainset: list[Example], valset=None,
                teacher: Module | None = None) -> Module:
        program = student.deepcopy()
        lm = shared_lm(program)
        teacher = teacher_for(program, teacher, trainset, self.max_labeled_demos, self.lora.seed)
        results = bootstrap_traces(teacher, trainset, self.metric, self.threads)
        conversations = sft_conversations(program, results)
        if not conversations:
            recorder().training_skipped(
                f"none of the {len(trainset)} training traces passed the metric, so there was nothing to "
                "fine-tune on and the weights stay as they were (run p first, or give more training examples)",
                self.lora)
            return program
        recorder().progress(f"LoRA fine-tuning on {len(conversations)} module calls")
        log = self._train(lm.with_adapter(None), conversations, lm.adapter_path)
        recorder().training(log, self.lora)
        program.set_lm(lm.with_adapter(log.adapter_path))
        return program

    def _train(self, base: LM, conversations: list[Messages], start: str | None) -> TrainingLog:
        """Train from the `start` adapter (the previous w's), else from the base weights."""
        final = self._adapter_dir(conversations, start)
        staging = final.with_name(f"{final.name}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        log = base.train_adapter(conversations, self.lora, staging, on_log=recorder().training_loss,
                                 start_adapter=start)
        shutil.rmtree(final, ignore_errors=True)  # this step's own earlier adapter (same data, same config)
        os.rename(staging, final)
        return replace(log, adapter_path=str(final))

    def _adapter_dir(self, conversations: list[Messages], start: str | None) -> Path:
        """Named by what it is trained on and from, so a redone step overwrites its own adapter only."""
        blob = json.dumps([conversations, asdict(self.lora), adapter_fingerprint(start)], sort_keys=True).encode()
        return self.out_dir / f"adapter-{hashlib.sha256(blob).hexdigest()[:12]}"


def shared_lm(program: Module) -> LM:
    lm = program.bound_lm()
    if lm is None:
        raise ValueError("fine-tuning needs every module bound to one shared LM: call program.set_lm(lm)")
    return lm


def sft_conversations(student: Module, results: list[ExampleResult]) -> list[Messages]:
    """Each passing call, rendered with the student's own prompt and demos: what it will see."""
    predictors = dict(student.named_predictors())
    conversations = []
    for result in results:
        if result.score < 1.0:
            continue
        for call in result.calls:
            predictor = predictors[call.module]
            prompt = adapter.render(predictor.signature, predictor.demos, call.inputs)
            answer = adapter.format_completion(predictor.signature, call.outputs or {})
            conversations.append([*prompt, {"role": "assistant", "content": answer}])
    return conversations
