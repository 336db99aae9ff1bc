"""Slab family: one (sample, group) is ``A`` contiguous segments of ``L = D*B`` elements.

The canonical view is a flat, C-contiguous array indexed as ``(N, A, C, B)``: ``A`` is the product
of the axes before the channel axis, ``B`` the product of those after it. Channels-first data
(``A == 1``) gives one contiguous slab per (n, g); data with a channel axis in the middle gives
``A`` segments per slab.

Work is cut into *pieces* of at most :data:`PIECE` elements. A slab's statistics are always the
sequential float64 sum of its pieces' sums in (segment, piece) order, whether the pieces were
summed by one thread (the fused kernels, one slab per ``prange`` iteration, while the slab is hot
in L2) or spread over all threads (the chunked kernels, for few large slabs). So every path and
every thread count gives the same bits.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from numba_gn._jit import inline, kernel
from numba_gn.kernels._common import (
    PIECE,
    compute_empty,
    dy_sums,
    finish_stats,
    load,
    param_grads,
    rounded,
    shifted_sums,
)
from numba_gn.kernels._stream import affine, affine_grad, store_fence

# ----------------------------------------------------------------------------------------------
# forward helpers


@inline
def _slab_shift(xf, n, g, A, C, B, D, lanes):
    """Shift for the slab's shifted sums: the mean of its first few elements, in x's dtype."""
    L = D * B
    if A * L == 0:
        return rounded(0.0, xf)
    off = (n * A * C + g * D) * B
    m = min(lanes, L)
    t = 0.0
    for i in range(off, off + m):
        t += load(xf[i])
    return rounded(t / m, xf)


@inline
def _slab_sums(xf, n, g, A, C, B, D, K, lanes):
    """Shifted sums of a whole slab, pieces merged in (segment, piece) order."""
    L = D * B
    S = 0.0
    Q = 0.0
    acc = compute_empty(xf, (2, lanes))
    for a in range(A):
        base = ((n * A + a) * C + g * D) * B
        for start in range(0, L, PIECE):
            s, q = shifted_sums(xf[base + start : base + min(L, start + PIECE)], K, acc)
            S += s
            Q += q
    return S, Q


@inline
def _slab_coefs(mu, r, gamma, beta, g, D, coef, xf):
    """Per-channel ``(a, b')`` of ``y = (x - m_hi)*a + b'`` into ``coef[:D]``; returns m_hi."""
    mh = rounded(mu, xf)
    ml = mu - np.float64(mh)
    for d in range(D):
        c = g * D + d
        a = r * gamma[c]
        coef[d, 0] = a
        coef[d, 1] = beta[c] - ml * a
    return mh


@inline
def _normalize_piece(xf, yf, base, start, length, B, coef, mh, stream):
    """Normalise elements ``[start, start+length)`` of the segment that begins at ``base``."""
    i = start
    end = start + length
    while i < end:
        d = i // B
        stop = min(end, (d + 1) * B)
        affine(yf, xf, base + i, stop - i, mh, coef[d, 0], coef[d, 1], 0, stream)
        i = stop


@inline
def _forward_one_slab(xf, yf, s, G, A, C, B, gamma, beta, eps, lanes, mean, rstd, stream):
    D = C // G
    L = D * B
    n = s // G
    g = s - n * G
    K = _slab_shift(xf, n, g, A, C, B, D, lanes)
    S, Q = _slab_sums(xf, n, g, A, C, B, D, K, lanes)
    mu, r = finish_stats(K, S, Q, A * L, eps)
    mean[s] = mu
    rstd[s] = r
    coef = compute_empty(xf, (D, 2))
    mh = _slab_coefs(mu, r, gamma, beta, g, D, coef, xf)
    for a in range(A):
        base = ((n * A + a) * C + g * D) * B
        for start in range(0, L, PIECE):
            _normalize_piece(xf, yf, base, start, min(PIECE, L - start), B, coef, mh, stream)
    store_fence(stream)


@kernel(parallel=True)
def forward_fused_par(xf, yf, N, G, A, C, B, gamma, beta, eps, lanes, mean, rstd, stream):
    """Forward pass, one slab per parallel iteration (statistics then output, slab hot in L2)."""
    for ss in prange(N * G):
        s = np.int64(ss)
        _forward_one_slab(xf, yf, s, G, A, C, B, gamma, beta, eps, lanes, mean, rstd, stream)


@kernel
def forward_fused_ser(xf, yf, N, G, A, C, B, gamma, beta, eps, lanes, mean, rstd, stream):
    """Serial twin of :func:`forward_fused_par` (small inputs, forked children)."""
    for s in range(N * G):
        _forward_one_slab(xf, yf, s, G, A, C, B, gamma, beta, eps, lanes, mean, rstd, stream)


# chunked forward: pieces of every slab spread over all threads (few, large slabs)


@inline
def _unit(u, G, A, P):
    """Decode piece index ``u`` into (n, g, a, piece)."""
    per_slab = A * P
    s = u // per_slab
    rem = u - s * per_slab
    a = rem // P
    p = rem - a * P
    n = s // G
    return n, s - n * G, a, p


@kernel(parallel=True)
def forward_chunked_par(xf, yf, N, G, A, C, B, gamma, beta, eps, lanes, mean, rstd, stream):
    """Forward pass with every slab's pieces spread over all threads (few, large slabs).

    Three phases: shifted sums of every piece (parallel), a merge per slab in piece order
    (serial, tiny), the output of every piece (parallel, same pieces so the same cores).
    """
    D = C // G
    L = D * B
    P = (L + PIECE - 1) // PIECE
    units = N * G * A * P
    part = np.empty((units, 2), dtype=np.float64)
    for uu in prange(units):
        u = np.int64(uu)
        n, g, a, p = _unit(u, G, A, P)
        K = _slab_shift(xf, n, g, A, C, B, D, lanes)
        start = p * PIECE
        base = ((n * A + a) * C + g * D) * B
        acc = compute_empty(xf, (2, lanes))
        s, q = shifted_sums(xf[base + start : base + min(L, start + PIECE)], K, acc)
        part[u, 0] = s
        part[u, 1] = q
    coef = compute_empty(xf, (N * C, 2))
    mhs = compute_empty(xf, N * G)
    for s in range(N * G):
        n = s // G
        g = s - n * G
        K = _slab_shift(xf, n, g, A, C, B, D, lanes)
        S = 0.0
        Q = 0.0
        for u in range(s * A * P, (s + 1) * A * P):
            S += part[u, 0]
            Q += part[u, 1]
        mu, r = finish_stats(K, S, Q, A * L, eps)
        mean[s] = mu
        rstd[s] = r
        mhs[s] = _slab_coefs(mu, r, gamma, beta, g, D, coef[n * C + g * D :], xf)
    for uu in prange(units):
        n, g, a, p = _unit(np.int64(uu), G, A, P)
        start = p * PIECE
        base = ((n * A + a) * C + g * D) * B
        coef_g = coef[n * C + g * D :]
        mh = mhs[n * G + g]
        _normalize_piece(xf, yf, base, start, min(PIECE, L - start), B, coef_g, mh, stream)
        store_fence(stream)


# ----------------------------------------------------------------------------------------------
# backward: units are pieces of channel runs (n, a, c) of B contiguous elements


@inline
def _channel_sums(dyf, xf, n, c, A, C, B, mh, ml, lanes):
    """``(sum(dy), sum(dy*(x-mean)))`` over one (sample, channel), pieces merged in order."""
    Sd = 0.0
    Sx = 0.0
    acc = compute_empty(xf, (2, lanes))
    for a in range(A):
        base = ((n * A + a) * C + c) * B
        for start in range(0, B, PIECE):
            lo = base + start
            hi = base + min(B, start + PIECE)
            d, x = dy_sums(dyf[lo:hi], xf[lo:hi], mh, ml, acc)
            Sd += d
            Sx += x
    return Sd, Sx


@inline
def _group_dx_coefs(r, gamma, g, D, M, db, ds, row, coef):
    """Coefficients of ``dx = c1*dy + c2*(x-mean) + c3`` for the channels of one group."""
    sum_gdb = 0.0
    sum_gds = 0.0
    for d in range(D):
        c = g * D + d
        sum_gdb += gamma[c] * db[row + c]
        sum_gds += gamma[c] * ds[row + c]
    c2 = -r * r * r * sum_gds / M
    c3 = -r * sum_gdb / M
    for d in range(D):
        coef[d, 0] = r * gamma[g * D + d]
        coef[d, 1] = c2
        coef[d, 2] = c3


@inline
def _dx_run(dyf, xf, dxf, start, length, c1, c2, c3, mh, ml, stream):
    affine_grad(dxf, dyf, xf, start, length, mh, ml, c1, c2, c3, 0, stream)


@inline
def _backward_one_slab(dyf, xf, dxf, s, G, A, C, B, gamma, mean, rstd, lanes, db, ds, stream):
    D = C // G
    n = s // G
    g = s - n * G
    mu = mean[s]
    r = rstd[s]
    mh = rounded(mu, xf)
    ml = rounded(mu - np.float64(mh), xf)
    for d in range(D):
        c = g * D + d
        sd, sx = _channel_sums(dyf, xf, n, c, A, C, B, mh, ml, lanes)
        db[n * C + c] = sd
        ds[n * C + c] = sx
    coef = compute_empty(xf, (D, 3))
    _group_dx_coefs(r, gamma, g, D, A * D * B, db, ds, n * C, coef)
    for d in range(D):
        c = g * D + d
        for a in range(A):
            base = ((n * A + a) * C + c) * B
            _dx_run(dyf, xf, dxf, base, B, coef[d, 0], coef[d, 1], coef[d, 2], mh, ml, stream)
    store_fence(stream)


@kernel(parallel=True)
def backward_fused_par(
    dyf, xf, dxf, N, G, A, C, B, gamma, mean, rstd, lanes, dgamma, dbeta, stream
):
    """Backward pass, one slab per parallel iteration; then dgamma/dbeta serially."""
    db = np.empty(N * C, dtype=np.float64)
    ds = np.empty(N * C, dtype=np.float64)
    for ss in prange(N * G):
        _backward_one_slab(
            dyf, xf, dxf, np.int64(ss), G, A, C, B, gamma, mean, rstd, lanes, db, ds, stream
        )
    param_grads(db, ds, rstd, N, G, C, dgamma, dbeta)


@kernel
def backward_fused_ser(
    dyf, xf, dxf, N, G, A, C, B, gamma, mean, rstd, lanes, dgamma, dbeta, stream
):
    """Serial twin of :func:`backward_fused_par`."""
    db = np.empty(N * C, dtype=np.float64)
    ds = np.empty(N * C, dtype=np.float64)
    for s in range(N * G):
        _backward_one_slab(dyf, xf, dxf, s, G, A, C, B, gamma, mean, rstd, lanes, db, ds, stream)
    param_grads(db, ds, rstd, N, G, C, dgamma, dbeta)


@inline
def _run_unit(u, C, A, P):
    """Decode run-piece index ``u`` into (n, c, a, piece); runs ordered (n, c, a, piece)."""
    per_channel = A * P
    nc = u // per_channel
    rem = u - nc * per_channel
    a = rem // P
    n = nc // C
    return n, nc - n * C, a, rem - a * P


@kernel(parallel=True)
def backward_chunked_par(
    dyf, xf, dxf, N, G, A, C, B, gamma, mean, rstd, lanes, dgamma, dbeta, stream
):
    """Backward pass with the pieces of every channel run spread over all threads.

    Phase 1 sums every run piece (parallel); phase 2 merges them per (sample, channel) in piece
    order and computes the dx coefficients, dgamma and dbeta (serial, tiny); phase 3 writes dx
    for every piece (parallel).
    """
    D = C // G
    P = (B + PIECE - 1) // PIECE
    per_channel = A * P
    units = N * C * per_channel
    part = np.empty((units, 2), dtype=np.float64)
    for uu in prange(units):
        u = np.int64(uu)
        n, c, a, p = _run_unit(u, C, A, P)
        mu = mean[n * G + c // D]
        mh = rounded(mu, xf)
        ml = rounded(mu - np.float64(mh), xf)
        start = p * PIECE
        lo = ((n * A + a) * C + c) * B + start
        hi = lo - start + min(B, start + PIECE)
        acc = compute_empty(xf, (2, lanes))
        d, x = dy_sums(dyf[lo:hi], xf[lo:hi], mh, ml, acc)
        part[u, 0] = d
        part[u, 1] = x
    db = np.empty(N * C, dtype=np.float64)
    ds = np.empty(N * C, dtype=np.float64)
    for nc in range(N * C):
        Sd = 0.0
        Sx = 0.0
        for u in range(nc * per_channel, (nc + 1) * per_channel):
            Sd += part[u, 0]
            Sx += part[u, 1]
        db[nc] = Sd
        ds[nc] = Sx
    coef = np.empty((N * C, 3), dtype=np.float64)
    for s in range(N * G):
        n = s // G
        g = s - n * G
        _group_dx_coefs(rstd[s], gamma, g, D, A * D * B, db, ds, n * C, coef[n * C + g * D :])
    param_grads(db, ds, rstd, N, G, C, dgamma, dbeta)
    for uu in prange(units):
        n, c, a, p = _run_unit(np.int64(uu), C, A, P)
        mu = mean[n * G + c // D]
        mh = rounded(mu, xf)
        ml = rounded(mu - np.float64(mh), xf)
        nc = n * C + c
        c1 = rounded(coef[nc, 0], xf)
        c2 = rounded(coef[nc, 1], xf)
        c3 = rounded(coef[nc, 2], xf)
        start = p * PIECE
        base = ((n * A + a) * C + c) * B
        _dx_run(dyf, xf, dxf, base + start, min(PIECE, B - start), c1, c2, c3, mh, ml, stream)
        store_fence(stream)
