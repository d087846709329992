"""Handing freed memory back to the system, so a step's resident memory counts what it holds."""

from __future__ import annotations

import ctypes


def return_freed_memory() -> None:
    """glibc keeps large freed blocks (training's activations, released weight packs) in its heaps,
    where they would count in every later step's resident memory; malloc_trim hands them back to
    the system (a no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
