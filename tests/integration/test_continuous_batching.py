"""The transformers backend decodes continuously: a call that arrives while others decode joins them.

An example's next module call is issued the moment its last call returns. With fixed batches it
waited for the slowest call of the batch its last call rode in; here it joins that batch between
two steps. The real embedded model (fp32, CPU) decodes a long call while a short one finishes and
its follow-up arrives; the follow-up must finish first, and every call must decode what it
decodes alone.
"""

from __future__ import annotations

import threading

import pytest

from bt_core.lm.base import SamplingParams
from bt_core.lm.cache import LMCache
from bt_core.lm.hf import HFLM
from bt_core.lm.models import resolve_model

pytestmark = pytest.mark.integration

LONG, SHORT = SamplingParams(max_new_tokens=48), SamplingParams(max_new_tokens=3)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


QUESTIONS = {"long": "Describe the water cycle in detail.", "short": "Name a colour.", "next": "Name a fruit."}


def long_beside_short_then_next(lm: HFLM) -> tuple[list[str], dict]:
    """"long" and "short" asked together, and "next" once "short" returns, while "long" decodes:
    the order they finish in, and their completions."""
    finished: list[str] = []
    completions: dict[str, object] = {}
    start = threading.Barrier(2)

    def call(name: str) -> None:
        completions[name] = lm.chat(ask(QUESTIONS[name]), LONG if name == "long" else SHORT)
        finished.append(name)

    def in_turn(*names: str) -> None:
        start.wait()
        for name in names:
            call(name)

    threads = [threading.Thread(target=in_turn, args=names) for names in (("long",), ("short", "next"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return finished, completions


def alone(lm: HFLM) -> dict[str, str]:
    return {name: lm.generate([ask(q)], LONG if name == "long" else SHORT)[0].text for name, q in QUESTIONS.items()}


def test_a_follow_up_call_joins_a_batch_that_is_still_decoding_and_each_decodes_what_it_decodes_alone():
    lm = HFLM(resolve_model("smollm2-135m"))  # no LM-call cache: every call generates
    expected = alone(lm)
    finished, completions = long_beside_short_then_next(lm)
    assert finished == ["short", "next", "long"]
    assert {name: c.text for name, c in completions.items()} == expected
    assert lm.batches == [1, 1, 1, 2, 1]  # alone: three; together: "long" with "short", then "next" joining


def test_a_cached_call_that_arrives_while_another_decodes_is_answered_from_the_cache(tmp_path):
    """Only a hit arrives between two steps: nothing joins, and the call decoding goes on."""
    expected = alone(HFLM(resolve_model("smollm2-135m")))
    lm = HFLM(resolve_model("smollm2-135m"), cache=LMCache(tmp_path / "cache.sqlite"))
    lm.generate([ask(QUESTIONS["next"])], SHORT)  # now a hit
    finished, completions = long_beside_short_then_next(lm)
    assert finished == ["short", "next", "long"]
    assert {name: c.text for name, c in completions.items()} == expected
    assert [completions[name].cached for name in ("long", "short", "next")] == [False, False, True]
