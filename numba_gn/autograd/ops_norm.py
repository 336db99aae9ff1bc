"""Differentiable batch and layer normalisation, with closed-form backward passes, on NumPy.

Three ops, after Keras 3:

* `batch_norm`: training-mode batch normalisation. The statistics are taken over every axis
  but the channel axis (optionally over the unmasked positions only), and the backward pass
  differentiates through them.
* `batch_normalization`: `keras.ops.batch_normalization`, normalisation with given statistics
  (the inference mode of `BatchNormalization`), differentiable in all five inputs.
* `layer_norm`: `keras.ops.layer_normalization`, per-sample statistics over the given axes,
  with Keras's deprecated `rms_scaling` variant.

Computation is in float32 for float16 and integer input and in the input's precision otherwise
(Keras computes in at least float32 too). The statistics are two-pass: the mean first, then
the variance as the mean square of the centred values, both summed in float64, so unlike
Keras's `E[x^2] - E[x]^2` the variance does not lose its digits when the mean is large
compared with the spread, and is never negative.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from numba_gn import _args, _checks
from numba_gn.autograd.function import Context, Function
from numba_gn.autograd.tensor import Tensor

__all__ = ["batch_norm", "batch_normalization", "layer_norm"]


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """float64 stays float64; float16, float32 and integers are computed in float32."""
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _output_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype of an op's output: the input's float dtype, float32 for integer input."""
    return dtype if dtype.kind == "f" else np.dtype(np.float32)


def _other_axes(ndim: int, axes: tuple[int, ...]) -> tuple[int, ...]:
    """The axes of an `ndim`-dimensional array that are not in `axes`."""
    return tuple(a for a in range(ndim) if a not in axes)


def _broadcast_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """`shape` with 1 on every axis not in `axes`: a weight over `axes`, broadcastable."""
    return tuple(n if a in axes else 1 for a, n in enumerate(shape))


def _data(value: Any, name: str) -> np.ndarray:
    """The array behind a Tensor or array-like argument, refused unless numeric."""
    arr = np.asarray(value.data if isinstance(value, Tensor) else value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must be a numeric array, got dtype {arr.dtype}.")
    return arr


def _check_param(value: Any, shape: tuple[int, ...], name: str, what: str) -> None:
    """None, or a numeric array of exactly `shape` (`what` says where the shape comes from)."""
    if value is None:
        return
    arr = _data(value, name)
    if arr.shape != shape:
        raise ValueError(f"`{name}` must have shape {shape} ({what}), got shape {arr.shape}.")


def _channel_axis(axis: object, ndim: int) -> int:
    """`axis` as a non-negative axis of an `ndim`-dimensional array."""
    a = _checks.axis(axis, "axis")
    if not -ndim <= a < ndim:
        raise ValueError(
            f"`axis`={a} is out of range for an input with {ndim} dimensions."
        )
    return a % ndim


def _norm_axes(axis: object, ndim: int) -> tuple[int, ...]:
    """Layer-norm axes as sorted non-negative ints: each in range, none repeated."""
    given = _checks.int_sequence(axis, "axis")
    items = given if isinstance(given, tuple) else (given,)
    out = []
    for a in items:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"`axis`={_checks.show(axis)} is out of range for an input with {ndim} "
                "dimensions."
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"`axis`={_checks.show(axis)} repeats an axis.")
    return tuple(sorted(out))


