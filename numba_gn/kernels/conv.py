"""Numba kernels of the convolution ops: col2im and the Winograd F(2x2, 3x3) tile transforms.

`col2im` (scatter-add patch rows back onto an image) is the im2col convolution's
backward-data step and the transposed convolution's forward (see
`numba_gn.autograd.ops_conv`).

The Winograd kernels are the four transforms of a 3x3, stride-1 convolution computed on 4x4
input tiles taken every 2 pixels (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", 2016), with `V = B^T d B` per tile and channel, `M = V @ U` in BLAS and
`Y = A^T M A` giving each tile's 2x2 outputs:

* `winograd_input`: `V` (16, P, C) from a channels-last image, pixels outside it read 0;
* `winograd_output`: the (N, OH, OW, F) output from `M` (16, P, F), plus the bias;
* `winograd_output_grad`: the adjoint of `winograd_output`, `dM` from the output gradient;
* `winograd_input_grad`: the adjoint of `winograd_input`, the input gradient from `dV`
  (overlapping tiles add up).

Tile `p = (n * TH + ty) * TW + tx` covers padded rows `2*ty .. 2*ty + 3` and columns
`2*tx .. 2*tx + 3`. Every kernel works on one sample at a time in a zero-padded scratch copy
with even and odd columns split apart, so that tile `tx`'s four columns are element `tx` of
the even, odd, even-shifted-by-one and odd-shifted-by-one rows: the transforms then run as long
loops over whole tile rows (`TW * C` elements) that LLVM vectorises. Samples never share
pixels or tiles, so the parallel twins run over samples and their threads write disjoint memory.
"""

# Measured on the demo's strided 3x3 convolution backward (batch 64, 8x8x16 input, 2 cores): the
# NumPy version, one strided `+=` per kernel tap, took ~130 us; this kernel ~35 us. The forward
# im2col stays in NumPy (a strided view and one copy, faster than the Numba loop we measured).

# Winograd layout, measured on x (64, 16, 16, 32) float32, 2 cores: a loop over one tile's C=32
# channels is too short for LLVM's vector loop (it ran scalar: 2.3 ms for the input transform,
# 0.47 ms at C=256 for the same work); loops over whole tile rows took 0.3 ms. LLVM checks
# every pair of arrays a loop writes and reads for overlap at run time and stops vectorising
# past about a hundred checks, so no loop writes more than 8 outputs (the input transform
# writes 4, twice as fast as 8).

from __future__ import annotations

import numpy as np
from numba import prange

from numba_gn import _threading, buffers
from numba_gn._jit import inline, kernel, subroutine

__all__ = [
    "col2im",
    "winograd_input",
    "winograd_input_grad",
    "winograd_output",
    "winograd_output_grad",
]


@inline
def _sample(dcols, dx2, n, hp, wp, kh, kw, sh, sw, dh, dw, oh, ow):  # pragma: no cover - jitted
    """Accumulate sample `n`'s patch gradients into its (hp*wp, C) block of `dx2`."""
    c_ = dx2.shape[1]
    base = n * hp * wp
    for p in range(base, base + hp * wp):
        for c in range(c_):
            dx2[p, c] = 0
    for a in range(oh):
        for b in range(ow):
            r = (n * oh + a) * ow + b
            col = 0
            for i in range(kh):
                row = base + (a * sh + i * dh) * wp + b * sw
                for j in range(kw):
                    q = row + j * dw
                    for c in range(c_):
                        dx2[q, c] += dcols[r, col + c]
                    col += c_


@kernel
def _col2im_ser(dcols, dx2, n_, hp, wp, kh, kw, sh, sw, dh, dw, oh, ow):  # pragma: no cover
    for n in range(n_):
        _sample(dcols, dx2, n, hp, wp, kh, kw, sh, sw, dh, dw, oh, ow)


@kernel(parallel=True)
def _col2im_par(dcols, dx2, n_, hp, wp, kh, kw, sh, sw, dh, dw, oh, ow):  # pragma: no cover
    for n in prange(n_):
        _sample(dcols, dx2, n, hp, wp, kh, kw, sh, sw, dh, dw, oh, ow)


