"""Limit BLAS's own threads while small models train.

The matrices of small models are small (the demo's largest product is 1024x144 by 144x32), and
OpenBLAS's threads cost more than they save on them: measured on this 2-core machine, one
training step of the demo took 1.63 ms with single-threaded BLAS and 1.76-2.04 ms with two
threads when the machine was quiet, and 2.2 ms against 17-47 ms when other processes loaded it
(BLAS threads spin-wait for each other when a core is taken away). So `fit`, `evaluate` and
`predict` run with BLAS limited to one thread; Numba's kernels keep their threads.

The limit is process-wide while it lasts (BLAS has one thread setting): BLAS calls made by
other Python threads during `fit` are single-threaded too. Set `model.blas_threads = None`
to leave BLAS alone. The limit uses `threadpoolctl` when it is installed (it comes with
scikit-learn, so with the `demo` extra); without it BLAS is left as configured
(`OPENBLAS_NUM_THREADS` still works).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["blas_threads"]

_controller: Any = None
_lock = threading.Lock()
_depth = threading.local()


def _get_controller() -> Any:
    """Threadpoolctl's controller (found once: scanning the loaded libraries takes ~ms), or None."""
    global _controller
    with _lock:
        if _controller is None:
            try:
                from threadpoolctl import ThreadpoolController
            except ImportError:
                _controller = False
            else:
                _controller = ThreadpoolController()
        return _controller or None


@contextlib.contextmanager
def blas_threads(limit: int | None = 1) -> Iterator[None]:
    """Context in which BLAS uses at most `limit` threads (None: no change).

    Nested uses keep the outermost limit; without threadpoolctl this does nothing.
    """
    if limit is None or getattr(_depth, "n", 0):
        yield
        return
    controller = _get_controller()
    if controller is None:
        yield
        return
    _depth.n = 1
    try:
        with controller.limit(limits=int(limit), user_api="blas"):
            yield
    finally:
        _depth.n = 0
