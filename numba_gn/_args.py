"""Validation of user arguments: every failure is a ValueError/TypeError naming the argument.

Used by `numba_gn.functional` and by the layers, so both report problems the same way.
"""

from __future__ import annotations

import functools
import math
import numbers
import sys
from collections.abc import Sequence

import numpy as np

from numba_gn._checks import show as _show
from numba_gn._dtypes import is_bfloat16

_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def check_groups_value(groups: object) -> None:
    """Keras's construction-time rule: a positive int, or -1 for one group per channel.

    Stricter than Keras: bools and ints beyond `sys.maxsize` (no axis can be that long) are
    rejected too, all with Keras's `ValueError`.
    """
    if (
        isinstance(groups, (bool, np.bool_))
        or not isinstance(groups, numbers.Integral)
        or (groups <= 0 and groups != -1)
        or groups > sys.maxsize
    ):
        raise ValueError(
            "Received an invalid value for argument `groups`, expected a positive integer "
            f"(or `-1` for instance normalization). Received: groups={_show(groups)}"
        )


def check_group_size_value(group_size: object) -> None:
    """`group_size` is None or a positive int."""
    if group_size is None:
        return
    if (
        isinstance(group_size, (bool, np.bool_))
        or not isinstance(group_size, numbers.Integral)
        or group_size <= 0
        or group_size > sys.maxsize
    ):
        raise ValueError(
            "Received an invalid value for argument `group_size`, expected a positive integer "
            f"or None. Received: group_size={_show(group_size)}"
        )


def resolve_groups(groups: object, group_size: object, channels: int, *, default: int = 32) -> int:
    """The number of groups for `channels` channels, from `groups` or `group_size`.

    `group_size` wins when set; `groups` must then be left at its default (or None), or
    agree with it.

    Zero channels give zero groups for `groups=-1` (one group per channel) and for any
    `group_size`: the normalisation of an empty channel axis is empty, not an error. A
    positive `groups` still cannot exceed the (zero) channels.
    """
    check_group_size_value(group_size)
    if group_size is not None:
        if groups is not None:
            check_groups_value(groups)
        if channels % group_size != 0:
            raise ValueError(
                f"`group_size`={group_size} must divide the number of channels ({channels})."
            )
        derived = channels // group_size
        agrees = groups in (None, default, derived) or (groups == -1 and group_size == 1)
        if not agrees:
            raise ValueError(
                f"Arguments `groups`={groups} and `group_size`={group_size} are inconsistent "
                f"for {channels} channels (group_size={group_size} means {derived} groups). "
                "Pass only one of them."
            )
        return derived
    check_groups_value(groups)
    g = channels if groups == -1 else int(groups)  # type: ignore[arg-type]
    if g == 0:  # groups=-1 on zero channels: nothing to split (and nothing to divide by)
        return 0
    if g > channels:
        raise ValueError(
            f"Number of groups ({g}) cannot be more than the number of channels ({channels})."
        )
    if channels % g != 0:
        raise ValueError(
            f"The number of channels ({channels}) must be a multiple of the number of groups "
            f"(`groups`={g}); {channels} channels cannot be split into {g} equal groups."
        )
    return g


def normalize_axes(axis: object, ndim: int) -> tuple[int, ...]:
    """Channel axes as non-negative ints: each in range, not the batch axis 0, no repeats."""
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"`axis` must be an int or a tuple/list of ints, got axis={axis!r}.")
    if isinstance(axis, numbers.Integral):
        items: Sequence[object] = (axis,)
    elif isinstance(axis, (tuple, list)) and len(axis) > 0:
        items = axis
    else:
        raise TypeError(
            f"`axis` must be an int or a non-empty tuple/list of ints, got axis={_show(axis)}."
        )
    out = []
    for a in items:
        if isinstance(a, (bool, np.bool_)) or not isinstance(a, numbers.Integral):
            raise TypeError(f"`axis` entries must be ints, got axis={_show(axis)}.")
        if not -ndim <= a < ndim:
            raise ValueError(
                f"`axis`={_show(axis)} is out of range for an input with {ndim} dimensions "
                f"(valid: 1..{ndim - 1} or -{ndim - 1}..-1)."
            )
        p = int(a) % ndim
        if p == 0:
            raise ValueError(
                f"`axis`={axis!r} names axis 0, the batch axis; the channel axis must be one "
                "of the other axes."
            )
        out.append(p)
    if len(set(out)) != len(out):
        raise ValueError(f"`axis`={axis!r} repeats an axis.")
    return tuple(out)


def as_float_array(x: object, name: str, *, masked_hint: str = "") -> np.ndarray:
    """`x` as a native-byte-order float16/bfloat16/float32/float64 base-class ndarray.

    Lists and scalars are converted; bfloat16 is ml_dtypes' (see `numba_gn._dtypes`).
    ndarray subclasses are viewed as plain ndarrays (see `_asarray`); `masked_hint` is
    appended to the error refusing a masked array.
    """
    arr = x if type(x) is np.ndarray else _asarray(x, name, masked_hint=masked_hint)
    if arr.dtype not in _FLOAT_DTYPES:
        dtype = arr.dtype
        if (dtype.kind == "f" and dtype.itemsize in (2, 4, 8)) or is_bfloat16(dtype):
            if not dtype.isnative:  # big-endian floats: convert
                arr = arr.astype(dtype.newbyteorder("="))
        else:
            raise TypeError(
                f"`{name}` must be a float16, bfloat16, float32 or float64 array, got dtype "
                f"{arr.dtype}."
            )
    return arr


