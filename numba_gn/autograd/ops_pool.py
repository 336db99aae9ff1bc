"""Window pooling ops: `max_pool` and `avg_pool` over any spatial axes, "valid" or "same".

The arithmetic is Keras's (`lax.reduce_window` in its NumPy backend): a "valid" window must
fit in the input; "same" gives `ceil(n / stride)` outputs and pads ``max((out - 1) * stride
+ size - n, 0)`` elements per axis, the smaller half before. Padded elements never win a max
and are left out of an average's count (each window averages only the real elements it
covers).

Max pooling of float32/float64 inputs over one axis or two adjacent ones (every Keras
pooling layer) runs on the Numba kernels of `numba_gn.kernels.pool`. Average pooling, and max
pooling elsewhere, loop over the offsets inside a window (`prod(pool_size)` vectorised passes
over strided views of the input), which avoids materialising the windows.

Max pooling sends each output's gradient to one input element: the first maximum of its window
in row-major order of the window (NaN counts as the largest value, as it propagates through the
max). Overlapping windows add up their gradients.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from numba_gn import _threading
from numba_gn import buffers as _results
from numba_gn.autograd.function import Context, Function
from numba_gn.autograd.tensor import Tensor
from numba_gn.kernels import pool as pool_kernels

__all__ = ["avg_pool", "max_pool", "pool_output_length", "pool_padding"]


def pool_output_length(length: int, size: int, stride: int, padding: str) -> int:
    """The number of windows along an axis of `length` (may be < 1 for "valid")."""
    if padding == "same":
        return (length - 1) // stride + 1
    return (length - size) // stride + 1


def pool_padding(length: int, size: int, stride: int, padding: str) -> tuple[int, int]:
    """`(before, after)` padding of an axis: zero for "valid"; for "same" as XLA's SAME."""
    if padding != "same":
        return (0, 0)
    out = pool_output_length(length, size, stride, padding)
    total = max((out - 1) * stride + size - length, 0)
    return (total // 2, total - total // 2)


class _Geometry:
    """Window positions of one pooling call: the padded shape and one view index per offset."""

    def __init__(
        self,
        shape: tuple[int, ...],
        axes: tuple[int, ...],
        sizes: tuple[int, ...],
        strides: tuple[int, ...],
        padding: str,
    ) -> None:
        ndim = len(shape)
        self.shape = shape
        self.axes = tuple(a % ndim for a in axes)
        self.sizes = sizes
        self.strides = strides
        self.pads = [
            pool_padding(shape[a], k, s, padding)
            for a, k, s in zip(self.axes, sizes, strides, strict=True)
        ]
        self.outs = [
            pool_output_length(shape[a], k, s, padding)
            for a, k, s in zip(self.axes, sizes, strides, strict=True)
        ]
        if any(o < 1 for o in self.outs):
            raise ValueError(
                f"Pooling windows of size {sizes} with strides {strides} and padding "
                f"{padding!r} do not fit an input of shape {shape}."
            )
        self.padded = any(before or after for before, after in self.pads)
        padded = list(shape)
        unpad = [slice(None)] * ndim
        for a, (before, after) in zip(self.axes, self.pads, strict=True):
            padded[a] += before + after
            unpad[a] = slice(before, before + shape[a])
        self.padded_shape = tuple(padded)
        self.unpad = tuple(unpad)
        # One basic index per window offset: the strided view of the padded input holding the
        # element at that offset of every window.
        self.views = []
        for offset in itertools.product(*(range(k) for k in sizes)):
            index = [slice(None)] * ndim
            for a, o, s, n in zip(self.axes, offset, strides, self.outs, strict=True):
                index[a] = slice(o, o + s * (n - 1) + 1, s)
            self.views.append(tuple(index))

    def pad(self, x: np.ndarray, value: Any) -> np.ndarray:
        """`x` inside a padded array filled with `value` (`x` itself if unpadded)."""
        if not self.padded:
            return x
        out = np.full(self.padded_shape, value, dtype=x.dtype)
        out[self.unpad] = x
        return out

    def scatter(self, parts: Iterable[np.ndarray], dtype: np.dtype) -> np.ndarray:
        """The adjoint of reading the views: each part added at its view, padding cropped.

        Within one view the windows' elements are distinct, so `+=` on it is safe;
        overlapping windows meet across views, where the sums add up.
        """
        gp = np.zeros(self.padded_shape, dtype=dtype)
        for view, part in zip(self.views, parts, strict=False):
            gp[view] += part
        return gp[self.unpad]

    def counts(self, dtype: np.dtype) -> np.ndarray | float:
        """The number of real elements in each window (a scalar when nothing is padded)."""
        if not self.padded:
            return float(math.prod(self.sizes))
        # Per axis: how many of a window's positions fall inside the input; a window's count
        # is their product over the axes.
        out = np.ones((1,) * len(self.shape), dtype=dtype)
        for a, k, s, n_out, (before, _) in zip(
            self.axes, self.sizes, self.strides, self.outs, self.pads, strict=True
        ):
            starts = np.arange(n_out) * s - before
            inside = np.minimum(starts + k, self.shape[a]) - np.maximum(starts, 0)
            shape = [1] * len(self.shape)
            shape[a] = n_out
            out = out * inside.astype(dtype).reshape(shape)
        return out


def _lowest(dtype: np.dtype) -> Any:
    if dtype.kind == "f":
        return -np.inf
    if dtype.kind in "iu":
        return np.iinfo(dtype).min
    return False  # bool


class MaxPool(Function):
    """The maximum of each window; the gradient goes to the window's first maximum."""

    @staticmethod
    def forward(
        ctx: Context,
        x: Any,
        *,
        pool_size: tuple[int, ...],
        strides: tuple[int, ...],
        padding: str,
        axes: tuple[int, ...],
    ) -> np.ndarray:
        x = np.asarray(x)
        geo = _Geometry(x.shape, axes, pool_size, strides, padding)
        ctx.geo = geo
        planes = _planes(x, geo)
        if planes is not None:
            return _max_pool_kernel(ctx, x, geo, planes)
        ctx.arg = None
        xp = geo.pad(x, _lowest(x.dtype))
        views = geo.views
        best = np.array(xp[views[0]], copy=True)
        arg = np.zeros(best.shape, dtype=np.intp)
        check_nan = x.dtype.kind in "fc"
        for i, view in enumerate(views[1:], start=1):
            v = xp[view]
            wins = v > best
            if check_nan:  # NaN wins over any number, and the first NaN is kept
                wins |= np.isnan(v) & ~np.isnan(best)
            np.copyto(best, v, where=wins)
            arg[wins] = i
        ctx.views_arg = arg
        return best

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        geo = ctx.geo
        if ctx.arg is not None:
            o, h, w, i = ctx.planes
            g4 = np.ascontiguousarray(g, dtype=ctx.arg_dtype).reshape(ctx.arg.shape)
            dx = _results.empty((o, h, w, i), g4.dtype)
            _threading.launch(
                pool_kernels.max_pool_backward_ser, pool_kernels.max_pool_backward_par,
                dx.size, g4, ctx.arg, dx,
            )
            return dx.reshape(geo.shape)
        arg = ctx.views_arg
        return geo.scatter((np.where(arg == i, g, 0) for i in range(len(geo.views))), g.dtype)


def _planes(x: np.ndarray, geo: _Geometry) -> tuple[int, int, int, int] | None:
    """`(O, H, W, I)` of the kernels' canonical view of `x`, or None where NumPy pools.

    The kernels take float32/float64 inputs pooled over one axis or two adjacent ones.
    """
    axes = geo.axes
    if (
        x.dtype not in (np.float32, np.float64)
        or x.size == 0
        or len(axes) not in (1, 2)
        or list(axes) != list(range(axes[0], axes[0] + len(axes)))
    ):
        return None
    o = math.prod(x.shape[: axes[0]])
    i = math.prod(x.shape[axes[-1] + 1 :])
    h = x.shape[axes[0]] if len(axes) == 2 else 1
    return o, h, x.shape[axes[-1]], i


def _max_pool_kernel(
    ctx: Context, x: np.ndarray, geo: _Geometry, planes: tuple[int, int, int, int]
) -> np.ndarray:
    """Max pooling on the kernels of `numba_gn.kernels.pool`; saves `arg` for the backward."""
    o, h, w, i = planes
    two = len(geo.axes) == 2
    kh, sh, pt = (geo.sizes[0], geo.strides[0], geo.pads[0][0]) if two else (1, 1, 0)
    oh = geo.outs[0] if two else 1
    x4 = np.ascontiguousarray(x).reshape(planes)
    y = _results.empty((o, oh, geo.outs[-1], i), x.dtype)
    arg = np.empty(y.shape, dtype=np.int32 if h * w < 2**31 else np.int64)
    _threading.launch(
        pool_kernels.max_pool_ser, pool_kernels.max_pool_par, x4.size,
        x4, kh, geo.sizes[-1], sh, geo.strides[-1], pt, geo.pads[-1][0], y, arg,
    )
    ctx.arg, ctx.arg_dtype, ctx.planes = arg, x.dtype, planes
    out_shape = list(geo.shape)
    for a, n in zip(geo.axes, geo.outs, strict=True):
        out_shape[a] = n
    return y.reshape(out_shape)


class AvgPool(Function):
    """The mean of each window over the real (not padded) elements it covers."""

    @staticmethod
    def forward(
        ctx: Context,
        x: Any,
        *,
        pool_size: tuple[int, ...],
        strides: tuple[int, ...],
        padding: str,
        axes: tuple[int, ...],
    ) -> np.ndarray:
        x = np.asarray(x)
        geo = _Geometry(x.shape, axes, pool_size, strides, padding)
        xp = geo.pad(x, 0)
        total = np.array(xp[geo.views[0]], copy=True)
        for view in geo.views[1:]:
            total += xp[view]
        dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
        counts = geo.counts(dtype)
        ctx.geo = geo
        ctx.counts = counts
        return total / counts

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        return ctx.geo.scatter(itertools.repeat(g / ctx.counts), g.dtype)


# -- public functions ------------------------------------------------------------------------


def _args(
    x: Any,
    pool_size: Sequence[int],
    strides: Sequence[int] | None,
    padding: str,
    axes: Sequence[int],
) -> dict[str, Any]:
    pool_size = tuple(int(k) for k in pool_size)
    strides = pool_size if strides is None else tuple(int(s) for s in strides)
    axes = tuple(int(a) for a in axes)
    if not len(pool_size) == len(strides) == len(axes):
        raise ValueError(
            f"`pool_size` {pool_size}, `strides` {strides} and `axes` {axes} must have the "
            "same length."
        )
    if min(pool_size, default=1) < 1 or min(strides, default=1) < 1:
        raise ValueError(
            f"`pool_size` and `strides` must be positive, got {pool_size} and {strides}."
        )
    if padding not in ("valid", "same"):
        raise ValueError(f"`padding` must be 'valid' or 'same', got {padding!r}.")
    return {"pool_size": pool_size, "strides": strides, "padding": padding, "axes": axes}


def max_pool(
    x: Any,
    pool_size: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "valid",
    axes: Sequence[int] = (1, 2),
) -> Tensor:
    """The maximum over windows of `pool_size` along `axes`, moved by `strides`.

    `strides` defaults to `pool_size`; `axes` defaults to the spatial axes of a
    channels-last 2-D input. See the module notes for "same" padding and the gradient.
    """
    return MaxPool.apply(x, **_args(x, pool_size, strides, padding, axes))


def avg_pool(
    x: Any,
    pool_size: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "valid",
    axes: Sequence[int] = (1, 2),
) -> Tensor:
    """The mean over windows of `pool_size` along `axes` (padding left out of the count).

    Float inputs keep their dtype; others give float64.
    """
    return AvgPool.apply(x, **_args(x, pool_size, strides, padding, axes))
