"""What a run's steps cost, measured where they run: the process's peak memory per step, the
model's parameter count, and the matrix-product rate this process reaches on its core
share, the ceiling a step's FLOP rate (2 x parameters x tokens computed / seconds) is read
against. A ceiling measured in the same process, on the same threads, makes the rate a fraction
of what this machine can do now, not of a datasheet figure.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pandas as pd

MATMUL_SIZE = 1024  # big enough to run at the BLAS's full rate, small enough to measure in a second
BURST = 3  # products timed together: long enough for the clock, short enough for several bursts
_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def matmul_gflops(seconds: float = 0.5, dtype: str = "float32") -> float:
    """GFLOP/s of square matrix products in `dtype` (the model's) on this process's current torch
    threads: the best of short bursts of a plain product and of one from a packed weight, where
    oneDNN packs them (bt_core/lm/packed_linear.py), taken in turns so a busy spell on a shared
    machine lowers some bursts of each rather than the whole of one."""
    import torch

    from bt_core.lm import packed_linear

    a, b = (torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=getattr(torch, dtype)) for _ in range(2))
    products = [lambda: a @ b]
    if packed_linear.supported(b):
        products.append(lambda packed=packed_linear.product(b): packed(a))
    for product in products:
        product()  # warm the threads and buffers
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds or not best:
        for product in products:
            burst = time.perf_counter()
            for _ in range(BURST):
                product()
            best = max(best, 2 * MATMUL_SIZE**3 * BURST / (time.perf_counter() - burst) / 1e9)
    return best


def reset_peak_memory() -> None:
    """Start a new peak: Linux resets a process's high-water mark (VmHWM) on writing 5 to clear_refs."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:  # not Linux, or not allowed: the peak then counts from the process's start
        pass


def peak_memory_mb() -> float:
    """The process's peak resident memory since the last reset (since its start where none is possible)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def profile_table(profile: pd.DataFrame) -> pd.DataFrame:
    """db.queries.step_profile as the table that `show --profile` prints and the Runs page shows."""
    def count(column: str) -> pd.Series:
        return profile[column].map(lambda n: f"{int(n):,}")

    return pd.DataFrame({
        "step": profile["index"].astype(str) + " " + profile["label"],
        "seconds": profile["seconds"].map(lambda s: "–" if pd.isna(s) else f"{s:.1f}"),
        "LM calls (cached)": count("calls") + " (" + count("cache_hits") + ")",
        "prompt tokens sent": count("prompt_sent"),
        "computed": count("prompt_computed"),
        "completion tokens": count("completion_tokens"),
        "training s": profile["training_s"].map(lambda s: f"{s:.0f}" if s else ""),
        "GFLOP/s (of ceiling)": [
            "–" if pd.isna(rate) else f"{rate:.0f} ({share:.0%})" if not pd.isna(share) else f"{rate:.0f}"
            for rate, share in zip(profile["gflops"], profile["of_ceiling"])],
        "peak memory": profile["peak_rss_mb"].map(lambda mb: "–" if pd.isna(mb) else f"{mb / 1024:.1f} GB"),
    })


def ceiling_note(profile: pd.DataFrame) -> str:
    """What the FLOP rates rest on, in one line."""
    if profile.empty or pd.isna(profile["matmul_gflops"].iat[0]):
        return "no FLOP rate: the run's process recorded no matrix-product ceiling (a run older than the profile)"
    params = profile["model_params"].iat[0]
    model = "a backend that does not report its parameters" if pd.isna(params) else f"{params / 1e6:.1f}M parameters"
    return (f"ceiling {profile['matmul_gflops'].iat[0]:.0f} GFLOP/s: {MATMUL_SIZE}x{MATMUL_SIZE} matrix products "
            "in the model's dtype (the faster of plain and packed) "
            f"in the run's process on its {profile['cpu_threads'].iat[0]} threads; model {model}; FLOP rate = "
            "2 x parameters x tokens computed / seconds not spent training")
