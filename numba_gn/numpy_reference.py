"""A plain NumPy group normalisation: the float64 yardstick of `numba-gn check`/`bench`.

Computed with two-pass statistics in `dtype` (float64 by default). With `dtype=None` it runs
in the input's own dtype, which is what a user without numba_gn would write; the benchmarks use
it as the NumPy peer.

`group_norm_act_reference` and `group_norm_act_backward_reference` are the float64 yardsticks of
the fused call, `act(group_norm(x) + residual)`, and of its gradients (by the chain rule).
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


#: The activations of the fused `numba_gn.group_norm(..., activation=...)`, by name.
ACTIVATIONS = ("linear", "relu", "leaky_relu", "silu", "swish", "sigmoid", "gelu")

_GELU_C = 0.044715  # Keras's constant of the tanh approximation of GELU


def _grouped(
    a: np.ndarray, axes: tuple[int, ...], groups: int
) -> tuple[np.ndarray, tuple[int, ...], tuple[int, ...]]:
    """float64 `a` as (N, G, C/G, rest), the channel axes first.

    Returns that array, the axis permutation used, and the channel shape.
    """
    perm = (0, *axes, *[d for d in range(1, a.ndim) if d not in axes])
    cshape = tuple(a.shape[d] for d in axes)
    channels = int(np.prod(cshape))
    g = channels if groups == -1 else groups
    t = np.asarray(a).astype(np.float64).transpose(perm)
    return t.reshape(a.shape[0], g, channels // g, -1), perm, cshape


def _ungrouped(v: np.ndarray, shape: tuple[int, ...], perm: tuple[int, ...]) -> np.ndarray:
    """The inverse of `_grouped`: a (N, G, C/G, rest) array back in `shape`'s axis order."""
    return v.reshape(tuple(shape[p] for p in perm)).transpose(np.argsort(perm))


