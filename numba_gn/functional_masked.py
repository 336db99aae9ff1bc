"""Group normalisation with a mask: statistics over the unmasked positions only (plain NumPy).

`mask` has the shape of `x` with the channel axes removed (`(N, T)` for an `(N, T, C)`
input with `axis=-1`): True marks a real position, False a padded one. Per (sample, group)
the mean and biased variance are taken over the unmasked positions and the group's channels,
so padding never changes the output at unmasked positions. Every position, masked or not, is
then normalised with those statistics (Flax's `GroupNorm(mask=...)` behaviour).

A (sample, group) with no unmasked position has no statistics. It is defined to have
`mean = 0` and `rstd = 0`: its output is `beta` (the normalised value 0) and it passes no
gradient to `x`. This is finite for any `epsilon` (including 0) and any padding values;
`var = 0` would instead scale padding by `1/sqrt(epsilon)`.

Computation runs in float64 with two-pass statistics; the output has `x`'s dtype. This is the
reference-quality path for padded batches, not a Numba kernel: masked calls are rarer and
their cost is dominated by the data movement NumPy does anyway.
"""

from __future__ import annotations

import math

import numpy as np

from numba_gn import _args
from numba_gn._dtypes import is_bfloat16, is_float

__all__ = ["group_norm_masked", "group_norm_masked_backward"]

_F16 = np.dtype(np.float16)

#: Appended to the errors refusing masked arrays (their masks are not interpreted here).
_MASKED_X_HINT = "Pass the data (`.data` or `.filled(...)`) and the positions to keep as `mask`."
_MASKED_MASK_HINT = "Pass a plain boolean ndarray (True = keep)."