def _reshape(value: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    return None if value is None else np.asarray(value, dtype=dtype).reshape(shape)


# -- the shared forward and backward ------------------------------------------------------------


def _normalize(
    x: np.ndarray,
    red: tuple[int, ...],
    epsilon: float,
    w: np.ndarray | None,
    count: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`(x_c, mean, var, rstd, xhat)` over the axes `red` (keepdims), in the compute dtype.

    `x_c` is `x` in the compute dtype; `w` (bool, broadcastable to `x`) selects the
    positions that enter the statistics, `count` of them per reduction. No position (an empty
    batch, or everything masked) gives mean 0 and variance 0.
    """
    ct = _compute_dtype(x.dtype)
    xc = x.astype(ct, copy=False)
    d = max(count, 1)
    # Masked positions are selected with `where`, never multiplied by zero: a NaN or Inf in the
    # padding then cannot reach the sums.
    picked = xc if w is None else np.where(w, xc, ct.type(0))
    mean = np.sum(picked, axis=red, keepdims=True, dtype=np.float64) / d
    centred = xc - mean.astype(ct)
    sq = np.square(centred)
    if w is not None:
        sq = np.where(w, sq, ct.type(0))
    var = np.sum(sq, axis=red, keepdims=True, dtype=np.float64) / d
    rstd = (1.0 / np.sqrt(var + epsilon)).astype(ct)
    xhat = centred * rstd
    return xc, mean.astype(ct), var.astype(ct), rstd, xhat


def _affine(xhat: np.ndarray, gamma: Any, beta: Any) -> np.ndarray:
    """`xhat * gamma + beta` (either may be None), in a new array."""
    y = xhat * gamma if gamma is not None else xhat.copy()
    if beta is not None:
        y += beta
    return y


def _sum_to(a: np.ndarray, axes: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """`a` summed over `axes`, reshaped to a parameter's `shape`."""
    return np.sum(a, axis=axes).reshape(shape)


def _stats_backward(
    gy: np.ndarray,
    xhat: np.ndarray,
    rstd: np.ndarray,
    red: tuple[int, ...],
    w: np.ndarray | None,
    count: int,
) -> np.ndarray:
    """The gradient of `x` for `xhat = (x - mean) * rstd`, with `gy` that of `xhat`.

    With weights `w` (1 inside the statistics, 0 outside) and `d` positions per
    reduction, `mean = sum(w x) / d` and `var = sum(w (x - mean)^2) / d`, while every
    position is normalised. The chain rule gives, with `S = sum(gy * xhat)` over all
    positions::

        dc = rstd * (gy - w * xhat * S / d)      # through xhat directly and through var
        dx = dc - w * sum(dc) / d                # through the mean

    Unmasked (`w = 1`) this is the familiar
    `rstd * (gy - mean(gy) - xhat * mean(gy * xhat))`, up to a term proportional to
    `mean(xhat)`, which is zero.
    """
    d = max(count, 1)
    s = np.sum(gy * xhat, axis=red, keepdims=True) / d
    if w is None:
        dc = rstd * (gy - xhat * s)
        dc -= np.sum(dc, axis=red, keepdims=True) / d
        return dc
    zero = xhat.dtype.type(0)
    dc = rstd * (gy - np.where(w, xhat, zero) * s)
    dc -= np.where(w, np.sum(dc, axis=red, keepdims=True) / d, zero)
    return dc


# -- batch normalisation, training mode ---------------------------------------------------------


class BatchNorm(Function):
    """`(x - mean) / sqrt(var + epsilon) * gamma + beta` with the batch's statistics."""

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        gamma: np.ndarray | None,
        beta: np.ndarray | None,
        *,
        axis: int,
        epsilon: float,
        weights: np.ndarray | None,
        count: int,
        stats: list | None,
    ) -> np.ndarray:
        """Normalise `x` over every axis but `axis`; keep `xhat` and `rstd`."""
        x = np.asarray(x)
        red = _other_axes(x.ndim, (axis,))
        _, mean, var, rstd, xhat = _normalize(x, red, epsilon, weights, count)
        bshape = _broadcast_shape(x.shape, (axis,))
        g = _reshape(gamma, bshape, xhat.dtype)
        y = _affine(xhat, g, _reshape(beta, bshape, xhat.dtype))
        if stats is not None:
            stats.extend((mean.reshape(-1), var.reshape(-1)))
        ctx.save_for_backward(xhat, rstd, g, weights)
        ctx.args = (red, count, (x.shape[axis],))
        return y.astype(_output_dtype(x.dtype), copy=False)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple:
        """Gradients of `x`, `gamma` and `beta` in closed form."""
        xhat, rstd, g, w = ctx.saved_tensors
        red, count, pshape = ctx.args
        nx, ngamma, nbeta = ctx.needs_input_grad
        grad = np.asarray(grad, dtype=xhat.dtype)
        dx = dgamma = dbeta = None
        if nx:
            gy = grad * g if g is not None else grad
            dx = _stats_backward(gy, xhat, rstd, red, w, count)
        if ngamma and g is not None:
            dgamma = _sum_to(grad * xhat, red, pshape)
        if nbeta:
            dbeta = _sum_to(grad, red, pshape)
        return dx, dgamma, dbeta


def _batch_mask(mask: Any, shape: tuple[int, ...], axis: int) -> tuple[np.ndarray, int]:
    """The mask as bool weights broadcastable to `shape`, and the positions it selects."""
    m = np.asarray(mask.data if isinstance(mask, Tensor) else mask)
    if m.dtype.kind not in "biuf":
        raise TypeError(f"`mask` must be a bool (or numeric) array, got dtype {m.dtype}.")
    rest = shape[:axis] + shape[axis + 1 :]
    if m.ndim != len(shape) - 1:
        raise ValueError(
            "The mask provided should be one dimension less than the inputs. Received: "
            f"mask.shape={m.shape}, inputs.shape={shape}"
        )
    try:
        m = np.broadcast_to(m.astype(bool, copy=False), rest)
    except ValueError:
        raise ValueError(
            f"`mask` of shape {m.shape} does not broadcast to the input's shape without its "
            f"channel axis, {rest}."
        ) from None
    return np.expand_dims(m, axis), int(np.count_nonzero(m))


def batch_norm(
    x: Any,
    gamma: Any = None,
    beta: Any = None,
    *,
    axis: int = -1,
    epsilon: float = 1e-3,
    mask: Any = None,
    return_stats: bool = False,
) -> Tensor | tuple[Tensor, np.ndarray, np.ndarray]:
    """Batch-normalise `x` with its own statistics (the training mode of batch norm).

    Args:
        x: Tensor or array, float or integer (computed in float32, or float64 for float64).
        gamma: Scale of the channel shape `(x.shape[axis],)`, or None (1, no gradient).
        beta: Offset of the same shape, or None (0).
        axis: The channel axis; mean and variance are taken over every other axis.
        epsilon: Added to the variance, finite and >= 0.
        mask: Optional bool array of `x`'s rank less one: broadcast to `x`'s shape
            without the channel axis, it selects the positions that enter the statistics
            (as in Keras's `BatchNormalization`); every position is normalised. Not
            differentiated.
        return_stats: Also return the batch mean and (biased) variance, arrays of the channel
            shape in the compute dtype, outside any tape.

    Returns:
        The normalised Tensor (the input's float dtype; float32 for integer input), or
        `(output, mean, variance)` with `return_stats`.
    """
    xa = _data(x, "x")
    if xa.ndim == 0:
        raise ValueError("`x` must have at least one dimension (the channel axis).")
    a = _channel_axis(axis, xa.ndim)
    eps = _args.check_epsilon(epsilon)
    channels = (xa.shape[a],)
    _check_param(gamma, channels, "gamma", "the channel axis")
    _check_param(beta, channels, "beta", "the channel axis")
    return_stats = _checks.boolean(return_stats, "return_stats")
    if mask is None:
        weights, count = None, math.prod(xa.shape[:a] + xa.shape[a + 1 :])
    else:
        weights, count = _batch_mask(mask, xa.shape, a)
    stats: list | None = [] if return_stats else None
    y = BatchNorm.apply(
        x, gamma, beta, axis=a, epsilon=eps, weights=weights, count=count, stats=stats
    )
    if stats is not None:
        return y, stats[0], stats[1]
    return y


# -- normalisation with given statistics (inference mode) ---------------------------------------


class BatchNormalization(Function):
    """`(x - mean) / sqrt(variance + epsilon) * scale + offset` along the channel `axis`."""

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        mean: np.ndarray,
        variance: np.ndarray,
        offset: np.ndarray | None,
        scale: np.ndarray | None,
        *,
        axis: int,
        epsilon: float,
    ) -> np.ndarray:
        """Normalise with the given statistics; keep `xhat` and `rstd`."""
        x = np.asarray(x)
        ct = _compute_dtype(x.dtype)
        bshape = _broadcast_shape(x.shape, (axis,))
        var = np.asarray(variance, dtype=np.float64).reshape(bshape)
        rstd = (1.0 / np.sqrt(var + epsilon)).astype(ct)
        xhat = (x.astype(ct, copy=False) - _reshape(mean, bshape, ct)) * rstd
        s = _reshape(scale, bshape, ct)
        y = _affine(xhat, s, _reshape(offset, bshape, ct))
        ctx.save_for_backward(xhat, rstd, s)
        ctx.red = _other_axes(x.ndim, (axis,))
        return y.astype(_output_dtype(x.dtype), copy=False)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple:
        """Gradients of `x`, `mean`, `variance`, `offset` and `scale`."""
        xhat, rstd, s = ctx.saved_tensors
        red = ctx.red
        nx, nmean, nvar, noffset, nscale = ctx.needs_input_grad
        grad = np.asarray(grad, dtype=xhat.dtype)
        gs = grad * s if s is not None else grad
        shape = (rstd.size,)
        dx = gs * rstd if (nx or nmean) else None
        dmean = -_sum_to(dx, red, shape) if nmean else None
        # d/dvar of (x - mean) * (var + eps)^(-1/2) is -xhat * rstd^2 / 2.
        dvar = (
            -0.5 * _sum_to(gs * xhat, red, shape) * np.square(rstd.reshape(shape))
            if nvar
            else None
        )
        doffset = _sum_to(grad, red, shape) if noffset else None
        dscale = _sum_to(grad * xhat, red, shape) if (nscale and s is not None) else None
        return (dx if nx else None), dmean, dvar, doffset, dscale


