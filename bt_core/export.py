"""What an optimized program exports as: one JSON document, the same from the CLI and the UI."""

from __future__ import annotations

from typing import Any, Mapping


def program_document(run: Mapping[str, Any], step: Mapping[str, Any]) -> dict[str, Any]:
    """The program a run's `step` produced, with where it came from and how it scored.

    Load it back with `task.program().load_state(document["modules"])`; its LM is the run's
    model plus the exported PEFT adapter, if the strategy had a w step.
    """
    return {"task": run["task"], "model": run["model"], "strategy": run["strategy"], "step": step["label"],
            "val_score": step["val_score"], "test_score": step["test_score"], "modules": step["program_state"]}
