"""Small wall-clock timing helpers shared by `numba-gn check` and `numba-gn bench`."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np


def median_seconds(fn: Callable[[], object], *, repeat: int = 15, min_time: float = 0.02) -> float:
    """Median seconds per call of `fn` over `repeat` samples (after one warm-up call).

    Each sample runs `fn` enough times to last about `min_time` so timer resolution and
    call jitter do not dominate tiny inputs.
    """
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    number = max(1, int(min_time / once))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return statistics.median(samples)


def median_of_runs(
    fn: Callable[[], object],
    repeat: int,
    *,
    warm: bool = True,
    after: Callable[[], object] | None = None,
) -> float:
    """Median seconds of one `fn()` per sample over `repeat` samples.

    For calls long enough to time one at a time. One untimed call comes first when `warm`;
    `after()` follows each call, untimed (to release what a call left behind).
    """
    if warm:
        fn()
        if after is not None:
            after()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
        if after is not None:
            after()
    return statistics.median(samples)


def copy_seconds(x: np.ndarray, *, repeat: int = 15) -> float:
    """Median time of `np.copyto(y, x)` into a preallocated array: the bandwidth floor."""
    y = np.empty_like(x)
    return median_seconds(lambda: np.copyto(y, x), repeat=repeat)
