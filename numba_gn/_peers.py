"""What a user would run instead of numba_gn: the peers of `numba-gn bench` and the asv suite.

* NumPy: `numba_gn.numpy_reference.group_norm_numpy` in the input's dtype for the forward,
  and `numpy_forward_backward` (forward then the closed-form backward, also plain NumPy);
* PyTorch: `TorchGroupNorm`, `torch.nn.functional.group_norm` on tensors that share
  the NumPy arrays' memory (a channels-last array is passed as a channels_last-strided view).

PyTorch is optional and only ever imported here, lazily, by the benchmarks (never by the library
or its tests' requirements).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["TorchGroupNorm", "channels_to_front", "import_torch", "numpy_forward_backward"]


def channels_to_front(ndim: int, axis: int | tuple[int, ...]) -> tuple[int, ...]:
    """The permutation `(0, *channel axes, *other axes)`: channels right after the batch."""
    axes = tuple(a % ndim for a in ((axis,) if isinstance(axis, int) else axis))
    rest = tuple(a for a in range(1, ndim) if a not in axes)
    return (0, *axes, *rest)


def numpy_forward_backward(
    x: np.ndarray,
    dy: np.ndarray,
    groups: int,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    axis: int | tuple[int, ...] = -1,
    epsilon: float = 1e-3,
    dtype: np.dtype | type | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Forward and backward of group normalisation in plain NumPy: `(y, dx, dgamma, dbeta)`.

    Computed in `dtype` (the input's dtype when None, as a user without numba_gn would write
    it; float64 gives the reference the benchmarks measure backward errors against). `y` and
    `dx` have `x`'s shape, `dgamma` and `dbeta` the channel shape.
    """
    dt = np.dtype(dtype or x.dtype)
    perm = channels_to_front(x.ndim, axis)
    moved = x.transpose(perm)
    channel_shape = moved.shape[1 : 1 + _count_axes(axis)]
    channels = int(np.prod(channel_shape))
    g = channels if groups == -1 else groups
    shape4 = (x.shape[0], g, channels // g, -1)
    xv = moved.astype(dt, copy=False).reshape(shape4)
    dyv = dy.transpose(perm).astype(dt, copy=False).reshape(shape4)
    gam = np.ones(channels, dt) if gamma is None else np.asarray(gamma, dt).reshape(-1)
    bet = np.zeros(channels, dt) if beta is None else np.asarray(beta, dt).reshape(-1)
    gam = gam.reshape(1, g, channels // g, 1)
    bet = bet.reshape(1, g, channels // g, 1)

    mean = xv.mean(axis=(2, 3), keepdims=True)
    xc = xv - mean
    rstd = 1 / np.sqrt(np.square(xc).mean(axis=(2, 3), keepdims=True) + dt.type(epsilon))
    xhat = xc * rstd
    y = xhat * gam + bet
    dxhat = dyv * gam
    dx = rstd * (
        dxhat
        - dxhat.mean(axis=(2, 3), keepdims=True)
        - xhat * (dxhat * xhat).mean(axis=(2, 3), keepdims=True)
    )
    dgamma = (dyv * xhat).sum(axis=(0, 3)).reshape(channel_shape)
    dbeta = dyv.sum(axis=(0, 3)).reshape(channel_shape)
    inverse = np.argsort(perm)
    return (
        y.reshape(moved.shape).transpose(inverse),
        dx.reshape(moved.shape).transpose(inverse),
        dgamma,
        dbeta,
    )


def _count_axes(axis: int | tuple[int, ...]) -> int:
    return 1 if isinstance(axis, int) else len(axis)


def import_torch() -> ModuleType | None:
    """`torch` if it can be imported, else None (it is an optional benchmark peer)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


class TorchGroupNorm:
    """`torch.nn.functional.group_norm` prepared for one NumPy input, sharing its memory.

    The channel axis must be a single axis (PyTorch normalises groups of axis 1 only); it is
    moved to position 1 by a permuted *view*, so a channels-last 4-D array becomes a
    channels_last-strided NCHW tensor with no copy, as PyTorch users hold them.
    """

    def __init__(
        self,
        x: np.ndarray,
        groups: int,
        gamma: np.ndarray,
        beta: np.ndarray,
        *,
        axis: int = -1,
        epsilon: float = 1e-3,
        dy: np.ndarray | None = None,
    ):
        torch = import_torch()
        if torch is None:
            raise ImportError("PyTorch is not installed")
        if not isinstance(axis, int):
            raise ValueError("PyTorch's group_norm takes a single channel axis")
        self.torch = torch
        self.F = torch.nn.functional
        self.groups, self.epsilon = groups, float(epsilon)
        self.perm = channels_to_front(x.ndim, axis)
        self.inverse = tuple(np.argsort(self.perm).tolist())
        self.x = torch.from_numpy(x).permute(self.perm)
        self.weight = torch.from_numpy(np.ascontiguousarray(gamma, dtype=x.dtype))
        self.bias = torch.from_numpy(np.ascontiguousarray(beta, dtype=x.dtype))
        self.dy = None if dy is None else torch.from_numpy(dy).permute(self.perm)
        # Leaves for autograd, with the same strides as the inputs.
        self.x_leaf = self.x.detach().requires_grad_(True)
        self.w_leaf = self.weight.detach().clone().requires_grad_(True)
        self.b_leaf = self.bias.detach().clone().requires_grad_(True)

    def forward(self) -> Any:
        """The forward output (a tensor in PyTorch's channel-first logical order)."""
        with self.torch.no_grad():
            return self.F.group_norm(self.x, self.groups, self.weight, self.bias, self.epsilon)

    def forward_backward(self) -> tuple[Any, ...]:
        """Forward with autograd recording, then `(dx, dgamma, dbeta)` for `dy`."""
        y = self.F.group_norm(self.x_leaf, self.groups, self.w_leaf, self.b_leaf, self.epsilon)
        return self.torch.autograd.grad(y, (self.x_leaf, self.w_leaf, self.b_leaf), self.dy)

    def to_numpy(self, t: Any) -> np.ndarray:
        """A result tensor back in the NumPy input's axis order."""
        return t.detach().permute(self.inverse).numpy()
