"""Activations and normalised exponentials: tanh, sigmoid, relu, silu, gelu, softmax, log_softmax.

Formulas follow Keras 3: `gelu` defaults to the exact erf form (`approximate=False`) and its
tanh approximation uses Keras's constant 0.044715; `relu'(0) = 0`. Softmax and log_softmax
subtract the maximum first (log-sum-exp). Constants are Python floats so float32 inputs stay
float32. ReLU, SiLU and sigmoid on float32 arrays run as one-pass Numba kernels
(`numba_gn.kernels.activations`), forward and backward; other dtypes use NumPy.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from numba_gn.autograd.function import Context, Function
from numba_gn.autograd.tensor import Tensor
from numba_gn.kernels import activations

__all__ = ["gelu", "log_softmax", "relu", "sigmoid", "silu", "softmax", "tanh"]


def _special():
    """`scipy.special`, imported on first use: it costs ~0.1 s at `import numba_gn`."""
    from scipy import special

    return special

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


class Tanh(Function):
    """Hyperbolic tangent."""

    @staticmethod
    def forward(ctx: Context, x: Any) -> np.ndarray:
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return g * (1.0 - out * out)


def _sigmoid(x: Any) -> np.ndarray:
    """`1 / (1 + exp(-x))`, on NumPy's SIMD `exp` for float arrays.

    About 4x faster than SciPy's `expit` and within 1 ulp of it; `exp(-x)` overflowing to
    inf gives the right limit, 0.
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return _special().expit(x)
    with np.errstate(over="ignore"):
        s = np.exp(-x)
    s += 1
    return np.reciprocal(s, out=s)


def _on_kernel(*arrays: Any) -> bool:
    """Whether the one-pass kernels of `numba_gn.kernels.activations` take these arrays.

    They compute in float32 (their exponential is float32's); other dtypes keep NumPy's code.
    """
    return all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in arrays)


class Sigmoid(Function):
    """Logistic sigmoid `1 / (1 + exp(-x))`."""

    @staticmethod
    def forward(ctx: Context, x: Any) -> np.ndarray:
        out = activations.forward("sigmoid", x) if _on_kernel(x) else _sigmoid(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (s,) = ctx.saved_tensors
        if _on_kernel(g, s):
            return activations.backward("sigmoid", g, s)
        return g * (s * (1.0 - s))


class Relu(Function):
    """`max(x, 0)`; gradient 0 at 0."""

    @staticmethod
    def forward(ctx: Context, x: Any) -> np.ndarray:
        ctx.save_for_backward(x)
        return activations.forward("relu", x) if _on_kernel(x) else np.maximum(x, 0)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        if _on_kernel(g, x):
            return activations.backward("relu", g, x)
        return g * (np.asarray(x) > 0)


class Silu(Function):
    """`x * sigmoid(x)` (swish). The backward recomputes the sigmoid rather than keep it."""

    @staticmethod
    def forward(ctx: Context, x: Any) -> np.ndarray:
        ctx.save_for_backward(x)
        if _on_kernel(x):
            return activations.forward("silu", x)
        return x * _sigmoid(x)

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        if _on_kernel(g, x):
            return activations.backward("silu", g, x)
        s = _sigmoid(x)
        return g * (s * (1.0 + x * (1.0 - s)))


class Gelu(Function):
    """Gaussian error linear unit, exact (erf) or tanh-approximated."""

    @staticmethod
    def forward(ctx: Context, x: Any, *, approximate: bool = False) -> np.ndarray:
        ctx.save_for_backward(x)
        ctx.approximate = approximate
        if approximate:
            return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x)))
        return 0.5 * x * (1.0 + _special().erf(x * _SQRT_HALF))

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (x,) = ctx.saved_tensors
        if ctx.approximate:
            t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x))
            dinner = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * x * x)
            return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner)
        cdf = 0.5 * (1.0 + _special().erf(x * _SQRT_HALF))
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
        return g * (cdf + x * pdf)


class Softmax(Function):
    """`exp(x) / sum(exp(x))` along `axis`."""

    @staticmethod
    def forward(ctx: Context, x: Any, *, axis: int = -1) -> np.ndarray:
        x = np.asarray(x)
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        out = e / e.sum(axis=axis, keepdims=True)
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return out * (g - (g * out).sum(axis=ctx.axis, keepdims=True))


class LogSoftmax(Function):
    """`x - logsumexp(x)` along `axis`."""

    @staticmethod
    def forward(ctx: Context, x: Any, *, axis: int = -1) -> np.ndarray:
        x = np.asarray(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        ctx.save_for_backward(out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> np.ndarray:
        (out,) = ctx.saved_tensors
        return g - np.exp(out) * g.sum(axis=ctx.axis, keepdims=True)


def tanh(x: Any) -> Tensor:
    """Hyperbolic tangent."""
    return Tanh.apply(x)


def sigmoid(x: Any) -> Tensor:
    """Logistic sigmoid, stable for large `|x|`."""
    return Sigmoid.apply(x)


def relu(x: Any) -> Tensor:
    """Rectified linear unit `max(x, 0)` (`relu'(0) = 0`)."""
    return Relu.apply(x)


def silu(x: Any) -> Tensor:
    """`x * sigmoid(x)`."""
    return Silu.apply(x)


def gelu(x: Any, approximate: bool = False) -> Tensor:
    """GELU as `keras.activations.gelu`: exact erf form unless `approximate=True`."""
    return Gelu.apply(x, approximate=bool(approximate))


def softmax(x: Any, axis: int = -1) -> Tensor:
    """Softmax along `axis` (max-subtracted, so large logits do not overflow)."""
    return Softmax.apply(x, axis=axis)


def log_softmax(x: Any, axis: int = -1) -> Tensor:
    """Log of the softmax along `axis`, via log-sum-exp."""
    return LogSoftmax.apply(x, axis=axis)