def col2im(
    dcols: np.ndarray,
    padded_shape: tuple[int, int, int, int],
    kernel_hw: tuple[int, int],
    strides: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> np.ndarray:
    """The gradient of a padded (N, Hp, Wp, C) input from patch gradients (N*oh*ow, kh*kw*C).

    The adjoint of reading windows `[a*sh + i*dh, b*sw + j*dw]` into patch rows.
    """
    n, hp, wp, c = padded_shape
    dcols = np.ascontiguousarray(dcols)
    dx2 = np.empty((n * hp * wp, c), dtype=dcols.dtype)
    args = (dcols, dx2, n, hp, wp, *kernel_hw, *strides, *dilation, *out_hw)
    _threading.launch(_col2im_ser, _col2im_par, dcols.size, *args)
    return dx2.reshape(padded_shape)


# ----------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3). Each sample is first copied into a split scratch `s` (HP, 2, M * C),
# HP = 2 * TH + 2 and M = TW + 1, that holds padded row `r`, column `2 * q + parity` at
# `s[r, parity, q * C : (q + 1) * C]`: the four columns of every tile of a tile row are then
# four contiguous runs (even, odd, and both one tile further on), and the transforms are loops
# over whole tile rows. Tile outputs (and output gradients) go through a scratch of four planes
# (4, TH, TW * F), one per position in the tile.
#
# Two rules keep these loops vectorised (both measured on x (64, 16, 16, 32) float32):
# * a loop over one pixel's C values copies through a single output stream: LLVM hoists the
#   overlap checks of an inner loop out of the loops around it, over all their iterations, and
#   two streams into neighbouring pixels then always "overlap", so the loop ran scalar;
# * the transform loops write whole planes or rows of distinct arrays for the same reason (a
#   loop writing two rows of one array across all tile rows ran scalar: 0.63 against 0.15 ms).


@subroutine
def _split_sample(x, n, pt, pl, s):  # pragma: no cover - jitted
    """Copy sample `n` of `x` (N, H, W, C) into the split scratch, 0 outside the image."""
    _, h, w, c_ = x.shape
    m = s.shape[2] // c_
    for r in range(s.shape[0]):
        xr = r - pt
        for parity in range(2):
            row = s[r, parity].reshape((m, c_))
            for q in range(m):
                xc = 2 * q + parity - pl
                if 0 <= xr < h and 0 <= xc < w:
                    for c in range(c_):
                        row[q, c] = x[n, xr, xc, c]
                else:
                    for c in range(c_):
                        row[q, c] = 0


@subroutine
def _merge_sample(s, n, pt, pl, dx):  # pragma: no cover - jitted
    """Copy the image part of the split scratch into sample `n` of `dx` (N, H, W, C)."""
    _, h, w, c_ = dx.shape
    m = s.shape[2] // c_
    for r in range(h):
        for parity in range(2):
            row = s[r + pt, parity].reshape((m, c_))
            for q in range(m):
                xc = 2 * q + parity - pl
                if 0 <= xc < w:
                    for c in range(c_):
                        dx[n, r, xc, c] = row[q, c]


@subroutine
def _input_sample(x, n, pt, pl, th, tw, v):  # pragma: no cover - jitted
    """`V = B^T d B` of sample `n`'s tiles into `v` (16, P * C)."""
    c_ = x.shape[3]
    run = tw * c_
    s = np.empty((2 * th + 2, 2, (tw + 1) * c_), dtype=x.dtype)
    _split_sample(x, n, pt, pl, s)
    # Row i of B^T d is d[r1] + sign * d[r2]: d0 - d2, d1 + d2, d2 - d1, d1 - d3 (adding -1 * b
    # is subtracting b, bit for bit). One loop per row, four outputs each: a loop writing all
    # eight outputs of two rows at once took twice as long (0.60 against 0.27 ms).
    signs = np.empty(4, dtype=x.dtype)
    signs[0] = -1
    signs[1] = 1
    signs[2] = -1
    signs[3] = -1
    for ty in range(th):
        a = 2 * ty
        q = (n * th + ty) * run
        for i in range(4):
            if i == 0:
                r1, r2 = a, a + 2
            elif i == 1:
                r1, r2 = a + 1, a + 2
            elif i == 2:
                r1, r2 = a + 2, a + 1
            else:
                r1, r2 = a + 1, a + 3
            sign = signs[i]
            # Columns 0..3 of every tile of the row: even, odd, even and odd one tile further.
            e1 = s[r1, 0]
            o1 = s[r1, 1]
            f1 = e1[c_:]
            g1 = o1[c_:]
            e2 = s[r2, 0]
            o2 = s[r2, 1]
            f2 = e2[c_:]
            g2 = o2[c_:]
            v0 = v[4 * i, q : q + run]
            v1 = v[4 * i + 1, q : q + run]
            v2 = v[4 * i + 2, q : q + run]
            v3 = v[4 * i + 3, q : q + run]
            for e in range(run):
                t0 = e1[e] + sign * e2[e]
                t1 = o1[e] + sign * o2[e]
                t2 = f1[e] + sign * f2[e]
                t3 = g1[e] + sign * g2[e]
                # B^T along the columns.
                v0[e] = t0 - t2
                v1[e] = t1 + t2
                v2[e] = t2 - t1
                v3[e] = t1 - t3


@subroutine
def _output_sample(m, bias, n, th, tw, y):  # pragma: no cover - jitted
    """`Y = A^T M A + bias` of sample `n`'s tiles into `y` (N, OH, OW, F), cropped."""
    _, oh, ow, f_ = y.shape
    run = tw * f_
    ys = np.empty((4, th, run), dtype=y.dtype)
    for ty in range(th):
        q = (n * th + ty) * run
        m0 = m[0, q : q + run]
        m1 = m[1, q : q + run]
        m2 = m[2, q : q + run]
        m3 = m[3, q : q + run]
        m4 = m[4, q : q + run]
        m5 = m[5, q : q + run]
        m6 = m[6, q : q + run]
        m7 = m[7, q : q + run]
        m8 = m[8, q : q + run]
        m9 = m[9, q : q + run]
        m10 = m[10, q : q + run]
        m11 = m[11, q : q + run]
        m12 = m[12, q : q + run]
        m13 = m[13, q : q + run]
        m14 = m[14, q : q + run]
        m15 = m[15, q : q + run]
        y00 = ys[0, ty]
        y01 = ys[1, ty]
        y10 = ys[2, ty]
        y11 = ys[3, ty]
        for e in range(run):
            # A^T M: rows m0 + m1 + m2 and m1 - m2 - m3, then A along the columns.
            a0 = (m0[e] + m4[e]) + m8[e]
            a1 = (m1[e] + m5[e]) + m9[e]
            a2 = (m2[e] + m6[e]) + m10[e]
            a3 = (m3[e] + m7[e]) + m11[e]
            b0 = (m4[e] - m8[e]) - m12[e]
            b1 = (m5[e] - m9[e]) - m13[e]
            b2 = (m6[e] - m10[e]) - m14[e]
            b3 = (m7[e] - m11[e]) - m15[e]
            y00[e] = (a0 + a1) + a2
            y01[e] = (a1 - a2) - a3
            y10[e] = (b0 + b1) + b2
            y11[e] = (b1 - b2) - b3
    planes = ys.reshape((4, th, tw, f_))
    for k in range(4):
        i, j = divmod(k, 2)
        for ty in range(th):
            r = 2 * ty + i
            for tx in range(tw):
                col = 2 * tx + j
                if r < oh and col < ow:
                    for f in range(f_):
                        y[n, r, col, f] = planes[k, ty, tx, f] + bias[f]


@subroutine
def _output_grad_sample(g, n, th, tw, dm):  # pragma: no cover - jitted
    """`dM = A dY A^T` of sample `n`'s tiles into `dm` (16, P * F), 0 past the output."""
    _, oh, ow, f_ = g.shape
    run = tw * f_
    gs = np.empty((4, th, run), dtype=dm.dtype)
    planes = gs.reshape((4, th, tw, f_))
    for k in range(4):
        i, j = divmod(k, 2)
        for ty in range(th):
            r = 2 * ty + i
            for tx in range(tw):
                col = 2 * tx + j
                if r < oh and col < ow:
                    for f in range(f_):
                        planes[k, ty, tx, f] = g[n, r, col, f]
                else:
                    for f in range(f_):
                        planes[k, ty, tx, f] = 0
    for ty in range(th):
        y00 = gs[0, ty]
        y01 = gs[1, ty]
        y10 = gs[2, ty]
        y11 = gs[3, ty]
        q = (n * th + ty) * run
        # A dY: rows y0, y0 + y1, y0 - y1, -y1; then A^T along the columns (same combinations).
        d0 = dm[0, q : q + run]
        d1 = dm[1, q : q + run]
        d2 = dm[2, q : q + run]
        d3 = dm[3, q : q + run]
        d4 = dm[4, q : q + run]
        d5 = dm[5, q : q + run]
        d6 = dm[6, q : q + run]
        d7 = dm[7, q : q + run]
        for e in range(run):
            r0 = y00[e]
            r1 = y01[e]
            d0[e] = r0
            d1[e] = r0 + r1
            d2[e] = r0 - r1
            d3[e] = -r1
            r0 = y00[e] + y10[e]
            r1 = y01[e] + y11[e]
            d4[e] = r0
            d5[e] = r0 + r1
            d6[e] = r0 - r1
            d7[e] = -r1
        d0 = dm[8, q : q + run]
        d1 = dm[9, q : q + run]
        d2 = dm[10, q : q + run]
        d3 = dm[11, q : q + run]
        d4 = dm[12, q : q + run]
        d5 = dm[13, q : q + run]
        d6 = dm[14, q : q + run]
        d7 = dm[15, q : q + run]
        for e in range(run):
            r0 = y00[e] - y10[e]
            r1 = y01[e] - y11[e]
            d0[e] = r0
            d1[e] = r0 + r1
            d2[e] = r0 - r1
            d3[e] = -r1
            r0 = -y10[e]
            r1 = -y11[e]
            d4[e] = r0
            d5[e] = r0 + r1
            d6[e] = r0 - r1
            d7[e] = -r1


@subroutine
def _input_grad_sample(dv, n, pt, pl, tile_rows, tw, dx):  # pragma: no cover - jitted
    """`dd = B dV B^T` of sample `n`'s tiles, added up where tiles overlap, into `dx`.

    `tile_rows` is `arange(TH)`: the tile row is read from memory so that LLVM cannot
    hoist the vector loops' overlap checks out of the tile-row loop. Hoisted, they check the
    rows written over all tile rows, which overlap (tile rows share two pixel rows), so they
    fail and every loop ran scalar (0.75 ms against 0.43 ms for the whole sample loop).
    """
    th = tile_rows.shape[0]
    c_ = dx.shape[3]
    run = tw * c_
    dxs = np.zeros((2 * th + 2, 2, (tw + 1) * c_), dtype=dx.dtype)
    for i in range(th):
        ty = tile_rows[i]
        a = 2 * ty
        q = (n * th + ty) * run
        v0 = dv[0, q : q + run]
        v1 = dv[1, q : q + run]
        v2 = dv[2, q : q + run]
        v3 = dv[3, q : q + run]
        v4 = dv[4, q : q + run]
        v5 = dv[5, q : q + run]
        v6 = dv[6, q : q + run]
        v7 = dv[7, q : q + run]
        v8 = dv[8, q : q + run]
        v9 = dv[9, q : q + run]
        v10 = dv[10, q : q + run]
        v11 = dv[11, q : q + run]
        v12 = dv[12, q : q + run]
        v13 = dv[13, q : q + run]
        v14 = dv[14, q : q + run]
        v15 = dv[15, q : q + run]
        # B combines 4 values as (v0, v1 - v2 + v3, v1 + v2 - v0, -v3). One loop per tile
        # column j (its combination across the row, then B down the rows), so that a loop
        # never adds to the same run twice; columns 2 and 3 are the next tile's 0 and 1.
        s0 = dxs[a, 0]
        s1 = dxs[a + 1, 0]
        s2 = dxs[a + 2, 0]
        s3 = dxs[a + 3, 0]
        for e in range(run):  # column 0: w_i = v_i0
            w0 = v0[e]
            w1 = v4[e]
            w2 = v8[e]
            w3 = v12[e]
            s0[e] += w0
            s1[e] += (w1 - w2) + w3
            s2[e] += (w1 + w2) - w0
            s3[e] -= w3
        s0 = dxs[a, 1]
        s1 = dxs[a + 1, 1]
        s2 = dxs[a + 2, 1]
        s3 = dxs[a + 3, 1]
        for e in range(run):  # column 1: w_i = v_i1 - v_i2 + v_i3
            w0 = (v1[e] - v2[e]) + v3[e]
            w1 = (v5[e] - v6[e]) + v7[e]
            w2 = (v9[e] - v10[e]) + v11[e]
            w3 = (v13[e] - v14[e]) + v15[e]
            s0[e] += w0
            s1[e] += (w1 - w2) + w3
            s2[e] += (w1 + w2) - w0
            s3[e] -= w3
        s0 = dxs[a, 0, c_:]
        s1 = dxs[a + 1, 0, c_:]
        s2 = dxs[a + 2, 0, c_:]
        s3 = dxs[a + 3, 0, c_:]
        for e in range(run):  # column 2: w_i = v_i1 + v_i2 - v_i0
            w0 = (v1[e] + v2[e]) - v0[e]
            w1 = (v5[e] + v6[e]) - v4[e]
            w2 = (v9[e] + v10[e]) - v8[e]
            w3 = (v13[e] + v14[e]) - v12[e]
            s0[e] += w0
            s1[e] += (w1 - w2) + w3
            s2[e] += (w1 + w2) - w0
            s3[e] -= w3
        s0 = dxs[a, 1, c_:]
        s1 = dxs[a + 1, 1, c_:]
        s2 = dxs[a + 2, 1, c_:]
        s3 = dxs[a + 3, 1, c_:]
        for e in range(run):  # column 3: w_i = -v_i3
            w0 = v3[e]
            w1 = v7[e]
            w2 = v11[e]
            w3 = v15[e]
            s0[e] -= w0
            s1[e] -= (w1 - w2) + w3
            s2[e] -= (w1 + w2) - w0
            s3[e] += w3
    _merge_sample(dxs, n, pt, pl, dx)


# The parallel twins pass `np.int64(n)`: prange's index is unsigned, and the sample
# functions would otherwise be compiled a second time for it (a second ~1 s compile each).


@kernel
def _wg_input_ser(x, pt, pl, th, tw, v):  # pragma: no cover - jitted
    for n in range(x.shape[0]):
        _input_sample(x, n, pt, pl, th, tw, v)


@kernel(parallel=True)
def _wg_input_par(x, pt, pl, th, tw, v):  # pragma: no cover - jitted
    for n in prange(x.shape[0]):
        _input_sample(x, np.int64(n), pt, pl, th, tw, v)


@kernel
def _wg_output_ser(m, bias, th, tw, y):  # pragma: no cover - jitted
    for n in range(y.shape[0]):
        _output_sample(m, bias, n, th, tw, y)


@kernel(parallel=True)
def _wg_output_par(m, bias, th, tw, y):  # pragma: no cover - jitted
    for n in prange(y.shape[0]):
        _output_sample(m, bias, np.int64(n), th, tw, y)


@kernel
def _wg_output_grad_ser(g, th, tw, dm):  # pragma: no cover - jitted
    for n in range(g.shape[0]):
        _output_grad_sample(g, n, th, tw, dm)


@kernel(parallel=True)
def _wg_output_grad_par(g, th, tw, dm):  # pragma: no cover - jitted
    for n in prange(g.shape[0]):
        _output_grad_sample(g, np.int64(n), th, tw, dm)


@kernel
def _wg_input_grad_ser(dv, pt, pl, tile_rows, tw, dx):  # pragma: no cover - jitted
    for n in range(dx.shape[0]):
        _input_grad_sample(dv, n, pt, pl, tile_rows, tw, dx)


@kernel(parallel=True)
def _wg_input_grad_par(dv, pt, pl, tile_rows, tw, dx):  # pragma: no cover - jitted
    for n in prange(dx.shape[0]):
        _input_grad_sample(dv, np.int64(n), pt, pl, tile_rows, tw, dx)


def _launch(serial, parallel, size: int, samples: int, *args) -> None:
    """The Winograd twins, `samples` handed out a few at a time (`_threading.parallel_launch`)."""
    chunk = _threading.dynamic_chunk(samples)
    _threading.launch(serial, parallel, size, *args, chunk=chunk)


def _out(out: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """`out` checked to be a C-contiguous array of `shape` and `dtype`, or a new one."""
    if out is None:
        return buffers.empty(shape, dtype)
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous {np.dtype(dtype).name} array of shape {shape}; got "
            f"{out.dtype.name} {out.shape}."
        )
    return out


def winograd_input(
    x: np.ndarray,
    pads: tuple[int, int],
    tiles: tuple[int, int],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The Winograd input transform of a C-contiguous (N, H, W, C) image.

    `pads` are the zero rows above and columns left of the image, `tiles` is `(TH, TW)`.
    Returns `V` (16, N*TH*TW, C) (written into `out` when given), `V[4*i + j, p]` being
    entry `(i, j)` of `B^T d B` for tile `p`'s 4x4 window `d` (pixels outside the image
    read 0).
    """
    n, _, _, c = x.shape
    th, tw = tiles
    v = _out(out, (16, n * th * tw, c), x.dtype)
    _launch(_wg_input_ser, _wg_input_par, v.size, x.shape[0], x, *pads, th, tw, v.reshape(16, -1))
    return v


def winograd_output(
    m: np.ndarray,
    bias: np.ndarray,
    out_shape: tuple[int, int, int, int],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The (N, OH, OW, F) output `A^T M A + bias` from a C-contiguous `M` (16, N*TH*TW, F).

    `TH = ceil(OH / 2)` and `TW = ceil(OW / 2)`: a last odd row or column of tile outputs
    is dropped. Written into `out` when given.
    """
    _, oh, ow, _ = out_shape
    th, tw = -(-oh // 2), -(-ow // 2)
    y = _out(out, tuple(out_shape), m.dtype)
    _launch(_wg_output_ser, _wg_output_par, m.size, y.shape[0], m.reshape(16, -1), bias, th, tw, y)
    return y


def winograd_output_grad(g: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The adjoint of `winograd_output`: `dM` (16, N*TH*TW, F) from a C-contiguous `g`."""
    n, oh, ow, f = g.shape
    th, tw = -(-oh // 2), -(-ow // 2)
    dm = _out(out, (16, n * th * tw, f), g.dtype)
    dms = dm.reshape(16, -1)
    _launch(_wg_output_grad_ser, _wg_output_grad_par, dm.size, g.shape[0], g, th, tw, dms)
    return dm


def winograd_input_grad(
    dv: np.ndarray,
    x_shape: tuple[int, int, int, int],
    pads: tuple[int, int],
    tiles: tuple[int, int],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The adjoint of `winograd_input`: the (N, H, W, C) image gradient from `dV`.

    The tiles must cover the image (`H + pads[0] <= 2*TH + 2`, likewise for the width), as a
    convolution's tiles always do. Written into `out` when given.
    """
    th, tw = tiles
    if x_shape[1] + pads[0] > 2 * th + 2 or x_shape[2] + pads[1] > 2 * tw + 2:
        raise ValueError(f"tiles {tiles} with pads {pads} do not cover an image {x_shape}.")
    dx = _out(out, tuple(x_shape), dv.dtype)
    tile_rows = np.arange(th)
    dv2 = dv.reshape(16, -1)
    grad = (dv2, *pads, tile_rows, tw, dx)
    _launch(_wg_input_grad_ser, _wg_input_grad_par, dv2.size, dx.shape[0], *grad)
    return dx
