"""`group_norm` and `group_norm_backward` inside a user's own `@numba.njit` code.

Importing `numba_gn` registers Numba `overload`s of `numba_gn.group_norm` and
`numba_gn.group_norm_backward`, so a compiled function can call them unchanged:

    @numba.njit
    def pipeline(x, gamma, beta):
        y = numba_gn.group_norm(x, 8, gamma, beta, axis=-1)
        return np.maximum(y, 0.0).sum()

Registering compiles nothing: the implementations below are typed and compiled only when a
user's function that calls them is compiled, once per signature of argument types.

The compiled path gives the same bits as the Python call. It repeats the Python path's
decisions on the same shapes and strides: the canonical `(N, A, C, B)` view of every array
(the axis order of `numba_gn._engine._memory_order`, with NumPy's C-contiguity rule, and a
C-order copy where the Python path copies), the kernel family (`numba_gn._engine._row_family`
itself, compiled), the lane count (`numba_gn._engine._lanes`), float64 gamma, beta, statistics
and epsilon, and the streaming-store threshold. It then runs the same kernels with the same
argument types (so it reuses their compiled machine code), but always their serial twins: a
call made inside a user's `prange` loop never starts a nested parallel region. Every kernel
path computes the same bits (see `numba_gn.kernels`).

Differences from the Python call:

* `x`, `dy`, `gamma`, `beta`, `mean`, `rstd` and `out` must be NumPy arrays (or None
  where the Python call allows it); lists and scalars are not converted. float16 data is not
  supported in compiled code.
* `axis` is an int or a tuple of ints (not a list).
* `return_stats` must be known when the caller is compiled (a constant, or an argument of the
  caller, which Numba then compiles once per value): it decides the type of the result.
* A new `y` (or `dx`) is always C-contiguous (the Python call may return one in the memory
  order of `x`); the values are the same.
* Errors that depend only on types (a wrong dtype, a wrong number of dimensions) are raised
  when the caller is compiled, naming the type where the Python call shows the value. Errors
  that depend on values are raised when the call runs, with the Python call's message, as a
  subclass of `ValueError` (see `_ArgumentError`).
* `numba_gn._engine.forced` (a switch for tests and benchmarks) does not reach compiled calls.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import literal_unroll, literally, types
from numba.core import cgutils
from numba.extending import intrinsic, overload, register_jitable

from numba_gn import _args, _engine, _jit, _knobs, functional
from numba_gn.kernels import LANES, rows, slab
from numba_gn.kernels._borrow import borrowed

__all__: list[str] = []

# ----------------------------------------------------------------------------------------------
# The kernels compiled code runs: the only place that names them. Serial twins only, so that a
# call inside a user's `prange` loop starts no parallel region of its own. Signatures:
#   forward rows: (xf, yf, N, G, A, C, B, gamma, beta, eps, mean, rstd, stream)
#   forward slab: (xf, yf, N, G, A, C, B, gamma, beta, eps, lanes, mean, rstd, stream)
#   backward rows: (dyf, xf, dxf, N, G, A, C, B, gamma, mean, rstd, dgamma, dbeta, stream)
#   backward slab: (dyf, xf, dxf, N, G, A, C, B, gamma, mean, rstd, lanes, dgamma, dbeta, stream)

_FORWARD_ROWS = rows.forward_ser
_FORWARD_SLAB = slab.forward_fused_ser
_BACKWARD_ROWS = rows.backward_ser
_BACKWARD_SLAB = slab.backward_fused_ser

# They are called from `_forward_implementation` and `_backward_implementation` below (two
# calls each), not through a compiled helper of their own: Numba compiles a callee's code
# again into every compiled caller, and a helper around the kernels would add a large one.

# The project's Numba options (`numba_gn._jit`) for everything compiled here, too.
_OPTIONS = dict(_jit.JIT_OPTIONS)
_jitable = register_jitable(**_OPTIONS)

# The engine's own family rule, compiled where compiled code calls it: one definition.
_jitable(_engine._row_family)


# ----------------------------------------------------------------------------------------------
# Errors found at run time


class _ArgumentError(ValueError):
    """A bad argument value found by compiled code, with the Python call's message.

    Compiled code detects the problem and raises this class with the values involved; the
    message is made here, in Python, by the Python call's own check, so both say the same
    (compiled code cannot format floats, and building strings there is slow to compile).
    """

    def __init__(self, check: str, *values: object) -> None:
        super().__init__(_message(check, values))

    def __reduce__(self) -> tuple:
        return ValueError, self.args  # a plain ValueError once pickled (no compiled values)


def _message(check: str, values: tuple) -> str:
    """The Python call's message for the failed `check` on `values`."""
    try:
        if check == "axis":
            _args.normalize_axes(*values)
        elif check == "groups":
            groups, channels = values
            _args.resolve_groups(groups, None, channels)
        elif check == "group_size":
            _args.resolve_groups(*values)
        elif check == "param":
            name, shape, channel_shape, x_shape = values
            _args.param_array(np.empty(shape), name, channel_shape, 0.0, x_shape)
        elif check == "epsilon":
            _args.check_epsilon(*values)
        elif check == "stats":
            name, shape, expected = values
            functional._stats_array(np.empty(shape), name, expected)
        elif check == "out":
            x_shape, shape = values
            return f"`out` must have shape {x_shape}, got {shape}."
        elif check == "dy":
            x_shape, shape = values
            return f"`dy` must have the shape of `x` {x_shape}, got {shape}."
        else:  # a message already (an unpickled copy)
            return check
    except (TypeError, ValueError) as exc:
        return str(exc)
    return f"invalid argument ({check}): {values!r}"


