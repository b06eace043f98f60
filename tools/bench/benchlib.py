"""Timing and the device check shared by the tools/bench benchmarks (each run: `python tools/bench/<name>_bench.py`)."""

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


def alternating_medians(fns: dict[str, Callable[[], object]], rounds: int, calls: int, warmup: int = 1,
                        sync: Callable[[], object] = lambda: None) -> dict[str, list[float]]:
    """Per side, the median wall time of each of `rounds` rounds; within a round the sides alternate call by call
    (`calls` calls each, the starting side rotating every call), so load from other processes hits them alike."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    sync()
    medians: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        times: dict[str, list[float]] = {name: [] for name in names}
        for i in range(calls):
            for name in names[i % len(names):] + names[:i % len(names)]:
                start = time.perf_counter()
                fns[name]()
                sync()
                times[name].append(time.perf_counter() - start)
        for name in names:
            medians[name].append(statistics.median(times[name]))
    return medians


def device_or_exit(parser, device: str, amp: bool | str = False):
    """`--device` (and `--amp`) resolved as the tools resolve them, before any work: a device that is absent or not
    one, or an AMP mode it lacks, is one line and exit 2."""
    from pixforge.core.runtime import autocast_dtype, resolve_device
    from pixforge.export.errors import PixforgeError

    try:
        dev = resolve_device(device)
        autocast_dtype(dev, amp)
    except PixforgeError as err:
        parser.exit(2, f"{parser.prog}: {err}\n")
    return dev
