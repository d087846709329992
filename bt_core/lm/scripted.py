"""A deterministic scripted LM for unit tests: no weights, answers from a Python function.

Its adapters are real files holding the training conversations, and an adapted ScriptedLM
passes what it was trained on to the script, so optimizer tests can check that w changed
the model's behaviour without a transformer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from bt_core.lm.base import LM, Completion, LoraConfig, Messages, SamplingParams, TrainingLog, prefill
from bt_core.lm.stopping import truncate_after_field

# script(messages, trained_on) -> completion text; trained_on is the adapter's conversations.
Script = Callable[[Messages, list[Messages]], str]


class ScriptedLM(LM):
    backend = "scripted"

    def __init__(self, script: Script, name: str = "scripted", adapter_path: str | None = None,
                 **kwargs) -> None:
        super().__init__(name, adapter_path, **kwargs)
        self.script = script
        self._trained_on = _load(adapter_path)

    def _generate(self, batch: list[Messages], params: SamplingParams) -> list[Completion]:
        out = []
        for messages in batch:
            text = " ".join(self.script(messages, self._trained_on).split(" ")[: params.max_new_tokens])
            if params.stop_after_field:
                text = truncate_after_field(text, params.stop_after_field, prefill(messages))
            prompt_words = sum(len(m["content"].split()) for m in messages)
            out.append(Completion(text, prompt_words, len(text.split(" ")), 0.001))
        return out

    def with_adapter(self, adapter_path: str | None) -> ScriptedLM:
        return ScriptedLM(self.script, self.name, adapter_path, cache=self.cache,
                          max_batch_size=self.max_batch_size)

    def train_adapter(self, conversations: list[Messages], config: LoraConfig, out_dir: Path,
                      on_log=None, start_adapter: str | None = None) -> TrainingLog:
        """A continued adapter has learnt its start's conversations too."""
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "conversations.json").write_text(json.dumps(_load(start_adapter) + conversations))
        losses = [(step, 1.0 / step) for step in range(1, config.epochs + 1)]
        for step, loss in losses:
            if on_log:
                on_log(step, loss)
        return TrainingLog(str(out_dir), losses, 0.0, len(conversations))


def _load(adapter_path: str | None) -> list[Messages]:
    if adapter_path is None:
        return []
    return json.loads((Path(adapter_path) / "conversations.json").read_text())
