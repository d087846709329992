"""End vLLM's engine processes when the process that started the engine is gone.

vLLM leaves stopping its engine core to the process that owns it, so a SIGKILLed worker
would leave the engine core and its model runner alive, holding the model and the KV cache.
The model runner is the one engine process that runs our code (the field-stop logits
processor), so it starts this watch: once the owner's child in its process chain has lost
its parent, the watch kills that whole chain.
"""

from __future__ import annotations

import os
import threading
import time

import psutil

OWNER_ENV = "BT_VLLM_OWNER"  # pid of the process that built the engine, inherited by its processes


def watch_owner(interval_s: float = 2.0) -> None:
    owner = os.environ.get(OWNER_ENV)
    top = _child_of(int(owner)) if owner else None
    if top is not None:
        threading.Thread(target=_watch, args=(top, int(owner), interval_s), name="bt-owner-watch",
                         daemon=True).start()


def _child_of(owner: int) -> psutil.Process | None:
    """This process or the ancestor whose parent is `owner`."""
    process = psutil.Process()
    while process is not None and process.ppid() != owner:
        process = process.parent()
    return process


def _watch(top: psutil.Process, owner: int, interval_s: float) -> None:
    while top.is_running() and top.ppid() == owner:
        time.sleep(interval_s)
    me = psutil.Process()
    for process in [p for p in [top, *top.children(recursive=True)] if p.pid != me.pid] + [me]:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
