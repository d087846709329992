"""What a foreground `run` shows while it works: the step, what it is doing, and an ETA.

On a terminal a tqdm bar redraws in place. In a log (stderr not a terminal) it writes plain
lines, one when a step starts and otherwise at most one every `interval_s` seconds, so the log
stays readable. An ETA is that of the current counted work (a split's examples, a step's
candidates), from its rate since that work started.
"""

from __future__ import annotations

import time
from typing import Callable, TextIO

from tqdm import tqdm

from bt_core.recording import Count


class ProgressView:
    """A ProgressListener (bt_core.recording.watching) for the terminal or a log."""

    def __init__(self, stream: TextIO, interval_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.interval_s, self.clock = stream, interval_s, clock
        self.terminal = stream.isatty()
        self._step: str | None = None
        self._headline = ""  # the step's current outer work (a candidate), kept beside an evaluation
        self._started: dict[str, tuple[float, int, int, int]] = {}  # what -> (time, done, total, last done)
        self._last_line = float("-inf")
        self._bar: tqdm | None = None

    def __call__(self, step: str, message: str, count: Count | None) -> None:
        now = self.clock()
        new_step = step != self._step
        if new_step:
            self._step, self._headline, self._started = step, "", {}
        eta = self._eta(count, now) if count else None
        inner = count is not None and count.what == "examples"
        if not inner:
            self._headline = message + (f", ETA {eta}" if eta else "")
        if self.terminal:
            self._draw(step, count, new_step)
            return
        detail = f"{message}, ETA {eta}" if inner and eta else message if inner else ""
        if new_step or now - self._last_line >= self.interval_s:
            self._last_line = now
            text = " | ".join(part for part in (self._headline, detail) if part)
            print(f"[{step}] {text}", file=self.stream, flush=True)

    def _eta(self, count: Count, now: float) -> str | None:
        """Time left at the rate since this work started; restarts when a new piece of it begins."""
        start = self._started.get(count.what)
        if start is None or count.done == 0 or count.total != start[2] or count.done < start[3]:
            start = (now, count.done, count.total, count.done)
        self._started[count.what] = start[:3] + (count.done,)
        if count.done <= start[1]:
            return None
        left = (now - start[0]) / (count.done - start[1]) * (count.total - count.done)
        return time.strftime("%H:%M:%S" if left >= 3600 else "%M:%S", time.gmtime(left))

    def _draw(self, step: str, count: Count | None, new_step: bool) -> None:
        """One bar: the step and its headline, and the examples counted with tqdm's own ETA."""
        if new_step:
            self.close()
            tqdm.write(f"step {step}", file=self.stream)
        if count is not None and count.what == "examples":
            if self._bar is None or self._bar.total != count.total or count.done < self._bar.n:
                self.close()
                self._bar = tqdm(total=count.total, unit=" examples", file=self.stream, leave=False,
                                 dynamic_ncols=True)
            self._bar.update(count.done - self._bar.n)
        elif self._bar is None:
            self._bar = tqdm(total=None, bar_format="{desc}", file=self.stream, leave=False, dynamic_ncols=True)
        self._bar.set_description_str(f"{step}: {self._headline}"[:60], refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
