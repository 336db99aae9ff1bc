"""Compile (or load from the disk cache) every kernel ahead of time."""

from __future__ import annotations

from collections.abc import Iterable

import numba
import numpy as np

from numba_gn import _engine, _threading
from numba_gn.functional import group_norm, group_norm_backward

# (shape, axis, groups) that between them take every kernel path: rows, fused slab, chunked
# slab, each once serial (small) and once parallel (>= PARALLEL_MIN_ELEMENTS elements); the
# rows' whole-samples-per-thread path gets :func:`_samples_case`.
_SERIAL_CASES = (((2, 4, 8), -1, 4), ((2, 8, 4), 1, 4))
_PARALLEL_CASES = (((2, 64, 256), -1, 32), ((8, 64, 64), 1, 32), ((1, 8, 4096), 1, 1))


def _samples_case() -> tuple[tuple[int, ...], int, int]:
    """A row-family case with enough samples for whole samples per thread (depends on threads)."""
    n = _engine.ROW_SAMPLES_MIN_PER_THREAD * numba.get_num_threads()
    c = 2 * max(1, -(-_threading.PARALLEL_MIN_ELEMENTS // (4 * n)))  # two rows of c per sample
    return (n, 2, c), -1, c // 2


def warmup(
    dtypes: Iterable[str | np.dtype] = ("float32", "float64"), parallel: bool = True
) -> None:
    """Run forward and backward once on each kernel path for each dtype.

    First-call latency then moves here (e.g. at application start-up or in a benchmark's setup).
    With a warm on-disk cache this takes well under a second.
    """
    assert _threading.PARALLEL_MIN_ELEMENTS <= min(np.prod(s) for s, _, _ in _PARALLEL_CASES)
    cases = _SERIAL_CASES + ((*_PARALLEL_CASES, _samples_case()) if parallel else ())
    for dtype in dtypes:
        for shape, axis, groups in cases:
            x = np.linspace(-1.0, 1.0, int(np.prod(shape))).reshape(shape).astype(dtype)
            y, mean, rstd = group_norm(x, groups, axis=axis, return_stats=True)
            group_norm_backward(y, x, mean, rstd, groups, axis=axis)
