"""Kernels on one block of a chunked array: partial statistics, then the block's output.

`numba_gn.dask` runs these on every block of a Dask array chunked along more than the batch
axis, one task per block; the tasks run side by side, so every kernel here is serial.

A block is seen like the in-memory kernels see a whole array, indexed `(N, A, C, B)`, where `C`
counts the block's own channels (the channel axes of the block, flattened in the order of
`axis`). Its input need not be contiguous: a block of a larger array (a chunk of
`dask.array.from_array`) is read in place, as a flat span of memory with element strides
`(sN, sA, sC)` and contiguous runs of `B` values; outputs are C-contiguous `(N, A, C, B)`.
A block may hold several groups, parts of groups, or a part of one group, so each local
channel `c` comes with `grp[c]`, the global index of its group, and per-(sample, group)
arrays have the global group count `G` (groups the block does not touch stay empty).

The arithmetic is that of the in-memory kernels (`docs/numerics.md`):

* `block_moments`: shifted sums `S = sum(x - K)`, `Q = sum((x - K)**2)` per (sample, group),
  `K` the mean of the first few elements of the group in the block (rounded to the compute
  dtype). Runs of at least `lanes` values are summed channel by channel in the input dtype,
  over pieces of at most `PIECE` elements with lane accumulators (`shifted_sums`), and
  merged in float64; shorter runs are summed in float64 directly, in channel order. The
  order of the sums depends on the block's shape only, never on its strides. Returned as
  `(count, mean, M2)` for the pairwise (Chan) merge across blocks done by `numba_gn.dask`;
* `block_apply`: `y = (x - m_hi) * a + b'` with `m_hi` the mean rounded to the compute dtype,
  `a = rstd * gamma[c]` and `b' = beta[c] - (mean - m_hi) * a` (as `slab._slab_coefs`);
* `block_dy_sums` and `block_dx`: per (sample, channel) `sum(dy)` and
  `sum(dy * ((x - m_hi) - m_lo))`, then `dx = c1*dy + c2*((x - m_hi) - m_lo) + c3` with
  the coefficients of `slab._group_dx_coefs`.
"""

from __future__ import annotations

import numpy as np

from numba_gn._jit import kernel
from numba_gn.kernels._borrow import borrowed
from numba_gn.kernels._common import (
    PIECE,
    compute_empty,
    dy_sums,
    load,
    rounded,
    shifted_sums,
    store,
)
from numba_gn.kernels._fma import fma
from numba_gn.kernels._stream import affine, affine_grad, store_fence
from numba_gn.kernels.slab import SHORT_RUN

__all__ = ["block_apply", "block_dx", "block_dy_sums", "block_moments"]