def activation_reference(
    z: np.ndarray,
    activation: str | None = None,
    *,
    negative_slope: float = 0.2,
    approximate: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """An activation of the fused call and its derivative, in float64, by Keras's formulas.

    `relu'(0) = 0`; `leaky_relu` is `z` for `z >= 0` and `negative_slope * z` below, with
    derivative 1 for `z > 0` and `negative_slope` below (at 0 too). GELU is the erf form, or
    Keras's tanh form when `approximate`.

    Args:
        z: The pre-activation values (any float dtype; computed on them widened to float64).
        activation: None, or a name of `ACTIVATIONS` (`"swish"` is `"silu"`).
        negative_slope: The slope of `"leaky_relu"` below zero.
        approximate: Use Keras's tanh form of `"gelu"` rather than the erf form.

    Returns:
        `(act(z), act'(z))`, float64 arrays of `z`'s shape.

    Raises:
        ValueError: For an unknown `activation`.
    """
    z = np.asarray(z).astype(np.float64)
    if activation is None or activation == "linear":
        return z, np.ones_like(z)
    if activation == "relu":
        return np.maximum(z, 0.0), (z > 0).astype(np.float64)
    if activation == "leaky_relu":
        return np.where(z >= 0, z, negative_slope * z), np.where(z > 0, 1.0, negative_slope)
    if activation in ("silu", "swish", "sigmoid"):
        with np.errstate(over="ignore"):
            s = 1.0 / (1.0 + np.exp(-z))
        if activation == "sigmoid":
            return s, s * (1.0 - s)
        return z * s, s * (1.0 + z * (1.0 - s))
    if activation == "gelu":
        if approximate:
            k = np.sqrt(2.0 / np.pi)
            t = np.tanh(k * (z + _GELU_C * z**3))
            dt = (1.0 - t * t) * k * (1.0 + 3.0 * _GELU_C * z * z)
            return 0.5 * z * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * z * dt
        from scipy.special import erf  # imported on first use: scipy is slow to import

        cdf = 0.5 * (1.0 + erf(z / np.sqrt(2.0)))
        pdf = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
        return z * cdf, cdf + z * pdf
    raise ValueError(
        f"`activation` must be None or one of {ACTIVATIONS}, got activation={activation!r}."
    )


def _normalized(
    x: np.ndarray,
    groups: int,
    gamma: np.ndarray | None,
    beta: np.ndarray | None,
    axis: int | tuple[int, ...],
    epsilon: float,
    residual: np.ndarray | None,
) -> tuple:
    """The grouped float64 pieces both references share: xhat, gamma, z, mean, rstd, layout."""
    axes = tuple(a % x.ndim for a in ((axis,) if np.isscalar(axis) else axis))
    v, perm, cshape = _grouped(x, axes, groups)
    n, g, d, _ = v.shape
    mean = v.mean(axis=(2, 3), keepdims=True)
    var = np.square(v - mean).mean(axis=(2, 3), keepdims=True)
    rstd = 1.0 / np.sqrt(var + epsilon)
    xhat = (v - mean) * rstd
    gam = np.ones(g * d) if gamma is None else np.asarray(gamma).astype(np.float64)
    bet = np.zeros(g * d) if beta is None else np.asarray(beta).astype(np.float64)
    gam = gam.reshape(1, g, d, 1)
    z = xhat * gam + bet.reshape(1, g, d, 1)
    if residual is not None:
        z = z + _grouped(np.asarray(residual), axes, groups)[0]
    return xhat, gam, z, mean.reshape(n, g), rstd.reshape(n, g), perm, cshape


def group_norm_act_reference(
    x: np.ndarray,
    groups: int,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    axis: int | tuple[int, ...] = -1,
    epsilon: float = 1e-3,
    residual: np.ndarray | None = None,
    activation: str | None = None,
    negative_slope: float = 0.2,
    approximate: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fused `numba_gn.group_norm(..., residual=, activation=)` in float64, with NumPy only.

    Computes `y = act(GN(x) * gamma + beta + residual)` from the inputs' values widened to
    float64 (any float dtype, bfloat16 included), with two-pass statistics.

    Args:
        x: The input, batch first.
        groups: Number of groups (`-1`: one per channel).
        gamma: Scale of the channel shape, or None for ones.
        beta: Offset of the channel shape, or None for zeros.
        axis: The channel axis, or a tuple of axes forming one channel space.
        epsilon: Added to the variance inside the square root.
        residual: An array of `x`'s shape added before the activation, or None.
        activation: None, or a name of `ACTIVATIONS` (`"swish"` is `"silu"`).
        negative_slope: The slope of `"leaky_relu"` below zero.
        approximate: Use Keras's tanh form of `"gelu"` rather than the erf form.

    Returns:
        `(y, mean, rstd)`: float64 `y` of `x`'s shape; `mean` and `rstd` of `GN(x)`
        (whatever the residual and activation), of shape (N, G).
    """
    x = np.asarray(x)
    _, _, z, mean, rstd, perm, _ = _normalized(x, groups, gamma, beta, axis, epsilon, residual)
    y, _ = activation_reference(
        z, activation, negative_slope=negative_slope, approximate=approximate
    )
    return _ungrouped(y, x.shape, perm), mean, rstd


def group_norm_act_backward_reference(
    dy: np.ndarray,
    x: np.ndarray,
    groups: int,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    axis: int | tuple[int, ...] = -1,
    epsilon: float = 1e-3,
    residual: np.ndarray | None = None,
    activation: str | None = None,
    negative_slope: float = 0.2,
    approximate: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Gradients of `group_norm_act_reference` in float64, by the chain rule.

    With `z = xhat * gamma + beta + residual` and `y = act(z)`: `dz = dy * act'(z)`, which is
    the residual's gradient; `dbeta` and `dgamma` sum `dz` and `dz * xhat` over every axis but
    the channels; `dx` is group normalisation's closed-form backward of `dz * gamma`:
    `rstd * (g - mean(g) - xhat * mean(g * xhat))` per (sample, group), `g = dz * gamma`.

    Args:
        dy: Gradient of the loss with respect to `y`, of `x`'s shape.
        x: The forward input.
        groups: As in `group_norm_act_reference`.
        gamma: As in `group_norm_act_reference`.
        beta: As in `group_norm_act_reference`.
        axis: As in `group_norm_act_reference`.
        epsilon: As in `group_norm_act_reference`.
        residual: As in `group_norm_act_reference`.
        activation: As in `group_norm_act_reference`.
        negative_slope: As in `group_norm_act_reference`.
        approximate: As in `group_norm_act_reference`.

    Returns:
        `(dx, dgamma, dbeta, dresidual)` in float64: `dx` and `dresidual` of `x`'s shape
        (`dresidual` None when `residual` is None), `dgamma` and `dbeta` of the channel shape.
    """
    x = np.asarray(x)
    xhat, gam, z, _, rstd, perm, cshape = _normalized(
        x, groups, gamma, beta, axis, epsilon, residual
    )
    _, slope = activation_reference(
        z, activation, negative_slope=negative_slope, approximate=approximate
    )
    dz = _grouped(np.asarray(dy), perm[1 : 1 + len(cshape)], xhat.shape[1])[0] * slope
    dgamma = (dz * xhat).sum(axis=(0, 3)).reshape(cshape)
    dbeta = dz.sum(axis=(0, 3)).reshape(cshape)
    g = dz * gam
    r = rstd[:, :, None, None]
    dx = r * (
        g - g.mean(axis=(2, 3), keepdims=True) - xhat * (g * xhat).mean(axis=(2, 3), keepdims=True)
    )
    dresidual = None if residual is None else _ungrouped(dz, x.shape, perm)
    return _ungrouped(dx, x.shape, perm), dgamma, dbeta, dresidual
