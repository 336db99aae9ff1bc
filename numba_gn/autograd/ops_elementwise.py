"""Elementwise ops with NumPy broadcasting: arithmetic, powers, exp/log, min/max, where, clip.

Every binary backward sums its gradient back to each input's shape with `unbroadcast`.
Subgradients follow TensorFlow/Keras: `abs'(0) = 0`; `maximum`/`minimum` send the gradient
of a tie to the first argument (TF selects `x >= y` for maximum, `x <= y` for minimum);
`clip` passes the gradient where `lo <= x <= hi` (bounds included).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numba_gn.autograd.function import Context, Function
from numba_gn.autograd.tensor import Tensor

__all__ = [
    "abs",
    "add",
    "clip",
    "div",
    "exp",
    "log",
    "maximum",
    "minimum",
    "mul",
    "neg",
    "pow",
    "sqrt",
    "square",
    "sub",
    "unbroadcast",
    "where",
]


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `grad` over the axes that broadcasting added or stretched, down to `shape`.

    The adjoint of `np.broadcast_to(x, grad.shape)` for an `x` of `shape`.
    """
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    if lead:
        grad = grad.sum(axis=tuple(range(lead)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return np.asarray(grad)


class Add(Function):
    """`x + y`."""

    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> np.ndarray:
        ctx.shapes = (np.shape(x), np.shape(y))
        return x + y

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        sx, sy = ctx.shapes
        nx, ny = ctx.needs_input_grad
        return (unbroadcast(g, sx) if nx else None, unbroadcast(g, sy) if ny else None)


class Sub(Function):
    """`x - y`."""

    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> np.ndarray:
        ctx.shapes = (np.shape(x), np.shape(y))
        return x - y

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        sx, sy = ctx.shapes
        nx, ny = ctx.needs_input_grad
        return (unbroadcast(g, sx) if nx else None, unbroadcast(-g, sy) if ny else None)


class Mul(Function):
    """`x * y`."""

    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> np.ndarray:
        ctx.save_for_backward(x, y)
        return x * y

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        x, y = ctx.saved_tensors
        nx, ny = ctx.needs_input_grad
        return (
            unbroadcast(g * y, np.shape(x)) if nx else None,
            unbroadcast(g * x, np.shape(y)) if ny else None,
        )


class Div(Function):
    """`x / y`."""

    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> np.ndarray:
        out = x / y
        ctx.save_for_backward(x, y, out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        x, y, out = ctx.saved_tensors
        nx, ny = ctx.needs_input_grad
        gx = g / y
        return (
            unbroadcast(gx, np.shape(x)) if nx else None,
            unbroadcast(-gx * out, np.shape(y)) if ny else None,
        )


class Neg(Function):
    """`-x`."""

    @staticmethod
    def forward(ctx: Context, x: Any) -> np.ndarray:
        return np.negative(x)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        return -g


class Pow(Function):
    """`x ** y`; the gradient in `y` is `x**y * log(x)` where `x > 0` and 0 elsewhere."""

    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> np.ndarray:
        out = np.power(x, y)
        ctx.save_for_backward(x, y, out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        x, y, out = ctx.saved_tensors
        nx, ny = ctx.needs_input_grad
        gx = gy = None
        if nx:
            if np.ndim(y) == 0 and not isinstance(y, np.ndarray):
                # Scalar exponents: exact shortcuts avoid 0 * inf at x == 0.
                if y == 0:
                    gx = np.zeros_like(g)
                elif y == 1:
                    gx = g
                elif y == 2:
                    gx = g * (2 * x)
                else:
                    gx = g * (y * np.power(x, y - 1))
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    d = np.where(y == 0, 0, y * np.power(x, y - 1))
                gx = g * d
            gx = unbroadcast(gx, np.shape(x))
        if ny:
            positive = np.asarray(x) > 0
            logx = np.log(np.where(positive, x, 1))
            gy = unbroadcast(g * out * logx, np.shape(y))
        return gx, gy


class Abs(Function):
    """`|x|`; gradient `sign(x)` (0 at 0)."""

    @staticmethod
    def forward(ctx: Context, x: Any) -> np.ndarray:
        ctx.save_for_backward(x)
        return np.abs(x)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        return g * np.sign(x)


class Sqrt(Function):
    """`sqrt(x)`."""

    @staticmethod
    def forward(ctx: Context, x: Any) -> np.ndarray:
        out = np.sqrt(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return g / (2 * out)


class Square(Function):
    """`x * x`."""

    @staticmethod
    def forward(ctx: Context, x: Any) -> np.ndarray:
        ctx.save_for_backward(x)
        return np.square(x)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        return g * (2 * x)


class Exp(Function):
    """`exp(x)`."""

    @staticmethod
    def forward(ctx: Context, x: Any) -> np.ndarray:
        out = np.exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return g * out


class Log(Function):
    """Natural logarithm."""

    @staticmethod
    def forward(ctx: Context, x: Any) -> np.ndarray:
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        return g / x


class Maximum(Function):
    """Elementwise maximum; ties send the gradient to `x` (TF's `x >= y`)."""

    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> np.ndarray:
        ctx.save_for_backward(x, y)
        return np.maximum(x, y)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        x, y = ctx.saved_tensors
        return _select_grads(ctx, g, np.greater_equal(x, y), x, y)


class Minimum(Function):
    """Elementwise minimum; ties send the gradient to `x` (TF's `x <= y`)."""

    @staticmethod
    def forward(ctx: Context, x: Any, y: Any) -> np.ndarray:
        ctx.save_for_backward(x, y)
        return np.minimum(x, y)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        x, y = ctx.saved_tensors
        return _select_grads(ctx, g, np.less_equal(x, y), x, y)


class Where(Function):
    """`where(condition, x, y)`; `condition` is a static (non-differentiable) argument."""

    @staticmethod
    def forward(ctx: Context, x: Any, y: Any, *, condition: np.ndarray) -> np.ndarray:
        ctx.save_for_backward(x, y)
        ctx.condition = condition
        return np.where(condition, x, y)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        x, y = ctx.saved_tensors
        return _select_grads(ctx, g, ctx.condition, x, y)


class Clip(Function):
    """`clip(x, lo, hi)`; gradient 1 where `lo <= x <= hi` (no gradient to the bounds)."""

    @staticmethod
    def forward(ctx: Context, x: Any, *, lo: Any, hi: Any) -> np.ndarray:
        ctx.save_for_backward(x)
        ctx.bounds = (lo, hi)
        return np.clip(x, lo, hi)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        inside = np.ones(np.shape(x), dtype=bool)
        if lo is not None:
            inside &= np.greater_equal(x, lo)
        if hi is not None:
            inside &= np.less_equal(x, hi)
        return np.where(inside, g, 0).astype(g.dtype, copy=False)


def _select_grads(ctx: Context, g: np.ndarray, mask: Any, x: Any, y: Any) -> tuple:
    """Route `g` to `x` where `mask` holds and to `y` elsewhere (summed to shapes)."""
    nx, ny = ctx.needs_input_grad
    mask = np.broadcast_to(mask, g.shape)
    zero = np.zeros((), dtype=g.dtype)
    return (
        unbroadcast(np.where(mask, g, zero), np.shape(x)) if nx else None,
        unbroadcast(np.where(mask, zero, g), np.shape(y)) if ny else None,
    )


def _raw(x: Any) -> Any:
    return x.data if isinstance(x, Tensor) else x


# -- public functions: accept Tensors, ndarrays or Python scalars; return a Tensor ---------------


def add(x: Any, y: Any) -> Tensor:
    """`x + y` with broadcasting."""
    return Add.apply(x, y)


def sub(x: Any, y: Any) -> Tensor:
    """`x - y` with broadcasting."""
    return Sub.apply(x, y)


def mul(x: Any, y: Any) -> Tensor:
    """`x * y` with broadcasting."""
    return Mul.apply(x, y)


def div(x: Any, y: Any) -> Tensor:
    """`x / y` with broadcasting (true division)."""
    return Div.apply(x, y)


def neg(x: Any) -> Tensor:
    """`-x`."""
    return Neg.apply(x)


def pow(x: Any, y: Any) -> Tensor:  # noqa: A001 - the op's natural name, as in NumPy/Keras
    """`x ** y` with broadcasting; differentiable in both (in `y` only where `x > 0`)."""
    return Pow.apply(x, y)


def abs(x: Any) -> Tensor:  # noqa: A001
    """`|x|`, with `abs'(0) = 0`."""
    return Abs.apply(x)


def sqrt(x: Any) -> Tensor:
    """Elementwise square root."""
    return Sqrt.apply(x)


def square(x: Any) -> Tensor:
    """Elementwise `x * x`."""
    return Square.apply(x)


def exp(x: Any) -> Tensor:
    """Elementwise `e ** x`."""
    return Exp.apply(x)


def log(x: Any) -> Tensor:
    """Elementwise natural logarithm."""
    return Log.apply(x)


def maximum(x: Any, y: Any) -> Tensor:
    """Elementwise maximum; a tie's gradient goes to `x`."""
    return Maximum.apply(x, y)


def minimum(x: Any, y: Any) -> Tensor:
    """Elementwise minimum; a tie's gradient goes to `x`."""
    return Minimum.apply(x, y)


def where(condition: Any, x: Any, y: Any) -> Tensor:
    """`x` where `condition` holds, else `y` (differentiable in `x` and `y`)."""
    return Where.apply(x, y, condition=np.asarray(_raw(condition), dtype=bool))


def clip(x: Any, min_value: Any = None, max_value: Any = None) -> Tensor:
    """Clip `x` to `[min_value, max_value]` (either may be None); bounds get no gradient."""
    if min_value is None and max_value is None:
        raise ValueError("clip() needs min_value or max_value.")
    return Clip.apply(x, lo=_raw(min_value), hi=_raw(max_value))
