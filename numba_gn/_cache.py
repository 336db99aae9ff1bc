"""Where compiled kernels are kept on disk, and how a cache in a read-only folder is still used.

Numba's own `cache=True` only uses a folder it can write to: a cache filled when a container
image was built, or by an administrator in a shared install, is ignored once the folder is
read-only, and every process compiles every kernel again. It also writes into the package's
own `__pycache__` folders, which `pip uninstall` does not know about and leaves behind.

numba_gn gives its kernels their own cache, with Numba's file format and Numba's checks (Numba
version, CPU) and a source stamp that covers every file the kernels are compiled from (Numba's
own covers only the file that defines a kernel, not its helpers), in one folder chosen once per
process:

1. `NUMBA_CACHE_DIR` when it is set, with Numba's layout inside it;
2. otherwise `numba_gn` in the user's cache directory (`$XDG_CACHE_HOME` or `~/.cache` on
   Linux, `~/Library/Caches` on macOS, `%LOCALAPPDATA%` on Windows), never the package's
   own folder.

A folder that exists but cannot be written is still *read*: kernels found there are loaded,
and a kernel missing from it is compiled in memory with one `KernelCacheWarning` per
process saying what that costs and how to fill the cache. When no folder can be used at all,
kernels are compiled in memory, with one warning as well.

This module uses Numba's cache classes (`numba.core.caching`), which are not a documented
extension point; the test suite exercises it on the oldest and newest Numba versions allowed.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable
from typing import Any

from numba.core import caching, config

from numba_gn import _knobs

__all__ = ["KernelCacheWarning", "cache_root", "install", "status"]


class KernelCacheWarning(UserWarning):
    """The kernel cache cannot be written (or used at all): kernels compile in every process."""


def _user_cache_dir() -> str:
    """The platform's per-user cache directory (what pip and Numba use as well)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "numba_gn")


def _writable(path: str) -> bool:
    """Whether files can be created in `path` (made if missing), as Numba probes it."""
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


class _Root:
    """The folder chosen for this process (`path` None: no folder could be used)."""

    def __init__(self) -> None:
        if config.CACHE_DIR:
            path, origin = os.path.abspath(config.CACHE_DIR), "NUMBA_CACHE_DIR"
        else:
            path, origin = _user_cache_dir(), "user cache directory"
        self.origin = origin
        self.writable = _writable(path)
        if self.writable or os.path.isdir(path):
            self.path: str | None = path
            self.reason = None if self.writable else f"{path} ({origin}) is read-only"
        else:
            self.path = None
            self.reason = f"{path} ({origin}) does not exist and cannot be created"


_root: _Root | None = None
_root_lock = threading.Lock()
_warned = False


def _the_root() -> _Root:
    global _root
    with _root_lock:
        if _root is None:
            _root = _Root()
        return _root


def cache_root() -> str | None:
    """The folder numba_gn's compiled kernels are loaded from (None: kept in memory only)."""
    return _the_root().path


def status() -> dict[str, Any]:
    """Where the cache is, where that choice came from, and whether new kernels are saved."""
    root = _the_root()
    return {
        "path": root.path,
        "origin": root.origin,
        "writable": root.writable,
        "reason": root.reason,
    }


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(message, KernelCacheWarning, stacklevel=4)


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


@functools.cache
def _source_stamp(py_file: str) -> str:
    """A hash of every source file a kernel's machine code depends on.

    Numba stamps a cached kernel with its own file only, so a kernel whose helpers changed in
    another file (an upgrade, an edited checkout) would load stale machine code. The kernels'
    helpers all live in `numba_gn.kernels`, and their options and switches in `_jit` and
    `_knobs`: all of them go into the stamp.
    """
    files = sorted(glob.glob(os.path.join(_PACKAGE, "kernels", "*.py")))
    files += [os.path.join(_PACKAGE, name) for name in ("_jit.py", "_knobs.py")]
    files.append(os.path.abspath(py_file))
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


class _Locator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """Numba's locator interface, pointing at `cache_root` whether or not it is writable.

    Inside the root, each source folder gets Numba's own sub-folder name (parent folder name and
    a hash of its path), so two installs or checkouts never share files.
    """

    def __init__(self, py_func: Callable, py_file: str, root: _Root) -> None:
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        assert root.path is not None
        subpath = self.get_suitable_cache_subpath(py_file)
        if not _knobs.STREAMING_STORES:  # other machine code for the same source: keep apart
            subpath += "-plain-stores"
        self._cache_path = os.path.join(root.path, subpath)
        self.writable = root.writable

    def get_cache_path(self) -> str:
        return self._cache_path

    def get_source_stamp(self) -> str:
        return _source_stamp(self._py_file)

    def ensure_cache_path(self) -> None:
        if self.writable:
            super().ensure_cache_path()

    @classmethod
    def from_function(cls, py_func: Callable, py_file: str) -> _Locator | None:
        root = _the_root()
        if root.path is None or not os.path.exists(py_file):
            return None
        return cls(py_func, py_file, root)


class _CacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [_Locator]


class KernelCache(caching.FunctionCache):
    """Numba's per-function cache, reading from a read-only folder and writing only when it can."""

    _impl_class = _CacheImpl

    def has_index(self) -> bool:
        """Whether this kernel has an index file in the cache.

        True means it was compiled and saved there for some signature, probably (not
        certainly) the one about to be called.
        """
        return os.path.exists(self._cache_file._index_path)

    def save_overload(self, sig: Any, data: Any) -> None:
        """Save a newly compiled kernel, or warn once that it cannot be saved."""
        locator = self._impl.locator
        if locator.writable:
            super().save_overload(sig, data)
            return
        _warn_once(
            f"numba_gn: the kernel cache {cache_root()} is read-only and had no compiled "
            f"{self._py_func.__name__} for this call, so it was compiled in memory; this costs "
            "seconds per kernel in every new process. Fill the cache once with `numba-gn "
            "warmup` while it is writable (at image build time, for example), or set "
            "NUMBA_CACHE_DIR to a writable folder."
        )


def install(dispatcher: Any) -> Any:
    """Give a `numba.njit` dispatcher (made with `cache=False`) numba_gn's disk cache.

    Returns the dispatcher. Without any usable folder it stays uncached, with one warning.
    """
    if not hasattr(dispatcher, "py_func"):  # NUMBA_DISABLE_JIT: a plain function, no cache
        return dispatcher
    root = _the_root()
    if root.path is None:
        _warn_once(
            f"numba_gn: no folder for the kernel cache ({root.reason}); every new process "
            "compiles each kernel it uses again, which takes seconds per kernel. Set "
            "NUMBA_CACHE_DIR to a writable folder to keep compiled kernels."
        )
        return dispatcher
    dispatcher._cache = KernelCache(dispatcher.py_func)  # what cache=True does, with our class
    return dispatcher
