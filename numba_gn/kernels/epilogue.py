"""The fused epilogue of group normalisation: `act(GN(x) * gamma + beta + residual)`.

In the networks GroupNorm lives in, its output is almost always followed by an activation
(SiLU in diffusion UNets) and often by a residual add first (ResNets). Run as separate ops,
each of those reads and writes the whole tensor again, and the activation's backward needs the
stored pre-activation. Fused, the forward's output pass applies them on the way out, and the
backward recomputes the pre-activation `z` from `x` and the statistics (the same fused
multiply-add as the forward, so the same bits) while it reads `x` anyway.

An *epilogue* is a tuple the kernels carry next to their other arguments, or None for plain
GroupNorm (every helper here then compiles to exactly the plain code):

* forward: `(activation, slope, residual)`;
* backward: `(activation, slope, residual, beta, dz)`: `dz` receives `dL/dz` (the residual's
  gradient, or scratch: the `dx` array itself) before the plain backward runs on it.

`activation` is `activation_arg(code)`, whose Numba type holds the code: a kernel is compiled
for one activation and holds that activation's loop only. `residual` is a flat array in the
canonical order of `x`, or None. The activation is a constant inside its loop, so the loops
vectorise; `exp` on float32 is the branch-free one of `numba_gn.kernels.activations`, so SiLU
and sigmoid give the same bits as those kernels.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

from numba_gn._jit import inline, subroutine
from numba_gn.kernels._common import compute_empty, load, rounded, store
from numba_gn.kernels._fma import fma
from numba_gn.kernels._stream import _at, _uses_ir, _window, affine
from numba_gn.kernels.activations import exp as exp32

__all__ = [
    "CODES",
    "activation_arg",
    "beta_of",
    "fused_output",
    "grad_source",
    "gradients_into",
    "has",
    "output",
    "stream_buffer",
]

#: Activation codes of the epilogue (names as `numba_gn.functional` accepts them).
CODES = {
    "linear": 0,
    "relu": 1,
    "leaky_relu": 2,
    "silu": 3,
    "sigmoid": 4,
    "gelu_tanh": 5,
    "gelu": 6,
}
_LINEAR, _RELU, _LEAKY, _SILU, _SIGMOID, _GELU_TANH, _GELU = range(7)

#: Elements per buffer of the streaming output (see `output`): 16 KiB of float32, in L1.
_STREAM_CHUNK = 4096

# gelu's constants: sqrt(2/pi) and the cubic coefficient of the tanh form, 1/sqrt(2) and
# 1/sqrt(2*pi) of the exact form.
_K = 0.7978845608028654
_CUBIC = 0.044715
_RSQRT2 = 0.7071067811865476
_RSQRT2PI = 0.3989422804014327


# ----------------------------------------------------------------------------------------------
# scalar activations in the compute dtype (float32 or float64)


def _exp(v):
    return np.exp(v)


@overload(_exp)
def _exp_impl(v):
    if v == types.float32:  # vectorisable, and the bits of numba_gn's activation kernels
        return lambda v: exp32(v)
    return lambda v: np.exp(v)


def _tanh(v):
    return np.tanh(v)


@overload(_tanh)
def _tanh_impl(v):
    if v == types.float32:
        # Through the vectorisable exp: `1 - 2/(exp(2v) + 1)` is within a few ulps of tanhf
        # where gelu uses it (`1 + tanh` absorbs the absolute error near 0), and saturates
        # to +-1 exactly.
        one = np.float32(1.0)
        two = np.float32(2.0)
        return lambda v: one - two / (exp32(two * v) + one)
    return lambda v: np.tanh(v)


def _like(z, value):
    """The constant `value` in the float type of `z` (mixed arithmetic would widen float32)."""
    return type(z)(value)


@overload(_like, inline="always")
def _like_impl(z, value):
    if z == types.float32:
        return lambda z, value: np.float32(value)
    return lambda z, value: np.float64(value)


@inline
def _sigmoid(v):
    one = _like(v, 1.0)
    return one / (one + _exp(-v))


@inline
def activate(code, slope, z):
    """`act(z)` for the epilogue's activation `code` (see `CODES`); `slope` has z's type."""
    zero = _like(z, 0.0)
    one = _like(z, 1.0)
    half = _like(z, 0.5)
    if code == _RELU:
        return zero if z < zero else z  # NaN stays NaN
    if code == _LEAKY:
        return z if z >= zero else z * slope
    if code == _SILU:
        return z * _sigmoid(z)
    if code == _SIGMOID:
        return _sigmoid(z)
    if code == _GELU_TANH:
        u = (z * z * _like(z, _CUBIC) + one) * z * _like(z, _K)
        return z * half * (_tanh(u) + one)
    if code == _GELU:
        return z * half * (math.erf(z * _like(z, _RSQRT2)) + one)
    return z


@inline
def activate_grad(code, slope, z, g):
    """`g * act'(z)`: the gradient reaching the pre-activation `z`."""
    zero = _like(z, 0.0)
    one = _like(z, 1.0)
    half = _like(z, 0.5)
    if code == _RELU:
        return g if z > zero else g * zero
    if code == _LEAKY:
        return g if z >= zero else g * slope
    if code == _SILU:
        s = _sigmoid(z)
        return g * (s * (one + z * (one - s)))
    if code == _SIGMOID:
        s = _sigmoid(z)
        return g * (s * (one - s))
    if code == _GELU_TANH:
        z2 = z * z
        k = _like(z, _K)
        t = _tanh((z2 * _like(z, _CUBIC) + one) * z * k)
        dt = (one - t * t) * (z2 * _like(z, 3 * _CUBIC) + one) * k
        return g * ((t + one) * half + z * half * dt)
    if code == _GELU:
        cdf = (math.erf(z * _like(z, _RSQRT2)) + one) * half
        return g * (cdf + z * (_exp(-half * z * z) * _like(z, _RSQRT2PI)))
    return g


# ----------------------------------------------------------------------------------------------
# loops: one per activation, chosen when a kernel is compiled


def _plus(z, r, j):
    """`z + r[j]`, or `z` when there is no residual (Python definition)."""
    return z if r is None else z + load(r[j])


@overload(_plus, inline="always")
def _plus_impl(z, r, j):
    if isinstance(r, types.NoneType):
        return lambda z, r, j: z
    return lambda z, r, j: z + load(r[j])


def _row_coef(v, i):
    """Row `i`'s coefficient: `v[i, 0]` of a per-row (rows, 1) array, else `v` itself."""
    return v[i, 0] if isinstance(v, np.ndarray) and v.ndim == 2 else v


