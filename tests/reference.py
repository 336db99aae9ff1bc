"""A naive float64 NumPy group normalisation: obviously correct, slow, the yardstick for tests."""

from __future__ import annotations

import numpy as np


def _grouped(x: np.ndarray, axes: tuple[int, ...], groups: int) -> tuple[np.ndarray, tuple]:
    """float64 copy of x as (N, G, rest) with the channel axes moved to the front, flattened."""
    ndim = x.ndim
    axes = tuple(a % ndim for a in axes)
    rest = [a for a in range(1, ndim) if a not in axes]
    t = np.transpose(x.astype(np.float64), (0, *axes, *rest))
    n = x.shape[0]
    c = int(np.prod([x.shape[a] for a in axes]))
    return t.reshape(n, groups, c // groups, -1), (0, *axes, *rest)


def group_norm_ref(x, groups, gamma=None, beta=None, axis=-1, epsilon=1e-3):
    """Return float64 (y, mean, rstd): two-pass statistics in float64."""
    axes = (axis,) if np.isscalar(axis) else tuple(axis)
    g4, perm = _grouped(x, axes, groups)
    mean = g4.mean(axis=(2, 3))
    var = ((g4 - mean[:, :, None, None]) ** 2).mean(axis=(2, 3))
    rstd = 1.0 / np.sqrt(var + epsilon)
    xhat = (g4 - mean[:, :, None, None]) * rstd[:, :, None, None]
    n, G, D, rest = g4.shape
    gam = np.ones(G * D) if gamma is None else np.asarray(gamma, np.float64).reshape(-1)
    bet = np.zeros(G * D) if beta is None else np.asarray(beta, np.float64).reshape(-1)
    y = xhat * gam.reshape(1, G, D, 1) + bet.reshape(1, G, D, 1)
    shape_t = tuple(x.shape[p] for p in perm)
    y = np.transpose(y.reshape(shape_t), np.argsort(perm))
    return y, mean, rstd


def group_norm_backward_ref(dy, x, groups, gamma=None, axis=-1, epsilon=1e-3):
    """Return float64 (dx, dgamma, dbeta) from the closed form."""
    axes = (axis,) if np.isscalar(axis) else tuple(axis)
    g4, perm = _grouped(x, axes, groups)
    d4, _ = _grouped(dy, axes, groups)
    n, G, D, rest = g4.shape
    mean = g4.mean(axis=(2, 3), keepdims=True)
    var = ((g4 - mean) ** 2).mean(axis=(2, 3), keepdims=True)
    rstd = 1.0 / np.sqrt(var + epsilon)
    xhat = (g4 - mean) * rstd
    gam = np.ones(G * D) if gamma is None else np.asarray(gamma, np.float64).reshape(-1)
    gam = gam.reshape(1, G, D, 1)
    dgamma = (d4 * xhat).sum(axis=(0, 3)).reshape(-1)
    dbeta = d4.sum(axis=(0, 3)).reshape(-1)
    gdy = d4 * gam
    dx = rstd * (
        gdy - gdy.mean(axis=(2, 3), keepdims=True)
        - xhat * (gdy * xhat).mean(axis=(2, 3), keepdims=True)
    )
    shape_t = tuple(x.shape[p] for p in perm)
    dx = np.transpose(dx.reshape(shape_t), np.argsort(perm))
    cshape = tuple(x.shape[a % x.ndim] for a in axes)
    return dx, dgamma.reshape(cshape), dbeta.reshape(cshape)
