"""The machine's cores, shared by the processes that compute on it.

OpenMP threads that outnumber the cores spin against one another and throughput collapses:
every process that runs a model lets torch take every core unless told otherwise. So a
process takes core slots before it executes a run, one lock file per core under
BT_HOME/cores held with flock (the kernel frees them when the process ends, however it ends),
and runs torch (OpenMP and MKL through it) on as many threads as slots it holds. It asks for
BT_THREADS (`--threads`), or for the machine's cores divided among the workers alive on this
host; when every slot is held it waits, so the runs a host executes at once never ask for
more threads than it has cores. Other hosts have their own BT_HOME and are unaffected.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from typing import IO

from db.session import data_dir


def machine_cores() -> int:
    """The cores this process may run on (a container's or taskset's limit, not the host's)."""
    return len(os.sched_getaffinity(0))


def requested_threads() -> int | None:
    """BT_THREADS, the share a user asked for (what `--threads` sets); None when unset."""
    raw = os.environ.get("BT_THREADS", "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"threads (--threads or BT_THREADS) must be a whole number, at least 1; got {raw!r}")
    return int(raw)


def fair_share(workers_here: int) -> int:
    """Threads a run asks for: BT_THREADS, else the cores split evenly among this host's live
    workers (at least one each; the extra ones wait for a slot), never more than the cores."""
    cores = machine_cores()
    wanted = requested_threads() or cores // max(1, workers_here)
    return max(1, min(wanted, cores))


@dataclass
class CoreShare:
    """Core slots held by this process; release() (or the process's end) frees them."""

    threads: int
    _locks: dict[int, IO[str]] = field(default_factory=dict, repr=False)  # slot -> its held lock file

    def cpus(self) -> list[int]:
        """The CPU ids behind the held slots (slot i is this process's i-th allowed CPU), for
        engines that pin their threads (vLLM on CPU); empty for a share without slots."""
        allowed = sorted(os.sched_getaffinity(0))
        return [allowed[slot] for slot in sorted(self._locks)]

    def resize(self, wanted: int) -> bool:
        """Give back the slots beyond `wanted`, or take free ones up to it without waiting;
        True when the share changed. A share without slots (taken from a suspended holder) only shrinks."""
        before = self.threads
        while len(self._locks) > wanted:
            self._locks.pop(max(self._locks)).close()
        if self._locks and len(self._locks) < wanted and (more := take_cores(wanted - len(self._locks))):
            self._locks.update(more._locks)
        self.threads = len(self._locks) if self._locks else min(self.threads, wanted)
        return self.threads != before

    def release(self) -> None:
        for lock in self._locks.values():
            lock.close()  # closing the file drops its flock
        self._locks.clear()


def take_cores(wanted: int) -> CoreShare | None:
    """Up to `wanted` free core slots of this host, without waiting; None when all are held."""
    folder = data_dir() / "cores"
    folder.mkdir(parents=True, exist_ok=True)
    held: dict[int, IO[str]] = {}
    for slot in range(machine_cores()):
        if len(held) == wanted:
            break
        lock = open(folder / f"core-{slot}.lock", "a")  # held until release()
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        held[slot] = lock
    return CoreShare(len(held), held) if held else None


def use_threads(share: CoreShare) -> None:
    """Run this process's torch (and the OpenMP and MKL pools it drives) on the share's threads,
    and let an engine that pins threads know its CPUs."""
    from bt_core.lm.threads import set_threads

    set_threads(share.threads, share.cpus())
