"""`numba_gn.kernels._borrow`: ownerless views read and write the caller's memory."""

from __future__ import annotations

import numba
import numpy as np

from numba_gn import _knobs, _threading
from numba_gn.kernels._borrow import borrowed, keep


@numba.njit
def _scale_rows(a, factor):
    b = borrowed(a)
    for i in range(b.shape[0]):
        row = b[i]  # a view of a view: no owner, no reference count
        for j in range(row.size):
            row[j] *= factor
    return b.sum()


@numba.njit
def _tuple_members(a, c, scalar):
    ab, none, s, cb = borrowed((a, None, scalar, c))
    cb[0] = ab[0] + s
    return none is None


@numba.njit
def _scratch_sum(n):
    owner = np.arange(n, dtype=np.float64)
    view = borrowed(owner)
    total = 0.0
    for i in range(view.size):
        total += view[i]
    keep(owner)
    return total


def test_borrowed_array_reads_and_writes_the_callers_memory():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    expected = np.arange(12, dtype=np.float32).reshape(3, 4) * 2
    total = _scale_rows(a, np.float32(2))
    np.testing.assert_array_equal(a, expected)
    assert total == expected.sum()


def test_borrowed_tuple_keeps_other_members():
    a = np.array([1.5, 2.0])
    c = np.zeros(3)
    assert _tuple_members(a, c, 0.25)
    assert c[0] == 1.75 and c[1] == 0.0


def test_kept_scratch_stays_valid_until_its_last_use():
    assert _scratch_sum(1000) == 999 * 1000 / 2


def test_dynamic_chunk_gives_every_thread_several_chunks():
    threads = numba.get_num_threads()
    per_thread = _knobs.PARALLEL_CHUNKS_PER_THREAD
    assert _threading.dynamic_chunk(1) == 1
    assert _threading.dynamic_chunk(per_thread * threads - 1) == 1
    chunk = _threading.dynamic_chunk(1000 * per_thread * threads)
    assert chunk == 1000
    # Never fewer than PARALLEL_CHUNKS_PER_THREAD chunks per thread (one iteration each at least).
    for iterations in (5, 64, 128, 2048, 100_000):
        chunk = _threading.dynamic_chunk(iterations)
        assert chunk >= 1
        assert -(-iterations // chunk) >= min(iterations, per_thread * threads)
