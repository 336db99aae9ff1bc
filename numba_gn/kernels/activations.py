"""Elementwise activations and their gradients: ReLU, SiLU (swish) and sigmoid, in one pass.

NumPy computes `silu(x) = x * sigmoid(x)` in four passes over memory with three temporaries,
and its backward in six; these kernels read the input (and the output gradient) once and write
once, on all threads for large arrays. The exponential is `exp`, written out so that LLVM
vectorises it: Numba calls the C library's `expf` one element at a time otherwise, which is
slower than NumPy's SIMD `exp`.

One kernel per pass serves every activation (`code` picks it; the branch does not depend on
the element, so LLVM moves it out of the loop), so a process compiles two kernels per dtype
rather than two per activation. The kernels take flat, C-contiguous arrays.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from numba_gn import _threading, buffers
from numba_gn._jit import inline, kernel, subroutine
from numba_gn.kernels._half import _u32_as_f32

__all__ = ["CODES", "backward", "exp", "forward"]

#: Activation codes of the kernels.
CODES = {"relu": 0, "silu": 1, "sigmoid": 2}

#: Elements per parallel work item: big enough that scheduling costs nothing next to the work.
_CHUNK = 16384

# Cephes' single-precision `expf`: `exp(x) = 2**k * exp(r)` with `k = round(x / ln 2)`,
# `|r| <= ln(2) / 2` (`ln 2` split in two so `k * ln 2` is exact), and a degree-7
# polynomial for `exp(r)`; within 1 ulp of the correctly rounded result on float32.
_LOG2E = 1.44269504088896341
_LN2_HI = 0.693359375
_LN2_LO = -2.12194440e-4
_P0 = 1.9875691500e-4
_P1 = 1.3981999507e-3
_P2 = 8.3334519073e-3
_P3 = 4.1665795894e-2
_P4 = 1.6666665459e-1
_P5 = 5.0000001201e-1


@inline
def _pow2(k):
    """`2.0 ** k` as a float32, for an integer `-127 < k < 128` (built from its bits)."""
    return _u32_as_f32(np.uint32((k + 127) << 23))


@inline
def exp(x):
    """`exp(x)` for a float32 `x`, branch-free so that loops calling it vectorise.

    Overflow gives inf and underflow 0 (gradually, through subnormals), as `np.exp`; NaN
    stays NaN. The scale `2**k` is applied as two factors so that neither leaves the normal
    range at the ends (`k` up to +-150).
    """
    one = np.float32(1.0)
    xc = min(max(x, np.float32(-104.0)), np.float32(89.0))  # NaN -> -104: fixed below
    kf = np.floor(xc * np.float32(_LOG2E) + np.float32(0.5))
    r = xc - kf * np.float32(_LN2_HI) - kf * np.float32(_LN2_LO)
    r2 = r * r
    p = np.float32(_P0)
    p = p * r + np.float32(_P1)
    p = p * r + np.float32(_P2)
    p = p * r + np.float32(_P3)
    p = p * r + np.float32(_P4)
    p = p * r + np.float32(_P5)
    p = p * r2 + r + one
    k = np.int32(kf)
    k1 = k >> 1
    value = p * _pow2(k1) * _pow2(k - k1)
    return x if x != x else value


@inline
def _sigmoid(v):
    return np.float32(1.0) / (np.float32(1.0) + exp(-v))


@inline
def _forward_one(code, v):
    if code == 0:
        return max(v, np.float32(0.0)) if v == v else v
    s = _sigmoid(v)
    return v * s if code == 1 else s


@inline
def _backward_one(code, g, v):
    """Gradient for one element; `v` is the input (ReLU, SiLU) or the output (sigmoid)."""
    if code == 0:
        return g if v > 0 else g * np.float32(0.0)
    if code == 1:
        s = _sigmoid(v)
        return g * (s * (np.float32(1.0) + v * (np.float32(1.0) - s)))
    return g * (v * (np.float32(1.0) - v))


# The loops are compiled once and called on slices from both twins: inlined into a `prange`
# body, or called there with the whole arrays and index bounds, the same loop was not
# vectorised and ran two to five times slower than the serial kernel.


@subroutine
def _forward_loop(code, x, y):
    for i in range(x.size):
        y[i] = _forward_one(code, x[i])


@subroutine
def _backward_loop(code, g, v, dx):
    for i in range(g.size):
        dx[i] = _backward_one(code, g[i], v[i])


@kernel
def forward_ser(code, x, y):
    """`y = act(x)` on flat float32 arrays (serial)."""
    _forward_loop(code, x, y)


@kernel(parallel=True)
def forward_par(code, x, y):
    """`y = act(x)` on flat float32 arrays, chunks spread over the threads."""
    n = x.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        lo = c * _CHUNK
        hi = min(n, lo + _CHUNK)
        _forward_loop(code, x[lo:hi], y[lo:hi])


@kernel
def backward_ser(code, g, v, dx):
    """`dx = g * act'(v)` on flat float32 arrays (serial)."""
    _backward_loop(code, g, v, dx)


@kernel(parallel=True)
def backward_par(code, g, v, dx):
    """`dx = g * act'(v)` on flat float32 arrays, chunks spread over the threads."""
    n = g.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        lo = c * _CHUNK
        hi = min(n, lo + _CHUNK)
        _backward_loop(code, g[lo:hi], v[lo:hi], dx[lo:hi])


def forward(name: str, x: np.ndarray) -> np.ndarray:
    """`act(x)` of a float32 array (any shape; a copy is made if it is not contiguous)."""
    x = np.ascontiguousarray(x)
    y = buffers.empty(x.shape, x.dtype)
    _threading.launch(forward_ser, forward_par, x.size, CODES[name], x.reshape(-1), y.reshape(-1))
    return y


def backward(name: str, g: np.ndarray, v: np.ndarray) -> np.ndarray:
    """`g * act'(v)` of float32 arrays of one shape (`v`: the input; sigmoid's output)."""
    g = np.ascontiguousarray(g)
    v = np.ascontiguousarray(v)
    dx = buffers.empty(g.shape, g.dtype)
    args = (CODES[name], g.reshape(-1), v.reshape(-1), dx.reshape(-1))
    _threading.launch(backward_ser, backward_par, g.size, *args)
    return dx