class _Layout:
    """How `x` maps onto the grouped view `(N, S, G, C/G)` used by both passes."""

    __slots__ = ("axes", "channel_shape", "groups", "n", "s", "moved_shape", "mask_shape")

    def __init__(self, shape: tuple[int, ...], axis: object, groups: object) -> None:
        if len(shape) < 2:
            raise ValueError(
                f"`x` must have at least 2 dimensions (batch and channels), got shape {shape}."
            )
        self.axes = _args.normalize_axes(axis, len(shape))
        self.channel_shape = tuple(shape[a] for a in self.axes)
        self.groups = _args.resolve_groups(groups, None, math.prod(self.channel_shape))
        rest = [i for i in range(len(shape)) if i not in self.axes]
        self.mask_shape = tuple(shape[i] for i in rest)
        self.n = shape[0]
        self.s = math.prod(shape[i] for i in rest[1:])
        self.moved_shape = self.mask_shape + self.channel_shape

    def grouped(self, a: np.ndarray) -> np.ndarray:
        """`a` (shape of x) as float64 `(N, S, G, C/G)`: channel axes last, in given order."""
        k = len(self.axes)
        moved = np.moveaxis(a, self.axes, range(a.ndim - k, a.ndim))
        G = self.groups
        C = math.prod(self.channel_shape)
        per_group = C // G if G else 0  # zero channels make zero groups (an empty result)
        return np.asarray(moved, dtype=np.float64).reshape(self.n, self.s, G, per_group)

    def ungrouped(self, g: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Inverse of `grouped`, cast to `dtype`; C-contiguous in x's axis order."""
        k = len(self.axes)
        nd = len(self.moved_shape)
        moved = g.reshape(self.moved_shape)
        return np.ascontiguousarray(np.moveaxis(moved, range(nd - k, nd), self.axes), dtype=dtype)

    def mask(self, mask: object) -> np.ndarray:
        """`mask` validated and flattened to a bool `(N, S, 1, 1)` array."""
        if isinstance(mask, np.ndarray):
            m = _args._asarray(mask, "mask", masked_hint=_MASKED_MASK_HINT)
        else:
            try:
                m = np.asarray(mask)
            except ValueError as exc:  # ragged nested lists
                raise ValueError(f"`mask` could not be converted to an array: {exc}") from None
        if m.dtype != np.bool_:
            if m.dtype.kind in "iu" and np.isin(m, (0, 1)).all():
                m = m.astype(bool)  # 0/1 integer masks are common (e.g. attention masks)
            else:
                raise TypeError(
                    f"`mask` must be a boolean array (True = keep), got dtype {m.dtype}."
                )
        if m.shape != self.mask_shape:
            raise ValueError(
                f"`mask` must have the shape of `x` without its channel axes {self.axes}, "
                f"i.e. {self.mask_shape}, got shape {m.shape}."
            )
        return m.reshape(self.n, self.s, 1, 1)


def _param(p: object, name: str, layout: _Layout, fill: float) -> np.ndarray:
    """gamma/beta as float64 `(G, C/G)`."""
    flat = _args.param_array(p, name, layout.channel_shape, fill)
    return flat.reshape(layout.groups, -1 if layout.groups else 0)  # -1 is ambiguous for 0


def _normalised(xg: np.ndarray, mean: np.ndarray, rstd: np.ndarray) -> np.ndarray:
    """`(x - mean) * rstd`; exactly 0 in groups without statistics (rstd 0), even for inf x."""
    empty = (rstd == 0.0)[:, None, :, None]
    with np.errstate(invalid="ignore"):  # inf padding times rstd 0; replaced just below
        xhat = (xg - mean[:, None, :, None]) * rstd[:, None, :, None]
    return np.where(empty, 0.0, xhat)


def group_norm_masked(
    x: np.ndarray,
    mask: np.ndarray,
    groups: int = 32,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    axis: int | tuple[int, ...] = -1,
    epsilon: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group-normalise `x` with statistics taken over the positions where `mask` is True.

    Parameters
    ----------
    x : array of float16, bfloat16, float32 or float64, ndim >= 2
        Axis 0 is the batch axis.
    mask : bool array
        The shape of `x` with the channel axes removed; True = real position. 0/1 integer
        arrays are accepted.
    groups, gamma, beta, axis, epsilon
        As in `numba_gn.functional.group_norm`.

    Returns
    -------
    (y, mean, rstd)
        `y` in `x`'s dtype and layout; `mean` and `rstd = 1/sqrt(var + epsilon)` as
        float64 `(N, G)`, both 0 for a (sample, group) whose positions are all masked. All
        are new plain ndarrays (nothing is written into an input).

    Notes
    -----
    ndarray subclasses (`np.memmap`, `np.matrix`, user subclasses) are computed on as plain
    ndarrays. Masked arrays (`numpy.ma`) are refused with a TypeError for every argument,
    `x` included: the positions to keep are given by `mask` alone, whose shape differs from
    a masked `x`'s per-element mask.
    """
    xs = _args.as_float_array(x, "x", masked_hint=_MASKED_X_HINT)
    layout = _Layout(xs.shape, axis, groups)
    eps = _args.check_epsilon(epsilon)
    w = layout.mask(mask)
    g = _param(gamma, "gamma", layout, 1.0)
    b = _param(beta, "beta", layout, 0.0)

    xg = layout.grouped(xs)
    # where(), not multiplication: padding may hold inf or NaN and must not leak into the sums.
    kept = np.where(w, xg, 0.0)
    count = w.sum(axis=(1, 2, 3)).astype(np.float64)[:, None] * xg.shape[3]  # (N, 1)
    has = count > 0
    safe = np.where(has, count, 1.0)
    mean = np.where(has, kept.sum(axis=(1, 3)) / safe, 0.0)  # (N, G)
    centred = np.where(w, xg - mean[:, None, :, None], 0.0)
    var = np.einsum("nsgc,nsgc->ng", centred, centred) / safe
    rstd = np.zeros_like(var)
    with np.errstate(divide="ignore"):  # epsilon 0 on a constant group: inf, as the kernels
        np.divide(1.0, np.sqrt(var + eps), out=rstd, where=np.broadcast_to(has, var.shape))

    y = _normalised(xg, mean, rstd) * g + b
    return layout.ungrouped(y, xs.dtype), mean, rstd


def group_norm_masked_backward(
    dy: np.ndarray,
    x: np.ndarray,
    mask: np.ndarray,
    mean: np.ndarray,
    rstd: np.ndarray,
    groups: int = 32,
    gamma: np.ndarray | None = None,
    *,
    axis: int | tuple[int, ...] = -1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `group_norm_masked` with respect to `x`, `gamma` and `beta`.

    With `xhat = (x - mean) * rstd`, `dxhat = dy * gamma` and `M` the number of unmasked
    elements of the (sample, group)::

        dx = rstd * (dxhat - mask / M * (sum(dxhat) + xhat * sum(dxhat * xhat)))

    where the sums run over every position of the group, masked ones included (their outputs
    depend on the statistics too), and the correction term only reaches unmasked positions
    (only they enter the statistics).

    Returns
    -------
    (dx, dgamma, dbeta)
        `dx` in `x`'s dtype and shape; `dgamma`/`dbeta` with the channel shape, in
        gamma's float dtype (x's compute dtype when gamma is None: float32 for float16 and
        bfloat16 x).

    Notes
    -----
    Array arguments are treated as in `group_norm_masked` (subclasses viewed as plain
    ndarrays, masked arrays refused).
    """
    xs = _args.as_float_array(x, "x", masked_hint=_MASKED_X_HINT)
    layout = _Layout(xs.shape, axis, groups)
    w = layout.mask(mask)
    dys = _args.as_float_array(dy, "dy", masked_hint=_MASKED_X_HINT)
    if dys.shape != xs.shape:
        raise ValueError(f"`dy` must have the shape of `x` {xs.shape}, got {dys.shape}.")
    stats_shape = (layout.n, layout.groups)
    m = _stats(mean, "mean", stats_shape)
    r = _stats(rstd, "rstd", stats_shape)
    g = _param(gamma, "gamma", layout, 1.0)

    xg = layout.grouped(xs)
    dyg = layout.grouped(dys)
    xhat = _normalised(xg, m, r)
    dgamma = np.einsum("nsgc,nsgc->gc", dyg, xhat)
    dbeta = dyg.sum(axis=(0, 1))

    dxhat = dyg * g
    s1 = dxhat.sum(axis=(1, 3))  # (N, G)
    s2 = np.einsum("nsgc,nsgc->ng", dxhat, xhat)
    count = w.sum(axis=(1, 2, 3)).astype(np.float64)[:, None] * xg.shape[3]
    inv_m = 1.0 / np.where(count > 0, count, 1.0)  # rstd is 0 where count is 0: dx is 0 there
    # where(), not `w *`: xhat may be inf at padded positions, and 0 * inf is NaN.
    b1, b2 = s1[:, None, :, None], s2[:, None, :, None]
    correction = np.where(w, inv_m[:, None, :, None] * (b1 + xhat * b2), 0.0)
    dx = r[:, None, :, None] * (dxhat - correction)

    if isinstance(gamma, np.ndarray) and is_float(gamma.dtype):
        pdtype = gamma.dtype
    else:  # 16-bit sums would lose most digits
        pdtype = np.dtype(np.float32) if xs.dtype == _F16 or is_bfloat16(xs.dtype) else xs.dtype
    shape = layout.channel_shape
    return (
        layout.ungrouped(dx, xs.dtype),
        dgamma.reshape(shape).astype(pdtype),
        dbeta.reshape(shape).astype(pdtype),
    )


def _stats(a: object, name: str, shape: tuple[int, int]) -> np.ndarray:
    arr = _args._asarray(a, name)
    if arr.dtype.kind != "f":
        raise TypeError(f"`{name}` must be a float array, got dtype {arr.dtype}.")
    if arr.shape != shape:
        raise ValueError(
            f"`{name}` must have shape {shape} (batch, groups), got shape {arr.shape}."
        )
    return arr.astype(np.float64, copy=False)
