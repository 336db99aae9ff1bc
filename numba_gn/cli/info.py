"""`numba-gn info`: what numba_gn runs on (versions, threads, cache)."""

from __future__ import annotations

import argparse
import os
import platform


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`info` takes no arguments."""


def collect() -> dict[str, str]:
    """The facts `info` prints, as strings (also used by `bench` to label results).

    Nothing is compiled: the threading layer is started (Numba does that on the first call of
    any parallel kernel, in milliseconds) but no kernel runs.
    """
    import llvmlite
    import numba
    import numpy as np
    import scipy

    import numba_gn
    from numba_gn import _threading

    threads = numba.get_num_threads()  # starts the threading layer; compiles nothing
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "none (serial only)"
    return {
        "numba_gn": numba_gn.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu": numba.config.CPU_NAME or _host_cpu(),
        "cpus": _cpus(),
        "threads": str(threads),
        "threading layer": f"{layer} (requested: {numba.config.THREADING_LAYER})"
        + (f"; libtbb loaded from {_threading.pip_tbb}" if _threading.pip_tbb else ""),
        "layers available": ", ".join(_available_layers()) or "none",
        "forked child": str(_threading.in_forked_child()),
        "cache folder": cache_folder(),
        "cached kernels": _cached_kernel_count(),
    }


def _cpus() -> str:
    """Logical CPUs, and those this process may run on when the affinity mask says fewer."""
    total = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return str(total)
    return str(total) if usable == total else f"{total} ({usable} in this process's affinity)"


def _available_layers() -> list[str]:
    """Numba threading layers whose libraries load here (importing the pool module loads them)."""
    import importlib

    found = []
    for name, module in (("tbb", "tbbpool"), ("omp", "omppool"), ("workqueue", "workqueue")):
        try:
            importlib.import_module(f"numba.np.ufunc.{module}")
        except ImportError:
            continue
        found.append(name)
    return found


def _cached_kernel_count() -> str:
    """How many compiled kernels the cache folder holds for this install."""
    from numba_gn import _cache

    root = _cache.cache_root()
    if root is None or not os.path.isdir(root):
        return "0"
    count = 0
    for _dirpath, _dirs, files in os.walk(root):
        count += sum(f.endswith(".nbc") for f in files)
    return str(count)


def _host_cpu() -> str:
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_name()


def cache_folder() -> str:
    """Where numba_gn keeps its compiled kernels (or why there is no disk cache)."""
    from numba_gn import _cache

    status = _cache.status()
    if status["path"] is None:
        return f"none: kernels are compiled in memory ({status['reason']})"
    where = f"{status['path']} ({status['origin']})"
    if not status["writable"]:
        where += "; read-only: cached kernels load, new ones are not saved"
    return where


def run(args: argparse.Namespace) -> int:
    """Print the facts, one per line."""
    facts = collect()
    width = max(map(len, facts))
    for key, value in facts.items():
        print(f"{key:<{width}}  {value}")
    return 0
