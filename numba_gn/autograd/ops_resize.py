"""Resizing ops: `repeat` (nearest-neighbour upsampling) and `resize_linear` (bilinear).

`resize_linear` follows `jax.image.resize` and Keras's NumPy backend (`antialias=False`):
half-pixel centres, a triangle kernel, and weights renormalised where the kernel leaves the
input, so the edges are clamped. The resize is separable: one `(in, out)` weight matrix per
resized axis, applied with `tensordot`; the backward applies the transposed matrices, which
is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from numba_gn import buffers as _results
from numba_gn.autograd.function import Context, Function
from numba_gn.autograd.tensor import Tensor

__all__ = ["linear_resize_weights", "repeat", "resize_linear"]


class Repeat(Function):
    """`np.repeat(x, repeats, axis)` with an int `repeats` (each element `repeats` times).

    Both passes write into `numba_gn.buffers` arrays (inside a training step, fresh memory for
    each upsampled image cost more in page faults than the copy itself), and the backward adds
    the `repeats` slices one after another, which NumPy's `sum` over a short middle axis does
    several times slower.
    """

    @staticmethod
    def forward(ctx: Context, x: Any, *, repeats: int, axis: int) -> np.ndarray:
        x = np.asarray(x)
        ax = axis % x.ndim
        ctx.args = (x.shape, ax, repeats)
        # Output index i * repeats + r comes from input index i: a new axis after `ax`.
        split = (*x.shape[: ax + 1], repeats, *x.shape[ax + 1 :])
        out = _results.empty(split, x.dtype)
        np.copyto(out, np.expand_dims(x, ax + 1))
        return out.reshape(*x.shape[:ax], x.shape[ax] * repeats, *x.shape[ax + 1 :])

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        shape, ax, repeats = ctx.args
        g = g.reshape(*shape[: ax + 1], repeats, *shape[ax + 1 :])
        if not 0 < repeats <= _REPEAT_ADDS:
            return g.sum(axis=ax + 1)  # also the zeros of `repeats=0`
        lead = (slice(None),) * (ax + 1)
        out = _results.empty(shape, g.dtype)
        np.copyto(out, g[(*lead, 0)])
        for r in range(1, repeats):
            np.add(out, g[(*lead, r)], out=out)
        return out


#: Up to this many repeats the backward adds slices; above it one `sum` pass is cheaper.
_REPEAT_ADDS = 8


def linear_resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """The `(in_size, out_size)` float64 matrix of a half-pixel linear resize along one axis.

    Column `j` holds the weights of the input samples for output sample `j`: the triangle
    kernel at `(j + 0.5) * in_size / out_size - 0.5`, normalised to sum to 1 (as
    `jax.image.resize` and Keras's NumPy backend compute it, without antialiasing).
    """
    if in_size == 0:
        return np.zeros((0, out_size))
    inv_scale = 1.0 / (out_size / in_size)
    sample = (np.arange(out_size, dtype=np.float64) + 0.5) * inv_scale - 0.5
    w = np.maximum(0.0, 1.0 - np.abs(sample[np.newaxis, :] - np.arange(in_size)[:, np.newaxis]))
    total = w.sum(axis=0, keepdims=True)
    w = np.where(
        np.abs(total) > 1000.0 * np.finfo(np.float32).eps,
        w / np.where(total != 0, total, 1.0),
        0.0,
    )
    inside = (sample >= -0.5) & (sample <= in_size - 0.5)
    return np.where(inside[np.newaxis, :], w, 0.0)


class ResizeLinear(Function):
    """Linear resize of the given axes to new sizes, one weight matrix per axis, in order."""

    @staticmethod
    def forward(
        ctx: Context, x: Any, *, axes: tuple[int, ...], sizes: tuple[int, ...]
    ) -> np.ndarray:
        out = np.asarray(x)
        dtype = out.dtype if out.dtype.kind == "f" else np.dtype(np.float64)
        mats = []
        for ax, n in zip(axes, sizes, strict=True):
            d = ax % out.ndim
            m = out.shape[d]
            if m == n:  # the identity: Keras leaves such axes alone
                continue
            w = linear_resize_weights(m, n).astype(dtype)
            out = np.moveaxis(np.tensordot(out, w, axes=(d, 0)), -1, d)
            mats.append((d, w))
        ctx.mats = mats
        return np.ascontiguousarray(out)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        for d, w in reversed(ctx.mats):
            g = np.moveaxis(np.tensordot(g, w.T.astype(g.dtype, copy=False), axes=(d, 0)), -1, d)
        return np.ascontiguousarray(g)


# -- public functions ------------------------------------------------------------------------


def repeat(x: Any, repeats: int, axis: int) -> Tensor:
    """Repeat each element of `x` `repeats` times along `axis` (`np.repeat`)."""
    return Repeat.apply(x, repeats=int(repeats), axis=int(axis))


def resize_linear(x: Any, sizes: Sequence[int], axes: Sequence[int]) -> Tensor:
    """Resize `x` along `axes` to `sizes` with half-pixel linear interpolation.

    Matches `jax.image.resize(..., method="linear", antialias=False)` and Keras's NumPy
    backend of `keras.ops.image.resize(..., interpolation="bilinear")`. Float inputs keep
    their dtype (the weights are computed in float64, then cast); others give float64.
    """
    axes = tuple(int(a) for a in axes)
    sizes = tuple(int(s) for s in sizes)
    if len(axes) != len(sizes):
        raise ValueError(f"`sizes` {sizes} and `axes` {axes} must have the same length.")
    return ResizeLinear.apply(x, axes=axes, sizes=sizes)
