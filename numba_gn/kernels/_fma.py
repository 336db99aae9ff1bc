"""`fma(a, b, c)`: `a*b + c` rounded once, the same bits on every CPU and every path.

The kernels are compiled without `fastmath` contraction, so LLVM never fuses a multiply and
an add on its own (whether it did depended on the CPU having FMA instructions and on how each
loop was vectorised). Where a fused multiply-add is wanted, the kernels say so with this
function; it becomes `llvm.fma`, one instruction on CPUs with FMA and an exact library call
elsewhere, in scalar and vector code alike.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

_FLOATS = (types.float32, types.float64)


def fma(a, b, c):
    """`a*b + c` with a single rounding (Python definition, used under NUMBA_DISABLE_JIT)."""
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    return np.result_type(a, b, c).type(float(exact))


def llvm_fma(builder: ir.IRBuilder, ty: ir.Type) -> ir.Function:
    """The `llvm.fma` declaration for a float or double scalar or vector type `ty`."""
    element = ty.element if isinstance(ty, ir.VectorType) else ty
    bits = 32 if isinstance(element, ir.FloatType) else 64
    suffix = f"v{ty.count}f{bits}" if isinstance(ty, ir.VectorType) else f"f{bits}"
    fnty = ir.FunctionType(ty, [ty, ty, ty])
    return cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma." + suffix)


@intrinsic
def _fma_ir(typingctx, a, b, c):
    if not (a == b == c and a in _FLOATS):
        return None
    sig = a(a, b, c)

    def codegen(context, builder, signature, args):
        ty = context.get_value_type(signature.return_type)
        return builder.call(llvm_fma(builder, ty), list(args))

    return sig, codegen


@overload(fma, inline="always")
def _fma_impl(a, b, c):
    if a == b == c and a in _FLOATS:
        return lambda a, b, c: _fma_ir(a, b, c)
    if all(t in _FLOATS for t in (a, b, c)):  # mixed widths: compute in the widest
        wide = types.float64 if types.float64 in (a, b, c) else types.float32
        dt = np.float64 if wide == types.float64 else np.float32
        return lambda a, b, c: _fma_ir(dt(a), dt(b), dt(c))
    return None
