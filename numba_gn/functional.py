"""Group normalisation on plain NumPy arrays: `group_norm` and `group_norm_backward`.

Semantics follow Keras 3's `GroupNormalization`: axis 0 is the batch axis; the channel axis
(or axes) is split into contiguous groups; mean and biased variance are taken per (sample, group)
over every non-batch axis; `y = (x - mean) / sqrt(var + epsilon) * gamma + beta`.
"""

from __future__ import annotations

import math
from typing import Literal, overload

import numpy as np

from numba_gn import _args, _checks, _engine
from numba_gn._dtypes import is_bfloat16, is_float
from numba_gn.kernels.epilogue import CODES, activation_arg

__all__ = ["group_norm", "group_norm_backward"]

_F16 = np.dtype(np.float16)

#: The activations a fused call applies (`activation=`), Keras's names.
ACTIVATIONS = ("linear", "relu", "leaky_relu", "silu", "swish", "sigmoid", "gelu")


def _activation_code(activation: object, negative_slope: object, approximate: object) -> tuple:
    """`(code, slope)` of the epilogue for `activation` (validated; None is linear)."""
    if activation is None:
        name = "linear"
    elif not isinstance(activation, str):
        raise TypeError(
            f"`activation` must be None or one of {ACTIVATIONS} (a name), "
            f"got {type(activation).__name__}."
        )
    elif activation not in ACTIVATIONS:
        raise ValueError(f"`activation` must be None or one of {ACTIVATIONS}, got {activation!r}.")
    else:
        name = "silu" if activation == "swish" else activation
    slope = _checks.real(negative_slope, "negative_slope")
    if _checks.boolean(approximate, "approximate") and name == "gelu":
        name = "gelu_tanh"
    return CODES[name], slope


def _fusion(residual: object, activation: object, negative_slope: object, approximate: object):
    """`(fused, code, slope)` of a call's fused arguments, validated even when not fused."""
    fused = residual is not None or activation is not None
    if fused or negative_slope != 0.2 or approximate is not False:  # cheap tests first
        code, slope = _activation_code(activation, negative_slope, approximate)
        return fused, code, slope
    return False, 0, 0


def _residual(residual: object, x: np.ndarray) -> np.ndarray:
    """`residual` as an array of `x`'s shape and dtype (converted like `dy`)."""
    r = _args.as_float_array(residual, "residual", masked_hint=_MASKED_HINT)
    if r.shape != x.shape:
        raise ValueError(f"`residual` must have the shape of `x` {x.shape}, got {r.shape}.")
    return r if r.dtype == x.dtype else r.astype(x.dtype)


def _flat(a: np.ndarray, canon: _engine.Canonical, *, read_only: bool = True) -> np.ndarray:
    """The kernels' flat view of `a`, with the 16-bit formats as integer bits.

    float16 travels as its uint16 bits (see kernels._half), bfloat16 as its int16 bits (see
    kernels._bfloat). Inputs are viewed read-only (see `numba_gn._args.frozen`); outputs pass
    `read_only=False`.
    """
    v = canon.view(a)  # always a new view object (or a copy), never `a` itself
    if v.dtype == _F16:
        v = v.view(np.uint16)
    elif is_bfloat16(v.dtype):
        v = v.view(np.int16)
    return _args.frozen(v) if read_only else v


class _Plan:
    """Everything about a call that depends only on shapes and arguments, not on values."""

    __slots__ = ("axes", "canon", "groups", "channel_shape")

    def __init__(self, x: np.ndarray, groups: object, group_size: object, axis: object):
        if x.ndim < 2:
            raise ValueError(
                f"`x` must have at least 2 dimensions (batch and channels), got shape {x.shape}."
            )
        self.axes = _args.normalize_axes(axis, x.ndim)
        self.channel_shape = tuple(x.shape[a] for a in self.axes)
        self.groups = _args.resolve_groups(groups, group_size, math.prod(self.channel_shape))
        self.canon = _engine.Canonical(x, self.axes)


_PLANS: dict[tuple, _Plan] = {}
_MAX_PLANS = 512


def _typed(v: object) -> object:
    """Hashable key part that tells `1` from `True` and `(1,)` from `[1]`."""
    if isinstance(v, (list, tuple)):
        return (type(v), tuple((type(a), a) for a in v))
    return (type(v), v)