# ----------------------------------------------------------------------------------------------
# Flat views and the canonical layout


@intrinsic
def _flat(typingctx, a, readonly):
    """A flat C-order view of `a`, which must be C-contiguous (checked by the caller).

    `readonly` (a literal bool) gives the view the type the Python path hands the kernels
    (inputs read-only, outputs writeable), so compiled calls reuse the kernels' compiled
    specialisations instead of compiling their own.
    """
    from numba.core.errors import RequireLiteralValue

    if not isinstance(readonly, types.BooleanLiteral):
        raise RequireLiteralValue(readonly)
    result = types.Array(a.dtype, 1, "C", readonly=readonly.literal_value, aligned=a.aligned)

    def codegen(context, builder, sig, args):
        from numba.core.imputils import impl_ret_borrowed
        from numba.np.arrayobj import make_array, populate_array

        ary = make_array(sig.args[0])(context, builder, value=args[0])
        view = make_array(sig.return_type)(context, builder)
        populate_array(
            view,
            data=ary.data,
            shape=cgutils.pack_array(builder, [ary.nitems]),
            strides=cgutils.pack_array(builder, [ary.itemsize]),
            itemsize=ary.itemsize,
            meminfo=ary.meminfo,
            parent=ary.parent,
        )
        return impl_ret_borrowed(context, builder, sig.return_type, view._getvalue())

    return result(a, readonly), codegen


@_jitable
def _c_contiguous(shape, strides, perm, itemsize):
    """NumPy's C_CONTIGUOUS flag of `x.transpose(perm)` (lengths 0 and 1 as NumPy treats them).

    The flag decides the axis order, hence the kernels' arithmetic: it must be NumPy's exactly.
    """
    sd = itemsize
    ok = True
    for j in range(len(perm) - 1, -1, -1):
        dim = shape[perm[j]]
        if dim == 0:
            return True
        if dim != 1:
            if strides[perm[j]] != sd:
                ok = False
            sd *= dim
    return ok


@_jitable
def _memory_order(shape, strides, axes, itemsize):
    """`numba_gn._engine._memory_order`: batch first, channel axes adjacent, no copy if possible."""
    ndim = len(shape)
    k = len(axes)
    first = axes[0]
    # (0, other axes before the first channel axis, channel axes, other axes after it)
    logical = np.empty(ndim, dtype=np.int64)
    logical[0] = 0
    j = 1
    for a in range(1, first):
        if _position(axes, a) < 0:
            logical[j] = a
            j += 1
    for a in axes:
        logical[j] = a
        j += 1
    for a in range(first + 1, ndim):
        if _position(axes, a) < 0:
            logical[j] = a
            j += 1
    if _c_contiguous(shape, strides, logical, itemsize):
        return logical
    # (0, axes 1.. by decreasing |stride|), ties in axis order (Python's sort is stable).
    perm = np.empty(ndim, dtype=np.int64)
    perm[0] = 0
    for a in range(1, ndim):
        key = abs(strides[a])
        i = a
        while i > 1 and abs(strides[perm[i - 1]]) < key:
            perm[i] = perm[i - 1]
            i -= 1
        perm[i] = a
    start = _position(perm, first)
    for i in range(k):
        if _position(perm, axes[i]) != start + i:  # the channel axes are not adjacent there
            return logical
    if _c_contiguous(shape, strides, perm, itemsize):
        return perm
    return logical


