"""Signatures: the typed contract of one module, named input and output fields plus instructions.

A Signature is data, not code, so a program's prompts can be stored, compared and edited
(the p step rewrites demos, and a future optimizer could rewrite instructions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Field:
    name: str  # python identifier, the key in Example / Prediction
    desc: str = ""  # one line shown to the LM next to the field

    @property
    def label(self) -> str:
        """How the field is written in prompts and parsed back: 'petal_length' -> 'Petal Length'."""
        return " ".join(word.capitalize() for word in self.name.split("_"))


@dataclass(frozen=True)
class Signature:
    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...]
    instructions: str = ""

    def __post_init__(self) -> None:
        names = [f.name for f in (*self.inputs, *self.outputs)]
        if not self.outputs:
            raise ValueError("a signature needs at least one output field")
        bad = [n for n in names if not _NAME.match(n)]
        if bad:
            raise ValueError(f"field names must be identifiers, got {bad}")
        if len(set(names)) != len(names):
            raise ValueError(f"field names must be unique, got {names}")

    @classmethod
    def parse(cls, spec: str, instructions: str = "") -> Signature:
        """Build from 'question, context -> reasoning, answer'."""
        if spec.count("->") != 1:
            raise ValueError(f"signature {spec!r} must look like 'a, b -> c'")
        left, right = spec.split("->")
        as_fields = lambda side: tuple(Field(n.strip()) for n in side.split(",") if n.strip())
        return cls(as_fields(left), as_fields(right), instructions)

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [f.name for f in self.outputs]

    def with_instructions(self, instructions: str) -> Signature:
        return replace(self, instructions=instructions)

    def prepend_output(self, new: Field) -> Signature:
        return replace(self, outputs=(new, *self.outputs))

    def to_dict(self) -> dict:
        as_list = lambda fs: [{"name": f.name, "desc": f.desc} for f in fs]
        return {"inputs": as_list(self.inputs), "outputs": as_list(self.outputs),
                "instructions": self.instructions}

    @classmethod
    def from_dict(cls, data: dict) -> Signature:
        as_fields = lambda fs: tuple(Field(**f) for f in fs)
        return cls(as_fields(data["inputs"]), as_fields(data["outputs"]), data.get("instructions", ""))


def describe(fields: tuple[Field, ...]) -> str:
    """One line per field for the system prompt."""
    return "\n".join(f"- {f.label}" + (f": {f.desc}" if f.desc else "") for f in fields)


__all__ = ["Field", "Signature", "describe"]
