"""LoRA fine-tuning with peft on chat conversations, loss on the final assistant turn only.

A conversation too long for max_length is shortened in its middle (see tokenize_for_sft), never
at its head: the system prompt holds the instructions that inference sees.

A plain training loop rather than transformers' Trainer: the jobs are small (tens to
hundreds of short conversations), and the loop reports loss per optimizer step to the
caller, which stores it for the dashboard's training curve.
"""

from __future__ import annotations

import copy
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from bt_core.lm.base import LoraConfig, Messages, TrainingLog
from bt_core.lm.memory import return_freed_memory
from bt_core.lm.threads import follow_threads

# Saving an adapter of a GGUF-loaded model, peft finds no config.json beside the weights and warns
# once per w step; the warning is moot here (no adapter trains the embeddings, so the vocabulary is
# the base's) and would break the CLI's progress lines.
warnings.filterwarnings("ignore", message="Could not find a config file in .* - will assume that the vocabulary "
                                          "was not modified")


def train_lora(model: torch.nn.Module, tokenizer, conversations: list[Messages], config: LoraConfig,
               out_dir: Path, on_log: Callable[[int, float], None] | None = None,
               start_adapter: str | None = None) -> TrainingLog:
    """Train an adapter on the base `model` and save it; the model comes back as it was.

    peft wraps the model's own layers (no copy of its weights, which would double a w step's
    memory) and unwraps them afterwards, even when training fails; the caller holds the lock that
    keeps generation off the model meanwhile. From `start_adapter` when given: a later w step
    starts from the LM the previous one made (keeping that adapter's rank and targets), and its
    result is still one plain adapter of the base.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import PeftModel, get_peft_model

    if not conversations:
        raise ValueError("no training conversations: no trace passed the metric")
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    frozen = {name: p.requires_grad for name, p in model.named_parameters()}
    if start_adapter is None:
        peft_model = get_peft_model(model, PeftLoraConfig(
            r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
            target_modules=list(config.target_modules), task_type="CAUSAL_LM"))
    else:
        peft_model = PeftModel.from_pretrained(model, start_adapter, is_trainable=True)
    try:
        return _train(peft_model, tokenizer, conversations, config, out_dir, on_log, start)
    finally:
        peft_model.unload().eval()
        for name, p in model.named_parameters():
            p.requires_grad_(frozen[name])
        return_freed_memory()


def merged_copy(base: torch.nn.Module, adapter_path: str) -> torch.nn.Module:
    """The base model with an adapter merged in, as a model of its own that holds new weights only for
    the layers the adapter changes: every other weight (embeddings, MLPs, norms) is the base's own
    tensor. The default adapter targets the attention projections, a fifth of the weights.

    The copy's parameters are new Parameter objects over the base's storage. Each layer the adapter
    wraps gets a weight of its own before the merge, whatever peft's merge writes into (peft 0.22's
    safe merge copies into the existing tensor), so the base stays as it was.
    """
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    shared = {id(p): torch.nn.Parameter(p.detach(), requires_grad=False) for p in base.parameters()}
    shared.update({id(b): b for b in base.buffers()})
    with torch.inference_mode(False):  # a generate asks for it: its new weights must keep version counters
        adapted = PeftModel.from_pretrained(copy.deepcopy(base, shared), adapter_path)
        for layer in adapted.modules():
            if isinstance(layer, LoraLayer):
                target = layer.get_base_layer()
                target.weight = torch.nn.Parameter(target.weight.detach().clone(), requires_grad=False)
        return adapted.merge_and_unload(safe_merge=True).eval()


def _train(peft_model, tokenizer, conversations: list[Messages], config: LoraConfig, out_dir: Path,
           on_log: Callable[[int, float], None] | None, start: float) -> TrainingLog:
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
            follow_threads()  # a share given back mid-training applies from the next step
            loss = _train_step(peft_model, optimizer, examples[batch_start:batch_start + config.batch_size])
            step += 1
            losses.append((step, loss))
            if on_log:
                on_log(step, loss)
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(str(out_dir))
    return TrainingLog(str(out_dir), losses, time.perf_counter() - start, len(conversations),
                       shortened=sum(e.shortened for e in examples), tokens_cut=sum(e.tokens_cut for e in examples))


@dataclass(frozen=True)
class SFTExample:
    """One tokenized conversation; `tokens_cut` counts the prompt tokens left out to fit."""

    input_ids: list[int]
    labels: list[int]  # -100 everywhere but the last assistant turn
    tokens_cut: int = 0

    @property
    def shortened(self) -> bool:
        return self.tokens_cut > 0


def tokenize_for_sft(tokenizer, messages: Messages, max_length: int) -> SFTExample:
    """Tokens and labels of a conversation, shortened in the middle when it exceeds max_length.

    Inference always sees the system prompt (the instructions) and the module's input, so a
    training example must too: a long conversation first loses its oldest demos, then the end
    of its input's longest field (HotPotQA's passages, whose best-ranked come first), and never
    the system prompt or the completion.
    """
    prompt_ids, answer_ids = _encode(tokenizer, messages)
    full = len(prompt_ids) + len(answer_ids)
    while len(prompt_ids) + len(answer_ids) > max_length and len(messages) > 3:
        messages = [messages[0], *messages[3:]]  # the oldest demo: a user and an assistant turn
        prompt_ids, answer_ids = _encode(tokenizer, messages)
    if len(prompt_ids) + len(answer_ids) > max_length:
        prompt_ids, answer_ids = _encode(tokenizer, _shorten_input(tokenizer, messages, max_length))
    ids = prompt_ids + answer_ids
    return SFTExample(ids, [-100] * len(prompt_ids) + answer_ids, full - len(ids))


def _encode(tokenizer, messages: Messages) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids); the completion ends with the end-of-turn token, so a tuned
    model learns to stop."""
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template does not extend the prompt with the assistant turn")
    return (tokenizer(prompt, add_special_tokens=False).input_ids,
            tokenizer(full[len(prompt):].rstrip("\n"), add_special_tokens=False).input_ids)


