"""What a run exports as: one JSON document, the same program in DSPy's saved-state format, and its
PEFT adapter; the same from the CLI and the UI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from bt_core.modules import REASONING, SOURCE
from bt_core.signatures import Signature
from db.session import artifacts_root

# The DSPy release whose `Module.save(path.json)` layout `dspy_state` writes and the round-trip test loads.
# DSPy compares it with its own version on load and only warns on a mismatch.
DSPY_FORMAT = {"python": "3.11", "dspy": "3.4.1", "cloudpickle": "3.1"}


def artifacts_dir(run_id: int) -> Path:
    """The one folder a run's attempts write their adapters under (torch-free, so the dashboard can check it)."""
    return artifacts_root() / f"run-{run_id}"


def adapter_folder(run_id: int, stored: str | None) -> Path | None:
    """The adapter folder a run's row names, resolved; None when the run has no adapter.

    The path is read from the database, which is not proof that the run wrote it: whoever can
    edit a row could otherwise have the export or the dashboard's download hand out any folder.
    Only a folder inside the run's own artifacts folder, symlinks resolved, is served.
    """
    if not stored:
        return None
    folder, own = Path(stored).resolve(), artifacts_dir(run_id).resolve()
    if not folder.is_relative_to(own):
        shown = stored if str(folder) == stored else f"{stored} (resolved: {folder})"
        raise ValueError(f"run {run_id}'s adapter path {shown} is outside its artifacts folder {own}; "
                         "refusing to export it")
    return folder


def adapter_files(folder: Path) -> list[Path]:
    """The regular files under an adapter folder; symlinks (which could point anywhere) are left out."""
    return sorted(Path(parent) / name for parent, _, names in os.walk(folder) for name in names
                  if (Path(parent) / name).is_file() and not (Path(parent) / name).is_symlink())


def program_document(run: Mapping[str, Any], step: Mapping[str, Any]) -> dict[str, Any]:
    """The program a run's `step` produced, with where it came from and how it scored.

    Load it back with `task.program().load_state(document["modules"])`; its LM is the run's
    model plus the exported PEFT adapter, if the strategy had a w step. `backend` is the one it
    ran on (config.shown_backend): bf16 vLLM and fp32 transformers score a program differently.
    """
    return {"task": run["task"], "model": run["model"], "backend": run["backend"], "strategy": run["strategy"],
            "step": step["label"],
            "val_score": step["val_score"], "test_score": step["test_score"], "modules": step["program_state"]}


def dspy_state(program_state: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A stored program state as DSPy 3.x's saved state, for `dspy_program.load("program.dspy.json")`.

    A predictor whose outputs start with `reasoning` renders exactly as ChainOfThought does here, so
    it becomes a `dspy.ChainOfThought`, whose one parameter DSPy names `<name>.predict`; any other
    becomes a `dspy.Predict` of the same name. Fields keep their order (inputs, then outputs), with
    their labels as DSPy prefixes. A demo that holds every field, reasoning included, is one the p
    step bootstrapped, which DSPy marks `augmented`; labeled demos are plain examples. Demos lose
    only our `_source` key. The LM stays unset: the weights that w trained are the PEFT adapter.
    """
    state: dict[str, Any] = {}
    for name, predictor in program_state.items():
        signature = Signature.from_dict(predictor["signature"])
        fields = (*signature.inputs, *signature.outputs)
        names = [f.name for f in fields]
        chain_of_thought = signature.output_names[0] == REASONING.name
        demos = [{**{k: v for k, v in demo.items() if k != SOURCE},
                  **({"augmented": True} if all(demo.get(n) not in (None, "") for n in names) else {})}
                 for demo in predictor["demos"]]
        state[f"{name}.predict" if chain_of_thought else name] = {
            "traces": [], "train": [], "demos": demos, "lm": None,
            "signature": {"instructions": signature.instructions,
                          "fields": [{"prefix": f"{f.label}:", "description": f.desc} for f in fields]}}
    return {**state, "metadata": {"dependency_versions": DSPY_FORMAT}}
