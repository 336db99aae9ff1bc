"""The same work done without numba_gn: the bandwidth floor, plain NumPy and PyTorch.

Read these next to ``bench_groupnorm`` (same data, same names and parameters):

* ``Copy.time_copyto``: ``np.copyto`` of the input into a preallocated array, the least any
  forward can cost (it reads and writes the array once);
* ``NumPyForward`` / ``NumPyForwardBackward``: ``numba_gn.numpy_reference.group_norm_numpy``
  in the input dtype, and the closed-form backward in NumPy;
* ``TorchForward`` / ``TorchForwardBackward``: ``torch.nn.functional.group_norm`` with as many
  threads as Numba uses, on a tensor sharing the array's memory (a channels-last array becomes
  a channels_last-strided NCHW tensor, ``torch.from_numpy(x).permute(0, 3, 1, 2)``).

Each has ``time_channels_last`` and ``time_channels_first`` (PyTorch normalises axis 1 only, so
the peers run the two layouts models use). Without PyTorch the Torch classes are skipped with
the reason ``PyTorch not installed: pip install torch to compare``.
"""

import numpy as np

from . import common
from .common import DTYPES, EPSILON, GROUPS, PEER_LAYOUTS, SIZES, Benchmark

try:
    from numba_gn import _peers
    from numba_gn.numpy_reference import group_norm_numpy
except ImportError:  # a commit older than the peers: asv reports these as skipped
    _peers = None

#: The skip reason asv prints (``--show-stderr``) for every Torch benchmark without PyTorch.
TORCH_MISSING = "PyTorch not installed: pip install torch to compare"


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


class _Peer(Benchmark):
    """Base of the peer classes: ``self.calls[layout]`` is the timed call of that layout."""

    params = [list(SIZES), DTYPES]
    param_names = ["size", "dtype"]
    timeout = 300

    def _make_call(self, layout, size, dtype):
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def setup(self, size, dtype):
        if _peers is None:
            raise NotImplementedError("numba_gn._peers is not in this commit")
        common.skip_slow(size, dtype)
        self.calls = {layout: self._make_call(layout, size, dtype) for layout in PEER_LAYOUTS}
        # asv runs setup before every sample: warming each call once is enough.
        common.once(
            (type(self).__name__, size, dtype), lambda: [call() for call in self.calls.values()]
        )

    def time_channels_last(self, size, dtype):
        self.calls["channels-last"]()

    def time_channels_first(self, size, dtype):
        self.calls["channels-first"]()


def _numpy_args(layout, size, dtype):
    gamma, beta = common.get_params(layout, size, dtype)
    return common.get_x(layout, size, dtype), gamma, beta, common.layout_shape(layout, size)[1]


class NumPyForward(_Peer):
    """Plain NumPy group normalisation, computed in the input's dtype."""

    def _make_call(self, layout, size, dtype):
        x, gamma, beta, axis = _numpy_args(layout, size, dtype)
        return lambda: group_norm_numpy(
            x, GROUPS, gamma, beta, axis=axis, epsilon=EPSILON, dtype=None
        )


class NumPyForwardBackward(_Peer):
    """NumPy forward, then the closed-form backward in NumPy."""

    def _make_call(self, layout, size, dtype):
        x, gamma, beta, axis = _numpy_args(layout, size, dtype)
        dy = common.get_dy(layout, size, dtype)
        return lambda: _peers.numpy_forward_backward(
            x, dy, GROUPS, gamma, beta, axis=axis, epsilon=EPSILON
        )


class _Torch(_Peer):
    """PyTorch's CPU ``group_norm`` (skipped, with the reason, when torch is not installed)."""

    def setup(self, size, dtype):
        torch = None if _peers is None else _peers.import_torch()
        if torch is None:
            raise NotImplementedError(TORCH_MISSING)
        import numba

        torch.set_num_threads(numba.get_num_threads())
        super().setup(size, dtype)

    def _torch_group_norm(self, layout, size, dtype):
        gamma, beta = common.get_params(layout, size, dtype)
        return _peers.TorchGroupNorm(
            common.get_x(layout, size, dtype),
            GROUPS,
            gamma,
            beta,
            axis=common.layout_shape(layout, size)[1],
            epsilon=EPSILON,
            dy=common.get_dy(layout, size, dtype),
        )


class TorchForward(_Torch):
    """``torch.nn.functional.group_norm`` for inference (no autograd)."""

    def _make_call(self, layout, size, dtype):
        return self._torch_group_norm(layout, size, dtype).forward


class TorchForwardBackward(_Torch):
    """``group_norm`` recorded by PyTorch's autograd, then the gradients for ``dy``."""

    def _make_call(self, layout, size, dtype):
        return self._torch_group_norm(layout, size, dtype).forward_backward
