"""``numba-gn info``: what numba_gn runs on (versions, threads, cache)."""

from __future__ import annotations

import argparse
import os
import platform


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``info`` takes no arguments."""


def collect() -> dict[str, str]:
    """The facts ``info`` prints, as strings (also used by ``bench`` to label results)."""
    import llvmlite
    import numba
    import numpy as np
    import scipy

    import numba_gn
    from numba_gn import _threading, warmup

    warmup(parallel=True)  # the threading layer is only known after a parallel launch
    return {
        "numba_gn": numba_gn.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "llvmlite": llvmlite.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu": numba.config.CPU_NAME or _host_cpu(),
        "cpus": str(os.cpu_count()),
        "threads": str(numba.get_num_threads()),
        "threading layer": _threading.threading_layer() or "none (serial only)",
        "forked child": str(_threading.in_forked_child()),
        "cache folder": cache_folder(),
    }


def _host_cpu() -> str:
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_name()


def cache_folder() -> str:
    """Where Numba keeps numba_gn's compiled kernels (or why there is no disk cache)."""
    from numba.core.caching import FunctionCache

    from numba_gn import _jit
    from numba_gn.kernels import slab

    if _jit.cache_disabled is not None:
        return f"none: kernels are compiled in memory ({_jit.cache_disabled})"

    impl = FunctionCache(slab.forward_fused_ser.py_func)._impl
    return impl.locator.get_cache_path()


def run(args: argparse.Namespace) -> int:
    """Print the facts, one per line."""
    facts = collect()
    width = max(map(len, facts))
    for key, value in facts.items():
        print(f"{key:<{width}}  {value}")
    if os.environ.get("NUMBA_CACHE_DIR"):
        print(f"{'':<{width}}  (set by NUMBA_CACHE_DIR)")
    return 0
