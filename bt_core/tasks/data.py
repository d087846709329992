"""Task data from local files under BT_DATA_DIR, else the Hugging Face hub, else a clear error.

Tests and the default path never touch the network: the hub is tried only when `datasets`
is installed and neither HF_HUB_OFFLINE nor HF_DATASETS_OFFLINE is set.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path


def load_rows(root: str | None, files: Sequence[str], what: str, hub_id: str,
              from_hub: Callable[[], list[list[dict]]], keys: Sequence[str]) -> list[list[dict]]:
    """Rows of each file under `root` (BT_DATA_DIR), else `from_hub()`, else a ValueError that says what to do."""
    paths = [Path(root).expanduser() / f for f in files] if root else []
    if paths and all(p.is_file() for p in paths):
        return [read_jsonl(p, keys) for p in paths]
    if hub_allowed():
        try:
            return from_hub()
        except Exception as exc:  # no network, gated dataset, changed schema: say so in one line
            raise ValueError(f"{_missing(what, root, files, hub_id)} Loading from the hub failed: {exc}") from None
    raise ValueError(_missing(what, root, files, hub_id))


def hub_allowed() -> bool:
    offline = any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
                  for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    return not offline and importlib.util.find_spec("datasets") is not None


def _missing(what: str, root: str | None, files: Sequence[str], hub_id: str) -> str:
    where = f"BT_DATA_DIR={root!r} lacks {' or '.join(files)}" if root else "BT_DATA_DIR is not set"
    return (f"{what} data not found: {where}. Set BT_DATA_DIR to a folder holding {' and '.join(files)}, "
            f"or `pip install datasets` and allow network access (HF_HUB_OFFLINE and HF_DATASETS_OFFLINE "
            f"unset) to load {hub_id} from the Hugging Face hub.")


def read_jsonl(path: Path, keys: Sequence[str]) -> list[dict]:
    """One JSON object per line, each with `keys`; a bad line is named, not half-loaded."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} line {number} is not valid JSON: {exc.msg}") from None
        missing = [k for k in keys if k not in row]
        if missing:
            raise ValueError(f"{path} line {number} lacks {', '.join(missing)}; each line needs {', '.join(keys)}")
        rows.append(row)
    return rows
