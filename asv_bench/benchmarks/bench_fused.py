"""Fused GroupNorm + residual + activation next to GroupNorm alone and the separate ops.

``FusedSiLUResidual`` times, on float32 input of ``common.SIZES`` (tiny, small, medium) in both
layouts models use, the diffusion UNet block ``silu(group_norm(x) + r)`` (32 groups, affine):

* ``time_fused_forward`` / ``time_fused_forward_backward``: ``group_norm(..., residual=r,
  activation="silu", return_stats=True)``, then ``group_norm_backward(..., beta=, residual=,
  activation=)``;
* ``time_group_norm_forward`` / ``time_group_norm_forward_backward``: GroupNorm alone (with
  statistics, then its backward), the cost the fused op should stay close to;
* ``time_separate_forward`` / ``time_separate_forward_backward``: the same as separate ops:
  ``group_norm``, ``+ r`` in NumPy, the SiLU kernel, and backward the SiLU's backward, then
  ``group_norm_backward``.

Every call allocates its results. The calls are ``numba_gn.cli.bench_fused.Ops``' (what
``numba-gn bench --fused`` times, with PyTorch too); ``setup`` checks once per process that the
fused results agree with the separate ones (it raises otherwise: timing a wrong result is
worthless) and makes every call once, so compilation or loading of the kernels happens there.
Commits without the fused API skip these benchmarks.
"""

import functools

import numpy as np

from . import common
from .common import PEER_LAYOUTS, Benchmark

try:
    from numba_gn.cli import bench_fused
except ImportError:  # a commit older than the fused op's benchmark
    bench_fused = None

#: Sizes of ``common.SIZES``: per-call costs, in cache, out of cache.
FUSED_SIZES = ["tiny", "small", "medium"]


@functools.lru_cache(maxsize=2)
def _inputs(layout, size):
    """The cached input, gradient and parameters of ``common``, and a seeded residual."""
    x = common.get_x(layout, size, "float32")
    gamma, beta = common.get_params(layout, size, "float32")
    rng = np.random.default_rng([common.SEED, 7, *x.shape])
    r = rng.standard_normal(x.shape, dtype=np.float32)
    axis = common.layout_shape(layout, size)[1]
    return bench_fused.Inputs(x, r, common.get_dy(layout, size, "float32"), gamma, beta, axis)


class FusedSiLUResidual(Benchmark):
    """``silu(group_norm(x) + r)``: fused, GroupNorm alone, separate ops; forward and both."""

    params = [PEER_LAYOUTS, FUSED_SIZES]
    param_names = ["layout", "size"]
    timeout = 240

    def setup(self, layout, size):
        if bench_fused is None or not bench_fused.has_fused_api():
            raise NotImplementedError("the fused group_norm is not in this commit")
        self.ops = bench_fused.Ops(_inputs(layout, size), "silu", True)
        # asv runs setup before every sample: checking and warming once is enough.
        common.once(("FusedSiLUResidual", layout, size), self._check_and_warm)

    def _check_and_warm(self):
        self.ops.verify()  # raises bench_fused.MismatchError when fused and separate disagree
        self.ops.group_norm_forward_backward()
        self.ops.separate_forward()

    def time_fused_forward(self, layout, size):
        self.ops.fused_forward()

    def time_fused_forward_backward(self, layout, size):
        self.ops.fused_forward_backward()

    def time_group_norm_forward(self, layout, size):
        self.ops.group_norm_forward()

    def time_group_norm_forward_backward(self, layout, size):
        self.ops.group_norm_forward_backward()

    def time_separate_forward(self, layout, size):
        self.ops.separate_forward()

    def time_separate_forward_backward(self, layout, size):
        self.ops.separate_forward_backward()
