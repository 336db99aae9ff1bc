"""The same work done without numba_gn: the bandwidth floor, plain NumPy and PyTorch.

Read these next to ``bench_groupnorm`` (same data, same parameter names):

* ``Copy.time_copyto``: ``np.copyto`` of the input into a preallocated array, the least any
  forward can cost (it reads and writes the array once);
* ``NumPy``: :func:`numba_gn.numpy_reference.group_norm_numpy` in the input dtype, and the
  closed-form backward in NumPy;
* ``Torch``: ``torch.nn.functional.group_norm`` with as many threads as Numba uses, on a tensor
  sharing the array's memory (a channels-last array becomes a channels_last-strided NCHW
  tensor, ``torch.from_numpy(x).permute(0, 3, 1, 2)``); skipped when torch is not importable.
"""

import numpy as np

from . import common
from .common import DTYPES, EPSILON, GROUPS, PEER_LAYOUTS, SIZES, Benchmark

try:
    from numba_gn import _peers
    from numba_gn.numpy_reference import group_norm_numpy
except ImportError:  # a commit older than the peers: asv reports these as skipped
    _peers = None


class Copy(Benchmark):
    """``np.copyto(out, x)``: the bandwidth floor (layout does not matter to a copy)."""

    params = [list(SIZES), DTYPES]
    param_names = ["size", "dtype"]
    timeout = 120

    def setup(self, size, dtype):
        common.skip_slow(size, dtype)
        self.x = common.get_x("channels-last", size, dtype)
        self.out = common.empty_like_touched(self.x)

    def time_copyto(self, size, dtype):
        np.copyto(self.out, self.x)


class NumPy(Benchmark):
    """Plain NumPy group normalisation, computed in the input's dtype."""

    params = [PEER_LAYOUTS, list(SIZES), DTYPES]
    param_names = ["layout", "size", "dtype"]
    timeout = 300

    def setup(self, layout, size, dtype):
        if _peers is None:
            raise NotImplementedError("numba_gn._peers is not in this commit")
        common.skip_slow(size, dtype)
        self.x = common.get_x(layout, size, dtype)
        self.dy = common.get_dy(layout, size, dtype)
        self.gamma, self.beta = common.get_params(layout, size, dtype)
        self.axis = common.layout_shape(layout, size)[1]

    def time_forward(self, layout, size, dtype):
        group_norm_numpy(
            self.x, GROUPS, self.gamma, self.beta, axis=self.axis, epsilon=EPSILON, dtype=None
        )

    def time_forward_backward(self, layout, size, dtype):
        _peers.numpy_forward_backward(
            self.x, self.dy, GROUPS, self.gamma, self.beta, axis=self.axis, epsilon=EPSILON
        )


class Torch(Benchmark):
    """PyTorch's CPU ``group_norm``: inference forward, and forward + backward with autograd."""

    params = [PEER_LAYOUTS, list(SIZES), DTYPES]
    param_names = ["layout", "size", "dtype"]
    timeout = 300

    def setup(self, layout, size, dtype):
        torch = None if _peers is None else _peers.import_torch()
        if torch is None:
            raise NotImplementedError("PyTorch is not installed")
        common.skip_slow(size, dtype)
        import numba

        torch.set_num_threads(numba.get_num_threads())
        gamma, beta = common.get_params(layout, size, dtype)
        self.gn = _peers.TorchGroupNorm(
            common.get_x(layout, size, dtype),
            GROUPS,
            gamma,
            beta,
            axis=common.layout_shape(layout, size)[1],
            epsilon=EPSILON,
            dy=common.get_dy(layout, size, dtype),
        )
        common.once(("torch", layout, size, dtype), self._warm)

    def _warm(self):
        self.gn.forward()
        self.gn.forward_backward()

    def time_forward(self, layout, size, dtype):
        self.gn.forward()

    def time_forward_backward(self, layout, size, dtype):
        self.gn.forward_backward()
