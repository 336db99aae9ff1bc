"""The output passes' inner loops, with optional *streaming* (non-temporal) stores.

A normal store first reads the destination's cache line (write-allocate), so writing an output
that does not fit in the cache costs a read as well as a write; `np.copyto` avoids that read
with non-temporal stores, which is why a plain Numba output loop is slower than the copy it is
measured against. LLVM's loop vectoriser refuses non-temporal stores unless it can prove their
alignment, so the float32/float64 loops are written directly in LLVM IR: a scalar head up to a
cache-line aligned output address, 32-byte vectors with `!nontemporal` stores over whole
lines, a scalar tail. With `stream=False` the same loop uses ordinary stores (for outputs
that should stay in the cache for whoever reads them next). The ordinary-store loop could be
plain Numba code, but it is kept in IR because it compiles faster: typing a Numba loop through
the storage-dtype helpers at every call site made a kernel's first compilation about 1.5 times
as long.

This IR is behind one switch: `NUMBA_GN_STREAMING_STORES=0` in the environment before import
makes every output loop plain Numba code (`_affine_plain`, `_affine_grad_plain`),
with the same bits; float16 and bfloat16 data (uint16 and int16 storage) always take those.
Both kinds compute with explicit fused multiply-adds (`fma` in the plain loops,
`llvm.fma` in the IR). A kernel that streams calls `store_fence` after its last
streaming store of a parallel iteration: non-temporal stores are weakly ordered, and the fence
makes them visible before the thread reports that its work is done.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from numba_gn._jit import inline
from numba_gn._knobs import STREAMING_STORES
from numba_gn.kernels._common import load, store
from numba_gn.kernels._fma import fma, llvm_fma

#: Vector width of the IR loops in bytes (AVX registers; what `movntps ymm` stores at once).
VECTOR_BYTES = 32
#: Cache-line size: streaming stores fill whole lines (see `_emit_rows`).
LINE_BYTES = 64
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")
_FLOATS = (types.float32, types.float64)


# ----------------------------------------------------------------------------------------------
# Python definitions: the semantics (and what runs under NUMBA_DISABLE_JIT).


def _at(v, i):
    return v[i] if isinstance(v, np.ndarray) else v


def _window(v, start, n):
    return v[start : start + n] if isinstance(v, np.ndarray) else v


def affine(y, x, lo, n, m, a, b, clo, stream):
    """`y[lo+j] = (x[lo+j] - m) * a + b` for `j < n`, one rounding (fused multiply-add).

    `m`, `a` and `b` are each a scalar or an array read at `clo + j`; `stream` selects
    non-temporal stores for float32/float64 outputs.
    """
    for j in range(n):
        v = fma(load(x[lo + j]) - _at(m, clo + j), _at(a, clo + j), _at(b, clo + j))
        y[lo + j] = store(v, y)


def affine_grad(dx, dy, x, lo, n, mh, ml, c1, c2, c3, clo, stream):
    """`dx = c1*dy + (c2*((x - mh) - ml) + c3)` over `[lo, lo+n)`, two fused multiply-adds.

    Coefficients are scalars or arrays read at `clo + j`, as in `affine`.
    """
    for j in range(n):
        k = clo + j
        t = (load(x[lo + j]) - _at(mh, k)) - _at(ml, k)
        v = fma(_at(c1, k), load(dy[lo + j]), fma(_at(c2, k), t, _at(c3, k)))
        dx[lo + j] = store(v, dx)


def store_fence(stream):
    """Order this thread's earlier streaming stores before its later stores (if `stream`)."""


# ----------------------------------------------------------------------------------------------
# IR generation


def _data(context, builder, arr_type, value, offset):
    """Pointer to element `offset` of a Numba array."""
    return builder.gep(context.make_array(arr_type)(context, builder, value).data, [offset])


class _Operand:
    """A coefficient: an array read at `clo + j` or a scalar splatted to vectors."""

    def __init__(self, context, builder, typ, value, clo):
        self.pointer = None
        self.scalar = None
        if isinstance(typ, types.Array):
            self.pointer = _data(context, builder, typ, value, clo)
        else:
            self.scalar = value

    def scalar_at(self, builder, j):
        if self.pointer is None:
            return self.scalar
        return builder.load(builder.gep(self.pointer, [j]))

    def vector_at(self, builder, j, vty, splat, size):
        if self.pointer is None:
            return splat(self.scalar)
        ptr = builder.bitcast(builder.gep(self.pointer, [j]), vty.as_pointer())
        return builder.load(ptr, align=size)