@overload(_row_coef, inline="always")
def _row_coef_impl(v, i):
    if isinstance(v, types.Array) and v.ndim == 2:
        return lambda v, i: v[i, 0]
    return lambda v, i: v


def _rows_from(v, i):
    """A per-row (rows, 1) coefficient array from row `i` on; anything else unchanged."""
    return v[i:] if isinstance(v, np.ndarray) and v.ndim == 2 else v


@overload(_rows_from, inline="always")
def _rows_from_impl(v, i):
    if isinstance(v, types.Array) and v.ndim == 2:
        return lambda v, i: v[i:]
    return lambda v, i: v


@inline
def _out_run(code, slope, y, ylo, x, lo, r, rows, cols, m, a, b, clo):
    sl = rounded(slope, x)
    for i in range(rows):
        mw = _window(_row_coef(m, i), clo, cols)
        aw = _window(_row_coef(a, i), clo, cols)
        bw = _window(_row_coef(b, i), clo, cols)
        # Slices, so that the inner loop indexes from 0 and vectorises (see `_affine_plain`).
        ys = y[ylo + i * cols : ylo + (i + 1) * cols]
        xs = x[lo + i * cols : lo + (i + 1) * cols]
        rs = _window(r, lo + i * cols, cols)
        for j in range(cols):
            z = _plus(fma(load(xs[j]) - _at(mw, j), _at(aw, j), _at(bw, j)), rs, j)
            ys[j] = store(activate(code, sl, z), ys)


