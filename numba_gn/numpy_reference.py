"""A plain NumPy group normalisation: the float64 yardstick of `numba-gn check`/`bench`.

Computed with two-pass statistics in `dtype` (float64 by default). With `dtype=None` it runs
in the input's own dtype, which is what a user without numba_gn would write; the benchmarks use
it as the NumPy peer.
"""

from __future__ import annotations

import numpy as np


def group_norm_numpy(
    x: np.ndarray,
    groups: int,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    axis: int | tuple[int, ...] = -1,
    epsilon: float = 1e-3,
    dtype: np.dtype | type | None = np.float64,
) -> np.ndarray:
    """Group-normalise `x` with NumPy only (Keras semantics, see `numba_gn.group_norm`).

    Returns an array of `dtype` (or of `x.dtype` when `dtype` is None) and `x`'s shape.
    """
    axes = tuple(a % x.ndim for a in ((axis,) if np.isscalar(axis) else axis))
    rest = [a for a in range(1, x.ndim) if a not in axes]
    perm = (0, *axes, *rest)
    work = x.astype(dtype or x.dtype, copy=False).transpose(perm)
    moved_shape = work.shape
    channels = int(np.prod([x.shape[a] for a in axes]))
    g = channels if groups == -1 else groups
    v = work.reshape(x.shape[0], g, channels // g, -1)
    mean = v.mean(axis=(2, 3), keepdims=True)
    centred = v - mean
    var = np.square(centred).mean(axis=(2, 3), keepdims=True)
    y = centred / np.sqrt(var + epsilon)
    if gamma is not None:
        y = y * np.asarray(gamma, dtype=y.dtype).reshape(1, g, channels // g, 1)
    if beta is not None:
        y = y + np.asarray(beta, dtype=y.dtype).reshape(1, g, channels // g, 1)
    return y.reshape(moved_shape).transpose(np.argsort(perm))
