"""When a parallel kernel may be launched, and how launches are made safe.

Numba's threading layers differ (see `docs/threads.md`):

* `workqueue` aborts the whole process when two Python threads launch parallel kernels at the
  same time, so launches are serialised with a lock when it is the active layer;
* GNU OpenMP (`omp`) kills a forked child that launches a parallel region after the parent
  did, so a forked child only ever uses the serial kernels;
* `tbb` is safe for both, and it does not spin while waiting, so a parallel call slows down
  gracefully when another process keeps a core busy.

`pip install tbb` puts `libtbb.so.12` in the environment's `lib` folder, which the dynamic
loader does not search inside a virtual environment, so Numba cannot load its tbb layer there.
When Numba may choose tbb and the library sits in the environment, `load_pip_tbb` loads
it first (by full path), so the layer the user installed is the one used. The user's
threading-layer and thread-count settings, and environment variables, are never changed.

Work that alternates Numba kernels with calls Numba cannot make (BLAS products between the
Winograd transforms) is parallel at a coarser grain instead: `map_in_threads` spreads its
chunks over Python threads that each run the serial kernels.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import site
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numba

from numba_gn import _knobs

_T = TypeVar("_T")
_launch_lock = threading.RLock()
_layer: str | None = None  # resolved after the first parallel launch
_forked = False


def _mark_forked() -> None:
    global _forked
    _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)


#: Numba threading-layer settings under which it may pick tbb (the others name another layer).
_TBB_ELIGIBLE = ("default", "safe", "threadsafe", "forksafe", "tbb")
_TBB_NAMES = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib"}
#: The libtbb loaded by `load_pip_tbb`, if any (shown by `numba-gn info`).
pip_tbb: str | None = None


def load_pip_tbb() -> str | None:
    """Load a pip-installed `libtbb` from this environment so Numba's tbb layer can start.

    Returns the library's path, or None when nothing was loaded: Numba's setting names another
    layer, a parallel launch already happened, there is no such file in this environment (or
    the user's site), or the platform keeps its libraries elsewhere (Windows finds them).
    """
    global pip_tbb
    name = _TBB_NAMES.get(sys.platform)
    layer = str(numba.config.THREADING_LAYER).lower()
    if name is None or layer not in _TBB_ELIGIBLE or pip_tbb is not None:
        return pip_tbb
    candidates = [os.path.join(sys.prefix, "lib", name)]
    user_base = getattr(site, "USER_BASE", None)
    if user_base:
        candidates.append(os.path.join(user_base, "lib", name))
    for path in candidates:
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:  # a broken or foreign library: leave it to Numba's own search
                continue
            pip_tbb = path
            break
    return pip_tbb


def in_forked_child() -> bool:
    """True in a process made by `fork()` from a process that imported numba_gn."""
    return _forked


def use_parallel(size: int, min_elements: int | None = None) -> bool:
    """Whether an input of `size` elements should use the parallel kernels.

    Not below `min_elements` (default `_knobs.PARALLEL_MIN_ELEMENTS`), and never inside
    `map_in_threads`: its threads already keep the cores busy.
    """
    if min_elements is None:
        min_elements = _knobs.PARALLEL_MIN_ELEMENTS
    if size < min_elements or _forked or getattr(_mapping, "active", False):
        return False
    return numba.get_num_threads() > 1


def threading_layer() -> str | None:
    """The Numba threading layer in use, or None before the first parallel launch."""
    return _layer


@contextlib.contextmanager
def parallel_launch(chunk: int = 0) -> Iterator[None]:
    """Context for launching parallel kernels: serialised unless the layer is thread-safe.

    With `chunk > 0` loop iterations are handed out `chunk` at a time instead of split
    evenly up front (Numba's default, `chunk=0`): when another process takes a core, the
    thread left on it finishes fewer iterations instead of holding up the whole call. Kernels
    whose later passes rely on each thread finding its own earlier iterations in cache keep
    the even split. The caller's own chunk-size setting is restored afterwards.
    """
    global _layer
    previous = numba.set_parallel_chunksize(chunk)
    try:
        if _layer in ("omp", "tbb"):
            yield
            return
        # Unknown (first launch) or workqueue: one launch at a time.
        with _launch_lock:
            yield
            if _layer is None:
                try:
                    _layer = numba.threading_layer()
                except ValueError:  # no parallel region ran yet
                    pass
    finally:
        numba.set_parallel_chunksize(previous)


def dynamic_chunk(iterations: int) -> int:
    """Iterations per dynamically scheduled chunk: `PARALLEL_CHUNKS_PER_THREAD` per thread."""
    per_thread = _knobs.PARALLEL_CHUNKS_PER_THREAD * numba.get_num_threads()
    return max(1, iterations // per_thread)


def launch(serial: Any, parallel: Any, size: int, *args: Any, chunk: int = 0) -> None:
    """Run a kernel's parallel twin, inside `parallel_launch(chunk)`, or its serial twin.

    The parallel one when `use_parallel(size)` says so; both take the same arguments.
    """
    if use_parallel(size):
        with parallel_launch(chunk):
            parallel(*args)
    else:
        serial(*args)


# Threads of `map_in_threads`, made on first use and sized by Numba's thread count.
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_mapping = threading.local()  # .active: this thread is running a `map_in_threads` task


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max(1, numba.config.NUMBA_NUM_THREADS - 1), thread_name_prefix="numba_gn"
            )
        return _pool


def map_in_threads(fn: Callable[[int], _T], count: int) -> list[_T]:
    """`[fn(0), ..., fn(count - 1)]`, the calls spread over `numba.get_num_threads()` threads.

    For pipelines of serial kernels and single-threaded BLAS calls (a chunk of samples per
    call): every thread, the caller's included, takes the next index as soon as it is free,
    so a thread that loses its core to another process simply does fewer calls, and waiting
    threads sleep instead of spinning. numba_gn kernels launched by `fn` run their serial
    twins (`use_parallel` is False), so the cores are never asked for twice. The results
    come back in index order whichever thread computed them, so a caller that combines them
    in that order gets the same bits with any number of threads. Runs in the calling thread
    alone when there is one thread, one call, a forked child, or a `map_in_threads` around it.
    The first exception raised by `fn` is raised here, after every started call has ended.
    """
    threads = min(count, numba.get_num_threads())
    if threads <= 1 or _forked or getattr(_mapping, "active", False):
        saved = getattr(_mapping, "active", False)
        _mapping.active = True
        try:
            return [fn(i) for i in range(count)]
        finally:
            _mapping.active = saved
    results: list[Any] = [None] * count
    state = {"next": 0, "failed": False}
    lock = threading.Lock()

    def take() -> int | None:
        with lock:
            i = state["next"]
            if i >= count or state["failed"]:
                return None
            state["next"] = i + 1
            return i

    def work() -> None:
        _mapping.active = True
        try:
            while (i := take()) is not None:
                results[i] = fn(i)
        except BaseException:
            state["failed"] = True  # the other threads stop after their current call
            raise
        finally:
            _mapping.active = False

    pool = _get_pool()
    helpers = []
    for _ in range(threads - 1):
        try:
            helpers.append(pool.submit(work))
        except RuntimeError:  # the interpreter is shutting down: the caller does the rest
            break
    try:
        work()
    finally:
        for helper in helpers:
            # A helper still queued (the pool busy with another caller's work) is not needed
            # any more; one that started must end before the caller's arrays are used.
            if not helper.cancel():
                helper.exception()
    for helper in helpers:
        if not helper.cancelled():
            helper.result()
    return results


load_pip_tbb()
