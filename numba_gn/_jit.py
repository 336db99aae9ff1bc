"""The one place where Numba options are chosen.

Every kernel in :mod:`numba_gn.kernels` is decorated with :func:`kernel`, so the options below
hold everywhere:

* ``cache=True``: compiled machine code is kept on disk, so a new process loads instead of
  compiling (see ``docs/threads.md`` for the cache folder and ``NUMBA_CACHE_DIR``). When Numba
  finds no writable cache folder at all (read-only install, no writable home, no
  ``NUMBA_CACHE_DIR``) it refuses ``cache=True`` with a RuntimeError at decoration time; the
  kernels are then compiled without a disk cache instead (:data:`cache_disabled` says why).
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


#: None while kernels are cached on disk; otherwise Numba's reason for refusing every cache folder.
cache_disabled: str | None = None


def _njit(f: Callable, **options: Any) -> Any:
    """``numba.njit(**options)(f)``, compiled in memory only if no cache folder is writable."""
    global cache_disabled
    if options.get("cache") and cache_disabled is None:
        try:
            return numba.njit(**options)(f)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available ..."
            if "no locator available" not in str(exc):
                raise
            cache_disabled = str(exc)
    return numba.njit(**{**options, "cache": False})(f)


def kernel(fn: Callable | None = None, *, parallel: bool = False) -> Any:
    """Compile ``fn`` with the project's Numba options (``parallel`` is the only choice left)."""

    def wrap(f: Callable) -> Any:
        return _njit(f, **JIT_OPTIONS, parallel=parallel)

    return wrap(fn) if fn is not None else wrap


def inline(fn: Callable) -> Any:
    """Compile a small helper that is always inlined into its caller (no call overhead)."""
    return _njit(fn, **JIT_OPTIONS, inline="always")


def subroutine(fn: Callable) -> Any:
    """Compile a helper with a loop of its own once per signature, and call it.

    Numba's ``inline="always"`` re-types and re-lowers a helper's whole body at every call site,
    and nested helpers multiply that: the slab kernels took three times as long to compile with
    every helper inlined. A helper whose loop runs over a whole piece or channel costs nothing
    to call, and LLVM may still inline it.
    """
    return _njit(fn, **JIT_OPTIONS)