def batch_normalization(
    x: Any,
    mean: Any,
    variance: Any,
    axis: int,
    offset: Any = None,
    scale: Any = None,
    epsilon: float = 1e-3,
) -> Tensor:
    """Normalise `x` with given statistics, as `keras.ops.batch_normalization`.

    Args:
        x: Tensor or array, float or integer (computed in float32, or float64 for float64).
        mean: Mean per channel, shape `(x.shape[axis],)`.
        variance: Variance per channel, same shape.
        axis: The channel axis.
        offset: Added after scaling (shape of `mean`), or None.
        scale: Multiplies the normalised values (shape of `mean`), or None.
        epsilon: Added to the variance, finite and >= 0.

    Returns:
        `(x - mean) / sqrt(variance + epsilon) * scale + offset`, differentiable in every
        input, in `x`'s float dtype (float32 for integer input).
    """
    xa = _data(x, "x")
    if xa.ndim == 0:
        raise ValueError("`x` must have at least one dimension (the channel axis).")
    a = _channel_axis(axis, xa.ndim)
    eps = _args.check_epsilon(epsilon)
    channels = (xa.shape[a],)
    for value, name in ((mean, "mean"), (variance, "variance")):
        if value is None:
            raise TypeError(f"`{name}` must be an array of shape {channels}, got None.")
        _check_param(value, channels, name, "the channel axis")
    _check_param(offset, channels, "offset", "the channel axis")
    _check_param(scale, channels, "scale", "the channel axis")
    return BatchNormalization.apply(x, mean, variance, offset, scale, axis=a, epsilon=eps)