def _shorten_input(tokenizer, messages: Messages, max_length: int) -> Messages:
    """The conversation with the last input's longest line cut to the most words that fit."""
    *head, user, answer = messages
    lines = user["content"].split("\n")
    longest = max(range(len(lines)), key=lambda i: len(lines[i]))
    words = lines[longest].split(" ")

    def with_words(n: int) -> Messages:
        cut = [*lines[:longest], " ".join(words[:n]) + " …", *lines[longest + 1:]]
        return [*head, {**user, "content": "\n".join(cut)}, answer]

    def fits(n: int) -> bool:
        prompt_ids, answer_ids = _encode(tokenizer, with_words(n))
        return len(prompt_ids) + len(answer_ids) <= max_length

    if not fits(1):
        raise ValueError(f"a conversation's system prompt, input labels and completion alone exceed "
                         f"max_length={max_length} tokens: raise the LoRA max_length")
    low, high = 1, len(words) - 1  # the most words that fit lie in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return with_words(low)


def _train_step(model, optimizer, batch: list[SFTExample]) -> float:
    """One optimizer step on the batch's mean token loss, taken one conversation at a time with the
    gradients summed: what the backward pass keeps is one conversation's activations, not the
    batch's, and no pad token is computed."""
    labelled = sum(label != -100 for e in batch for label in e.labels[1:])  # the first token predicts nothing
    total = 0.0
    for example in batch:
        input_ids = torch.tensor([example.input_ids], device=model.device)
        labels = torch.tensor([example.labels], device=model.device)
        loss = completion_loss(model, input_ids, torch.ones_like(input_ids), labels, reduction="sum") / labelled
        loss.backward()
        total += float(loss.detach())
    optimizer.step()
    optimizer.zero_grad()
    return total


def completion_loss(model, input_ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                    reduction: str = "mean") -> torch.Tensor:
    """Transformers' causal-LM loss (next-token cross-entropy over the labelled tokens, their mean
    or sum), with logits computed only from the first position that predicts a label on.

    Only the completion is labelled, and it ends each row: the prompt's logits (sequence x
    vocabulary floats, kept for the backward pass) were most of a training step's memory.
    """
    labelled = (labels != -100).any(dim=0).nonzero()
    if labelled.numel() == 0:
        raise ValueError("a training batch without a labelled token: nothing to learn from")
    keep = labels.shape[1] - int(labelled[0]) + 1  # the position before the first label predicts it
    logits = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=keep).logits[:, :-1]
    targets = labels[:, labels.shape[1] - keep + 1:]
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100,
                                             reduction=reduction)
