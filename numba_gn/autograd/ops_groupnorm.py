"""The differentiable group normalisation op, a thin wrapper over `numba_gn.functional`.

The forward keeps the engine's per-(sample, group) statistics as residuals, so the backward
runs one fused kernel pass (`group_norm_backward`) and recomputes nothing.

With `residual=` or `activation=` the op is the fused `act(GN(x) * gamma + beta + residual)`
(`FusedGroupNorm`): one pass forward, one pass backward, and the pre-activation is never
stored (the backward recomputes it from `x` and the statistics).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numba_gn import _checks, functional
from numba_gn.autograd.function import Context, Function
from numba_gn.autograd.tensor import Tensor

__all__ = ["group_norm"]


class GroupNorm(Function):
    """`y = (x - mean) * rstd * gamma + beta` per (sample, group), Keras semantics."""

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        gamma: np.ndarray | None,
        beta: np.ndarray | None,
        *,
        groups: int,
        axis: int | tuple[int, ...],
        epsilon: float,
        group_size: int | None,
    ) -> np.ndarray:
        y, mean, rstd = functional.group_norm(
            x,
            groups,
            gamma,
            beta,
            axis=axis,
            epsilon=epsilon,
            group_size=group_size,
            return_stats=True,
        )
        ctx.save_for_backward(x, mean, rstd, gamma)
        ctx.args = (groups, axis, group_size)
        return y

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        x, mean, rstd, gamma = ctx.saved_tensors
        groups, axis, group_size = ctx.args
        dx, dgamma, dbeta = functional.group_norm_backward(
            g, x, mean, rstd, groups, gamma, axis=axis, group_size=group_size
        )
        nx, ngamma, nbeta = ctx.needs_input_grad
        return (dx if nx else None, dgamma if ngamma else None, dbeta if nbeta else None)


class FusedGroupNorm(Function):
    """`y = act(GN(x) * gamma + beta + residual)` as one op, Keras's activations.

    Inputs `(x, gamma, beta, residual)`, each differentiable (None: absent, no gradient).
    The forward keeps `x`, the statistics, `gamma`, `beta` and `residual`, not `y` nor the
    pre-activation: the backward recomputes the pre-activation in the same kernel pass that
    computes the gradients, so the op holds no more memory than plain GroupNorm plus the
    residual it was given.
    """

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        gamma: np.ndarray | None,
        beta: np.ndarray | None,
        residual: np.ndarray | None,
        *,
        groups: int,
        axis: int | tuple[int, ...],
        epsilon: float,
        group_size: int | None,
        activation: str | None,
        negative_slope: float,
        approximate: bool,
    ) -> np.ndarray:
        y, mean, rstd = functional.group_norm(
            x,
            groups,
            gamma,
            beta,
            axis=axis,
            epsilon=epsilon,
            group_size=group_size,
            return_stats=True,
            residual=residual,
            activation=activation,
            negative_slope=negative_slope,
            approximate=approximate,
        )
        ctx.save_for_backward(x, mean, rstd, gamma, beta, residual)
        ctx.args = (groups, axis, group_size, activation, negative_slope, approximate)
        return y

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        x, mean, rstd, gamma, beta, residual = ctx.saved_tensors
        groups, axis, group_size, activation, negative_slope, approximate = ctx.args
        dx, dgamma, dbeta, dresidual = functional.group_norm_backward(
            g,
            x,
            mean,
            rstd,
            groups,
            gamma,
            beta=beta,
            axis=axis,
            group_size=group_size,
            residual=residual,
            activation=activation,
            negative_slope=negative_slope,
            approximate=approximate,
        )
        nx, ngamma, nbeta, nres = ctx.needs_input_grad
        return (
            dx if nx else None,
            dgamma if ngamma else None,
            dbeta if nbeta else None,
            dresidual if nres else None,
        )


def group_norm(
    x: Any,
    groups: int = 32,
    gamma: Any = None,
    beta: Any = None,
    *,
    axis: int | tuple[int, ...] = -1,
    epsilon: float = 1e-3,
    group_size: int | None = None,
    residual: Any = None,
    activation: str | None = None,
    negative_slope: float = 0.2,
    approximate: bool = False,
) -> Tensor:
    """Group-normalise `x` on the tape (see `numba_gn.functional.group_norm`).

    Same arguments, in the same order, as the array function. `gamma`/`beta` have the
    channel shape (the shape of the `axis` dims); None means 1 and 0 and gets no gradient.
    Axis 0 is the batch axis.

    With `residual` (an array or Tensor of `x`'s shape) or `activation` (None or `"linear"`,
    `"relu"`, `"leaky_relu"`, `"silu"`/`"swish"`, `"sigmoid"`, `"gelu"`), the result is the
    fused `act(GN(x) * gamma + beta + residual)`, differentiable with respect to `x`,
    `gamma`, `beta` and `residual`, in one op: the same values as the separate ops up to
    rounding (see `numba_gn.functional.group_norm`), without storing the intermediate
    results. `negative_slope` is `"leaky_relu"`'s slope below zero (Keras's default 0.2);
    `approximate=True` selects the tanh form of `"gelu"` (Keras's default is the exact erf
    form).

    Args:
        x: The input, batch first.
        groups: Number of groups (`-1`: one per channel).
        gamma: Scale of the channel shape, or None.
        beta: Offset of the channel shape, or None.
        axis: The channel axis, or a tuple of axes forming one channel space.
        epsilon: Added to the variance inside the square root.
        group_size: Channels per group instead of `groups`.
        residual: Added to the normalised output before the activation, or None.
        activation: The activation applied last, by Keras name, or None.
        negative_slope: The slope of `"leaky_relu"` below zero.
        approximate: Use the tanh approximation of `"gelu"`.

    Returns:
        A Tensor of `x`'s shape and dtype.

    Raises:
        TypeError, ValueError: For bad arguments, naming them (from the array function).
    """
    # Checked on every call, so that nonsense is refused even where it would be unused.
    _checks.real(negative_slope, "negative_slope")
    _checks.boolean(approximate, "approximate")
    if residual is None and (activation is None or activation == "linear"):
        # Plain GroupNorm: the op of old, whose backward needs no beta and no epilogue.
        return GroupNorm.apply(
            x, gamma, beta, groups=groups, axis=axis, epsilon=epsilon, group_size=group_size
        )
    return FusedGroupNorm.apply(
        x,
        gamma,
        beta,
        residual,
        groups=groups,
        axis=axis,
        epsilon=epsilon,
        group_size=group_size,
        activation=activation,
        negative_slope=negative_slope,
        approximate=approximate,
    )
