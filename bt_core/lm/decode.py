"""Decoding in which a finished call leaves the batch.

transformers' generate computes every row of a batch until the last one stops: a finished row
goes on as padding. Chain-of-thought calls stop at very different lengths, so late in a batch
most of each step's rows are such padding. Here a row that is finished (the end token, its own
stop test, or its token budget) is dropped from the batch and from the cache, so each step
computes only the calls still going. It decodes the tokens greedy generate decodes (the same
positions, masks and argmax): tests/unit/test_decode_path.py compares them. A temperature above
0 samples from the softmax of the logits divided by it, with nothing cut (as vLLM does).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import DynamicCache

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
    cache: DynamicCache = inputs["past_key_values"]
    mask, logits = inputs["attention_mask"], inputs["logits"]
    step_positions = positions(mask)[:, -1:]
    ends = _end_tokens(model)
    tokens: list[list[int]] = [[] for _ in range(mask.shape[0])]
    rows = list(range(mask.shape[0]))  # the original row of each row still in the batch
    while True:
        chosen = _choose(logits.float(), temperature)
        going = []
        for at, (row, token) in enumerate(zip(rows, chosen.tolist())):
            tokens[row].append(token)
            done = token in ends or len(tokens[row]) >= max_new_tokens or (finished and finished(row, tokens[row]))
            if not done:
                going.append(at)
        if not going:
            return tokens
        if len(going) < len(rows):
            keep = torch.tensor(going, device=mask.device)
            cache.batch_select_indices(keep)
            mask, chosen, step_positions = mask[keep], chosen[keep], step_positions[keep]
            rows = [rows[at] for at in going]
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
        step_positions = step_positions + 1
        logits = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=step_positions,
                       past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Each token's position in its row, counted over the unmasked ones: pads take none."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


def _choose(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    return torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1)[:, 0]


def _end_tokens(model: torch.nn.Module) -> set[int]:
    end = model.generation_config.eos_token_id
    return set() if end is None else {end} if isinstance(end, int) else set(end)
