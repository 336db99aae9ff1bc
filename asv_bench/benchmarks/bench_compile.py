"""Start-up cost in a fresh interpreter: ``import numba_gn`` and the first call.

``timeraw_`` benchmarks return code that asv runs in a new process per sample, so nothing
compiled or loaded by an earlier sample is in memory. "warm" means the on-disk kernel cache is
populated (``setup`` makes sure of it), "cold" points ``NUMBA_CACHE_DIR`` at a fresh temporary
folder, so every kernel the call needs is compiled: that is the compile time a user pays once.
"""

import math
import subprocess
import sys

from . import common
from .common import Benchmark

#: A parallel-path input (2 MiB of float32) in each layout; the first call is on it.
_SHAPES = {"channels-last": ((8, 32, 32, 64), -1), "channels-first": ((8, 64, 32, 32), 1)}

# The cold-cache folder is made (and removed at exit) outside the timed statement.
_COLD_SETUP = """
import atexit, os, shutil, tempfile
_d = tempfile.mkdtemp(prefix="numba_gn_asv_cold_")
atexit.register(shutil.rmtree, _d, True)
os.environ["NUMBA_CACHE_DIR"] = _d
"""


def _first_call(layout, backward, fused=""):
    """A first call; `fused="residual=x, activation='silu'"` makes it the fused one."""
    shape, axis = _SHAPES[layout]
    extra = f", {fused}" if fused else ""
    code = f"""
import numpy as np
import numba_gn
x = np.linspace(-1.0, 1.0, {math.prod(shape)}, dtype=np.float32).reshape({shape})
y, mean, rstd = numba_gn.group_norm(x, 32, axis={axis}, return_stats=True{extra})
"""
    if backward:
        code += f"numba_gn.group_norm_backward(y, x, mean, rstd, 32, axis={axis}{extra})\n"
    return code


class Import(Benchmark):
    """``import numba_gn`` alone (no kernel is loaded until the first call)."""

    def timeraw_import(self):
        return "import numba_gn"


class FirstCall(Benchmark):
    """Import + first forward (and forward + backward) call, kernel cache warm or cold."""

    params = [["warm", "cold"], list(_SHAPES)]
    param_names = ["cache", "layout"]
    # A cold sample compiles for seconds: a few samples in one round are plenty.
    rounds = 1
    repeat = (1, 3, 60.0)
    timeout = 600

    def setup(self, cache, layout):
        if cache == "warm":
            # Populate the disk cache for exactly these calls (no-op when already warm).
            common.once(
                ("populate", layout),
                lambda: subprocess.run(
                    [sys.executable, "-c", _first_call(layout, backward=True)], check=True
                ),
            )

    def _code(self, cache, layout, backward):
        code = _first_call(layout, backward)
        return (code, _COLD_SETUP) if cache == "cold" else code

    def timeraw_first_forward(self, cache, layout):
        return self._code(cache, layout, backward=False)

    def timeraw_first_forward_backward(self, cache, layout):
        return self._code(cache, layout, backward=True)


class FirstFusedCall(Benchmark):
    """Import + first fused call (`residual=`, SiLU) with a cold kernel cache: the compile time
    a model's first GroupNorm + activation pays once per activation (see FirstCall)."""

    params = [list(_SHAPES)]
    param_names = ["layout"]
    rounds = 1
    repeat = (1, 3, 60.0)
    timeout = 600
    _FUSED = "residual=x, activation='silu'"

    def timeraw_first_fused_forward(self, layout):
        return _first_call(layout, False, self._FUSED), _COLD_SETUP

    def timeraw_first_fused_forward_backward(self, layout):
        return _first_call(layout, True, self._FUSED), _COLD_SETUP