def _out_loop_for(code: int):
    """The output loop of activation `code`: `y = act(fma(x - m, a, b) + r)`.

    `rows` rows of `cols` elements: `y` from `ylo`, `x` and `r` from `lo`; each coefficient
    is a scalar, an array per column (read from `clo`) or a (rows, 1) array per row.
    """

    def loop(slope, y, ylo, x, lo, r, rows, cols, m, a, b, clo):
        _out_run(code, slope, y, ylo, x, lo, r, rows, cols, m, a, b, clo)

    loop.__name__ = loop.__qualname__ = f"_out_loop_{_NAMES[code]}"
    return subroutine(loop)


@inline
def _grad_run(code, slope, dz, dy, x, r, lo, rows, cols, m, a, b, clo):
    sl = rounded(slope, x)
    for i in range(rows):
        mw = _window(_row_coef(m, i), clo, cols)
        aw = _window(_row_coef(a, i), clo, cols)
        bw = _window(_row_coef(b, i), clo, cols)
        start = lo + i * cols
        dzs = dz[start : start + cols]
        dys = dy[start : start + cols]
        xs = x[start : start + cols]
        rs = _window(r, start, cols)
        for j in range(cols):
            z = _plus(fma(load(xs[j]) - _at(mw, j), _at(aw, j), _at(bw, j)), rs, j)
            dzs[j] = store(activate_grad(code, sl, z, load(dys[j])), dzs)


def _grad_loop_for(code: int):
    """The backward loop of activation `code`: `dz = dy * act'(z)`.

    `z` is recomputed as the forward made it; the layout is `_out_loop_for`'s.
    """

    def loop(slope, dz, dy, x, r, lo, rows, cols, m, a, b, clo):
        _grad_run(code, slope, dz, dy, x, r, lo, rows, cols, m, a, b, clo)

    loop.__name__ = loop.__qualname__ = f"_grad_loop_{_NAMES[code]}"
    return subroutine(loop)


# One compiled loop per activation, made when a kernel for that activation is first compiled:
# a kernel holds its own activation's loop only (compiling all seven took about as long as the
# rest of the kernel).
_NAMES = {code: name for name, code in CODES.items()}
_OUT_LOOPS = tuple(_out_loop_for(code) for code in range(len(CODES)))
_GRAD_LOOPS = tuple(_grad_loop_for(code) for code in range(len(CODES)))


def activation_arg(code: int) -> np.ndarray:
    """The epilogue's activation `code` as kernels take it: a one-element array of `code` dims.

    The activation is then part of the kernel's Numba type, so a kernel holds its own
    activation's loop only (a kernel that held all seven took half again as long to compile).
    An array's number of dimensions is a type parameter that Numba's dispatcher reads in its
    fast path and that parallel kernels accept as an argument; an object of a class of our own
    costs ~15 us per call to type, and a nested tuple cannot be passed to a parallel region.
    """
    return _ACTIVATION_ARGS[code]


_ACTIVATION_ARGS = tuple(np.zeros((1,) * code, np.int8) for code in range(len(CODES)))


def _code(activation_type) -> int:
    """The activation code of `activation_arg`'s Numba type (compile time)."""
    return activation_type.ndim


# ----------------------------------------------------------------------------------------------
# what the kernels call
#
# Integer arguments of the loops go through `_i`: a literal `0` or `1` at a call site would
# otherwise compile the loop once more for its literal type.


@inline
def _i(v):
    return np.int64(v)
#
# Both take `rows` rows of `cols` contiguous elements from `lo`, with coefficients that are
# scalars, arrays per column (read from `clo`) or (rows, 1) arrays per row, so that a kernel
# makes one call per block of rows: a call costs about as much as a hundred elements of the
# loop.


