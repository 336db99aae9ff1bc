"""Reuse of large result buffers, so that a repeated call does not pay for fresh memory.

Fresh memory is expensive: the operating system zero-fills every page of it on first touch,
which costs 1.3 to 2.3 ms per 32 MiB on the 2-core test machine, as much as a whole group-norm
forward pass. glibc's `malloc` gives large blocks back to the system when they are freed: every
block of 32 MiB or more (it is its own `mmap`), and smaller ones whenever the free space at
the top of the heap passes the trim threshold, as happens when a forward and a backward pass
free their 8 MiB results together (0.8 ms into preallocated outputs, 2.5 ms allocating).

So the results numba_gn allocates (`y`, `dx` and contiguous copies of inputs) of
`MIN_BYTES` or more come from a small cache of buffers. A buffer is handed out again only
once no array uses it any more: each array's memory is owned by a `bytearray` that every view
of the array references (directly or through the array it was made from), so CPython's reference
count of the `bytearray` says exactly whether any array, view or `memoryview` still uses it.
Idle buffers are kept up to `limit` bytes in total; `release` drops them, and
`set_limit(0)` turns the cache off.

Observable differences from `np.empty`: such an array's `.base` is not None, and up to
`limit` bytes stay allocated after the arrays are gone.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

__all__ = ["IDLE_SECONDS", "MIN_BYTES", "empty", "limit", "release", "set_limit", "stats"]

#: Arrays smaller than this are plain `np.empty` (cheap next to the work on them).
MIN_BYTES = 512 << 10
#: Idle buffers unused for this many seconds are dropped at the next call.
IDLE_SECONDS = 60.0

_lock = threading.Lock()
_limit = 512 << 20
# Cached buffers: [bytearray, refcount when idle, last time handed out]
_entries: list[list] = []
_oldest = 0.0  # no later than the earliest "last handed out" time of any entry


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def limit() -> int:
    """Most bytes of buffers the cache holds (0: no caching)."""
    return _limit


def set_limit(max_bytes: int) -> None:
    """Hold at most `max_bytes` of buffers (0 turns reuse off and drops idle buffers)."""
    global _limit
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise ValueError(f"`max_bytes` must be an int >= 0, got {max_bytes!r}.")
    with _lock:
        _limit = max_bytes
        _trim(0)


def release() -> int:
    """Drop every idle buffer now; returns the bytes dropped (buffers in use are kept)."""
    with _lock:
        before = _held()
        _trim(0, drop_all_idle=True)
        return before - _held()


def stats() -> dict[str, int]:
    """`{"buffers", "bytes", "in_use"}` of the cache right now."""
    with _lock:
        busy = sum(1 for i in range(len(_entries)) if not _idle(i))
        return {"buffers": len(_entries), "bytes": _held(), "in_use": busy}


def empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array, from the cache when it is at least `MIN_BYTES`."""
    dtype = np.dtype(dtype)
    count = 1
    for s in shape:
        count *= s
    nbytes = count * dtype.itemsize
    if nbytes < MIN_BYTES or _limit == 0 or dtype.hasobject:  # no objects in raw bytes
        return np.empty(shape, dtype=dtype)
    buf = _take(nbytes)
    if buf is None:
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)


def _held() -> int:
    return sum(len(e[0]) for e in _entries)


def _idle(i: int) -> bool:
    # Indexing the list (not a loop variable) keeps the count of references that the cache
    # itself makes fixed: the list slot and getrefcount's argument.
    return sys.getrefcount(_entries[i][0]) <= _entries[i][1]


def _take(nbytes: int) -> bytearray | None:
    global _oldest
    now = time.monotonic()
    with _lock:
        # Drop buffers idle for longer than IDLE_SECONDS; the sweep sorts and checks every
        # entry, so it only runs when one of them is old enough (a training step takes
        # hundreds). Entries' times only grow, so `_oldest` stays a lower bound of them
        # between the looks at every entry it saves.
        if now - _oldest > IDLE_SECONDS:
            if any(now - e[2] > IDLE_SECONDS for e in _entries):
                _trim(0)
            _oldest = min((e[2] for e in _entries), default=now)
        for i in range(len(_entries)):
            if len(_entries[i][0]) == nbytes and _idle(i):
                _entries[i][2] = now
                return _entries[i][0]
        _trim(nbytes)
        if _held() + nbytes > _limit:
            return None
        _entries.append([bytearray(nbytes), 0, now])
        _entries[-1][1] = sys.getrefcount(_entries[-1][0])
        return _entries[-1][0]


def _trim(room: int, drop_all_idle: bool = False) -> None:
    """Drop idle buffers, stale ones first, until `room` more bytes fit under the limit."""
    now = time.monotonic()
    order = sorted(range(len(_entries)), key=lambda i: _entries[i][2])
    drop = set()
    held = _held()
    for i in order:
        if not _idle(i):
            continue
        stale = now - _entries[i][2] > IDLE_SECONDS
        if drop_all_idle or stale or held + room > _limit:
            drop.add(i)
            held -= len(_entries[i][0])
    _entries[:] = [e for i, e in enumerate(_entries) if i not in drop]