# -- layer normalisation ------------------------------------------------------------------------


class LayerNorm(Function):
    """Per-sample normalisation over `axes`, scaled and shifted by weights of their shape."""

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        gamma: np.ndarray | None,
        beta: np.ndarray | None,
        *,
        axes: tuple[int, ...],
        epsilon: float,
        rms_scaling: bool,
    ) -> np.ndarray:
        """Normalise `x` over `axes`; keep what backward needs."""
        x = np.asarray(x)
        red = axes
        count = math.prod(x.shape[a] for a in red)
        xc, _, _, rstd, xhat = _normalize(x, red, epsilon, None, count)
        bshape = _broadcast_shape(x.shape, axes)
        g = _reshape(gamma, bshape, xhat.dtype)
        if rms_scaling:
            # Keras's deprecated variant: the input (not centred) over the standard deviation.
            xs = xc * rstd
            y = _affine(xs, g, None)
            ctx.save_for_backward(xhat, rstd, g, xs)
        else:
            y = _affine(xhat, g, _reshape(beta, bshape, xhat.dtype))
            ctx.save_for_backward(xhat, rstd, g, None)
        ctx.args = (red, _other_axes(x.ndim, axes), count, tuple(x.shape[a] for a in axes))
        return y.astype(_output_dtype(x.dtype), copy=False)

    @staticmethod
    def backward(ctx: Context, grad: np.ndarray) -> tuple:
        """Gradients of `x`, `gamma` and `beta` in closed form."""
        xhat, rstd, g, xs = ctx.saved_tensors
        red, rest, count, pshape = ctx.args
        nx, ngamma, nbeta = ctx.needs_input_grad
        grad = np.asarray(grad, dtype=xhat.dtype)
        gy = grad * g if g is not None else grad
        dx = dgamma = dbeta = None
        if xs is None:
            if nx:
                dx = _stats_backward(gy, xhat, rstd, red, None, count)
            if ngamma and g is not None:
                dgamma = _sum_to(grad * xhat, rest, pshape)
            if nbeta:
                dbeta = _sum_to(grad, rest, pshape)
            return dx, dgamma, dbeta
        # y = x * rstd * gamma, var the centred variance: dx = rstd * (gy - xhat * mean(gy * xs))
        if nx:
            d = max(count, 1)
            dx = rstd * (gy - xhat * (np.sum(gy * xs, axis=red, keepdims=True) / d))
        if ngamma and g is not None:
            dgamma = _sum_to(grad * xs, rest, pshape)
        return dx, dgamma, None


