"""Decoding in which a finished call leaves the batch and a new one joins it.

transformers' generate computes every row of a batch until the last one stops: a finished row
goes on as padding. Chain-of-thought calls stop at very different lengths, so late in a batch
most of each step's rows are such padding. Here a row that is finished (the end token, its own
stop test, or its token budget) is dropped from the batch and from the cache, so each step
computes only the calls still going. It decodes the tokens greedy generate decodes (the same
positions, masks and argmax): tests/unit/test_decode_path.py compares them. A temperature above
0 samples from the softmax of the logits divided by it, with nothing cut (as vLLM does).

A call that arrives while a batch decodes joins it between two steps (`DecodingBatch.admit`),
so the next module call of an example whose last call finished early does not wait for the
batch's slowest call, and each step computes more rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from transformers import DynamicCache

from bt_core.lm import kv_cache

Finished = Callable[[int, list[int]], bool]  # (row, its tokens so far) -> whether it is done


def prefilled(model: torch.nn.Module, inputs: dict) -> dict:
    """decode's inputs from generate-style ones (left-padded `input_ids` and `attention_mask`, and a
    cache, `past_key_values`, that may already hold a prefix of every row): the rest of each prompt
    run into the cache, and the `logits` after its last token."""
    cache, mask = inputs["past_key_values"], inputs["attention_mask"]
    past = cache.get_seq_length()
    logits = model(input_ids=inputs["input_ids"][:, past:], attention_mask=mask, position_ids=positions(mask)[:, past:],
                   past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    return {"attention_mask": mask, "past_key_values": cache, "logits": logits}


def decode(model: torch.nn.Module, inputs: dict, max_new_tokens: int, *, temperature: float = 0.0,
           finished: Finished | None = None) -> list[list[int]]:
    """Each row's new tokens (its end token included) after `prefilled` inputs: a cache holding
    every prompt token, the `attention_mask` over them, and the `logits` after each row's last."""
    rows = [Row(max_new_tokens, temperature, partial(finished, at) if finished else None)
            for at in range(inputs["attention_mask"].shape[0])]
    batch = DecodingBatch(model)
    batch.admit(inputs, rows)
    while batch.rows:
        batch.choose()
        batch.advance()
    return [row.tokens for row in rows]


@dataclass(eq=False)
class Row:
    """One call in a decoding batch: its budget, temperature and stop test, and its tokens so far."""

    max_new_tokens: int
    temperature: float = 0.0
    finished: Callable[[list[int]], bool] | None = None  # its own stop test, on its tokens so far
    tokens: list[int] = field(default_factory=list)


class DecodingBatch:
    """Calls decoding together, which join between steps and leave once finished.

    Each step first chooses every row's next token (`choose`, which hands back the rows that are
    done) and then computes the rest one token further (`advance`). Rows prefilled apart join in
    between (`admit`): the caches of both are laid out anew, right-aligned to the longer one, the
    shorter rows' left pads masked. So a call that arrives while others decode waits for one
    step, not for the slowest of them (continuous batching, as vLLM schedules).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.rows: list[Row] = []
        self.ends = _end_tokens(model)
        self._cache: DynamicCache | None = None
        self._mask = self._positions = self._logits = self._chosen = None

    def admit(self, inputs: dict, rows: list[Row]) -> None:
        """These rows join, after `prefilled` inputs that hold them in this order."""
        mask = inputs["attention_mask"]
        new = (inputs["past_key_values"], mask, positions(mask)[:, -1:], inputs["logits"])
        if self.rows:
            new = self._merged(*new, rows)
        self._cache, self._mask, self._positions, self._logits = new
        self.rows += rows

    def choose(self) -> list[Row]:
        """Every row's next token; the rows that finished with it leave the batch and are returned."""
        temperatures = [row.temperature for row in self.rows]
        chosen = _choose(self._logits.float(), temperatures)
        going, done = [], []
        for at, (row, token) in enumerate(zip(self.rows, chosen.tolist())):
            row.tokens.append(token)
            over = token in self.ends or len(row.tokens) >= row.max_new_tokens
            (done if over or (row.finished and row.finished(row.tokens)) else going).append(at)
        if done and going:
            keep = torch.tensor(going, device=self._mask.device)
            self._cache.batch_select_indices(keep)
            self._mask, self._positions, chosen = self._mask[keep], self._positions[keep], chosen[keep]
        finished = [self.rows[at] for at in done]
        self.rows = [self.rows[at] for at in going]
        self._chosen = chosen if going else None
        if not going:
            self._cache = self._mask = self._positions = self._logits = None  # the memory goes back now
        return finished

    def advance(self) -> None:
        """The rows still going, one token further: their logits for the next `choose`."""
        if not self.rows:
            return
        self._mask = torch.cat([self._mask, self._mask.new_ones(len(self.rows), 1)], dim=1)
        self._positions = self._positions + 1
        self._logits = self.model(input_ids=self._chosen[:, None], attention_mask=self._mask,
                                  position_ids=self._positions, past_key_values=self._cache, use_cache=True,
                                  logits_to_keep=1).logits[:, -1]

    def _merged(self, cache: DynamicCache, mask: torch.Tensor, steps: torch.Tensor, logits: torch.Tensor,
                rows: list[Row]) -> tuple:
        """The running rows and the new ones in one cache, right-aligned to the longer of the two,
        with room for the most tokens any row may still generate. Columns that are padding in every
        running row go (a batch that rows keep joining would otherwise only grow), and each old
        layer goes once copied, so the peak holds one layer twice, not the whole cache."""
        cut = int((self._mask != 0).int().argmax(dim=1).min())  # the first column any running row uses
        old_mask = self._mask[:, cut:]
        width = max(old_mask.shape[1], mask.shape[1])
        room = max(row.max_new_tokens - len(row.tokens) for row in self.rows + rows)
        buffers = []
        for old, new in zip(self._cache.layers, cache.layers):
            pair = []
            for a, b in ((old.keys[..., cut:, :], new.keys), (old.values[..., cut:, :], new.values)):
                merged = a.new_zeros(a.shape[0] + b.shape[0], a.shape[1], width + room, a.shape[3])  # pads: 0, masked
                merged[: a.shape[0], :, width - a.shape[2]:width] = a
                merged[a.shape[0]:, :, width - b.shape[2]:width] = b
                pair.append(merged)
            buffers.append(tuple(pair))
            kv_cache.drop(old)
        pad = lambda m: torch.nn.functional.pad(m, (width - m.shape[1], 0))
        return (kv_cache.cache_over(self.model, buffers, width, room), torch.cat([pad(old_mask), pad(mask)]),
                torch.cat([self._positions, steps]), torch.cat([self._logits, logits]))


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Each token's position in its row, counted over the unmasked ones: pads take none."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


def _choose(logits: torch.Tensor, temperatures: list[float]) -> torch.Tensor:
    """Greedy where a row's temperature is 0, else a sample from its softmax at that temperature."""
    chosen = logits.argmax(-1)
    for at, temperature in enumerate(temperatures):
        if temperature > 0:
            chosen[at] = torch.multinomial(torch.softmax(logits[at] / temperature, dim=-1), 1)[0]
    return chosen


def _end_tokens(model: torch.nn.Module) -> set[int]:
    end = model.generation_config.eos_token_id
    return set() if end is None else {end} if isinstance(end, int) else set(end)
