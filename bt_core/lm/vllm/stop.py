"""Stop a vLLM request once its last output field's line is complete, as the HF backend does.

vLLM's stop strings cannot say "a `Label:` line with a value, then a line break", so a
per-request logits processor checks the decoded output with the same test as the
transformers backend (stopping.field_closed) and forces end-of-sequence once it holds. It runs
inside vLLM's engine process; the request carries the label, and the start of a continued
assistant turn, in SamplingParams.extra_args.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from transformers import AutoTokenizer
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from bt_core.lm.stopping import field_closed
from bt_core.lm.vllm.guard import watch_owner

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.config import VllmConfig

EXTRA_ARG = "stop_after_field"
PREFILL_ARG = "prefill"


class FieldStop(AdapterLogitsProcessor):
    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool) -> None:
        super().__init__(vllm_config, device, is_pin_memory)
        self.tokenizer = AutoTokenizer.from_pretrained(vllm_config.model_config.tokenizer)
        self.eos = self.tokenizer.eos_token_id
        self._breaks: dict[int, bool] = {}  # token id -> its text holds a line break
        watch_owner()  # the only code of ours that runs in vLLM's processes: see guard.py

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token wins

    def new_req_logits_processor(self, params: SamplingParams) -> Callable | None:
        args = params.extra_args or {}
        label, prefill = args.get(EXTRA_ARG), args.get(PREFILL_ARG, "")
        return None if label is None else lambda output_ids, logits: self._apply(label, prefill, output_ids, logits)

    def _apply(self, label: str, prefill: str, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        # A field closes only on a line break, so the whole output is decoded only after one.
        if not output_ids or not self._has_break(output_ids[-1]):
            return logits
        if not field_closed(prefill + self.tokenizer.decode(output_ids, skip_special_tokens=True), label):
            return logits
        forced = torch.full_like(logits, float("-inf"))
        forced[self.eos] = 0.0
        return forced

    def _has_break(self, token_id: int) -> bool:
        if token_id not in self._breaks:
            self._breaks[token_id] = "\n" in self.tokenizer.decode([token_id])
        return self._breaks[token_id]
