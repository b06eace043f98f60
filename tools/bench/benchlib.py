"""Timing shared by the benchmarks in tools/bench (each run as `python tools/bench/<name>_bench.py`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], iters: int, warmup: int = 1,
                sync: Callable[[], object] = lambda: None) -> float:
    """Median wall time of `fn()` over `iters` calls after `warmup` calls; `sync` waits for the device."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
