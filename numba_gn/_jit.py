"""The one place where Numba options are chosen.

Every kernel in `numba_gn.kernels` is decorated with `kernel`, so the options below
hold everywhere:

* a disk cache (`numba_gn._cache`): compiled machine code is kept on disk, so a new process
  loads instead of compiling. It lives in `NUMBA_CACHE_DIR` when set, otherwise in the user's
  cache directory, and is still read when its folder is read-only; without any usable folder
  the kernels are compiled in memory (`cache_disabled` says why).
* `error_model="numpy"`: division by zero gives inf/NaN instead of a Python exception; this is
  also what lets LLVM vectorise divisions.
* no `fastmath` flag at all: nothing assumes the absence of NaN/Inf (`nnan`/`ninf`) or
  reorders sums (`reassoc`), so NaN containment holds, and not even `contract`: whether
  LLVM fused a multiply and an add would depend on the CPU and on each loop's vectorisation.
  The kernels ask for fused multiply-adds explicitly (`numba_gn.kernels._fma`), so every
  path gives the same bits on every CPU.
* `nogil=True`: kernels release the GIL, so Python threads can run them concurrently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba

from numba_gn import _cache

JIT_OPTIONS: dict[str, Any] = {
    "nogil": True,
    "error_model": "numpy",
    "boundscheck": False,
}


#: None while kernels are cached on disk; otherwise why they are compiled in memory only.
cache_disabled: str | None = None


def _njit(f: Callable, **options: Any) -> Any:
    """`numba.njit(**options)(f)` with numba_gn's disk cache (see `numba_gn._cache`)."""
    global cache_disabled
    if _cache.cache_root() is None:
        cache_disabled = _cache.status()["reason"]
    return _cache.install(numba.njit(**options)(f))


def kernel(fn: Callable | None = None, *, parallel: bool = False) -> Any:
    """Compile `fn` with the project's Numba options (`parallel` is the only choice left)."""

    def wrap(f: Callable) -> Any:
        return _njit(f, **JIT_OPTIONS, parallel=parallel)

    return wrap(fn) if fn is not None else wrap


def inline(fn: Callable) -> Any:
    """Compile a small helper that is always inlined into its caller (no call overhead)."""
    return _njit(fn, **JIT_OPTIONS, inline="always")


def subroutine(fn: Callable) -> Any:
    """Compile a helper with a loop of its own once per signature, and call it.

    Numba's `inline="always"` re-types and re-lowers a helper's whole body at every call site,
    and nested helpers multiply that: the slab kernels took three times as long to compile with
    every helper inlined. A helper whose loop runs over a whole piece or channel costs nothing
    to call, and LLVM may still inline it.
    """
    return _njit(fn, **JIT_OPTIONS)
