"""The differentiable group normalisation op, a thin wrapper over `numba_gn.functional`.

The forward keeps the engine's per-(sample, group) statistics as residuals, so the backward
runs one fused kernel pass (`group_norm_backward`) and recomputes nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numba_gn import functional
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


def group_norm(
    x: Any,
    groups: int = 32,
    gamma: Any = None,
    beta: Any = None,
    *,
    axis: int | tuple[int, ...] = -1,
    epsilon: float = 1e-3,
    group_size: int | None = None,
) -> Tensor:
    """Group-normalise `x` on the tape (see `numba_gn.functional.group_norm`).

    Same arguments, in the same order, as the array function. `gamma`/`beta` have the
    channel shape (the shape of the `axis` dims); None means 1 and 0 and gets no gradient.
    Axis 0 is the batch axis.
    """
    return GroupNorm.apply(
        x, gamma, beta, groups=groups, axis=axis, epsilon=epsilon, group_size=group_size
    )
