"""The differentiable masked group normalisation op over `numba_gn.functional_masked`.

`GroupNormalization`'s `mask=` argument runs on it. Like the unmasked op, it saves the
statistics so backward recomputes nothing but the normalised input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numba_gn import functional_masked
from numba_gn.autograd.function import Context, Function
from numba_gn.autograd.tensor import Tensor

__all__ = ["MaskedGroupNorm", "masked_group_norm"]


class MaskedGroupNorm(Function):
    """`group_norm` with statistics over the unmasked positions (mask is static, no grad)."""

    @staticmethod
    def forward(
        ctx: Context,
        x: np.ndarray,
        gamma: np.ndarray | None,
        beta: np.ndarray | None,
        *,
        mask: np.ndarray,
        groups: int,
        axis: int | tuple[int, ...],
        epsilon: float,
    ) -> np.ndarray:
        """Normalise `x` with statistics over the unmasked positions; keep them for backward."""
        y, mean, rstd = functional_masked.group_norm_masked(
            x, mask, groups, gamma, beta, axis=axis, epsilon=epsilon
        )
        ctx.save_for_backward(x, mean, rstd, gamma)
        ctx.args = (mask, groups, axis)
        return y

    @staticmethod
    def backward(ctx: Context, g: np.ndarray) -> tuple:
        """Gradients of `x`, `gamma` and `beta` (None where not wanted)."""
        x, mean, rstd, gamma = ctx.saved_tensors
        mask, groups, axis = ctx.args
        dx, dgamma, dbeta = functional_masked.group_norm_masked_backward(
            g, x, mask, mean, rstd, groups, gamma, axis=axis
        )
        nx, ngamma, nbeta = ctx.needs_input_grad
        return (dx if nx else None, dgamma if ngamma else None, dbeta if nbeta else None)


def masked_group_norm(
    x: Any,
    mask: Any,
    gamma: Any = None,
    beta: Any = None,
    groups: int = 32,
    *,
    axis: int | tuple[int, ...] = -1,
    epsilon: float = 1e-3,
) -> Tensor:
    """Masked group normalisation on the tape.

    See `numba_gn.functional_masked.group_norm_masked`. `mask` (bool, the shape of
    `x` without its channel axes) is not differentiated.
    """
    m = mask.data if isinstance(mask, Tensor) else mask  # validated by the functional
    return MaskedGroupNorm.apply(x, gamma, beta, mask=m, groups=groups, axis=axis, epsilon=epsilon)
