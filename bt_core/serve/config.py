"""Run configuration: budgets, overrides, and the fully resolved config stored with every run.

Everything that decides a run's result is in RunConfig, so its hash identifies the run's
work, and the same seed and config reproduce the same splits and candidates. The backend is
the one exception: the config holds the request (auto, hf, vllm), since only the machine that
executes the run can tell what it can serve; the worker records what it resolved to on the
run (`runs.backend`, bt_core/serve/runner.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, fields
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bt_core.lm.base import LoraConfig
from bt_core.strategy import format_strategy, parse_strategy
from bt_core.tasks.base import Sizes, Task
from db.limits import MODEL_MAX, SEED_MAX, STRATEGY_MAX

BudgetName = Literal["smoke", "default", "paper"]
BUDGETS: tuple[str, ...] = ("smoke", "default", "paper")
log = logging.getLogger("bt_core.serve.config")


LORA: dict[str, LoraConfig] = {
    "smoke": LoraConfig(rank=8, alpha=16, learning_rate=5e-4, epochs=2, batch_size=4),
    "default": LoraConfig(rank=16, alpha=32, learning_rate=3e-4, epochs=3, batch_size=4),
    "paper": LoraConfig(rank=32, alpha=64, learning_rate=1e-5, epochs=5, batch_size=8),
}


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str
    model: str = Field("smollm2-135m", max_length=MODEL_MAX)
    strategy: str = "p -> w -> p"
    seed: int = Field(0, ge=0, le=SEED_MAX)
    budget: BudgetName = "smoke"
    # The request; before issue 18 the resolved backend (hf, vllm), which reads as that request.
    backend: Literal["auto", "hf", "hf-bf16", "vllm"] = "auto"
    sizes: Sizes
    num_candidates: int = Field(3, ge=0)  # random-search candidates beyond the 3 fixed ones
    max_bootstrapped_demos: int = Field(3, ge=0)  # per module
    max_labeled_demos: int = Field(3, ge=0)  # per module, bootstrapped demos included
    lora: LoraConfig  # validated against LoraConfig's bounds
    threads: int = Field(16, ge=1)  # concurrent examples in an evaluation (the LM batch size)
    eval_test_each_step: bool = True  # score every step on test, for per-step curves

    @field_validator("strategy")
    @classmethod
    def _canonical_strategy(cls, value: str) -> str:
        canonical = format_strategy(parse_strategy(value))
        if len(canonical) > STRATEGY_MAX:  # its column and every step's label would overflow
            raise ValueError(f"{len(canonical)} characters written out; at most {STRATEGY_MAX}")
        return canonical

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> RunConfig:
        """The config a run was stored with, possibly by an earlier version: settings since removed
        (top level or in lora) are dropped with a warning naming them, and settings added since
        take their defaults, so the run stays resumable."""
        known_lora = {f.name for f in fields(LoraConfig)}
        lora = stored.get("lora", {})
        dropped = sorted(set(stored) - set(cls.model_fields)) + sorted(f"lora.{k}" for k in set(lora) - known_lora)
        if dropped:
            log.warning("stored run config: ignoring settings this version no longer has: %s", ", ".join(dropped))
        kept = {key: value for key, value in stored.items() if key in cls.model_fields}
        if "lora" in kept:
            kept["lora"] = {key: value for key, value in lora.items() if key in known_lora}
        return cls(**kept)

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(), sort_keys=True).encode()).hexdigest()


def resolve_config(task: str, model: str = "smollm2-135m", strategy: str = "p -> w -> p", seed: int = 0,
                   budget: str = "smoke", overrides: dict[str, Any] | None = None) -> RunConfig:
    """Validate names and fill every setting from the budget; raise ValueError with a clear line.

    overrides["backend"] is a request (auto, hf, vllm, default auto), stored as such: checked here
    only by name, so launching stays cheap and torch-free; the executing worker resolves it.
    """
    from bt_core.lm.backends import BACKENDS
    from bt_core.lm.models import resolve_model
    from bt_core.tasks import get_task

    task_def = get_task(task)
    resolve_model(model)  # an unknown model: one clear line now, not a failed run later
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; valid: {', '.join(BUDGETS)}")
    overrides = dict(overrides or {})
    if overrides.get("backend", "auto") not in BACKENDS:
        raise ValueError(f"unknown backend {overrides['backend']!r}; valid: {', '.join(BACKENDS)}")
    base = _budget_defaults(task_def, model, strategy, seed, budget)
    base["lora"] = {**base["lora"], **overrides.pop("lora", {})}
    try:
        return RunConfig(**{**base, **overrides})
    except Exception as exc:
        raise ValueError(_one_line(exc)) from None


def shown_backend(resolved: str | None, config: dict[str, Any]) -> str:
    """A run's backend as shown: what its worker resolved the request to, else (not yet run) the
    request; a config from before backends existed ran on transformers."""
    return resolved or config.get("backend", "hf")


def _budget_defaults(task: Task, model: str, strategy: str, seed: int, budget: str) -> dict[str, Any]:
    return {"task": task.name, "model": model, "strategy": strategy, "seed": seed, "budget": budget,
            "sizes": task.sizes[budget], "lora": {**asdict(LORA[budget]), "seed": seed},
            "num_candidates": 3 if budget == "paper" else {"smoke": 1, "default": 3}[budget]}


def overridden_settings(config: dict[str, Any]) -> dict[str, Any]:
    """A stored run config's settings that differ from its budget's defaults, flattened
    ("lora.epochs": 5). With task, model, budget and backend they decide which runs may be
    compared: a strategy that won with 5 epochs says nothing against one trained for 3."""
    from bt_core.tasks import get_task

    base = _budget_defaults(get_task(config["task"]), config["model"], config["strategy"], config["seed"],
                            config["budget"])
    defaults = _flat(RunConfig(**base, backend=config["backend"]).model_dump())
    return {key: value for key, value in _flat(config).items() if key not in defaults or defaults[key] != value}


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def _one_line(exc: Exception) -> str:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc)
