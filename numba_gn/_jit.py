"""The one place where Numba options are chosen.

Every kernel in :mod:`numba_gn.kernels` is decorated with :func:`kernel`, so the options below
hold everywhere:

* ``cache=True``: compiled machine code is kept on disk, so a new process loads instead of
  compiling (see ``docs/threads.md`` for the cache folder and ``NUMBA_CACHE_DIR``).
* ``error_model="numpy"``: division by zero gives inf/NaN instead of a Python exception; this is
  also what lets LLVM vectorise divisions.
* ``fastmath={"contract"}`` only: fused multiply-add is allowed, but nothing that assumes the
  absence of NaN/Inf (``nnan``/``ninf``) or that reorders sums (``reassoc``), so NaN containment
  holds and results are bitwise reproducible.
* ``nogil=True``: kernels release the GIL, so Python threads can run them concurrently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba

JIT_OPTIONS: dict[str, Any] = {
    "cache": True,
    "nogil": True,
    "error_model": "numpy",
    "fastmath": {"contract"},
    "boundscheck": False,
}


def kernel(fn: Callable | None = None, *, parallel: bool = False) -> Any:
    """Compile ``fn`` with the project's Numba options (``parallel`` is the only choice left)."""

    def wrap(f: Callable) -> Any:
        return numba.njit(**JIT_OPTIONS, parallel=parallel)(f)

    return wrap(fn) if fn is not None else wrap


def inline(fn: Callable) -> Any:
    """Compile a small helper that is always inlined into its caller (no call overhead)."""
    return numba.njit(**JIT_OPTIONS, inline="always")(fn)
