"""Coalesce concurrent chat() calls from evaluation threads into batches.

Evaluation runs one thread per example so that programs stay plain Python with their own
control flow; each module call blocks on a future while a single dispatcher thread gathers
whatever calls arrive within a short window (or a full batch) and hands them to the LM's
`serve_calls`, with a way to take the calls that arrive while it serves them (a backend that
decodes continuously admits those between steps).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Callable

from bt_core.lm.base import Completion, Messages, SamplingParams

Item = tuple[Messages, SamplingParams, "Future[Completion]"]
ServeFn = Callable[[list[Item], Callable[[], list[Item]]], None]  # (calls, arrivals since) -> futures set


class CallBatcher:
    def __init__(self, serve: ServeFn, max_batch_size: int, window_s: float = 0.02) -> None:
        self._serve_calls = serve
        self._max = max_batch_size
        self._window_s = window_s
        self._queue: queue.Queue[Item] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="lm-batcher", daemon=True)
        self._thread.start()

    def submit(self, messages: Messages, params: SamplingParams) -> Completion:
        future: Future[Completion] = Future()
        self._queue.put((messages, params, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            pending = [self._queue.get()]
            try:
                while len(pending) < self._max:
                    pending.append(self._queue.get(timeout=self._window_s))
            except queue.Empty:
                pass
            taken = list(pending)
            try:
                self._serve_calls(pending, lambda: self._arrivals(taken))
            except BaseException as exc:  # the callers re-raise it in their own threads
                for _, _, future in taken:
                    if not future.done():
                        future.set_exception(exc)

    def _arrivals(self, taken: list[Item]) -> list[Item]:
        """The calls queued since, without waiting; recorded in `taken` so an error reaches them too."""
        arrived = []
        while True:
            try:
                arrived.append(self._queue.get_nowait())
            except queue.Empty:
                taken.extend(arrived)
                return arrived