def _asarray(x: object, name: str, *, masked_hint: str = "") -> np.ndarray:
    """`x` as a base-class ndarray, sharing memory with `x` when it is already an array.

    The kernels are compiled for plain ndarrays only, and subclasses change what `reshape`
    and friends return (`np.matrix` stays 2-D), so a subclass (`np.memmap`, `np.matrix`,
    a user's) is seen through a plain ndarray view of its memory. A masked array is refused:
    viewing it would silently drop its mask.
    """
    if isinstance(x, np.ndarray):
        if type(x) is not np.ndarray:
            check_not_masked(x, name, masked_hint)
            return x.view(np.ndarray)
        return x
    try:
        return np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"`{name}` could not be converted to an array: {exc}") from None


def check_not_masked(x: object, name: str, hint: str = "") -> None:
    """Refuse a `numpy.ma.MaskedArray` for argument `name`: its mask would be ignored."""
    # numpy.ma is imported lazily by NumPy; if nobody imported it, no masked array exists.
    ma = sys.modules.get("numpy.ma")
    if ma is not None and isinstance(x, ma.MaskedArray):
        raise TypeError(
            f"`{name}` is a masked array (numpy.ma.MaskedArray), which is not supported: its "
            f"mask would be silently ignored. {hint or 'Pass a plain ndarray (e.g. `.filled()`).'}"
        )


def frozen(a: np.ndarray) -> np.ndarray:
    """`a`, a view or array this package just made, flagged read-only (and returned).

    Numba compiles a kernel separately for read-only and for writeable arrays, so every input
    handed to the kernels is read-only: one specialisation per dtype, whatever the caller's
    flags (a user's read-only gamma would otherwise compile every kernel again).
    """
    a.flags.writeable = False
    return a


def param_array(
    p: object,
    name: str,
    shape: tuple[int, ...],
    fill: float,
    x_shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """gamma/beta as a flat float64 array of `prod(shape)` values (`fill` when None).

    `x_shape`, the input's shape, only improves the message of a shape mismatch.
    """
    if p is None:
        return _constant(math.prod(shape), fill)
    arr = p if type(p) is np.ndarray else _asarray(p, name)
    if arr.dtype.kind not in "fiu" and not is_bfloat16(arr.dtype):
        raise TypeError(f"`{name}` must be a real float array, got dtype {arr.dtype}.")
    if arr.shape != shape:
        raise ValueError(
            f"`{name}` must have shape {shape} (the shape of the channel axes), "
            f"got shape {arr.shape}.{_batch_axis_hint(name, arr.shape, x_shape)}"
        )
    return frozen(np.ascontiguousarray(arr, dtype=np.float64).reshape(-1))


def _batch_axis_hint(name: str, p_shape: tuple[int, ...], x_shape: tuple[int, ...] | None) -> str:
    """Why gamma/beta may not fit: their shape is the input's leading axes, so no batch axis.

    Axis 0 is always the batch axis, never a channel axis; parameters shaped like it mean a
    single sample, e.g. one channels-first `(C, H, W)` image, was passed without its batch.
    """
    k = len(p_shape)
    if x_shape is None or not 0 < k < len(x_shape) or tuple(x_shape[:k]) != p_shape:
        return ""
    axes = "axis 0" if k == 1 else f"axes 0 to {k - 1}"
    axis = 1 if k == 1 else tuple(range(1, k + 1))
    return (
        f" `{name}` has the shape of the input's {axes} (input shape {tuple(x_shape)}), but axis "
        "0 is the batch axis, never a channel axis: if the input is a single sample, it is "
        f"missing its batch axis; add one with `x[None]` and pass axis={axis}."
    )


@functools.lru_cache(maxsize=64)
def _constant(size: int, fill: float) -> np.ndarray:
    """A shared read-only array of `size` copies of `fill`."""
    return frozen(np.full(size, fill, dtype=np.float64))


def check_epsilon(epsilon: object) -> float:
    """`epsilon` as a float: finite and >= 0."""
    if type(epsilon) is float and 0.0 <= epsilon < math.inf:  # the common case, quickly
        return epsilon
    if isinstance(epsilon, (bool, np.bool_)) or not isinstance(epsilon, numbers.Real):
        raise TypeError(f"`epsilon` must be a real number, got epsilon={_show(epsilon)}.")
    try:
        eps = float(epsilon)
    except OverflowError:  # an int beyond the float range, e.g. 10**400
        eps = math.inf
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"`epsilon` must be finite and >= 0, got epsilon={_show(epsilon)}.")
    return eps
