"""What a run exports as: one JSON document and its PEFT adapter, the same from the CLI and the UI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from db.session import artifacts_root


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
