"""LoRA fine-tuning with peft on chat conversations, loss on the final assistant turn only.

A plain training loop rather than transformers' Trainer: the jobs are small (tens to
hundreds of short conversations), and the loop reports loss per optimizer step to the
caller, which stores it for the dashboard's training curve.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from bt_core.lm.base import Messages, TrainingLog


@dataclass
class LoraConfig:
    rank: int = 16  # LoRA rank r
    alpha: int = 32  # scaling numerator; effective scale alpha / rank
    dropout: float = 0.0  # LoRA dropout, 0 as in the paper
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    learning_rate: float = 3e-4  # far above the paper's 1e-5: a 135M model on CPU gets few steps
    epochs: int = 3  # passes over the SFT data
    batch_size: int = 4  # conversations per optimizer step
    max_length: int = 1024  # tokens per conversation; longer ones are cut on the left
    seed: int = 0  # shuffling and LoRA init


def train_lora(model: torch.nn.Module, tokenizer, conversations: list[Messages], config: LoraConfig,
               out_dir: Path, on_log: Callable[[int, float], None] | None = None) -> TrainingLog:
    """Train an adapter on a copy of `model` (the caller's model stays untouched) and save it."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    if not conversations:
        raise ValueError("no training conversations: no trace passed the metric")
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    peft_model = get_peft_model(copy.deepcopy(model), PeftLoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
        target_modules=list(config.target_modules), task_type="CAUSAL_LM"))
    peft_model.train()
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad],
                                  lr=config.learning_rate)
    examples = [tokenize_for_sft(tokenizer, c, config.max_length) for c in conversations]
    order = random.Random(config.seed)
    losses: list[tuple[int, float]] = []
    step = 0
    for _ in range(config.epochs):
        order.shuffle(examples)
        for batch_start in range(0, len(examples), config.batch_size):
            loss = _train_step(peft_model, optimizer, examples[batch_start:batch_start + config.batch_size],
                               tokenizer.pad_token_id)
            step += 1
            losses.append((step, loss))
            if on_log:
                on_log(step, loss)
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out_dir))
    return TrainingLog(str(out_dir), losses, time.perf_counter() - start, len(conversations))


def tokenize_for_sft(tokenizer, messages: Messages, max_length: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) with labels -100 everywhere but the last assistant turn."""
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template does not extend the prompt with the assistant turn")
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    answer_ids = tokenizer(full[len(prompt):].rstrip("\n"), add_special_tokens=False).input_ids
    ids = (prompt_ids + answer_ids)[-max_length:]
    labels = ([-100] * len(prompt_ids) + answer_ids)[-max_length:]
    return ids, labels


def _train_step(model, optimizer, batch: list[tuple[list[int], list[int]]], pad_id: int) -> float:
    width = max(len(ids) for ids, _ in batch)
    pad = lambda seq, value: seq + [value] * (width - len(seq))
    input_ids = torch.tensor([pad(ids, pad_id) for ids, _ in batch])
    labels = torch.tensor([pad(lab, -100) for _, lab in batch])
    mask = torch.tensor([pad([1] * len(ids), 0) for ids, _ in batch])
    loss = model(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                 labels=labels.to(model.device)).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return float(loss.detach())
