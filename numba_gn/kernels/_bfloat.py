"""Bit-exact bfloat16 <-> float32 conversion inside kernels (Numba has no bfloat16 type).

bfloat16 (the `ml_dtypes` type that JAX and Keras use) is the upper half of a float32: the same
sign and 8-bit exponent, 7 mantissa bits. bfloat16 arrays reach the kernels as `int16` views, a
storage type of their own (float16 travels as `uint16`), so every kernel specialises on it
without a flag. Values are widened to float32 when loaded and rounded back when stored.

Both directions are a few integer operations written directly in LLVM IR, branch-free, so the
loops that call them vectorise:

* widening puts the 16 bits on top of 16 zero bits: exact for every code, NaN payloads and
  signalling NaNs included;
* narrowing rounds the dropped 16 bits to nearest even (adding `0x7FFF` plus the lowest kept
  bit carries into the kept half exactly when the rest is above the midpoint, or on it with an
  odd kept half); a carry out of the largest finite exponent gives Inf, as it should. A NaN
  would carry into Inf the same way, so NaN is selected apart: the quiet NaN `0x7FC0` with the
  input's sign, as `ml_dtypes` gives. Subnormals round like any other value (no flush to zero).

The Python functions at the end give the same bits with NumPy; they are what `load`/`store`
run under `NUMBA_DISABLE_JIT`, and never import `ml_dtypes`.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_I32 = ir.IntType(32)


def _c(value: int) -> ir.Constant:
    return ir.Constant(_I32, value)


@intrinsic
def bfloat_to_float(typingctx, v):
    """bfloat16 bits (int16) -> float32, exact for every code."""
    sig = types.float32(types.int16)

    def codegen(context, builder, signature, args):
        wide = builder.shl(builder.zext(args[0], _I32), _c(16))
        return builder.bitcast(wide, ir.FloatType())

    return sig, codegen


@intrinsic
def float_to_bfloat(typingctx, v):
    """float32 -> bfloat16 bits (int16): round to nearest even; NaN stays NaN, overflow -> Inf."""
    sig = types.int16(types.float32)

    def codegen(context, builder, signature, args):
        (value,) = args
        u = builder.bitcast(value, _I32)
        high = builder.lshr(u, _c(16))
        odd = builder.and_(high, _c(1))
        rounded = builder.lshr(builder.add(builder.add(u, _c(0x7FFF)), odd), _c(16))
        nan = builder.or_(builder.and_(high, _c(0x8000)), _c(0x7FC0))
        is_nan = builder.fcmp_unordered("uno", value, value)
        return builder.trunc(builder.select(is_nan, nan, rounded), ir.IntType(16))

    return sig, codegen


# ----------------------------------------------------------------------------------------------
# The same conversions in NumPy (scalars or arrays), for NUMBA_DISABLE_JIT and for checking.


def py_bfloat_to_float(bits: np.ndarray | np.integer) -> np.ndarray | np.float32:
    """bfloat16 bits (int16 or uint16, scalar or array) -> float32, exact."""
    wide = np.asarray(bits).view(np.uint16).astype(np.uint32) << np.uint32(16)
    out = wide.view(np.float32)
    return out[()] if out.ndim == 0 else out


def py_float_to_bfloat(value: np.ndarray | float) -> np.ndarray | np.int16:
    """float32 (scalar or array) -> bfloat16 bits as int16, rounded as `float_to_bfloat`."""
    f = np.asarray(value, dtype=np.float32)
    scalar = f.ndim == 0
    f = f.reshape(-1) if scalar else f  # array arithmetic: wraps silently (NaN's carry)
    u = f.view(np.uint32)
    high = u >> np.uint32(16)
    rounded = (u + np.uint32(0x7FFF) + (high & np.uint32(1))) >> np.uint32(16)
    nan = (high & np.uint32(0x8000)) | np.uint32(0x7FC0)
    out = np.where(np.isnan(f), nan, rounded).astype(np.uint16).view(np.int16)
    return out[0] if scalar else out