def _emit_rows(context, builder, dtype, out_ptr, data_ptrs, operands, n, stream, expr):
    """Emit `out[j] = expr(data[j]..., operands[j]...)` for `j < n` (see the module doc)."""
    fty = context.get_value_type(dtype)
    size = 4 if dtype == types.float32 else 8
    width = VECTOR_BYTES // size
    vty = ir.VectorType(fty, width)
    i64 = ir.IntType(64)
    one = ir.Constant(i64, 1)
    zero = ir.Constant(i64, 0)
    scalar_fma = llvm_fma(builder, fty)
    vector_fma = llvm_fma(builder, vty)
    undef = ir.Constant(vty, ir.Undefined)
    lanes0 = ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width)
    nontemporal = builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)])

    def splat(s):
        return builder.shuffle_vector(
            builder.insert_element(undef, s, ir.Constant(ir.IntType(32), 0)), undef, lanes0
        )

    def scalar_step(j):
        values = [builder.load(builder.gep(p, [j])) for p in data_ptrs]
        coefs = [op.scalar_at(builder, j) for op in operands]
        builder.store(expr(builder, scalar_fma, values, coefs), builder.gep(out_ptr, [j]))

    def vector_step(j, streaming):
        values = [
            builder.load(builder.bitcast(builder.gep(p, [j]), vty.as_pointer()), align=size)
            for p in data_ptrs
        ]
        coefs = [op.vector_at(builder, j, vty, splat, size) for op in operands]
        dst = builder.bitcast(builder.gep(out_ptr, [j]), vty.as_pointer())
        if streaming:
            result = expr(builder, vector_fma, values, coefs)
            inst = builder.store(result, dst, align=VECTOR_BYTES)
            inst.set_metadata("nontemporal", nontemporal)
        else:
            builder.store(expr(builder, vector_fma, values, coefs), dst, align=size)

    # Streaming covers whole cache lines only: the head (ordinary scalar stores) runs up to the
    # first line boundary and the body ends on one. A line written partly with streaming and
    # partly with ordinary stores (here, or by the call for the neighbouring row) is flushed
    # half-full and read back, which made misaligned rows twice as slow as ordinary stores.
    # An output that is not even element-aligned gets no vector stores at all. Without
    # streaming, vector stores need no alignment: no head, body in whole vectors.
    address = builder.ptrtoint(out_ptr, i64)
    head = builder.udiv(
        builder.and_(builder.neg(address), ir.Constant(i64, LINE_BYTES - 1)),
        ir.Constant(i64, size),
    )
    misaligned = builder.icmp_unsigned("!=", builder.urem(address, ir.Constant(i64, size)), zero)
    head = builder.select(misaligned, n, head)
    head = builder.select(builder.icmp_signed("<", n, head), n, head)
    head = builder.select(stream, head, zero)
    rest = builder.sub(n, head)
    per_line = ir.Constant(i64, LINE_BYTES // size)
    per_vector = ir.Constant(i64, width)
    lines = builder.mul(builder.sdiv(rest, per_line), per_line)
    vectors = builder.mul(builder.sdiv(rest, per_vector), per_vector)
    body_end = builder.add(head, builder.select(stream, lines, vectors))
    with cgutils.for_range_slice(builder, zero, head, one, inc=True) as (j, _):
        scalar_step(j)
    with builder.if_else(stream) as (streaming, ordinary):
        for block, is_streaming in ((streaming, True), (ordinary, False)):
            with block:
                step = ir.Constant(i64, width)
                with cgutils.for_range_slice(builder, head, body_end, step, inc=True) as (j, _):
                    vector_step(j, is_streaming)
    with cgutils.for_range_slice(builder, body_end, n, one, inc=True) as (j, _):
        scalar_step(j)


def _contiguous(typ, dtype):
    """A 1-D array of `dtype` whose elements are adjacent (the IR indexes it by pointer)."""
    if not isinstance(typ, types.Array):
        return False
    return typ.dtype == dtype and typ.ndim == 1 and typ.layout == "C"


def _coefficient_ok(typ, dtype):
    return _contiguous(typ, dtype) or typ == dtype


def _affine_expr(builder, fma, values, coefs):
    (xv,) = values
    m, a, b = coefs
    return builder.call(fma, [builder.fsub(xv, m), a, b])


def _affine_grad_expr(builder, fma, values, coefs):
    dyv, xv = values
    mh, ml, c1, c2, c3 = coefs
    t = builder.fsub(builder.fsub(xv, mh), ml)
    return builder.call(fma, [c1, dyv, builder.call(fma, [c2, t, c3])])


@intrinsic
def _affine_ir(typingctx, y, x, lo, n, m, a, b, clo, stream):
    dtype = getattr(x, "dtype", None)
    if dtype not in _FLOATS or not (_contiguous(x, dtype) and _contiguous(y, dtype)):
        return None
    if not all(_coefficient_ok(t, dtype) for t in (m, a, b)):
        return None
    sig = types.void(y, x, types.intp, types.intp, m, a, b, types.intp, types.boolean)

    def codegen(context, builder, signature, args):
        y_, x_, lo_, n_, m_, a_, b_, clo_, stream_ = args
        st = signature.args
        out_ptr = _data(context, builder, st[0], y_, lo_)
        x_ptr = _data(context, builder, st[1], x_, lo_)
        ops = [_Operand(context, builder, st[k], v, clo_) for k, v in ((4, m_), (5, a_), (6, b_))]
        _emit_rows(context, builder, dtype, out_ptr, [x_ptr], ops, n_, stream_, _affine_expr)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _affine_grad_ir(typingctx, dx, dy, x, lo, n, mh, ml, c1, c2, c3, clo, stream):
    dtype = getattr(x, "dtype", None)
    if dtype not in _FLOATS or not all(_contiguous(t, dtype) for t in (dx, dy, x)):
        return None
    if not all(_coefficient_ok(t, dtype) for t in (mh, ml, c1, c2, c3)):
        return None
    sig = types.void(
        dx, dy, x, types.intp, types.intp, mh, ml, c1, c2, c3, types.intp, types.boolean
    )

    def codegen(context, builder, signature, args):
        dx_, dy_, x_, lo_, n_, mh_, ml_, c1_, c2_, c3_, clo_, stream_ = args
        st = signature.args
        out_ptr = _data(context, builder, st[0], dx_, lo_)
        data = [_data(context, builder, st[k], v, lo_) for k, v in ((1, dy_), (2, x_))]
        coefs = ((5, mh_), (6, ml_), (7, c1_), (8, c2_), (9, c3_))
        ops = [_Operand(context, builder, st[k], v, clo_) for k, v in coefs]
        _emit_rows(context, builder, dtype, out_ptr, data, ops, n_, stream_, _affine_grad_expr)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _fence_ir(typingctx, stream):
    sig = types.void(types.boolean)

    def codegen(context, builder, signature, args):
        with builder.if_then(args[0]):
            if _X86:
                fnty = ir.FunctionType(ir.VoidType(), [])
                builder.call(
                    cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse.sfence"), []
                )
            else:
                builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


# ----------------------------------------------------------------------------------------------
# Overloads: IR loops for float32/float64, plain loops for the 16-bit formats (float16 as
# uint16, bfloat16 as int16 storage).


def _is_float_array(t):
    return isinstance(t, types.Array) and t.dtype in _FLOATS


@overload(_at, inline="always")
def _at_impl(v, i):
    if isinstance(v, types.Array):
        return lambda v, i: v[i]
    return lambda v, i: v


@overload(_window, inline="always")
def _window_impl(v, start, n):
    if isinstance(v, types.Array):
        return lambda v, start, n: v[start : start + n]
    return lambda v, start, n: v


@inline
def _affine_plain(y, x, lo, n, m, a, b, clo):
    # Slices first: indexing by `j` itself lets Numba drop the negative-index checks that
    # would otherwise stop LLVM from vectorising the loop.
    ys = y[lo : lo + n]
    xs = x[lo : lo + n]
    mw = _window(m, clo, n)
    aw = _window(a, clo, n)
    bw = _window(b, clo, n)
    for j in range(n):
        ys[j] = store(fma(load(xs[j]) - _at(mw, j), _at(aw, j), _at(bw, j)), ys)


@inline
def _affine_grad_plain(dx, dy, x, lo, n, mh, ml, c1, c2, c3, clo):
    dxs = dx[lo : lo + n]
    dys = dy[lo : lo + n]
    xs = x[lo : lo + n]
    mhw = _window(mh, clo, n)
    mlw = _window(ml, clo, n)
    c1w = _window(c1, clo, n)
    c2w = _window(c2, clo, n)
    c3w = _window(c3, clo, n)
    for j in range(n):
        t = (load(xs[j]) - _at(mhw, j)) - _at(mlw, j)
        v = fma(_at(c1w, j), load(dys[j]), fma(_at(c2w, j), t, _at(c3w, j)))
        dxs[j] = store(v, dxs)


def _uses_ir(x):
    """Whether the output loops for storage arrays of type `x` are the IR ones.

    Only float32/float64 storage: the 16-bit formats (uint16, int16) convert every element
    through `load`/`store`, which the plain loops do.
    """
    return STREAMING_STORES and _is_float_array(x)


@overload(affine, inline="always")
def _affine_impl(y, x, lo, n, m, a, b, clo, stream):
    if _uses_ir(x):
        return lambda y, x, lo, n, m, a, b, clo, stream: _affine_ir(
            y, x, lo, n, m, a, b, clo, stream
        )
    return lambda y, x, lo, n, m, a, b, clo, stream: _affine_plain(y, x, lo, n, m, a, b, clo)


@overload(affine_grad, inline="always")
def _affine_grad_impl(dx, dy, x, lo, n, mh, ml, c1, c2, c3, clo, stream):
    if _uses_ir(x):

        def ir_loop(dx, dy, x, lo, n, mh, ml, c1, c2, c3, clo, stream):
            _affine_grad_ir(dx, dy, x, lo, n, mh, ml, c1, c2, c3, clo, stream)

        return ir_loop

    def plain(dx, dy, x, lo, n, mh, ml, c1, c2, c3, clo, stream):
        _affine_grad_plain(dx, dy, x, lo, n, mh, ml, c1, c2, c3, clo)

    return plain


@overload(store_fence, inline="always")
def _store_fence_impl(stream):
    if STREAMING_STORES:
        return lambda stream: _fence_ir(stream)
    return lambda stream: None
