"""transformers' own generate under the backends' stop rule: the reference that the hf backend's
decoding (bt_core/lm/decode.py) is compared with in the tests and timed against in
benchmarks/finished_rows.py."""

from __future__ import annotations

import torch
from transformers import StoppingCriteria

from bt_core.lm.stopping import field_closed


class FieldStop(StoppingCriteria):
    """A row is done once its last field's `label` line is, counting its turn's prefill; generate
    runs it on as padding until every row is done."""

    def __init__(self, tok, width: int, label: str, prefills: list[str] | None = None) -> None:
        self.tok, self.width, self.label, self.prefills = tok, width, label, prefills

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tok.batch_decode(input_ids[:, self.width:], skip_special_tokens=True)
        prefills = self.prefills or [""] * len(texts)
        return torch.tensor([field_closed(p + t, self.label) for p, t in zip(prefills, texts)])