def _plan(x: np.ndarray, groups: object, group_size: object, axis: object) -> _Plan:
    """The (cached) plan for `x`'s shape, strides and dtype with these arguments.

    Validation and layout analysis cost several microseconds of Python; caching them keeps a
    call on a tiny array within a few microseconds of the kernel itself.
    """
    try:
        if type(groups) is int and group_size is None and type(axis) is int:  # the usual call
            key: tuple = (x.shape, x.strides, x.dtype.char, groups, axis)
        else:  # typed parts, which never equal the plain ints above
            key = (x.shape, x.strides, x.dtype.char, _typed(groups), _typed(group_size))
            key += (_typed(axis),)
        plan = _PLANS.get(key)
    except TypeError:  # unhashable argument: validate without caching (it will likely fail)
        return _Plan(x, groups, group_size, axis)
    if plan is None:
        plan = _Plan(x, groups, group_size, axis)
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _is_dask(a: object) -> bool:
    """Whether `a` is a Dask collection, by its type's module: never imports dask itself."""
    return type(a).__module__.startswith("dask.")


def _lazy(name: str, out: object, *args: object, **kwargs: object) -> object:
    """`numba_gn.dask.<name>(*args, **kwargs)`: the lazy result for Dask input."""
    if out is not None:
        raise TypeError(
            "`out` is not supported with Dask arrays: the result is a lazy Dask array; write "
            "it with `dask.array.store` (or `to_zarr`) instead."
        )
    from numba_gn import dask as lazy  # imports dask: only here, for Dask input

    return getattr(lazy, name)(*args, **kwargs)


#: Appended to the error refusing a masked `x` or `dy`.
_MASKED_HINT = (
    "Use numba_gn.group_norm_masked (and group_norm_masked_backward) for statistics over the "
    "unmasked positions, or pass the data itself (`.data` or `.filled(...)`)."
)


class _Problem:
    """A validated call: the input as a float array and its plan."""

    __slots__ = ("x", "plan")

    def __init__(self, x: object, groups: object, group_size: object, axis: object):
        self.x = _args.as_float_array(x, "x", masked_hint=_MASKED_HINT)
        self.plan = _plan(self.x, groups, group_size, axis)