@kernel
def block_moments(xf, N, A, C, B, sN, sA, sC, grp, G, lanes, out):
    """Partial `(count, mean, M2)` of every (sample, group) over one block, into `out`.

    `out` is float64 of shape (N, 3, G); groups the block does not hold get `(0, 0, 0)`.
    `M2` is the sum of squared deviations from the block's own mean, clamped at zero.
    `lanes` is the lane count for runs of `B` values.
    """
    xf, grp, out = borrowed((xf, grp, out))
    for n in range(N):
        for k in range(3):
            for g in range(G):
                out[n, k, g] = 0.0
    if N == 0 or A * C * B == 0:
        return
    acc = compute_empty(xf, (2, lanes))
    shift = compute_empty(xf, G)
    seen = np.zeros(G, dtype=np.bool_)
    S = np.zeros(G, dtype=np.float64)
    Q = np.zeros(G, dtype=np.float64)
    count = np.zeros(G, dtype=np.int64)
    for n in range(N):
        seen[:] = False
        S[:] = 0.0
        Q[:] = 0.0
        count[:] = 0
        # Shifts from the first row (a = 0), which holds every channel of the block: the mean
        # of the first few elements of each group's first run, as the slab kernels take it.
        row = n * sN
        c = 0
        while c < C:
            g = grp[c]
            c1 = c + 1
            while c1 < C and grp[c1] == g:
                c1 += 1
            if not seen[g]:
                seen[g] = True
                m = min(lanes, (c1 - c) * B)
                t = 0.0
                for k in range(m):
                    t += load(xf[row + (c + k // B) * sC + k % B])
                shift[g] = rounded(t / m, xf)
            c = c1
        for a in range(A):
            base = n * sN + a * sA
            c = 0
            while c < C:
                g = grp[c]
                c1 = c + 1
                while c1 < C and grp[c1] == g:
                    c1 += 1
                K = shift[g]
                if B < lanes:  # short runs: float64 directly, in channel order, no slices
                    s = 0.0
                    q = 0.0
                    for cc in range(c, c1):
                        lo = base + cc * sC
                        for i in range(lo, lo + B):
                            v = np.float64(load(xf[i]) - K)
                            s += v
                            q += v * v
                    S[g] += s
                    Q[g] += q
                else:
                    for cc in range(c, c1):
                        lo = base + cc * sC
                        for start in range(lo, lo + B, PIECE):
                            s, q = shifted_sums(xf[start : min(lo + B, start + PIECE)], K, acc)
                            S[g] += s
                            Q[g] += q
                count[g] += (c1 - c) * B
                c = c1
        for g in range(G):
            if count[g] > 0:
                cnt = np.float64(count[g])
                dm = S[g] / cnt
                m2 = Q[g] - S[g] * dm
                if m2 < 0.0:
                    m2 = 0.0
                out[n, 0, g] = cnt
                out[n, 1, g] = np.float64(shift[g]) + dm
                out[n, 2, g] = m2


@kernel
def block_apply(xf, yf, N, A, C, B, sN, sA, sC, grp, G, mean, rstd, gamma, beta, stream):
    """`y = (x - m_hi) * a + b'` over one block, with the statistics of its samples.

    `mean` and `rstd` are float64 of shape (N*G,) (the block's samples, every group);
    `gamma` and `beta` are float64 of shape (C,) (the block's channels). `x` is read with
    the strides `(sN, sA, sC)`; `y` is written C-contiguous, with streaming stores if
    `stream` (see `numba_gn.kernels._stream`).
    """
    xf, yf, grp, mean, rstd, gamma, beta = borrowed((xf, yf, grp, mean, rstd, gamma, beta))
    if N * A * C * B == 0:
        return
    mh = compute_empty(xf, C)
    ca = compute_empty(xf, C)
    cb = compute_empty(xf, C)
    # Short channel runs that sit side by side in a row: coefficients spread per element,
    # one call per row.
    rows = B < SHORT_RUN and sC == B
    L = C * B if rows else 0
    sm = compute_empty(xf, L)
    sa = compute_empty(xf, L)
    sb = compute_empty(xf, L)
    for n in range(N):
        for c in range(C):
            s = n * G + grp[c]
            mu = mean[s]
            m_hi = rounded(mu, xf)
            m_lo = mu - np.float64(m_hi)
            scale = rstd[s] * gamma[c]
            mh[c] = m_hi
            ca[c] = scale
            cb[c] = beta[c] - m_lo * scale
        if rows:
            for c in range(C):
                for j in range(c * B, (c + 1) * B):
                    sm[j] = mh[c]
                    sa[j] = ca[c]
                    sb[j] = cb[c]
            for a in range(A):
                lo = (n * A + a) * L
                src = n * sN + a * sA
                affine(yf[lo : lo + L], xf[src : src + L], 0, L, sm, sa, sb, 0, stream)
        else:
            for a in range(A):
                for c in range(C):
                    lo = ((n * A + a) * C + c) * B
                    src = n * sN + a * sA + c * sC
                    if B >= SHORT_RUN:
                        affine(
                            yf[lo : lo + B], xf[src : src + B], 0, B, mh[c], ca[c], cb[c], 0,
                            stream,
                        )
                    else:  # a call per short run would cost more than the run
                        for j in range(B):
                            v = fma(load(xf[src + j]) - mh[c], ca[c], cb[c])
                            yf[lo + j] = store(v, yf)
    store_fence(stream)


@kernel
def block_dy_sums(dyf, dN, dA, dC, xf, N, A, C, B, sN, sA, sC, grp, G, mean, lanes, out):
    """Per (sample, channel) float64 `sum(dy)` and `sum(dy * ((x - m_hi) - m_lo))` of a block.

    `dy` is read with the strides `(dN, dA, dC)`, `x` with `(sN, sA, sC)`; `mean` is float64
    of shape (N*G,); `out` is float64 of shape (N, C, 2).
    """
    dyf, xf, grp, mean, out = borrowed((dyf, xf, grp, mean, out))
    for n in range(N):
        for c in range(C):
            out[n, c, 0] = 0.0
            out[n, c, 1] = 0.0
    if N * A * C * B == 0:
        return
    acc = compute_empty(xf, (2, lanes))
    mh = compute_empty(xf, C)
    ml = compute_empty(xf, C)
    for n in range(N):
        for c in range(C):
            mu = mean[n * G + grp[c]]
            m_hi = rounded(mu, xf)
            mh[c] = m_hi
            ml[c] = rounded(mu - np.float64(m_hi), xf)
        for a in range(A):
            for c in range(C):
                lo = n * sN + a * sA + c * sC
                dlo = n * dN + a * dA + c * dC
                sd = 0.0
                sx = 0.0
                if B < lanes:  # short runs: float64 directly, without slices
                    for i in range(B):
                        gv = np.float64(load(dyf[dlo + i]))
                        sd += gv
                        sx += gv * np.float64((load(xf[lo + i]) - mh[c]) - ml[c])
                else:
                    for start in range(0, B, PIECE):
                        stop = min(B, start + PIECE)
                        d, e = dy_sums(
                            dyf[dlo + start : dlo + stop], xf[lo + start : lo + stop], mh[c],
                            ml[c], acc,
                        )
                        sd += d
                        sx += e
                out[n, c, 0] += sd
                out[n, c, 1] += sx


@kernel
def block_dx(
    dyf, dN, dA, dC, xf, dxf, N, A, C, B, sN, sA, sC, grp, G, mean, rstd, coef, gamma, stream
):
    """`dx = c1*dy + c2*((x - m_hi) - m_lo) + c3` over one block.

    `dy` is read with the strides `(dN, dA, dC)`, `x` with `(sN, sA, sC)`; `dx` is written
    C-contiguous, with streaming stores if `stream`. `mean` and `rstd` are float64 of shape
    (N*G,); `coef` is float64 of shape (N, 2, G) holding each (sample, group)'s `c2` and
    `c3`; `gamma` is float64 of shape (C,) (the block's channels), so `c1 = rstd * gamma[c]`.
    """
    dyf, xf, dxf, grp, mean, rstd, coef, gamma = borrowed(
        (dyf, xf, dxf, grp, mean, rstd, coef, gamma)
    )
    if N * A * C * B == 0:
        return
    mh = compute_empty(xf, C)
    ml = compute_empty(xf, C)
    k1 = compute_empty(xf, C)
    k2 = compute_empty(xf, C)
    k3 = compute_empty(xf, C)
    for n in range(N):
        for c in range(C):
            g = grp[c]
            s = n * G + g
            mu = mean[s]
            m_hi = rounded(mu, xf)
            mh[c] = m_hi
            ml[c] = rounded(mu - np.float64(m_hi), xf)
            k1[c] = rstd[s] * gamma[c]
            k2[c] = coef[n, 0, g]
            k3[c] = coef[n, 1, g]
        for a in range(A):
            for c in range(C):
                lo = ((n * A + a) * C + c) * B
                src = n * sN + a * sA + c * sC
                dsrc = n * dN + a * dA + c * dC
                if B >= SHORT_RUN:
                    affine_grad(
                        dxf[lo : lo + B], dyf[dsrc : dsrc + B], xf[src : src + B], 0, B, mh[c],
                        ml[c], k1[c], k2[c], k3[c], 0, stream,
                    )
                else:  # a call per short run would cost more than the run
                    for i in range(B):
                        t = (load(xf[src + i]) - mh[c]) - ml[c]
                        v = fma(k1[c], load(dyf[dsrc + i]), fma(k2[c], t, k3[c]))
                        dxf[lo + i] = store(v, dxf)
    store_fence(stream)
