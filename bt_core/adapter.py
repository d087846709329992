"""The chat adapter: a predictor's signature, demos and inputs to chat messages, and back.

Format: the system message states the instructions and the fields; each demo is a prior
user/assistant turn pair; the assistant answers with one `Label: value` line per output
field. Generation stops once the last output field's line is complete (bt_core/lm/stopping.py),
which keeps a small model from rambling past its answer and makes parsing a matter of finding
labelled lines.
A turn that lacks a field is continued once with that field's label (see continue_turn).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from bt_core.lm.base import SamplingParams
from bt_core.signatures import Field, Signature, describe


class ParseError(ValueError):
    """The completion did not contain the output fields the signature asks for."""


def render(signature: Signature, demos: list[Mapping[str, Any]],
           inputs: Mapping[str, Any]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt(signature)}]
    for demo in demos:
        messages.append({"role": "user", "content": format_fields(signature.inputs, demo)})
        messages.append({"role": "assistant", "content": format_fields(signature.outputs, demo)})
    messages.append({"role": "user", "content": format_fields(signature.inputs, inputs)})
    return messages


def informative(signature: Signature, demo: Mapping[str, Any]) -> bool:
    """Whether `demo` shows the predictor anything: one of its inputs and one of its outputs.

    A labeled example without a module's outputs (HotPotQA's have no search_query) would render
    as an empty assistant turn, teaching the module to say nothing; DSPy's adapter drops it too.
    """
    return any(f.name in demo for f in signature.inputs) and any(f.name in demo for f in signature.outputs)


def system_prompt(signature: Signature) -> str:
    template = "\n".join(f"{f.label}: <{f.name}>" for f in signature.outputs)
    parts = [signature.instructions.strip(),
             "Input fields:\n" + describe(signature.inputs),
             "Output fields:\n" + describe(signature.outputs),
             "Reply in exactly this format, one line per field:\n" + template]
    return "\n\n".join(p for p in parts if p)


def format_fields(fields, values: Mapping[str, Any]) -> str:
    """Fields missing from `values` are left out: labeled-only demos carry no reasoning."""
    return "\n".join(f"{f.label}: {one_line(values[f.name])}" for f in fields if f.name in values)


def one_line(value: Any) -> str:
    return " ".join(str(value).split())


def format_completion(signature: Signature, outputs: Mapping[str, Any]) -> str:
    """The assistant turn that fine-tuning teaches, identical to a demo's."""
    return format_fields(signature.outputs, outputs)


def sampling_params(signature: Signature, max_new_tokens: int) -> SamplingParams:
    return SamplingParams(max_new_tokens=max_new_tokens, stop_after_field=signature.outputs[-1].label)


def parse(signature: Signature, completion: str) -> dict[str, str]:
    """Find each output field's `Label:` line; reasoning may be absent, every other field not."""
    values = _scan(signature, completion)
    missing = _missing(signature, values)
    if missing:
        raise ParseError(f"no value for {', '.join(f.name for f in missing)} in the completion")
    return {f.name: values.get(f.name, "") for f in signature.outputs}


def continue_turn(signature: Signature, completion: str) -> str:
    """The assistant turn to continue when a field is missing: what the model wrote, then the label.

    A small model often answers in prose and never writes a field's label. DSPy's template
    adapter, which the paper's runs used, then prompted once more with the missing field's
    prefix; this does the same in chat form, so the model only has to complete one line.
    """
    field = _missing(signature, _scan(signature, completion))[0]
    lines = completion.rstrip().splitlines()
    if lines and _scan(signature, lines[-1]) == {field.name: ""}:
        lines.pop()  # the model wrote the label but no value: continue it rather than repeat it
    return "\n".join([*lines, f"{field.label}:"])


def _scan(signature: Signature, completion: str) -> dict[str, str]:
    """Each field's value: its first labelled line with a value, plus the unlabelled lines after it."""
    labels = {f.label.lower(): f.name for f in signature.outputs}
    values: dict[str, str] = {}
    current: str | None = None
    for line in completion.splitlines():
        match = _LABEL_LINE.match(line)
        key = match and labels.get(" ".join(match.group(1).lower().replace("_", " ").split()))
        if key and not values.get(key):
            current = key
            values[key] = match.group(2).strip()
        elif current is not None and line.strip():
            values[current] = (values[current] + " " + line.strip()).strip()
    return values


def _missing(signature: Signature, values: dict[str, str]) -> list[Field]:
    return [f for f in signature.outputs if not values.get(f.name) and f.name != "reasoning"]


# `Label: value`, tolerating markdown bold and list bullets that small models add.
_LABEL_LINE = re.compile(r"^\s*[-*#\s]*\**\s*([A-Za-z][A-Za-z _]*?)\s*\**\s*:\s*\**\s*(.*)$")
