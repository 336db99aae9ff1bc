"""``numba_gn.group_norm`` called from a user's ``@numba.njit`` loop, next to a Python loop.

``NjitLoop.time_njit_loop`` times one compiled function that calls ``numba_gn.group_norm``
1,000 times on ``(2, 8, 8, 32)`` float32 samples (32 groups, affine, ``out=`` into a
preallocated array); ``time_python_loop`` times the same 1,000 calls made from a Python loop.
Their ratio is what compiling the caller saves in per-call costs (``numba-gn bench --njit``
prints both and the ratio). The loops are ``numba_gn.cli.bench_njit``'s; ``setup`` runs each
once, so the compilation of the user's function (and the loading of the kernels) happens there.
"""

from . import common
from .common import Benchmark

try:
    from numba_gn.cli import bench_njit
except ImportError:  # a commit older than numba_gn.functional_jit
    bench_njit = None


class NjitLoop(Benchmark):
    """1,000 small forward calls: from a compiled loop and from a Python loop."""

    timeout = 300

    def setup(self):
        if bench_njit is None:
            raise NotImplementedError("numba_gn.cli.bench_njit not available in this commit")
        data = bench_njit.make_data()
        self.args = (data["xs"], data["gamma"], data["beta"], data["ys"])
        self.compiled = bench_njit.njit_loop()
        # asv runs setup before every sample: compiling the user's function once is enough.
        common.once(("NjitLoop",), self._warm)

    def _warm(self):
        self.compiled(*self.args)
        bench_njit.python_loop(*self.args)

    def time_njit_loop(self):
        self.compiled(*self.args)

    def time_python_loop(self):
        bench_njit.python_loop(*self.args)
