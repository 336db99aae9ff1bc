"""Reductions (`sum`, `mean`) and the matrix product (`matmul`, NumPy semantics)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from numba_gn.autograd.function import Context, Function
from numba_gn.autograd.ops_elementwise import unbroadcast
from numba_gn.autograd.tensor import Tensor

__all__ = ["matmul", "mean", "sum"]

Axis = int | tuple[int, ...] | None


def _axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    """`axis` as a tuple of non-negative ints (all axes for None)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        return tuple(int(a) % ndim for a in axis)
    return (int(axis) % ndim,)


def _expand_grad(g: np.ndarray, shape: tuple[int, ...], axis: Axis, keepdims: bool) -> np.ndarray:
    """Broadcast a reduction's gradient back over the reduced axes (a read-only view)."""
    if not keepdims and axis is not None:
        g = np.expand_dims(g, _axes(axis, len(shape)))
    return np.broadcast_to(g, shape)


class Sum(Function):
    """Sum over `axis`."""

    @staticmethod
    def forward(ctx: Context, x: Any, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
        x = np.asarray(x)
        ctx.args = (x.shape, axis, keepdims)
        return x.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        shape, axis, keepdims = ctx.args
        return _expand_grad(g, shape, axis, keepdims)


class Mean(Function):
    """Arithmetic mean over `axis`."""

    @staticmethod
    def forward(ctx: Context, x: Any, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
        x = np.asarray(x)
        ctx.args = (x.shape, axis, keepdims)
        return x.mean(axis=axis, keepdims=keepdims)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        shape, axis, keepdims = ctx.args
        count = math.prod(shape[a] for a in _axes(axis, len(shape)))
        return _expand_grad(g / count, shape, axis, keepdims)


class MatMul(Function):
    """`x @ y` (NumPy `matmul`: 1-D operands promoted, batch axes broadcast)."""

    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> np.ndarray:
        x = np.asarray(x)
        y = np.asarray(y)
        ctx.save_for_backward(x, y)
        return x @ y

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        x, y = ctx.saved_tensors
        nx, ny = ctx.needs_input_grad
        # Work on the promoted 2-D+ forms: a 1-D x is a row (1, k), a 1-D y a column (k, 1),
        # and the output gradient gets back the axes that the promotion removed.
        x2 = x[None, :] if x.ndim == 1 else x
        y2 = y[:, None] if y.ndim == 1 else y
        if y.ndim == 1:
            g = np.expand_dims(g, -1)
        if x.ndim == 1:
            g = np.expand_dims(g, -2)
        gx = gy = None
        if nx:
            gx = unbroadcast(g @ np.swapaxes(y2, -1, -2), x2.shape).reshape(x.shape)
        if ny:
            gy = unbroadcast(np.swapaxes(x2, -1, -2) @ g, y2.shape).reshape(y.shape)
        return gx, gy


def sum(x: Any, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum of `x` over `axis` (all axes when None)."""
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x: Any, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """Mean of `x` over `axis` (all axes when None)."""
    return Mean.apply(x, axis=axis, keepdims=keepdims)


def matmul(x: Any, y: Any) -> Tensor:
    """Matrix product with NumPy's `matmul` rules."""
    return MatMul.apply(x, y)
