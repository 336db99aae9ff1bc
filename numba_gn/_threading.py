"""When a parallel kernel may be launched, and how launches are made safe.

Numba's threading layers differ (see ``docs/threads.md``):

* ``workqueue`` aborts the whole process when two Python threads launch parallel kernels at the
  same time, so launches are serialised with a lock when it is the active layer;
* GNU OpenMP (``omp``) kills a forked child that launches a parallel region after the parent
  did, so a forked child only ever uses the serial kernels;
* ``tbb`` is safe for both.

The user's threading-layer and thread-count settings are never changed.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import numba

from numba_gn import _knobs

_launch_lock = threading.RLock()
_layer: str | None = None  # resolved after the first parallel launch
_forked = False


def _mark_forked() -> None:
    global _forked
    _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)


def in_forked_child() -> bool:
    """True in a process made by ``fork()`` from a process that imported numba_gn."""
    return _forked


def use_parallel(size: int) -> bool:
    """Whether an input of ``size`` elements should use the parallel kernels."""
    if size < _knobs.PARALLEL_MIN_ELEMENTS or _forked:
        return False
    return numba.get_num_threads() > 1


def threading_layer() -> str | None:
    """The Numba threading layer in use, or None before the first parallel launch."""
    return _layer


@contextlib.contextmanager
def parallel_launch() -> Iterator[None]:
    """Context for launching parallel kernels: serialised unless the layer is thread-safe."""
    global _layer
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
