"""The torch thread count this process should compute with, applied by the threads that compute.

torch.set_num_threads is per thread once a thread has computed (OpenMP keeps the count in each
thread's own state), so a share that changes mid-run, set from the heartbeat thread, would never
reach the LM's batcher thread or the training loop. The share is stored here instead, and every
generate and training step calls follow_threads() in its own thread before it computes.
"""

from __future__ import annotations

import torch

_wanted: int | None = None  # None: nobody set a share; torch's own default stands
_cpus: list[int] = []  # the CPU ids behind the share, when it has them


def set_threads(threads: int, cpus: list[int] | None = None) -> None:
    """This process's share; the calling thread takes it at once, the others at their next step."""
    global _wanted, _cpus
    _wanted, _cpus = threads, list(cpus or [])
    torch.set_num_threads(threads)


def share() -> tuple[int, list[int]] | None:
    """(threads, CPU ids, possibly none) of this process's share; None when no share was set."""
    return None if _wanted is None else (_wanted, list(_cpus))


def follow_threads() -> None:
    """Compute on the current share in the calling thread."""
    if _wanted is not None and torch.get_num_threads() != _wanted:
        torch.set_num_threads(_wanted)
