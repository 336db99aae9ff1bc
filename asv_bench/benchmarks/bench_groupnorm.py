"""``numba_gn.group_norm`` / ``group_norm_backward``: time and peak memory.

Names read ``<what><pass>.time_<layout>(size, dtype)``, so a regex on the name picks the
combinations to run (the README's *Benchmarks* section lists ready ones):

* ``GroupNormForward.time_channels_last`` (``axis=-1``), ``time_channels_first`` (``axis=1``),
  ``time_middle_axis`` (a middle axis), ``time_tuple_axis`` (channels over two trailing axes):
  the forward call, allocating its output; ``time_channels_last_out`` /
  ``time_channels_first_out`` write into a preallocated ``out`` (compare those with
  ``bench_peers.Copy.time_copyto``, the bandwidth floor);
* ``GroupNormBackward.time_<layout>``: the backward pass from saved statistics;
* ``GroupNormForwardBackward.time_<layout>``: forward with statistics + backward, as a training
  step runs them (compare with ``bench_peers.NumPyForwardBackward`` / ``TorchForwardBackward``);
* ``PeakMemoryForward`` / ``PeakMemoryBackward``: peak RSS of one call, layout as a parameter
  (``setup`` must hold that layout's arrays only).

Sizes are ``common.SIZES`` (tiny, small, medium, large); large arrays run in float32 only unless
``NUMBA_GN_ASV_ALL=1``. Every ``setup`` makes each call it times once, so JIT compilation (or
loading from the disk cache) for that dtype, layout and kernel path happens there.

The layer under a ``GradientTape`` and the demo training step are in ``bench_training.py``.
"""

import functools

import numpy as np

import numba_gn

from . import common
from .common import DTYPES, EPSILON, GROUPS, LAYOUTS, MEMORY_SIZES, SIZES, Benchmark

#: The layouts whose forward also runs into a preallocated ``out`` (the two models use).
OUT_LAYOUTS = ["channels-last", "channels-first"]


@functools.lru_cache(maxsize=len(OUT_LAYOUTS))
def _output(layout, size, dtype):
    return common.empty_like_touched(common.get_x(layout, size, dtype))


@functools.lru_cache(maxsize=len(LAYOUTS))
def _stats(layout, size, dtype):
    _, mean, rstd = _forward(layout, size, dtype, return_stats=True)()
    return mean, rstd


def _forward(layout, size, dtype, out=None, return_stats=False):
    """``group_norm`` bound to the cached input of ``layout``: call it with no argument."""
    gamma, beta = common.get_params(layout, size, dtype)
    return functools.partial(
        numba_gn.group_norm,
        common.get_x(layout, size, dtype),
        GROUPS,
        gamma,
        beta,
        axis=common.layout_shape(layout, size)[1],
        epsilon=EPSILON,
        out=out,
        return_stats=return_stats,
    )


def _backward(layout, size, dtype, mean, rstd):
    """``group_norm_backward`` bound to the cached ``dy``, ``x`` and the given statistics."""
    gamma, _ = common.get_params(layout, size, dtype)
    return functools.partial(
        numba_gn.group_norm_backward,
        common.get_dy(layout, size, dtype),
        common.get_x(layout, size, dtype),
        mean,
        rstd,
        GROUPS,
        gamma,
        axis=common.layout_shape(layout, size)[1],
    )


def _forward_backward(layout, size, dtype):
    """Forward with statistics, then backward from them: one training step's two calls."""
    forward = _forward(layout, size, dtype, return_stats=True)
    gamma, _ = common.get_params(layout, size, dtype)
    dy = common.get_dy(layout, size, dtype)
    x = common.get_x(layout, size, dtype)
    axis = common.layout_shape(layout, size)[1]

    def run():
        _, mean, rstd = forward()
        numba_gn.group_norm_backward(dy, x, mean, rstd, GROUPS, gamma, axis=axis)

    return run


class _PerLayout(Benchmark):
    """Base of the ``time_<layout>`` classes: ``self.calls[layout]`` is the timed call."""

    params = [list(SIZES), DTYPES]
    param_names = ["size", "dtype"]

    def _make_calls(self, size, dtype):
        raise NotImplementedError  # pragma: no cover - every subclass defines it

    def setup(self, size, dtype):
        common.skip_slow(size, dtype)
        self.calls = self._make_calls(size, dtype)
        # asv runs setup before every sample: compiling/loading each kernel path once is enough.
        common.once(
            (type(self).__name__, size, dtype), lambda: [call() for call in self.calls.values()]
        )


class GroupNormForward(_PerLayout):
    """Forward pass per layout; ``*_out``: into a preallocated output."""

    timeout = 180

    def _make_calls(self, size, dtype):
        calls = {layout: _forward(layout, size, dtype) for layout in LAYOUTS}
        for layout in OUT_LAYOUTS:
            calls[layout + " out"] = _forward(layout, size, dtype, out=_output(layout, size, dtype))
        return calls

    def time_channels_last(self, size, dtype):
        self.calls["channels-last"]()

    def time_channels_first(self, size, dtype):
        self.calls["channels-first"]()

    def time_middle_axis(self, size, dtype):
        self.calls["middle axis"]()

    def time_tuple_axis(self, size, dtype):
        self.calls["tuple axis"]()

    def time_channels_last_out(self, size, dtype):
        self.calls["channels-last out"]()

    def time_channels_first_out(self, size, dtype):
        self.calls["channels-first out"]()


class GroupNormBackward(_PerLayout):
    """Backward pass per layout, from the statistics the forward pass saved."""

    timeout = 240

    def _make_calls(self, size, dtype):
        return {
            layout: _backward(layout, size, dtype, *_stats(layout, size, dtype))
            for layout in LAYOUTS
        }

    def time_channels_last(self, size, dtype):
        self.calls["channels-last"]()

    def time_channels_first(self, size, dtype):
        self.calls["channels-first"]()

    def time_middle_axis(self, size, dtype):
        self.calls["middle axis"]()

    def time_tuple_axis(self, size, dtype):
        self.calls["tuple axis"]()


class GroupNormForwardBackward(_PerLayout):
    """Forward (with statistics) + backward per layout, as one training step runs them."""

    timeout = 240

    def _make_calls(self, size, dtype):
        return {layout: _forward_backward(layout, size, dtype) for layout in LAYOUTS}

    def time_channels_last(self, size, dtype):
        self.calls["channels-last"]()

    def time_channels_first(self, size, dtype):
        self.calls["channels-first"]()

    def time_middle_axis(self, size, dtype):
        self.calls["middle axis"]()

    def time_tuple_axis(self, size, dtype):
        self.calls["tuple axis"]()


class PeakMemoryForward(Benchmark):
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


class PeakMemoryBackward(Benchmark):
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