def output(y, x, lo, rows, cols, m, a, b, clo, stream, epi, buf):
    """The forward's output rows, with the epilogue when `epi` is not None.

    Without one this is `affine` row by row (see `numba_gn.kernels._stream`); with one, the
    loops here. `buf` is `stream_buffer`'s scratch for streaming stores.
    """
    for i in range(rows):
        start = lo + i * cols
        mi, ai, bi = _row_coef(m, i), _row_coef(a, i), _row_coef(b, i)
        if epi is None:
            affine(y, x, start, cols, mi, ai, bi, clo, stream)
            continue
        for j in range(cols):
            k = clo + j
            z = fma(load(x[start + j]) - _at(mi, k), _at(ai, k), _at(bi, k))
            if epi[2] is not None:
                z = z + load(epi[2][start + j])
            y[start + j] = store(_py_activate(epi[0].ndim, epi[1], z), y)


@overload(output, inline="always")
def _output_impl(y, x, lo, rows, cols, m, a, b, clo, stream, epi, buf):
    if isinstance(epi, types.NoneType):

        def plain(y, x, lo, rows, cols, m, a, b, clo, stream, epi, buf):
            for i in range(rows):
                start = lo + i * cols
                affine(y, x, start, cols, _row_coef(m, i), _row_coef(a, i), _row_coef(b, i),
                       clo, stream)

        return plain
    return _with_epilogue(x)


def fused_output(y, x, lo, rows, cols, m, a, b, clo, stream, epi, buf):
    """`output` at call sites that only calls with an epilogue reach; nothing without one.

    Kernels branch on `has(epi)` and call this in the fused branch: Numba types and lowers
    both branches, so with `output` there a plain kernel would compile a second, dead copy of
    the plain loop at each such site.
    """
    if epi is not None:
        output(y, x, lo, rows, cols, m, a, b, clo, stream, epi, buf)


@overload(fused_output, inline="always")
def _fused_output_impl(y, x, lo, rows, cols, m, a, b, clo, stream, epi, buf):
    if isinstance(epi, types.NoneType):
        return lambda y, x, lo, rows, cols, m, a, b, clo, stream, epi, buf: None
    return _with_epilogue(x)


def _with_epilogue(x):
    """The implementation of `output` with an epilogue, for the storage type of `x`."""
    if not _uses_ir(x):
        return lambda y, x, lo, rows, cols, m, a, b, clo, stream, epi, buf: _out_call(
            epi, y, lo, x, lo, rows, cols, m, a, b, clo
        )

    def fused(y, x, lo, rows, cols, m, a, b, clo, stream, epi, buf):
        if stream:
            # A call, not inlined: kernels have up to five output call sites, and inlining
            # the streaming body (two loops) at each took a third of their compile time.
            _streamed_output(y, x, _i(lo), _i(rows), _i(cols), m, a, b, _i(clo), epi, buf)
        else:
            _out_call(epi, y, lo, x, lo, rows, cols, m, a, b, clo)

    return fused


def _out_call(epi, y, ylo, x, lo, rows, cols, m, a, b, clo):
    """Call the output loop of `epi`'s activation (chosen when the caller compiles)."""
    _OUT_LOOPS[epi[0].ndim](epi[1], y, ylo, x, lo, epi[2], rows, cols, m, a, b, clo)


@overload(_out_call, inline="always")
def _out_call_impl(epi, y, ylo, x, lo, rows, cols, m, a, b, clo):
    loop = _OUT_LOOPS[_code(epi.types[0])]

    def call(epi, y, ylo, x, lo, rows, cols, m, a, b, clo):
        loop(epi[1], y, _i(ylo), x, _i(lo), epi[2], _i(rows), _i(cols), m, a, b, _i(clo))

    return call