@overload
def group_norm(
    x: np.ndarray,
    groups: int = ...,
    gamma: np.ndarray | None = ...,
    beta: np.ndarray | None = ...,
    *,
    axis: int | tuple[int, ...] = ...,
    epsilon: float = ...,
    group_size: int | None = ...,
    out: np.ndarray | None = ...,
    return_stats: Literal[False] = ...,
    residual: np.ndarray | None = ...,
    activation: str | None = ...,
    negative_slope: float = ...,
    approximate: bool = ...,
) -> np.ndarray: ...
@overload
def group_norm(
    x: np.ndarray,
    groups: int = ...,
    gamma: np.ndarray | None = ...,
    beta: np.ndarray | None = ...,
    *,
    axis: int | tuple[int, ...] = ...,
    epsilon: float = ...,
    group_size: int | None = ...,
    out: np.ndarray | None = ...,
    return_stats: Literal[True],
    residual: np.ndarray | None = ...,
    activation: str | None = ...,
    negative_slope: float = ...,
    approximate: bool = ...,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
def group_norm(
    x,
    groups=32,
    gamma=None,
    beta=None,
    *,
    axis=-1,
    epsilon=1e-3,
    group_size=None,
    out=None,
    return_stats=False,
    residual=None,
    activation=None,
    negative_slope=0.2,
    approximate=False,
):
    """Group-normalise `x` (Keras semantics) and return an array of its shape and dtype.

    With `residual` or `activation`, the result is `act(GN(x) * gamma + beta + residual)`
    computed in one pass (the *fused* op; see `group_norm_backward` for its gradients).

    Parameters
    ----------
    x : array of float16, bfloat16, float32 or float64, ndim >= 2
        Axis 0 is the batch axis. float16 and bfloat16 (ml_dtypes') are computed in float32
        and returned in their own dtype.
    groups : int, default 32
        Number of groups the channels are split into (contiguously: channel `c` is in group
        `c // (C/groups)`); `-1` means one group per channel (instance norm), `1` is layer
        norm over all non-batch axes. With zero channels, `-1` (or a `group_size`) means
        zero groups: an empty `y` and stats of shape (N, 0).
    gamma, beta : array of the channel shape, optional
        Scale and offset per channel; None means 1 and 0.
    axis : int or tuple of ints, default -1
        The channel axis, any non-batch axis; a tuple of axes forms one channel space,
        flattened in C order (gamma and beta then have the shape of those axes).
    epsilon : float, default 1e-3
        Added to the variance inside the square root.
    group_size : int, optional
        Channels per group, instead of `groups` (it wins when set).
    out : array, optional
        Preallocated output of the shape and dtype of `x`. It may share memory with any
        input (`x` itself for in-place, or `gamma`/`beta` views of it): the result is
        always the one computed from copies of the inputs, as with NumPy ufuncs.
    return_stats : bool, default False
        Also return `mean` and `rstd = 1/sqrt(var + epsilon)`, float64 of shape (N, G).
    residual : array of the shape of `x`, optional
        Added to the normalised output before the activation (a residual connection);
        converted to `x`'s dtype.
    activation : str, optional
        Applied last: None or "linear" (none), "relu", "leaky_relu", "silu" (or "swish"),
        "sigmoid" or "gelu", as `keras.activations` computes them.
    negative_slope : float, default 0.2
        The slope of "leaky_relu" below zero (Keras's default).
    approximate : bool, default False
        "gelu" in its tanh form instead of the exact erf form (Keras's `approximate`).

    Returns
    -------
    y, or (y, mean, rstd) when `return_stats` is true.
        `y` is `out` itself when given, else a new plain ndarray.

    Notes
    -----
    ndarray subclasses are accepted as inputs and computed on as plain ndarrays (`np.memmap`,
    `np.matrix`, user subclasses); as `out` they are written into and returned as they are.
    Masked arrays (`numpy.ma`) are refused with a TypeError, for every argument: this function
    would ignore their mask; `numba_gn.group_norm_masked` takes a mask.

    A Dask array `x` gives lazy Dask results, computed chunk by chunk (`numba_gn.dask`).

    Raises
    ------
    TypeError, ValueError
        Naming the offending argument; nothing is written to `out` when raised.
    """
    fused, code, slope = _fusion(residual, activation, negative_slope, approximate)
    if _is_dask(x):  # lazy: `numba_gn.dask` builds the graph (imported for Dask input only)
        if fused:
            raise TypeError(
                "`residual` and `activation` are not supported with Dask arrays yet; apply "
                "them to the lazy result (`x + residual`, then the activation)."
            )
        return _lazy("group_norm", out, x, groups, gamma, beta, axis=axis, epsilon=epsilon,
                     group_size=group_size, return_stats=return_stats)
    prob = _Problem(x, groups, group_size, axis)
    plan = prob.plan
    g = _args.param_array(gamma, "gamma", plan.channel_shape, 1.0, prob.x.shape)
    b = _args.param_array(beta, "beta", plan.channel_shape, 0.0, prob.x.shape)
    eps = _args.check_epsilon(epsilon)
    if return_stats is not False and return_stats is not True:  # identity tests: cheap
        return_stats = _checks.boolean(return_stats, "return_stats")  # NumPy bools pass
    xs = prob.x
    inputs: tuple = (xs,)
    res = None
    if residual is not None:
        res = _residual(residual, xs)
        inputs = (xs, res)
    outb = None
    if out is not None:
        outb = _check_out(out, prob)
        g, b = _apart(g, outb), _apart(b, outb)
    canon = plan.canon
    N, G = xs.shape[0], plan.groups

    if xs.size == 0:
        y = out if out is not None else np.empty(xs.shape, dtype=xs.dtype)
        mean = np.full((N, G), np.nan)
        rstd = np.full((N, G), np.nan)
        return (y, mean, rstd) if return_stats else y

    target = _target(outb, canon, xs, inputs)
    yc = _flat(target, canon, read_only=False)
    epi = None
    if code or res is not None:
        epi = (activation_arg(code), slope, None if res is None else _flat(res, canon))
    mean, rstd = _engine.forward(_flat(xs, canon), yc, canon, G, g, b, eps, epi)
    y = _deliver(out, outb, target)
    if return_stats:
        return y, mean.reshape(N, G), rstd.reshape(N, G)
    return y


def _target(
    out: np.ndarray | None, canon: _engine.Canonical, like: np.ndarray, inputs: tuple
) -> np.ndarray:
    """Where the kernels write: `out` itself when that is safe and cheap, else a new array.

    `out` is used directly when its memory is in canonical order and it is each input itself
    or disjoint from it (kernels read an element before writing the same element, but a partial
    overlap would let outputs overwrite inputs not yet read). `inputs` are the arrays of
    `out`'s shape; the small parameter arrays are separated from `out` by `_apart`.
    """
    if (
        out is not None
        and canon.is_view(out)
        and all(not np.may_share_memory(out, a) or _same_memory(out, a) for a in inputs)
    ):
        return out
    return canon.empty(like.shape, like.dtype)


def _deliver(out: object, outb: np.ndarray | None, target: np.ndarray) -> np.ndarray:
    """The result: `target`, or the caller's `out` with `target` copied in if needed.

    `outb` is `out`'s plain-ndarray view; the kernels wrote there directly when `target`
    is `outb`.
    """
    if outb is None:
        return target
    if target is not outb:
        np.copyto(outb, target)
    return out  # type: ignore[return-value]


def _apart(a: np.ndarray, out: np.ndarray) -> np.ndarray:
    """`a` (an input the kernels read), copied if it may share memory with `out`.

    The kernels read gamma, beta and the statistics while they write `out`: an input that is
    a view of `out` would be read after being overwritten. A copy makes the call behave as
    if every input had been copied first (NumPy's rule for ufuncs). Only inputs that can alias
    pay for the check, and only the rare aliasing ones for the copy (channel- or (N, G)-sized).
    """
    if np.may_share_memory(a, out):
        return _args.frozen(a.copy())
    return a


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays are the same view of the same memory (in-place is safe then)."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.strides == b.strides
    )


