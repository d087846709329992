"""Coalesce concurrent chat() calls from evaluation threads into one batched generate().

Evaluation runs one thread per example so that programs stay plain Python with their own
control flow; each module call blocks on a future while a single dispatcher thread gathers
whatever calls arrive within a short window (or a full batch) and generates them together.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Callable

from bt_core.lm.base import Completion, Messages, SamplingParams

GenerateFn = Callable[[list[Messages], SamplingParams], list[Completion]]


class CallBatcher:
    def __init__(self, generate: GenerateFn, max_batch_size: int, window_s: float = 0.02) -> None:
        self._generate = generate
        self._max = max_batch_size
        self._window_s = window_s
        self._queue: queue.Queue[tuple[Messages, SamplingParams, Future]] = queue.Queue()
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
            for params in dict.fromkeys(p for _, p, _ in pending):
                self._run([item for item in pending if item[1] == params], params)

    def _run(self, items: list[tuple[Messages, SamplingParams, Future]], params: SamplingParams) -> None:
        try:
            results = self._generate([m for m, _, _ in items], params)
        except BaseException as exc:  # the callers re-raise it in their own threads
            for _, _, future in items:
                future.set_exception(exc)
            return
        for (_, _, future), result in zip(items, results):
            future.set_result(result)
