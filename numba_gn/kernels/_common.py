"""Scalar helpers shared by both kernel families (all inlined into the kernels).

Numerical scheme (see `docs/numerics.md`):

* statistics are *shifted* sums `S = sum(x - K)` and `Q = sum((x - K)**2)` with a shift `K`
  taken from the data of the same group, so there is no catastrophic cancellation at large
  offsets;
* inside one piece of at most `PIECE` elements the sums run in the input dtype over
  `lanes` independent accumulators (so LLVM vectorises them without `reassoc`); each piece's
  sums are widened to float64 and pieces are merged by sequential float64 addition in a fixed
  order, so the result does not depend on how pieces are spread over threads;
* the output is `(x - m_hi) * a + b'` with the mean split into a high part in the input dtype
  and a float64 low part folded into `b'`, which keeps float32 outputs exact to ~4e-7 even at
  offset 1e4.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from numba_gn._jit import inline
from numba_gn.kernels._bfloat import (
    bfloat_to_float,
    float_to_bfloat,
    py_bfloat_to_float,
    py_float_to_bfloat,
)
from numba_gn.kernels._half import float_to_half, half_to_float

#: Largest number of elements summed in the input dtype before widening to float64.
PIECE = 4096
#: Independent accumulators per piece (a runtime argument: constant widths get unrolled to
#: scalar code because Numba disables SLP vectorisation). Four 256-bit vectors of float32, four
#: of float64: as fast as more lanes on long slabs, and on slabs of a few hundred elements the
#: float64 total of the lanes, a chain of dependent additions, costs less than with 64.
LANES = {
    np.dtype(np.float32): 32,
    np.dtype(np.float64): 16,
    np.dtype(np.uint16): 32,  # float16 bits
    np.dtype(np.int16): 32,  # bfloat16 bits
}


# ----------------------------------------------------------------------------------------------
# Storage vs compute dtype. float16 data is stored as uint16 bits and bfloat16 data as int16
# bits (see kernels._half and kernels._bfloat); both are computed in float32. This section is
# the only place that knows it: the storage types are tested by `_is_half`/`_is_bfloat` in the
# overloads and by `_NARROW` in the Python bodies, which run only under NUMBA_DISABLE_JIT; in
# kernels the overloads replace them at compile time.

#: NumPy storage dtypes of the 16-bit formats, computed in float32.
_NARROW = (np.dtype(np.uint16), np.dtype(np.int16))


def load(v):
    """A stored element as a compute value (16-bit formats -> float32; floats unchanged)."""
    if isinstance(v, np.uint16):
        return np.float32(np.array(v).view(np.float16))
    if isinstance(v, np.int16):
        return py_bfloat_to_float(v)
    return v


def store(value, like):
    """A compute value as an element of the storage array `like` (float32 -> 16-bit bits)."""
    if like.dtype == np.uint16:
        return np.array(value, dtype=np.float16).view(np.uint16)[()]
    if like.dtype == np.int16:
        return py_float_to_bfloat(value)
    return value


def compute_zeros(like, n):
    """Zeros of length `n` in the compute dtype of the storage array `like`."""
    return np.zeros(n, dtype=np.float32 if like.dtype in _NARROW else like.dtype)


def compute_empty(like, shape):
    """An empty array of `shape` in the compute dtype of the storage array `like`."""
    return np.empty(shape, dtype=np.float32 if like.dtype in _NARROW else like.dtype)


def _is_half(arr_type):
    """Whether a Numba type is an array of float16 bits (uint16 storage)."""
    return isinstance(arr_type, types.Array) and arr_type.dtype == types.uint16


def _is_bfloat(arr_type):
    """Whether a Numba type is an array of bfloat16 bits (int16 storage)."""
    return isinstance(arr_type, types.Array) and arr_type.dtype == types.int16


def _is_narrow(arr_type):
    """Whether a Numba type is an array of a 16-bit format, computed in float32."""
    return _is_half(arr_type) or _is_bfloat(arr_type)


@overload(load, inline="always")
def _load_impl(v):
    if v == types.uint16:
        return lambda v: half_to_float(v)
    if v == types.int16:
        return lambda v: bfloat_to_float(v)
    return lambda v: v


@overload(store, inline="always")
def _store_impl(value, like):
    if _is_half(like):
        return lambda value, like: float_to_half(value)
    if _is_bfloat(like):
        return lambda value, like: float_to_bfloat(np.float32(value))
    return lambda value, like: value


@overload(compute_zeros)
def _compute_zeros_impl(like, n):
    if _is_narrow(like):
        return lambda like, n: np.zeros(n, dtype=np.float32)
    return lambda like, n: np.zeros(n, dtype=like.dtype)


@overload(compute_empty)
def _compute_empty_impl(like, shape):
    if _is_narrow(like):
        return lambda like, shape: np.empty(shape, dtype=np.float32)
    return lambda like, shape: np.empty(shape, dtype=like.dtype)


@inline
def shifted_sums(seg, K, acc):
    """Return float64 `(sum(seg - K), sum((seg - K)**2))` of a contiguous 1-D `seg`.

    `acc` is caller-provided scratch of shape (2, lanes) in the compute dtype (allocating it
    per call costs as much as summing a piece): `lanes` independent accumulators, updated four
    rows at a time (a quarter of the accumulator loads and stores, which bound this loop), then
    widened to float64.
    """
    lanes = acc.shape[1]
    nrows = seg.size // lanes
    S = 0.0
    Q = 0.0
    if nrows == 0:  # too short for the lanes: float64 directly (the same sums, no set-up)
        for r in range(seg.size):
            v = np.float64(load(seg[r]) - K)
            S += v
            Q += v * v
        return S, Q
    body = seg[: nrows * lanes].reshape((nrows, lanes))
    s = acc[0]
    q = acc[1]
    s[:] = 0
    q[:] = 0
    i = 0
    while i + 4 <= nrows:
        for k in range(lanes):
            v0 = load(body[i, k]) - K
            v1 = load(body[i + 1, k]) - K
            v2 = load(body[i + 2, k]) - K
            v3 = load(body[i + 3, k]) - K
            s[k] += (v0 + v1) + (v2 + v3)
            q[k] += (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3)
        i += 4
    for r in range(i, nrows):
        for k in range(lanes):
            v = load(body[r, k]) - K
            s[k] += v
            q[k] += v * v
    for k in range(lanes):
        S += s[k]
        Q += q[k]
    for r in range(nrows * lanes, seg.size):
        v = np.float64(load(seg[r]) - K)
        S += v
        Q += v * v
    return S, Q


@inline
def dy_row_sums(dbody, xbody, r0, r1, mh, ml, sd, sx):
    """float64 `(sum(dy), sum(dy * (x - mean)))` of rows `r0..r1-1` of rows of lanes.

    `dbody` and `xbody` are `(rows, lanes)` views; `sd` and `sx` are the lane accumulators
    (cleared here). Four rows per lane update, then the remaining rows one at a time, then
    the lanes in order: the order every path of `dy_sums` uses.
    """
    lanes = sd.size
    sd[:] = 0
    sx[:] = 0
    i = r0
    while i + 4 <= r1:
        for k in range(lanes):
            g0 = load(dbody[i, k])
            g1 = load(dbody[i + 1, k])
            g2 = load(dbody[i + 2, k])
            g3 = load(dbody[i + 3, k])
            sd[k] += (g0 + g1) + (g2 + g3)
            sx[k] += (
                g0 * ((load(xbody[i, k]) - mh) - ml) + g1 * ((load(xbody[i + 1, k]) - mh) - ml)
            ) + (
                g2 * ((load(xbody[i + 2, k]) - mh) - ml) + g3 * ((load(xbody[i + 3, k]) - mh) - ml)
            )
        i += 4
    for r in range(i, r1):
        for k in range(lanes):
            g = load(dbody[r, k])
            sd[k] += g
            sx[k] += g * ((load(xbody[r, k]) - mh) - ml)
    D = 0.0
    X = 0.0
    for k in range(lanes):
        D += sd[k]
        X += sx[k]
    return D, X


@inline
def dy_sums(dys, xs, mh, ml, acc):
    """Return float64 `(sum(dy), sum(dy * (x - mean)))` over contiguous 1-D runs.

    `mh` is the mean rounded to the input dtype and `ml` the rest, so `(x - mh) - ml` is the
    centred value without the cancellation of `x*dy - mean*dy`. Four rows per accumulator
    update and caller-provided scratch `acc`, as in `shifted_sums`.
    """
    lanes = acc.shape[1]
    nrows = xs.size // lanes
    D = 0.0
    X = 0.0
    if nrows == 0:  # too short for the lanes: float64 directly (the same sums, no set-up)
        for r in range(xs.size):
            g = np.float64(load(dys[r]))
            D += g
            X += g * np.float64((load(xs[r]) - mh) - ml)
        return D, X
    dbody = dys[: nrows * lanes].reshape((nrows, lanes))
    xbody = xs[: nrows * lanes].reshape((nrows, lanes))
    D, X = dy_row_sums(dbody, xbody, 0, nrows, mh, ml, acc[0], acc[1])
    for r in range(nrows * lanes, xs.size):
        g = np.float64(load(dys[r]))
        D += g
        X += g * np.float64((load(xs[r]) - mh) - ml)
    return D, X


@inline
def finish_stats(K, S, Q, count, eps):
    """Turn shifted sums into `(mean, rstd)` in float64 (variance clamped at zero)."""
    dm = S / count
    var = Q / count - dm * dm
    if var < 0.0:
        var = 0.0
    return np.float64(K) + dm, 1.0 / np.sqrt(var + eps)


def rounded(value, like):
    """Round the float64 `value` to the compute dtype of the storage array `like`."""
    return (np.float32 if like.dtype == np.float32 or like.dtype in _NARROW else np.float64)(value)


@overload(rounded, inline="always")
def _rounded_impl(value, like):
    # A cast, not a one-element array: this runs per group and per column, and an allocation
    # each time cost more than the arithmetic (backward of (64, 2048) data: 7 ms serial).
    if _is_narrow(like) or (isinstance(like, types.Array) and like.dtype == types.float32):
        return lambda value, like: np.float32(value)
    return lambda value, like: np.float64(value)


@inline
def split_mean(mu, like):
    """The float64 mean `mu` as `(mh, ml)`: rounded to `like`'s compute dtype, and the rest.

    `(x - mh) - ml` is then the centred value, without the cancellation of `x - mu` in float32.
    """
    mh = rounded(mu, like)
    return mh, rounded(mu - np.float64(mh), like)


@inline
def param_grads(db, ds, rstd, N, G, C, dgamma, dbeta):
    """Per channel `dgamma = sum_n rstd*ds` and `dbeta = sum_n db`, sequential in n.

    Samples in the outer loop, so the inner one runs along contiguous channels (vectorised);
    each channel's sum still adds its samples in order.
    """
    D = C // G
    for c in range(C):
        dgamma[c] = 0.0
        dbeta[c] = 0.0
    for n in range(N):
        for g in range(G):
            r = rstd[n * G + g]
            for c in range(g * D, (g + 1) * D):
                dgamma[c] += r * ds[n * C + c]
                dbeta[c] += db[n * C + c]