def _check_out(out: object, prob: _Problem) -> np.ndarray:
    """`out` validated, as a plain-ndarray view of its memory (what the kernels can take).

    A subclass (`np.memmap`, `np.matrix`, a user's) is written through that view, so the
    caller's object receives the result; a masked array is refused (its mask would go stale).
    """
    if type(out) is not np.ndarray:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"`out` must be a NumPy array, got {type(out).__name__}.")
        _args.check_not_masked(out, "out", "Pass a plain ndarray (e.g. its `.data`).")
        out = out.view(np.ndarray)
    if out.shape != prob.x.shape:
        raise ValueError(f"`out` must have shape {prob.x.shape}, got {out.shape}.")
    if out.dtype != prob.x.dtype:
        raise TypeError(f"`out` must have dtype {prob.x.dtype}, got {out.dtype}.")
    if not out.flags.writeable:
        raise ValueError("`out` is read-only.")
    return out


def group_norm_backward(
    dy: np.ndarray,
    x: np.ndarray,
    mean: np.ndarray,
    rstd: np.ndarray,
    groups: int = 32,
    gamma: np.ndarray | None = None,
    *,
    beta: np.ndarray | None = None,
    axis: int | tuple[int, ...] = -1,
    group_size: int | None = None,
    out: np.ndarray | None = None,
    residual: np.ndarray | None = None,
    activation: str | None = None,
    negative_slope: float = 0.2,
    approximate: bool = False,
) -> tuple:
    """Gradients of `group_norm` with respect to `x`, `gamma` and `beta` (and `residual`).

    For the fused op (`residual` or `activation` given) the pre-activation
    `z = GN(x) * gamma + beta + residual` is recomputed from `x` and the statistics, as the
    forward computed it, so a fused forward keeps only `x`, `mean` and `rstd` alive.

    Parameters
    ----------
    dy : array of the shape of `x`
        Gradient of the loss with respect to the output `y`.
    x : array
        The forward input.
    mean, rstd : float arrays of shape (N, G)
        The statistics returned by `group_norm(..., return_stats=True)`.
    groups, gamma, axis, group_size
        As in the forward call (`gamma` None means ones).
    beta, residual, activation, negative_slope, approximate
        The fused forward's arguments, when the forward was fused (`beta` is only read
        then: the activation's derivative depends on `z`).
    out : array, optional
        Preallocated `dx` of the shape and dtype of `x`: saves the page faults of a fresh
        large array on every call. It may share memory with any input (`dy` or `x` itself,
        or `gamma`/`mean`/`rstd` views of it): the result is always the one computed
        from copies of the inputs.

    Returns
    -------
    (dx, dgamma, dbeta), or (dx, dgamma, dbeta, dresidual) for the fused op
        `dx` with the shape and dtype of `x` (`out` itself when given); `dgamma` and
        `dbeta` with the channel shape, in gamma's float dtype (or x's compute dtype when
        gamma is None: float32 for float16 and bfloat16 `x`). Both are always computed;
        callers ignore what they do not need. `dresidual`, the gradient with respect to
        `residual` (which is also that of `z`), has `x`'s shape and dtype; it is None when
        `residual` is None.

    Notes
    -----
    ndarray subclasses are handled as in `group_norm`; masked arrays are refused with a
    TypeError (`numba_gn.group_norm_masked_backward` takes a mask). Dask arrays (`dy`, `x`,
    `mean` or `rstd`) give lazy Dask results (`numba_gn.dask`).
    """
    fused, code, slope = _fusion(residual, activation, negative_slope, approximate)
    if _is_dask(x) or _is_dask(dy) or _is_dask(mean) or _is_dask(rstd):  # lazy, as above
        if fused:
            raise TypeError("`residual` and `activation` are not supported with Dask arrays yet.")
        return _lazy("group_norm_backward", out, dy, x, mean, rstd, groups, gamma, axis=axis,
                     group_size=group_size)
    prob = _Problem(x, groups, group_size, axis)
    plan = prob.plan
    g = _args.param_array(gamma, "gamma", plan.channel_shape, 1.0, prob.x.shape)
    dys = _args.as_float_array(dy, "dy", masked_hint=_MASKED_HINT)
    if dys.shape != prob.x.shape:
        raise ValueError(f"`dy` must have the shape of `x` {prob.x.shape}, got {dys.shape}.")
    if dys.dtype != prob.x.dtype:
        dys = dys.astype(prob.x.dtype)
    N, G = prob.x.shape[0], plan.groups
    m = _stats_array(mean, "mean", (N, G))
    r = _stats_array(rstd, "rstd", (N, G))
    if isinstance(gamma, np.ndarray) and is_float(gamma.dtype):
        pdtype = gamma.dtype.newbyteorder("=")  # native order, like every other output
    elif prob.x.dtype == _F16 or is_bfloat16(prob.x.dtype):
        pdtype = np.dtype(np.float32)  # 16-bit gradients would lose most digits of these sums
    else:
        pdtype = prob.x.dtype
    inputs: tuple = (prob.x, dys)
    res = None
    if fused:
        bt = _args.param_array(beta, "beta", plan.channel_shape, 0.0, prob.x.shape)
        if residual is not None:
            res = _residual(residual, prob.x)
            inputs = (prob.x, dys, res)
    outb = None
    if out is not None:
        outb = _check_out(out, prob)
        g, m, r = _apart(g, outb), _apart(m, outb), _apart(r, outb)
        if fused:
            bt = _apart(bt, outb)
    canon = plan.canon
    xs = prob.x
    if xs.size == 0:
        dx = out if out is not None else np.zeros(xs.shape, dtype=xs.dtype)
        zeros = np.zeros(plan.channel_shape, dtype=pdtype)
        if fused:
            return dx, zeros, zeros.copy(), None if res is None else np.zeros_like(xs)
        return dx, zeros, zeros.copy()
    target = _target(outb, canon, xs, inputs)
    dxc = _flat(target, canon, read_only=False)
    dres = None
    epi = None
    dyc = _flat(dys, canon)
    narrow = xs.dtype == _F16 or is_bfloat16(xs.dtype)
    if res is not None:
        dres = canon.empty(xs.shape, xs.dtype)
        if code == 0:  # no activation: the residual's gradient is `dy` itself
            np.copyto(dres, dys)
    dz32 = None
    if code:
        if narrow:  # 16-bit data: `dz` stays float32, like every other intermediate
            dz32 = canon.empty(xs.shape, np.dtype(np.float32))
            dz = _flat(dz32, canon, read_only=False)
        else:
            dz = dxc if dres is None else _flat(dres, canon, read_only=False)
        resc = None if res is None else _flat(res, canon)
        epi = (activation_arg(code), slope, resc, bt, dz)
    dgamma, dbeta = _engine.backward(dyc, _flat(xs, canon), dxc, canon, G, g, m, r, epi)
    if dz32 is not None and dres is not None:
        np.copyto(dres, dz32, casting="unsafe")  # rounded once, at the end
    dx = _deliver(out, outb, target)
    shape = plan.channel_shape
    grads = (dx, dgamma.reshape(shape).astype(pdtype), dbeta.reshape(shape).astype(pdtype))
    return (*grads, dres) if fused else grads


def _stats_array(a: object, name: str, shape: tuple[int, int]) -> np.ndarray:
    if type(a) is np.ndarray and a.dtype == np.float64 and a.shape == shape:
        if a.flags.c_contiguous:  # as group_norm returned it: a flat view, no copy
            return _args.frozen(a.reshape(-1))
    arr = _args._asarray(a, name)
    if arr.dtype.kind != "f":
        raise TypeError(f"`{name}` must be a float array, got dtype {arr.dtype}.")
    if arr.shape != shape:
        raise ValueError(
            f"`{name}` must have shape {shape} (batch, groups), got shape {arr.shape}."
        )
    return _args.frozen(np.ascontiguousarray(arr, dtype=np.float64).reshape(-1))