def layer_norm(
    x: Any,
    gamma: Any = None,
    beta: Any = None,
    *,
    axis: int | tuple[int, ...] | list[int] = -1,
    epsilon: float = 1e-3,
    rms_scaling: bool = False,
) -> Tensor:
    """Layer-normalise `x` over `axis`, as `keras.ops.layer_normalization`.

    Args:
        x: Tensor or array, float or integer. Float16 is computed in float32 and returned as
            float16, float64 is computed in float64; integers give float32.
        gamma: Scale with the shape of the normalised axes (in increasing axis order), or None.
        beta: Offset of the same shape, or None. Not allowed with `rms_scaling`.
        axis: An axis or a list/tuple of axes to normalise over, each sample (every position
            of the other axes) on its own.
        epsilon: Added to the variance, finite and >= 0.
        rms_scaling: Keras's deprecated variant `y = x / sqrt(var + epsilon) * gamma`: the
            input is divided by its standard deviation without being centred.

    Returns:
        The normalised Tensor.
    """
    xa = _data(x, "x")
    axes = _norm_axes(axis, xa.ndim)
    eps = _args.check_epsilon(epsilon)
    rms_scaling = _checks.boolean(rms_scaling, "rms_scaling")
    pshape = tuple(xa.shape[a] for a in axes)
    _check_param(gamma, pshape, "gamma", "the normalised axes")
    _check_param(beta, pshape, "beta", "the normalised axes")
    if rms_scaling and beta is not None:
        raise ValueError("`beta` cannot be used with `rms_scaling=True` (there is no offset).")
    return LayerNorm.apply(x, gamma, beta, axes=axes, epsilon=eps, rms_scaling=rms_scaling)
