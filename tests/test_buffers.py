"""Reuse of large result buffers (``numba_gn.buffers``): never while any array still uses one."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from numba_gn import buffers, group_norm, group_norm_backward

SMALL = 4096  # bytes: lets small test arrays go through the cache


@pytest.fixture
def cache(monkeypatch):
    """A cache of its own (the buffers of other tests stay aside) that takes arrays of SMALL
    bytes and more."""
    monkeypatch.setattr(buffers, "_entries", [])
    monkeypatch.setattr(buffers, "MIN_BYTES", SMALL)
    yield buffers
    gc.collect()
    buffers.release()


def _bytes_of(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_buffer_is_reused_once_the_array_is_gone(cache):
    a = cache.empty((32, 64), np.float32)
    address = _bytes_of(a)
    assert cache.stats() == {"buffers": 1, "bytes": a.nbytes, "in_use": 1}
    del a
    assert cache.stats()["in_use"] == 0
    b = cache.empty((64, 32), np.float32)  # same byte count, other shape
    assert _bytes_of(b) == address and b.shape == (64, 32) and b.flags.c_contiguous
    assert b.flags.writeable and b.flags.aligned


@pytest.mark.parametrize(
    "keep",
    [
        lambda a: a[1:3].T,  # a view
        lambda a: memoryview(a),
        lambda a: a.base,  # the owner itself
        lambda a: a.reshape(-1)[::2],
    ],
)
def test_buffer_is_not_reused_while_anything_refers_to_it(cache, keep):
    a = cache.empty((32, 64), np.float32)
    a[...] = 7.0
    held = keep(a)
    address = _bytes_of(a)
    del a
    b = cache.empty((32, 64), np.float32)
    assert _bytes_of(b) != address
    b[...] = -1.0
    np.testing.assert_array_equal(np.asarray(held), 7.0)


def test_results_stay_intact_while_later_calls_reuse_memory(cache, rng):
    # The user keeps y1 while making further calls of the same size: nothing may alias it.
    x1 = rng.standard_normal((4, 8, 8, 32)).astype(np.float32)
    x2 = rng.standard_normal((4, 8, 8, 32)).astype(np.float32)
    y1 = group_norm(x1, 8)
    want = y1.copy()
    for _ in range(3):
        y2 = group_norm(x2, 8)
        assert not np.shares_memory(y1, y2)
        dx, _, _ = group_norm_backward(x2, x1, *group_norm(x1, 8, return_stats=True)[1:], 8)
        assert not np.shares_memory(y1, dx)
    np.testing.assert_array_equal(y1, want)
    del y2, dx
    assert cache.stats()["buffers"] >= 2


def test_small_arrays_and_a_zero_limit_bypass_the_cache(cache):
    a = cache.empty((8,), np.float32)  # below MIN_BYTES
    assert a.base is None and cache.stats()["buffers"] == 0
    old = cache.limit()
    try:
        cache.set_limit(0)
        b = cache.empty((64, 64), np.float32)
        assert b.base is None and cache.stats()["buffers"] == 0
    finally:
        cache.set_limit(old)


def test_the_limit_bounds_what_is_held(cache):
    old = cache.limit()
    try:
        cache.set_limit(3 * SMALL)
        held = [cache.empty((SMALL // 4,), np.float32) for _ in range(5)]
        assert cache.stats()["bytes"] <= 3 * SMALL
        assert sum(a.base is None for a in held) == 2  # the two beyond the limit: plain arrays
        del held
        # A new size evicts idle buffers of another size to stay under the limit.
        c = cache.empty((3 * SMALL // 4,), np.float32)
        assert c.base is not None and cache.stats()["bytes"] == 3 * SMALL
    finally:
        cache.set_limit(old)


def test_release_drops_idle_buffers_only(cache):
    a = cache.empty((SMALL // 4,), np.float32)
    b = cache.empty((SMALL // 4,), np.float32)
    del b
    assert cache.release() == SMALL
    assert cache.stats() == {"buffers": 1, "bytes": SMALL, "in_use": 1}
    del a


def test_stale_buffers_are_dropped(cache, monkeypatch):
    a = cache.empty((SMALL // 4,), np.float32)
    del a
    monkeypatch.setattr(buffers, "IDLE_SECONDS", -1.0)
    b = cache.empty((SMALL // 2,), np.float32)
    assert cache.stats() == {"buffers": 1, "bytes": 2 * SMALL, "in_use": 1}
    del b


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1"])
def test_set_limit_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="max_bytes"):
        buffers.set_limit(bad)


def test_concurrent_callers_get_distinct_buffers(cache):
    got: list[np.ndarray] = []
    lock = threading.Lock()

    def worker():
        for _ in range(50):
            a = cache.empty((SMALL // 4,), np.float32)
            a[...] = threading.get_ident() % 1000
            with lock:
                got.append(a)
            if len(got) > 8:
                with lock:
                    mine = [g for g in got if g[0] == threading.get_ident() % 1000]
                for g in mine:
                    assert np.all(g == g[0])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    addresses = [_bytes_of(a) for a in got]
    assert len(set(addresses)) == len(addresses)  # all alive, so all distinct


def test_object_arrays_never_come_from_raw_bytes(cache):
    a = cache.empty((SMALL,), object)  # large enough for the cache, but objects need np.empty
    assert a.dtype == object and a.base is None and a[0] is None
    assert cache.stats()["buffers"] == 0
