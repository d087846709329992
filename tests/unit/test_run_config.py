"""A run config stored by an earlier version stays loadable: removed settings are dropped with a
warning that names them, settings added since take their defaults."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from bt_core.serve.config import RunConfig, resolve_config


@pytest.fixture
def stored() -> dict:
    return resolve_config("iris", strategy="p -> w", budget="smoke").model_dump()


def test_the_current_config_round_trips(stored, caplog):
    with caplog.at_level(logging.WARNING, logger="bt_core.serve.config"):
        assert RunConfig.from_stored(stored).model_dump() == stored
    assert caplog.records == []


def test_removed_settings_are_dropped_with_a_warning_naming_them(stored, caplog):
    old = {**stored, "temperature": 0.7, "lora": {**stored["lora"], "warmup_steps": 10}}
    with pytest.raises(ValidationError):
        RunConfig(**old)
    with caplog.at_level(logging.WARNING, logger="bt_core.serve.config"):
        config = RunConfig.from_stored(old)
    assert config.model_dump() == stored
    assert config.lora.rank == stored["lora"]["rank"]
    assert [r.getMessage() for r in caplog.records] == [
        "stored run config: ignoring settings this version no longer has: temperature, lora.warmup_steps"]


def test_settings_added_since_take_their_defaults(stored):
    old = {key: value for key, value in stored.items() if key not in ("threads", "eval_test_each_step", "backend")}
    old["lora"] = {key: value for key, value in stored["lora"].items() if key != "max_length"}
    config = RunConfig.from_stored(old)
    assert (config.threads, config.eval_test_each_step, config.backend) == (16, True, "auto")
    assert config.lora.max_length == 1024


@pytest.mark.parametrize("resolved", ["hf", "vllm"])
def test_an_older_config_with_its_resolved_backend_reads_as_that_request(stored, resolved):
    assert RunConfig.from_stored({**stored, "backend": resolved}).backend == resolved


def test_a_config_without_its_task_is_still_refused(stored):
    with pytest.raises(ValidationError):
        RunConfig.from_stored({key: value for key, value in stored.items() if key != "task"})


@pytest.mark.parametrize("lora, message", [({"rank": 0}, "lora.rank: Input should be greater than or equal to 1"),
                                           ({"learning_rate": -1e-4}, "lora.learning_rate: Input should be greater"),
                                           ({"rnk": 4}, "lora.rnk: Unexpected keyword argument")])
def test_a_lora_setting_out_of_bounds_or_unknown_is_one_line_at_launch(lora, message):
    with pytest.raises(ValueError) as refused:
        resolve_config("iris", "smollm2-135m", "p -> w", 0, "smoke", {"lora": lora})
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)
