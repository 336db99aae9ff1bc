"""Shape ops: reshape, transpose, indexing, dtype cast, concatenate, stack, pad, copy.

Forwards return views wherever NumPy does (reshape, transpose, basic slicing), so no data is
copied; backwards route the gradient back to the input's layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from numba_gn import buffers as _results
from numba_gn._dtypes import is_bfloat16
from numba_gn.autograd.function import Context, Function
from numba_gn.autograd.tensor import Tensor

__all__ = ["cast", "concatenate", "getitem", "pad", "reshape", "stack", "transpose"]


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


class Reshape(Function):
    """`x.reshape(shape)`."""

    @staticmethod
    def forward(ctx: Context, x: Any, *, shape: tuple[int, ...]) -> np.ndarray:
        x = np.asarray(x)
        ctx.in_shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        return g.reshape(ctx.in_shape)


class Transpose(Function):
    """`x.transpose(axes)` (axes reversed when None)."""

    @staticmethod
    def forward(ctx: Context, x: Any, *, axes: Sequence[int] | None = None) -> np.ndarray:
        ctx.axes = axes
        return np.transpose(x, axes)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        axes = ctx.axes
        return np.transpose(g, None if axes is None else np.argsort(axes))


class GetItem(Function):
    """`x[index]` for basic slicing, integer-array and boolean indexing."""

    @staticmethod
    def forward(ctx: Context, x: Any, *, index: Any) -> np.ndarray:
        x = np.asarray(x)
        ctx.args = (x.shape, index)
        return x[index]

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        shape, index = ctx.args
        out = np.zeros(shape, dtype=g.dtype)
        if _has_int_array(index):
            np.add.at(out, index, g)  # repeated integer indices must accumulate
        else:
            out[index] = g  # slices and masks address each element at most once
        return out


def _has_int_array(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    for p in parts:
        if isinstance(p, (list, np.ndarray)) and np.asarray(p).dtype != bool:
            return True
    return False


class Cast(Function):
    """`x.astype(dtype)`; the gradient is cast back (none for non-float input or output)."""

    @staticmethod
    def forward(ctx: Context, x: Any, *, dtype: np.dtype) -> np.ndarray:
        x = np.asarray(x)
        ctx.dtypes = (x.dtype, dtype)
        return x.astype(dtype, copy=False)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray | None:
        src, dst = ctx.dtypes
        if not all(d.kind in "fc" or is_bfloat16(d) for d in (src, dst)):
            return None
        return g.astype(src, copy=False)


class Copy(Function):
    """A copy of `x` (identity gradient); used for snapshots such as `Variable.value`."""

    @staticmethod
    def forward(ctx: Context, x: Any) -> np.ndarray:
        return np.array(x, copy=True)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        return g


class Concatenate(Function):
    """`np.concatenate(xs, axis)`."""

    @staticmethod
    def forward(ctx: Context, *xs: Any, axis: int = 0) -> np.ndarray:
        xs = tuple(np.asarray(x) for x in xs)
        out = None
        ndim = xs[0].ndim if xs else 0
        if ndim and all(x.ndim == ndim for x in xs) and -ndim <= axis < ndim:
            # Into a `numba_gn.buffers` array: in a UNet's step fresh memory for each joined
            # image cost 4x the copy (NumPy still checks the shapes).
            shape = list(xs[0].shape)
            shape[axis] = sum(x.shape[axis] for x in xs)
            out = _results.empty(tuple(shape), np.result_type(*xs))
        out = np.concatenate(xs, axis=axis, out=out)
        ax = axis % out.ndim
        ctx.args = (ax, np.cumsum([np.shape(x)[ax] for x in xs])[:-1])
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        ax, splits = ctx.args
        return tuple(np.split(g, splits, axis=ax))


class Stack(Function):
    """`np.stack(xs, axis)`."""

    @staticmethod
    def forward(ctx: Context, *xs: Any, axis: int = 0) -> np.ndarray:
        out = np.stack(xs, axis=axis)
        ctx.axis = axis % out.ndim
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        return tuple(np.moveaxis(g, ctx.axis, 0))


class Pad(Function):
    """Constant padding with zeros (`np.pad` `pad_width` forms)."""

    @staticmethod
    def forward(ctx: Context, x: Any, *, pad_width: Any) -> np.ndarray:
        x = np.asarray(x)
        widths = np.broadcast_to(np.asarray(pad_width, dtype=np.intp), (x.ndim, 2))
        starts = widths[:, 0].tolist()
        ctx.slices = tuple(slice(b, b + n) for b, n in zip(starts, x.shape, strict=True))
        return np.pad(x, widths)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        return g[ctx.slices]


# -- public functions ------------------------------------------------------------------------


def reshape(x: Any, shape: int | Sequence[int]) -> Tensor:
    """`x` with a new shape (`-1` infers one dimension); a view when NumPy allows."""
    return Reshape.apply(x, shape=shape)


def transpose(x: Any, axes: Sequence[int] | None = None) -> Tensor:
    """Permute axes (reversed when None)."""
    return Transpose.apply(x, axes=None if axes is None else tuple(axes))


def getitem(x: Any, index: Any) -> Tensor:
    """`x[index]`; Tensors inside `index` are used as arrays (indices get no gradient)."""
    if isinstance(index, tuple):
        index = tuple(_raw(i) for i in index)
    else:
        index = _raw(index)
    return GetItem.apply(x, index=index)


def cast(x: Any, dtype: DTypeLike) -> Tensor:
    """`x` converted to `dtype` (differentiable between float dtypes)."""
    return Cast.apply(x, dtype=np.dtype(dtype))


def concatenate(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """Join `tensors` along an existing `axis`."""
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors: Sequence[Any], axis: int = 0) -> Tensor:
    """Join `tensors` (same shape) along a new `axis`."""
    return Stack.apply(*tensors, axis=axis)


def pad(x: Any, pad_width: Any) -> Tensor:
    """Pad `x` with zeros; `pad_width` as in `np.pad` (int, pair, or one pair per axis)."""
    return Pad.apply(x, pad_width=pad_width)
