"""Bit-exact float16 <-> float32 conversion inside kernels (Numba has no CPU float16 type).

float16 arrays reach the kernels as `uint16` views; values are widened to float32 when loaded
and rounded back (round to nearest even, like NumPy) when stored, so a float16 call reads and
writes half the bytes of a float32 one instead of paying two NumPy `astype` passes.

Where the CPU converts in hardware (x86 F16C, AArch64) LLVM's `fpext`/`fptrunc` on the
`half` type are used (one instruction per vector); elsewhere a branch-free bitwise version
(vectorised, about 9x slower) gives the same bits.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from numba_gn._jit import inline


@intrinsic
def _u32_as_f32(typingctx, v):
    """Reinterpret the bits of a uint32 as a float32."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _f32_as_u32(typingctx, v):
    """Reinterpret the bits of a float32 as a uint32."""
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def _hw_half_to_float(typingctx, v):
    """uint16 half bits -> float32 with LLVM's `fpext` (one F16C instruction per vector)."""
    sig = types.float32(types.uint16)

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return sig, codegen


@intrinsic
def _hw_float_to_half(typingctx, v):
    """float32 -> uint16 half bits with LLVM's `fptrunc` (round to nearest even)."""
    sig = types.uint16(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return sig, codegen


@inline
def _mask(cond):
    """All ones if `cond` else all zeros (branch-free selects vectorise)."""
    return np.uint32(0) - np.uint32(cond)


@inline
def _select(mask, a, b):
    return (a & mask) | (b & ~mask)


@inline
def soft_half_to_float(h):
    """float16 bits (uint16) -> float32, exact for every code (subnormals, +-Inf, NaN)."""
    h32 = np.uint32(h)
    sign = (h32 & np.uint32(0x8000)) << np.uint32(16)
    exp = (h32 >> np.uint32(10)) & np.uint32(0x1F)
    mant = h32 & np.uint32(0x3FF)
    normal = sign | ((exp + np.uint32(112)) << np.uint32(23)) | (mant << np.uint32(13))
    special = sign | np.uint32(0x7F800000) | (mant << np.uint32(13))
    # exp == 0: zero or subnormal, value = mant * 2**-24 (exact in float32).
    sub = sign | _f32_as_u32(np.float32(mant) * np.float32(2.0**-24))
    bits = _select(_mask(exp == np.uint32(31)), special, normal)
    return _u32_as_f32(_select(_mask(exp == np.uint32(0)), sub, bits))


@inline
def soft_float_to_half(value):
    """float32 -> float16 bits (uint16), round to nearest even; NaN stays NaN, overflow -> Inf."""
    f = _f32_as_u32(np.float32(value))
    sign = f & np.uint32(0x80000000)
    a = f ^ sign
    # Normal results: re-bias the exponent and round the 13 dropped bits to nearest even.
    odd = (a >> np.uint32(13)) & np.uint32(1)
    normal = (a + np.uint32(0xC8000FFF) + odd) >> np.uint32(13)  # 0xC8000000 = (15-127) << 23
    # Subnormal results: let the float adder do the rounding.
    magic = np.uint32(((127 - 15) + (23 - 10) + 1) << 23)
    sub = _f32_as_u32(_u32_as_f32(a) + _u32_as_f32(magic)) - magic
    out = _select(_mask(a < np.uint32(113 << 23)), sub, normal)
    nan = np.uint32(0x7C00) | (np.uint32(0x200) & _mask(a > np.uint32(0x7F800000)))
    out = _select(_mask(a >= np.uint32((127 + 16) << 23)), nan, out)
    return np.uint16((out & np.uint32(0xFFFF)) | (sign >> np.uint32(16)))


def _hardware_half() -> bool:
    """Whether LLVM turns half<->float conversions into instructions on this CPU.

    x86-64 needs F16C (every x86 CPU since 2012); AArch64 always has them. Elsewhere LLVM would
    emit calls to runtime helpers that Numba's JIT may not provide, so the bitwise version is
    used instead.
    """
    import platform

    import llvmlite.binding as llvm

    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return True
    if machine in ("x86_64", "amd64"):
        try:
            return bool(llvm.get_host_cpu_features().get("f16c", False))
        except RuntimeError:  # features unknown
            return False
    return False


HARDWARE_HALF = _hardware_half()
#: float16 bits (uint16) -> float32, bit-exact like NumPy.
half_to_float = _hw_half_to_float if HARDWARE_HALF else soft_half_to_float
#: float32 -> float16 bits (uint16), round to nearest even like NumPy.
float_to_half = _hw_float_to_half if HARDWARE_HALF else soft_float_to_half