@subroutine
def _streamed_output(y, x, lo, rows, cols, m, a, b, clo, epi, buf):
    """`output` with an epilogue and streaming stores (float32 and float64 outputs)."""
    # The activation loops cannot emit streaming stores: they fill `buf` (in L1/L2), which
    # the streaming loop of `affine` then writes out (`x*1 + -0` is `x`, bit for bit, signed
    # zeros and NaNs included). Whole rows at a time when they fit.
    one = rounded(1.0, x)
    zero = rounded(0.0, x)
    negative_zero = rounded(-0.0, x)
    chunk = buf.size
    if cols <= chunk:
        per = chunk // cols
        for i0 in range(0, rows, per):
            k = min(per, rows - i0)
            start = lo + i0 * cols
            mr, ar, br = _rows_from(m, i0), _rows_from(a, i0), _rows_from(b, i0)
            _out_call(epi, buf, 0, x, start, k, cols, mr, ar, br, clo)
            for i in range(k):
                t = buf[i * cols : (i + 1) * cols]
                row = y[start + i * cols : start + (i + 1) * cols]
                affine(row, t, 0, cols, zero, one, negative_zero, 0, True)
        return
    for i in range(rows):
        mr, ar, br = _rows_from(m, i), _rows_from(a, i), _rows_from(b, i)
        for j in range(0, cols, chunk):
            k = min(chunk, cols - j)
            start = lo + i * cols + j
            _out_call(epi, buf, 0, x, start, 1, k, mr, ar, br, clo + j)
            affine(y[start : start + k], buf[:k], 0, k, zero, one, negative_zero, 0, True)


def stream_buffer(x, stream, epi):
    """Scratch for `output`'s streaming stores: allocate once per block of calls, not per call.

    None without an epilogue; empty when not streaming.
    """
    if epi is None:
        return None
    return np.empty(_STREAM_CHUNK if stream else 0, dtype=x.dtype)


@overload(stream_buffer, inline="always")
def _stream_buffer_impl(x, stream, epi):
    if isinstance(epi, types.NoneType):
        return lambda x, stream, epi: None
    return lambda x, stream, epi: compute_empty(x, _STREAM_CHUNK if stream else 0)


def has(epi):
    """Whether an epilogue is present (a compile-time constant in kernels)."""
    return epi is not None


@overload(has, inline="always")
def _has_impl(epi):
    if isinstance(epi, types.NoneType):
        return lambda epi: False
    return lambda epi: True


def beta_of(epi, gamma):
    """The backward epilogue's `beta`; `gamma` (an array of the same type) without one."""
    return gamma if epi is None else epi[3]


@overload(beta_of, inline="always")
def _beta_of_impl(epi, gamma):
    if isinstance(epi, types.NoneType):
        return lambda epi, gamma: gamma
    return lambda epi, gamma: epi[3]


def grad_source(dy, epi):
    """The array the plain backward reads as its output gradient: `dy`, or the epilogue's `dz`."""
    return dy if epi is None else epi[4]


@overload(grad_source, inline="always")
def _grad_source_impl(dy, epi):
    if isinstance(epi, types.NoneType):
        return lambda dy, epi: dy
    return lambda dy, epi: epi[4]


def gradients_into(epi, dy, x, lo, rows, cols, m, a, b, clo):
    """`epi`'s `dz = dy * act'(z)` over rows as `output`'s; nothing without an epilogue."""
    if epi is None:
        return
    for i in range(rows):
        start = lo + i * cols
        mi, ai, bi = _row_coef(m, i), _row_coef(a, i), _row_coef(b, i)
        for j in range(cols):
            k = clo + j
            z = fma(load(x[start + j]) - _at(mi, k), _at(ai, k), _at(bi, k))
            if epi[2] is not None:
                z = z + load(epi[2][start + j])
            g = _py_activate_grad(epi[0].ndim, epi[1], z, load(dy[start + j]))
            epi[4][start + j] = store(g, epi[4])


@overload(gradients_into, inline="always")
def _gradients_into_impl(epi, dy, x, lo, rows, cols, m, a, b, clo):
    if isinstance(epi, types.NoneType):
        return lambda epi, dy, x, lo, rows, cols, m, a, b, clo: None

    loop = _GRAD_LOOPS[_code(epi.types[0])]

    def fused(epi, dy, x, lo, rows, cols, m, a, b, clo):
        loop(epi[1], epi[4], dy, x, epi[2], _i(lo), _i(rows), _i(cols), m, a, b, _i(clo))

    return fused


# Python twins of the scalar functions, for NUMBA_DISABLE_JIT runs (the njit versions above are
# dispatchers then too; these cast `slope` as the kernels' loops do).
def _py_activate(code, slope, z):
    return activate(code, _like(z, slope), z)


def _py_activate_grad(code, slope, z, g):
    return activate_grad(code, _like(z, slope), z, g)
