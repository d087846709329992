"""A persistent LM-call cache: re-running an experiment or re-scoring a candidate costs nothing.

Keys hash the model, the adapter's content, the messages and the sampling parameters, so a
retrained adapter at the same path never returns stale completions. SQLite in WAL mode lets
several worker processes share one cache file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path

from bt_core.lm.base import Completion


class LMCache:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        with self._lock:
            rows = self._db.execute(f"SELECT key, value FROM calls WHERE key IN ({marks})", keys).fetchall()
        return {key: Completion(**json.loads(value)) for key, value in rows}

    def put_many(self, entries: dict[str, Completion]) -> None:
        rows = [(k, json.dumps(_stored(c))) for k, c in entries.items()]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO calls (key, value) VALUES (?, ?)", rows)
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def _stored(completion: Completion) -> dict:
    """What a hit needs: a hit computes no prompt token, and entries stay readable by older code."""
    return {k: v for k, v in asdict(completion).items() if k != "computed_prompt_tokens"}
