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
from bt_core.lm.hf import HFLM
from bt_core.lm.models import resolve_model

pytestmark = pytest.mark.integration

LONG, SHORT = SamplingParams(max_new_tokens=48), SamplingParams(max_new_tokens=3)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_a_follow_up_call_joins_a_batch_that_is_still_decoding_and_each_decodes_what_it_decodes_alone():
    lm = HFLM(resolve_model("smollm2-135m"))  # no LM-call cache: every call generates
    questions = {"long": "Describe the water cycle in detail.", "short": "Name a colour.", "next": "Name a fruit."}
    alone = {name: lm.generate([ask(q)], LONG if name == "long" else SHORT)[0].text for name, q in questions.items()}
    finished: list[str] = []
    texts: dict[str, str] = {}
    start = threading.Barrier(2)

    def call(name: str, params: SamplingParams) -> None:
        texts[name] = lm.chat(ask(questions[name]), params).text
        finished.append(name)

    def long_call() -> None:
        start.wait()
        call("long", LONG)

    def short_then_next() -> None:
        start.wait()
        call("short", SHORT)
        call("next", SHORT)  # issued once "short" returns, while "long" is still decoding

    threads = [threading.Thread(target=long_call), threading.Thread(target=short_then_next)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert finished == ["short", "next", "long"]
    assert texts == alone
    assert lm.batches == [1, 1, 1, 2, 1], lm.batches