@_jitable
def _position(values, v):
    """`values.index(v)`, or -1."""
    for i in range(len(values)):
        if values[i] == v:
            return i
    return -1


@_jitable
def _dims(shape, perm, axes):
    """`(N, A, C, B)` of `numba_gn._engine.Canonical` (`perm` has the axes adjacent)."""
    first = _position(perm, axes[0])
    k = len(axes)
    A = 1
    C = 1
    B = 1
    for j in range(1, len(perm)):
        if j < first:
            A *= shape[perm[j]]
        elif j < first + k:
            C *= shape[perm[j]]
        else:
            B *= shape[perm[j]]
    return shape[0], A, C, B


@_jitable
def _lanes(most, run):
    """`numba_gn._engine._lanes` for a dtype whose `LANES` entry is `most`."""
    quarter = max(run // 4, 8)
    p = 1
    while p <= quarter // 2:  # the largest power of two <= quarter
        p *= 2
    return min(most, p)


@_jitable
def _take(shape, idx):
    """`[shape[i] for i in idx]` as an int64 array."""
    out = np.empty(len(idx), dtype=np.int64)
    for j in range(len(idx)):
        out[j] = shape[idx[j]]
    return out


@_jitable
def _may_share(a, b):
    """`np.may_share_memory(a, b)`: whether the byte ranges the arrays can reach overlap."""
    if a.size == 0 or b.size == 0:
        return False
    alo = a.ctypes.data
    ahi = alo + a.itemsize
    for i in range(a.ndim):
        extent = (a.shape[i] - 1) * a.strides[i]
        if extent < 0:
            alo += extent
        else:
            ahi += extent
    blo = b.ctypes.data
    bhi = blo + b.itemsize
    for i in range(b.ndim):
        extent = (b.shape[i] - 1) * b.strides[i]
        if extent < 0:
            blo += extent
        else:
            bhi += extent
    return alo < bhi and blo < ahi


@_jitable
def _writes_directly(out, perm, itemsize, a, b):
    """`numba_gn.functional._target`: whether the kernels can write into `out` itself.

    `out`'s memory must be in canonical order, and each input of its shape (`a`, `b`) must be
    `out` itself (the same view) or disjoint from it.
    """
    return (
        _c_contiguous(out.shape, out.strides, perm, itemsize)
        and _apart_or_same(out, a)
        and _apart_or_same(out, b)
    )


@_jitable
def _apart_or_same(out, a):
    """Whether `a` does not overlap `out`, or is the same view of the same memory."""
    if not _may_share(out, a):
        return True
    return a.ctypes.data == out.ctypes.data and a.strides == out.strides


def _permuted(a, perm):
    """Compiled only: `a.transpose(perm)`, `perm` an int64 array.

    Built from the permuted shape and strides: Numba's `transpose` with a run-time tuple
    compiles to a large function, and every compiled caller compiles it again.
    """
    raise NotImplementedError("compiled code only")


@overload(_permuted, jit_options=_OPTIONS)
def _permuted_impl(a, perm):
    from numba.np.unsafe.ndarray import to_fixed_tuple

    nd = a.ndim

    def impl(a, perm):
        shape = to_fixed_tuple(_take(a.shape, perm), nd)
        strides = to_fixed_tuple(_take(a.strides, perm), nd)
        return np.lib.stride_tricks.as_strided(a, shape, strides)

    return impl


@_jitable
def _input_view(a, perm, itemsize):
    """`Canonical.view(a)` as a read-only flat array: a view, or a C-order copy."""
    if _c_contiguous(a.shape, a.strides, perm, itemsize):
        return _flat(a, True)  # the same memory, in canonical order already
    t = _permuted(a, perm)
    flat = np.empty(a.size, dtype=a.dtype)
    i = 0
    for index in np.ndindex(t.shape):
        flat[i] = t[index]
        i += 1
    return _flat(flat, True)


@_jitable
def _scatter(flat, out, perm):
    """Write the canonical-order values `flat` into `out` (`np.copyto` of the Python path)."""
    t = _permuted(out, perm)
    i = 0
    for index in np.ndindex(t.shape):
        t[index] = flat[i]
        i += 1


@_jitable
def _apart(a, out):
    """`numba_gn.functional._apart`: a copy of (flat) `a` if it may share memory with `out`."""
    if _may_share(a, out):
        return _flat(a.copy(), True)
    return a


# ----------------------------------------------------------------------------------------------
# Argument values (their types are checked when the caller is compiled, below)


@_jitable
def _normalize_axes(raw, axis, ndim):
    """`numba_gn._args.normalize_axes` of `axis`, whose entries are `raw`."""
    k = len(raw)
    out = np.empty(k, dtype=np.int64)
    for i in range(k):
        a = raw[i]
        p = a + ndim if a < 0 else a
        if not -ndim <= a < ndim or p == 0:
            raise _ArgumentError("axis", axis, ndim)
        out[i] = p
    for i in range(k):
        for j in range(i):
            if out[i] == out[j]:
                raise _ArgumentError("axis", axis, ndim)
    return out


def _axis_values(axis):
    """Compiled only: the entries of `axis` (an int or a tuple of ints) as an int64 array."""
    raise NotImplementedError("compiled code only")


@overload(_axis_values, jit_options=_OPTIONS)
def _axis_values_impl(axis):
    if isinstance(axis, types.Integer):

        def one(axis):
            out = np.empty(1, dtype=np.int64)
            out[0] = axis
            return out

        return one
    k = len(axis)

    def many(axis):
        out = np.empty(k, dtype=np.int64)
        i = 0
        for a in literal_unroll(axis):
            out[i] = a
            i += 1
        return out

    return many


@_jitable
def _groups_from_size(groups, group_size, channels):
    """`numba_gn._args.resolve_groups` with a `group_size` (`groups` an int)."""
    if (
        group_size <= 0
        or (groups <= 0 and groups != -1)
        or channels % group_size != 0
        or not (
            groups == 32  # the default `groups` agrees with any group_size
            or groups == channels // group_size
            or (groups == -1 and group_size == 1)
        )
    ):
        raise _ArgumentError("group_size", groups, group_size, channels)
    return channels // group_size


@_jitable
def _groups_only(groups, channels):
    """`numba_gn._args.resolve_groups` without a `group_size`."""
    if groups <= 0 and groups != -1:
        raise _ArgumentError("groups", groups, channels)
    g = channels if groups == -1 else groups
    if g == 0:
        return 0
    if g > channels or channels % g != 0:
        raise _ArgumentError("groups", groups, channels)
    return g


def _resolve_groups(groups, group_size, channels):
    """Compiled only: `numba_gn._args.resolve_groups` for the argument types."""
    raise NotImplementedError("compiled code only")


@overload(_resolve_groups, jit_options=_OPTIONS)
def _resolve_groups_impl(groups, group_size, channels):
    if _is_none(group_size):
        return lambda groups, group_size, channels: _groups_only(np.int64(groups), channels)
    if _is_none(groups):  # `groups=None` agrees with any group_size, as the default does

        def default(groups, group_size, channels):
            return _groups_from_size(np.int64(32), np.int64(group_size), channels)

        return default

    def given(groups, group_size, channels):
        return _groups_from_size(np.int64(groups), np.int64(group_size), channels)

    return given


def _param(p, size, fill):
    """Compiled only: `numba_gn._args.param_array` (shape checked) as read-only flat float64."""
    raise NotImplementedError("compiled code only")


@overload(_param, jit_options=_OPTIONS)
def _param_impl(p, size, fill):
    if _is_none(p):
        return lambda p, size, fill: _flat(np.full(size, fill, dtype=np.float64), True)
    return lambda p, size, fill: _as_float64(p)


def _as_float64(a):
    """Compiled only: `np.ascontiguousarray(a, dtype=np.float64).reshape(-1)`, read-only."""
    raise NotImplementedError("compiled code only")


@overload(_as_float64, jit_options=_OPTIONS)
def _as_float64_impl(a):
    if a.dtype == types.float64:
        return lambda a: _flat(np.ascontiguousarray(a), True)
    return lambda a: _flat(_flat(np.ascontiguousarray(a), True).astype(np.float64), True)


@_jitable
def _epsilon(epsilon):
    """`numba_gn._args.check_epsilon`, as a float64."""
    eps = np.float64(epsilon)
    if not 0.0 <= eps < np.inf:
        raise _ArgumentError("epsilon", epsilon)
    return eps


def _new_or(out, x):
    """Compiled only: `out`, or a new C-order array like `x` when `out` is None."""
    raise NotImplementedError("compiled code only")


@overload(_new_or, jit_options=_OPTIONS)
def _new_or_impl(out, x):
    if _is_none(out):
        return lambda out, x: np.empty(x.shape, dtype=x.dtype)
    return lambda out, x: out


# ----------------------------------------------------------------------------------------------
# Argument types, checked when the caller is compiled (the Python call's error types and words)


def _type(t: object) -> types.Type:
    """A Numba type for a typing argument (omitted arguments arrive as their Python default)."""
    from numba import typeof

    if isinstance(t, types.Omitted):
        return typeof(t.value)
    if isinstance(t, types.Type):
        return t
    return typeof(t)


def _is_none(t: object) -> bool:
    return isinstance(_type(t), types.NoneType)


def _dtype_name(dtype: types.Type) -> str:
    dt = _numpy_dtype(dtype)
    return str(dtype) if dt is None else str(dt)


def _numpy_dtype(dtype: types.Type) -> np.dtype | None:
    """The NumPy dtype of a Numba dtype, or None."""
    from numba.np.numpy_support import as_dtype

    try:
        return as_dtype(dtype)
    except Exception:  # a Numba type without a NumPy dtype
        return None


def _python_refusal(check: Callable[[np.ndarray], object], dtype: types.Type, fallback: str):
    """Raise the Python call's error for an empty array of `dtype`, else `TypeError(fallback)`.

    The Python call's dtype checks run on a stand-in array, so both paths say the same.
    """
    dt = _numpy_dtype(dtype)
    if dt is not None:
        check(np.empty((0,) * 2, dtype=dt))
    raise TypeError(fallback)


def _refuse_float16(t: types.Array, name: str) -> None:
    if t.dtype == types.float16:
        raise TypeError(
            f"`{name}` is float16, which numba_gn does not support in compiled code: pass "
            "float32 or float64 arrays, or call numba_gn from Python for float16."
        )


def _check_data(t: object, name: str) -> types.Array:
    t = _type(t)
    if not isinstance(t, types.Array):
        raise TypeError(f"`{name}` must be a NumPy array in compiled code, got {name} of type {t}.")
    if t.dtype in (types.float32, types.float64):
        return t
    _refuse_float16(t, name)
    _python_refusal(
        lambda a: _args.as_float_array(a, name),
        t.dtype,
        f"`{name}` must be a float32 or float64 array in compiled code, got dtype {t.dtype}.",
    )
    return t  # unreachable: `_python_refusal` raises


def _check_x(t: object) -> types.Array:
    t = _check_data(t, "x")
    if t.ndim < 2:
        raise ValueError(
            f"`x` must have at least 2 dimensions (batch and channels), got a {t.ndim}-d array."
        )
    return t


def _check_axis(t: object) -> None:
    t = _type(t)
    if isinstance(t, types.Integer):
        return
    if isinstance(t, types.BaseTuple):
        if len(t) == 0:
            raise TypeError(
                "`axis` must be an int or a non-empty tuple/list of ints, got axis=()."
            )
        if not all(isinstance(a, types.Integer) for a in t):
            raise TypeError(f"`axis` entries must be ints, got axis of type {t}.")
        return
    if isinstance(t, (types.List, types.ListType)):
        raise TypeError(
            f"`axis` must be an int or a tuple of ints in compiled code (not a list), got axis "
            f"of type {t}."
        )
    if isinstance(t, types.Boolean):
        raise TypeError(f"`axis` must be an int or a tuple/list of ints, got axis of type {t}.")
    raise TypeError(
        f"`axis` must be an int or a non-empty tuple/list of ints, got axis of type {t}."
    )


def _check_groups(groups: object, group_size: object) -> None:
    g, s = _type(groups), _type(group_size)
    if not isinstance(s, (types.NoneType, types.Integer)):
        raise ValueError(
            "Received an invalid value for argument `group_size`, expected a positive integer "
            f"or None. Received: group_size of type {s}"
        )
    if isinstance(g, types.NoneType) and isinstance(s, types.NoneType):
        raise ValueError(
            "Received an invalid value for argument `groups`, expected a positive integer "
            "(or `-1` for instance normalization). Received: groups=None"
        )
    if not isinstance(g, (types.NoneType, types.Integer)):
        raise ValueError(
            "Received an invalid value for argument `groups`, expected a positive integer "
            f"(or `-1` for instance normalization). Received: groups of type {g}"
        )


def _check_param(t: object, name: str) -> None:
    t = _type(t)
    if isinstance(t, types.NoneType):
        return
    if not isinstance(t, types.Array):
        raise TypeError(
            f"`{name}` must be a NumPy array or None in compiled code, got {name} of type {t}."
        )
    _refuse_float16(t, name)
    if not isinstance(t.dtype, (types.Integer, types.Float)):
        _python_refusal(
            lambda a: _args.param_array(a, name, (0, 0), 1.0),
            t.dtype,
            f"`{name}` must be a real float array, got dtype {t.dtype}.",
        )
    if t.ndim == 0:
        raise ValueError(f"`{name}` must have the shape of the channel axes, got a 0-d array.")


def _check_epsilon(t: object) -> None:
    t = _type(t)
    if not isinstance(t, (types.Integer, types.Float)):
        raise TypeError(f"`epsilon` must be a real number, got epsilon of type {t}.")


def _check_stats(t: object, name: str) -> None:
    t = _type(t)
    if not isinstance(t, types.Array):
        raise TypeError(f"`{name}` must be a NumPy array in compiled code, got {name} of type {t}.")
    _refuse_float16(t, name)
    if not isinstance(t.dtype, types.Float):
        _python_refusal(
            lambda a: functional._stats_array(a, name, (0, 0)),
            t.dtype,
            f"`{name}` must be a float array, got dtype {t.dtype}.",
        )
    if t.ndim == 0:
        raise ValueError(f"`{name}` must have shape (batch, groups), got a 0-d array.")


def _check_out(t: object, x: types.Array) -> None:
    t = _type(t)
    if isinstance(t, types.NoneType):
        return
    if not isinstance(t, types.Array):
        raise TypeError(f"`out` must be a NumPy array, got {t}.")
    if t.ndim != x.ndim:
        raise ValueError(
            f"`out` must have shape of `x` (a {x.ndim}-d array), got a {t.ndim}-d array."
        )
    if t.dtype != x.dtype:
        raise TypeError(
            f"`out` must have dtype {_dtype_name(x.dtype)}, got {_dtype_name(t.dtype)}."
        )
    if not t.mutable:
        raise ValueError("`out` is read-only.")


def _literal_bool(t: object, name: str) -> bool | None:
    """The value of a bool argument known at compile time; None when it must be made literal."""
    if isinstance(t, types.Omitted):
        t = t.value
    if isinstance(t, bool):
        return t
    if isinstance(t, types.BooleanLiteral):
        return bool(t.literal_value)
    if isinstance(t, types.Boolean):
        return None
    raise TypeError(f"`{name}` must be a bool, got {name} of type {_type(t)}.")


def _literal_tuple(t: object) -> bool:
    t = _type(t)
    return isinstance(t, types.BaseTuple) and any(isinstance(a, types.Literal) for a in t)


def _constants(x: types.Array, axis: types.Type) -> tuple[int, int, int, int]:
    """What a signature fixes: `(ndim, number of channel axes, itemsize, LANES of the dtype)`."""
    k = 1 if isinstance(axis, types.Integer) else len(axis)
    return x.ndim, k, x.dtype.bitwidth // 8, LANES[np.dtype(_dtype_name(x.dtype))]


# ----------------------------------------------------------------------------------------------
# The computations. An implementation is compiled once per signature of argument types; Numba
# compiles a callee's code again into each compiled caller, so the public functions' callers
# call these directly (no wrapper in between) except where `return_stats` is given.


@_jitable
def _y_only(y, mean, rstd):
    return y


@_jitable
def _y_and_stats(y, mean, rstd):
    return y, mean, rstd


def _forward_implementation(x, axis, stats: bool):
    """The compiled `group_norm` for `x`'s and `axis`'s types (`stats`: return the stats)."""
    from numba.np.unsafe.ndarray import to_fixed_tuple

    nd, k, itemsize, most = _constants(x, _type(axis))
    finish = _y_and_stats if stats else _y_only

    def impl(x, groups=32, gamma=None, beta=None, axis=-1, epsilon=1e-3, group_size=None,
             out=None, return_stats=False):
        # The caller holds `x` for the whole call: views of it need no reference counts.
        x = borrowed(x)
        axes = _normalize_axes(_axis_values(axis), axis, nd)
        cshape = to_fixed_tuple(_take(x.shape, axes), k)
        channels = 1
        for c in cshape:
            channels *= c
        G = _resolve_groups(groups, group_size, channels)
        perm = _memory_order(x.shape, x.strides, axes, itemsize)
        N, A, C, B = _dims(x.shape, perm, axes)
        if gamma is not None and gamma.shape != cshape:
            raise _ArgumentError("param", "gamma", gamma.shape, cshape, x.shape)
        if beta is not None and beta.shape != cshape:
            raise _ArgumentError("param", "beta", beta.shape, cshape, x.shape)
        g = _param(gamma, channels, 1.0)
        b = _param(beta, channels, 0.0)
        eps = _epsilon(epsilon)
        if out is not None and out.shape != x.shape:
            raise _ArgumentError("out", x.shape, out.shape)
        y = _new_or(out, x)
        if out is not None:
            g = _apart(g, y)
            b = _apart(b, y)
        if x.size == 0:
            return finish(y, np.full((N, G), np.nan), np.full((N, G), np.nan))
        xf = _input_view(x, perm, itemsize)
        direct = _writes_directly(y, perm, itemsize, x, x)
        yf = _flat(y, False) if direct else np.empty(x.size, dtype=x.dtype)
        mean = np.empty((N, G), dtype=np.float64)
        rstd = np.empty((N, G), dtype=np.float64)
        mf = _flat(mean, False)
        rf = _flat(rstd, False)
        stream = yf.size * itemsize >= _knobs.STREAM_MIN_BYTES
        if _engine._row_family(A, C, B, G):
            _FORWARD_ROWS(xf, yf, N, G, A, C, B, g, b, eps, mf, rf, stream, None)
        else:
            lanes = _lanes(most, (C // G) * B)
            _FORWARD_SLAB(xf, yf, N, G, A, C, B, g, b, eps, lanes, mf, rf, stream, None)
        if not direct:
            _scatter(yf, y, perm)
        return finish(y, mean, rstd)

    return impl


def _forward_y(x, groups=32, gamma=None, beta=None, axis=-1, epsilon=1e-3, group_size=None,
               out=None, return_stats=False):
    """Compiled only: `group_norm(..., return_stats=False)`, typed without literals."""
    raise NotImplementedError("compiled code only")


def _forward_stats(x, groups=32, gamma=None, beta=None, axis=-1, epsilon=1e-3, group_size=None,
                   out=None, return_stats=False):
    """Compiled only: `group_norm(..., return_stats=True)`, typed without literals."""
    raise NotImplementedError("compiled code only")


@overload(_forward_y, jit_options=_OPTIONS)
def _forward_y_overload(x, groups=32, gamma=None, beta=None, axis=-1, epsilon=1e-3,
                        group_size=None, out=None, return_stats=False):
    return _forward_implementation(x, axis, False)


@overload(_forward_stats, jit_options=_OPTIONS)
def _forward_stats_overload(x, groups=32, gamma=None, beta=None, axis=-1, epsilon=1e-3,
                            group_size=None, out=None, return_stats=False):
    return _forward_implementation(x, axis, True)


def _backward_implementation(dy, x, gamma, axis):
    """The compiled `group_norm_backward` for these argument types."""
    from numba.np.unsafe.ndarray import to_fixed_tuple

    nd, k, itemsize, most = _constants(x, _type(axis))
    convert = dy.dtype != x.dtype
    # dgamma and dbeta have gamma's float dtype, else x's (`functional.group_norm_backward`).
    gamma = _type(gamma)
    real_gamma = isinstance(gamma, types.Array) and isinstance(gamma.dtype, types.Float)
    pdtype = np.dtype(_dtype_name(gamma.dtype if real_gamma else x.dtype)).type
    xdtype = np.dtype(_dtype_name(x.dtype)).type

    def impl(dy, x, mean, rstd, groups=32, gamma=None, axis=-1, group_size=None, out=None):
        axes = _normalize_axes(_axis_values(axis), axis, nd)
        cshape = to_fixed_tuple(_take(x.shape, axes), k)
        channels = 1
        for c in cshape:
            channels *= c
        G = _resolve_groups(groups, group_size, channels)
        perm = _memory_order(x.shape, x.strides, axes, itemsize)
        N, A, C, B = _dims(x.shape, perm, axes)
        if gamma is not None and gamma.shape != cshape:
            raise _ArgumentError("param", "gamma", gamma.shape, cshape, x.shape)
        g = _param(gamma, channels, 1.0)
        if dy.shape != x.shape:
            raise _ArgumentError("dy", x.shape, dy.shape)
        dys = dy.astype(xdtype) if convert else dy
        if mean.shape != (N, G):
            raise _ArgumentError("stats", "mean", mean.shape, (N, G))
        if rstd.shape != (N, G):
            raise _ArgumentError("stats", "rstd", rstd.shape, (N, G))
        m = _as_float64(mean)
        r = _as_float64(rstd)
        if out is not None and out.shape != x.shape:
            raise _ArgumentError("out", x.shape, out.shape)
        dx = _new_or(out, x)
        if out is not None:
            g = _apart(g, dx)
            m = _apart(m, dx)
            r = _apart(r, dx)
        if x.size == 0:
            zeros = np.zeros(cshape, dtype=pdtype)
            return dx, zeros, zeros.copy()
        xf = _input_view(x, perm, itemsize)
        dyf = _input_view(dys, perm, itemsize)
        direct = _writes_directly(dx, perm, itemsize, x, dys)
        dxf = _flat(dx, False) if direct else np.empty(x.size, dtype=x.dtype)
        dgamma = np.empty(cshape, dtype=np.float64)
        dbeta = np.empty(cshape, dtype=np.float64)
        dg = _flat(dgamma, False)
        db = _flat(dbeta, False)
        stream = dxf.size * itemsize >= _knobs.STREAM_MIN_BYTES
        if _engine._row_family(A, C, B, G):
            _BACKWARD_ROWS(dyf, xf, dxf, N, G, A, C, B, g, m, r, dg, db, stream, None)
        else:
            lanes = _lanes(most, (C // G) * B)
            _BACKWARD_SLAB(dyf, xf, dxf, N, G, A, C, B, g, m, r, lanes, dg, db, stream, None)
        if not direct:
            _scatter(dxf, dx, perm)
        return dx, dgamma.astype(pdtype), dbeta.astype(pdtype)

    return impl


# ----------------------------------------------------------------------------------------------
# The public functions. The typing functions take the keyword-only parameters as ordinary ones
# (Numba binds keyword-only parameters of an implementation wrongly), so compiled callers may
# also pass them by position.


@overload(functional.group_norm, jit_options=_OPTIONS)
def _group_norm_overload(x, groups=32, gamma=None, beta=None, axis=-1, epsilon=1e-3,
                         group_size=None, out=None, return_stats=False):
    stats = _literal_bool(return_stats, "return_stats")
    if stats is None:  # compile again with its value: it decides the result's type

        def literal(x, groups=32, gamma=None, beta=None, axis=-1, epsilon=1e-3,
                    group_size=None, out=None, return_stats=False):
            return literally(return_stats)

        return literal
    xt = _check_x(x)
    _check_axis(axis)
    _check_groups(groups, group_size)
    _check_param(gamma, "gamma")
    _check_param(beta, "beta")
    _check_epsilon(epsilon)
    _check_out(out, xt)
    others = (x, groups, gamma, beta, axis, epsilon, group_size, out)
    if not any(isinstance(_type(t), types.Literal) or _literal_tuple(t) for t in others):
        return _forward_implementation(xt, axis, stats)
    # Once `return_stats` is given, Numba types every constant argument as a literal. A small
    # wrapper passes them on as plain values, so that each combination of constants compiles
    # the wrapper only, not the whole body.
    body = _forward_stats if stats else _forward_y

    def given(x, groups=32, gamma=None, beta=None, axis=-1, epsilon=1e-3, group_size=None,
              out=None, return_stats=False):
        return body(x, groups, gamma, beta, axis, epsilon, group_size, out)

    return given


@overload(functional.group_norm_backward, jit_options=_OPTIONS)
def _group_norm_backward_overload(dy, x, mean, rstd, groups=32, gamma=None, axis=-1,
                                  group_size=None, out=None):
    xt = _check_x(x)
    dyt = _check_data(dy, "dy")
    if dyt.ndim != xt.ndim:
        raise ValueError(
            f"`dy` must have the shape of `x` (a {xt.ndim}-d array), got a {dyt.ndim}-d array."
        )
    _check_axis(axis)
    _check_groups(groups, group_size)
    _check_param(gamma, "gamma")
    _check_stats(mean, "mean")
    _check_stats(rstd, "rstd")
    _check_out(out, xt)
    return _backward_implementation(dyt, xt, gamma, axis)
