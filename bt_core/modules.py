"""Programs: Example and Prediction records, the Predict/ChainOfThought modules, and Module.

A Module composes predictors in plain Python. Its learnable state is each predictor's
instructions and demos (what p changes) plus the LM it is bound to (what w changes); that
state saves to JSON, and `deepcopy` shares the LM instead of copying its weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from bt_core import adapter
from bt_core.adapter import ParseError
from bt_core.lm.base import joined
from bt_core.signatures import Field, Signature

if TYPE_CHECKING:
    from bt_core.lm.base import LM, Completion


class Example(dict):
    """A dict with attribute access that knows which of its keys are inputs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._input_keys: tuple[str, ...] | None = None

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def with_inputs(self, *keys: str) -> Example:
        copy_ = Example(self)
        copy_._input_keys = keys
        return copy_

    def inputs(self) -> dict[str, Any]:
        if self._input_keys is None:
            raise ValueError("call .with_inputs(...) to say which keys are inputs")
        return {k: self[k] for k in self._input_keys}

    def labels(self) -> dict[str, Any]:
        return {k: v for k, v in self.items() if k not in (self._input_keys or ())}


SOURCE = "_source"  # the demo key naming the training example a demo came from


def example_id(example: Example) -> str:
    """A stable identity of a training example: a hash of its inputs, which survives JSON."""
    blob = json.dumps(example.inputs(), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def demo_from(example: Example, values: dict[str, Any]) -> Example:
    """A demo with `values` that remembers its source example, so that example never sees it.

    A bootstrapped demo carries reasoning the example lacks, so it never equals the example;
    only its source says whose answer it holds.
    """
    return Example({**values, SOURCE: example_id(example)})


class Prediction(Example):
    """The output fields of a module call."""


@dataclass
class Call:
    """One LM call made by one predictor while running a program on one example."""

    predictor: Predict
    inputs: dict[str, Any]
    messages: list[dict[str, str]]
    completion: Completion
    outputs: dict[str, str] | None  # None when the completion did not parse
    parse_error: str | None
    module: str = ""  # the predictor's name in the program, set by evaluation


_current_trace: ContextVar[list[Call] | None] = ContextVar("bt_trace", default=None)
_default_lm: list[LM] = []


def configure(lm: LM) -> None:
    """Set the LM used by predictors that are not bound to one."""
    _default_lm[:] = [lm]


@contextmanager
def capture_trace() -> Iterator[list[Call]]:
    """Collect every predictor call made in this thread inside the block."""
    calls: list[Call] = []
    token = _current_trace.set(calls)
    try:
        yield calls
    finally:
        _current_trace.reset(token)


class Module:
    """Base class of programs: subclass it, assign predictors as attributes, write forward()."""

    def forward(self, **inputs: Any) -> Prediction:
        raise NotImplementedError

    def __call__(self, **inputs: Any) -> Prediction:
        return self.forward(**inputs)

    def named_predictors(self) -> list[tuple[str, Predict]]:
        found: list[tuple[str, Predict]] = []
        for attr, value in vars(self).items():
            items = enumerate(value) if isinstance(value, (list, tuple)) else [(None, value)]
            for index, item in items:
                name = attr if index is None else f"{attr}[{index}]"
                if isinstance(item, Predict):
                    found.append((name, item))
                elif isinstance(item, Module):
                    found.extend((f"{name}.{sub}", p) for sub, p in item.named_predictors())
        return found

    def predictors(self) -> list[Predict]:
        return [p for _, p in self.named_predictors()]

    def set_lm(self, lm: LM | None) -> None:
        for p in self.predictors():
            p.lm = lm

    def bound_lm(self) -> LM | None:
        """The LM all predictors share, or None when they differ or none is bound."""
        lms = {id(p.lm): p.lm for p in self.predictors()}
        return next(iter(lms.values())) if len(lms) == 1 else None

    def deepcopy(self) -> Module:
        """Copy prompts and demos; share LMs (they hold model weights)."""
        memo = {id(p.lm): p.lm for p in self.predictors() if p.lm is not None}
        return copy.deepcopy(self, memo)

    def reset_copy(self) -> Module:
        new = self.deepcopy()
        for p in new.predictors():
            p.demos = []
        return new

    def dump_state(self) -> dict[str, dict]:
        return {name: p.state() for name, p in self.named_predictors()}

    def load_state(self, state: dict[str, dict]) -> Module:
        for name, p in self.named_predictors():
            if name not in state:
                raise KeyError(f"program state has no module {name!r}; it has {sorted(state)}")
            p.set_state(state[name])
        return self

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.dump_state(), indent=2))

    def load(self, path: str | Path) -> Module:
        return self.load_state(json.loads(Path(path).read_text()))


class Predict(Module):
    """One LM call: render the signature, demos and inputs; parse the completion."""

    def __init__(self, signature: Signature | str, instructions: str = "",
                 max_new_tokens: int = 256) -> None:
        sig = Signature.parse(signature) if isinstance(signature, str) else signature
        self.signature = sig.with_instructions(instructions) if instructions else sig
        self.demos: list[Example] = []
        self.lm: LM | None = None
        self.max_new_tokens = max_new_tokens

    def named_predictors(self) -> list[tuple[str, Predict]]:
        return [("self", self)]

    def state(self) -> dict:
        return {"signature": self.signature.to_dict(), "demos": [dict(d) for d in self.demos]}

    def set_state(self, state: dict) -> None:
        self.signature = Signature.from_dict(state["signature"])
        self.demos = [Example(d) for d in state["demos"]]

    def forward(self, **inputs: Any) -> Prediction:
        lm = self.lm or (_default_lm[0] if _default_lm else None)
        if lm is None:
            raise RuntimeError("no LM: bind one with program.set_lm(lm) or bt_core.modules.configure(lm)")
        missing = [n for n in self.signature.input_names if n not in inputs]
        if missing:
            raise ValueError(f"missing inputs {missing} for signature {self.signature.input_names}")
        messages = adapter.render(self.signature, self.demos, inputs)
        params = adapter.sampling_params(self.signature, self.max_new_tokens)
        completion = lm.chat(messages, params)
        outputs, error = _parse(self.signature, completion.text)
        if outputs is None:  # ask once more for the missing field, as DSPy's template adapter did
            turn = adapter.continue_turn(self.signature, completion.text)
            more = lm.chat([*messages, {"role": "assistant", "content": turn}], params)
            completion = joined(completion, turn, more)
            outputs, error = _parse(self.signature, completion.text)
        trace = _current_trace.get()
        if trace is not None:
            trace.append(Call(self, dict(inputs), messages, completion, outputs, error))
        if outputs is None:
            raise ParseError(error or "unparsable completion")
        return Prediction(outputs)


def _parse(signature: Signature, text: str) -> tuple[dict[str, str] | None, str | None]:
    try:
        return adapter.parse(signature, text), None
    except ParseError as exc:
        return None, str(exc)


REASONING = Field("reasoning", "think step by step, briefly")


class ChainOfThought(Predict):
    """Predict with a reasoning field written before the outputs."""

    def __init__(self, signature: Signature | str, instructions: str = "",
                 max_new_tokens: int = 256) -> None:
        super().__init__(signature, instructions, max_new_tokens)
        if "reasoning" not in self.signature.output_names:
            self.signature = self.signature.prepend_output(REASONING)
