"""``numba_gn.group_norm`` / ``group_norm_backward``: time and peak memory.

Parameters: layout (channels-last ``axis=-1``, channels-first ``axis=1``, a middle axis, a tuple
of axes) x size (``common.SIZES``) x dtype; large arrays run in float32 only unless
``NUMBA_GN_ASV_ALL=1``. Every ``setup`` makes the exact call it times once, so JIT compilation
(or loading from the disk cache) for that dtype, layout and kernel path happens there.

The layer under a ``GradientTape`` and the demo training step are in ``bench_training.py``.
"""

import functools

import numpy as np

import numba_gn

from . import common
from .common import DTYPES, EPSILON, GROUPS, LAYOUTS, MEMORY_SIZES, SIZES, Benchmark


@functools.lru_cache(maxsize=2)
def _output(layout, size, dtype):
    return common.empty_like_touched(common.get_x(layout, size, dtype))


@functools.lru_cache(maxsize=2)
def _stats(layout, size, dtype):
    gamma, beta = common.get_params(layout, size, dtype)
    _, mean, rstd = numba_gn.group_norm(
        common.get_x(layout, size, dtype),
        GROUPS,
        gamma,
        beta,
        axis=common.layout_shape(layout, size)[1],
        epsilon=EPSILON,
        return_stats=True,
    )
    return mean, rstd


class Forward(Benchmark):
    """Forward pass, allocating its output or writing into a preallocated ``out``."""

    params = [LAYOUTS, list(SIZES), DTYPES]
    param_names = ["layout", "size", "dtype"]
    timeout = 180

    def setup(self, layout, size, dtype):
        common.skip_slow(size, dtype)
        self.x = common.get_x(layout, size, dtype)
        self.gamma, self.beta = common.get_params(layout, size, dtype)
        self.axis = common.layout_shape(layout, size)[1]
        self.out = _output(layout, size, dtype)
        common.once(
            ("forward", layout, size, dtype),
            lambda: (
                self.time_forward(layout, size, dtype),
                self.time_forward_out(layout, size, dtype),
            ),
        )

    def time_forward(self, layout, size, dtype):
        numba_gn.group_norm(self.x, GROUPS, self.gamma, self.beta, axis=self.axis, epsilon=EPSILON)

    def time_forward_out(self, layout, size, dtype):
        numba_gn.group_norm(
            self.x, GROUPS, self.gamma, self.beta, axis=self.axis, epsilon=EPSILON, out=self.out
        )


class Backward(Benchmark):
    """Backward pass from saved statistics, and forward + backward as a training step runs them."""

    params = [LAYOUTS, list(SIZES), DTYPES]
    param_names = ["layout", "size", "dtype"]
    timeout = 240

    def setup(self, layout, size, dtype):
        common.skip_slow(size, dtype)
        self.x = common.get_x(layout, size, dtype)
        self.dy = common.get_dy(layout, size, dtype)
        self.gamma, self.beta = common.get_params(layout, size, dtype)
        self.axis = common.layout_shape(layout, size)[1]
        self.mean, self.rstd = _stats(layout, size, dtype)
        common.once(
            ("backward", layout, size, dtype),
            lambda: (
                self.time_backward(layout, size, dtype),
                self.time_forward_backward(layout, size, dtype),
            ),
        )

    def time_backward(self, layout, size, dtype):
        numba_gn.group_norm_backward(
            self.dy, self.x, self.mean, self.rstd, GROUPS, self.gamma, axis=self.axis
        )

    def time_forward_backward(self, layout, size, dtype):
        _, mean, rstd = numba_gn.group_norm(
            self.x,
            GROUPS,
            self.gamma,
            self.beta,
            axis=self.axis,
            epsilon=EPSILON,
            return_stats=True,
        )
        numba_gn.group_norm_backward(
            self.dy, self.x, mean, rstd, GROUPS, self.gamma, axis=self.axis
        )


class MemoryForward(Benchmark):
    """Peak RSS of a forward call: the input plus one output, with no full-size temporaries.

    asv's ``peakmem`` is the process's maximum RSS including ``setup``, which therefore holds
    only ``x`` (its warm-up call allocates the same output the measured call does).
    """

    params = [LAYOUTS, MEMORY_SIZES, DTYPES]
    param_names = ["layout", "size", "dtype"]
    timeout = 180

    def setup(self, layout, size, dtype):
        common.skip_slow(size, dtype)
        self.x = common.get_x(layout, size, dtype)
        self.gamma, self.beta = common.get_params(layout, size, dtype)
        self.axis = common.layout_shape(layout, size)[1]
        self.peakmem_forward(layout, size, dtype)

    def peakmem_forward(self, layout, size, dtype):
        numba_gn.group_norm(self.x, GROUPS, self.gamma, self.beta, axis=self.axis, epsilon=EPSILON)

    def track_input_bytes(self, layout, size, dtype):
        """``x.nbytes``, to read ``peakmem_forward`` against (ideal: baseline + 2x this)."""
        return self.x.nbytes

    track_input_bytes.unit = "bytes"


class MemoryBackward(Benchmark):
    """Peak RSS of a backward call: ``x`` and ``dy`` (setup) plus ``dx``, no hidden temporaries."""

    params = [LAYOUTS, MEMORY_SIZES, DTYPES]
    param_names = ["layout", "size", "dtype"]
    timeout = 180

    def setup(self, layout, size, dtype):
        common.skip_slow(size, dtype)
        self.x = common.get_x(layout, size, dtype)
        self.dy = common.get_dy(layout, size, dtype)
        self.gamma, _ = common.get_params(layout, size, dtype)
        self.axis = common.layout_shape(layout, size)[1]
        n = self.x.shape[0]
        # Statistics of the right shape; their values do not change the work done.
        self.mean = np.zeros((n, GROUPS))
        self.rstd = np.ones((n, GROUPS))
        self.peakmem_backward(layout, size, dtype)

    def peakmem_backward(self, layout, size, dtype):
        numba_gn.group_norm_backward(
            self.dy, self.x, self.mean, self.rstd, GROUPS, self.gamma, axis=self.axis
        )
