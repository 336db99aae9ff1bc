"""Slab family: one (sample, group) is `A` contiguous segments of `L = D*B` elements.

The canonical view is a flat, C-contiguous array indexed as `(N, A, C, B)`: `A` is the product
of the axes before the channel axis, `B` the product of those after it. Channels-first data
(`A == 1`) gives one contiguous slab per (n, g); data with a channel axis in the middle gives
`A` segments per slab.

Work is cut into *units* of about `PIECE` elements: pieces of at most `PIECE` of a long
segment, or several whole short segments. A slab's statistics are always the sequential float64
sum of its units' sums in order, whether the units were summed by one thread (the fused kernels,
one slab per `prange` iteration, while the slab is hot in L2) or spread over all threads (the
chunked kernels, for few large slabs). So every path and every thread count gives the same bits.
"""

from __future__ import annotations

import numpy as np
from numba import prange, types
from numba.extending import overload

from numba_gn._jit import inline, kernel, subroutine
from numba_gn.kernels._borrow import borrowed, keep
from numba_gn.kernels._common import (
    PIECE,
    compute_empty,
    dy_row_sums,
    dy_sums,
    finish_stats,
    load,
    param_grads,
    rounded,
    shifted_sums,
    split_mean,
    store,
)
from numba_gn.kernels._fma import fma
from numba_gn.kernels._stream import affine, affine_grad, store_fence
from numba_gn.kernels.epilogue import (
    beta_of,
    fused_output,
    grad_source,
    gradients_into,
    has,
    stream_buffer,
)

#: Channel runs (`B` contiguous elements of one channel) shorter than this are not written one
#: output call per run: the per-element work would be smaller than the cost of the call.
SHORT_RUN = 64

# ----------------------------------------------------------------------------------------------
# forward helpers


#: Elements whose mean is a slab's shift. The shift only needs to be near the slab's mean (the
#: cancellation left is of order `(mean - K)**2 / var`), and its sum is a chain of dependent
#: float64 additions per slab: over 64 elements it cost about as much as summing a slab of a
#: few hundred.
SHIFT_ELEMENTS = 8


@inline
def _slab_shift(xf, n, g, A, C, B, D):
    """Shift for the slab's shifted sums: the mean of its first few elements, in x's dtype."""
    L = D * B
    if A * L == 0:
        return rounded(0.0, xf)
    off = (n * A * C + g * D) * B
    m = min(SHIFT_ELEMENTS, L)
    t = 0.0
    for i in range(off, off + m):
        t += load(xf[i])
    return rounded(t / m, xf)


# Units: how the `A` segments of `L` elements of a slab (or of a channel's runs) are cut into
# the pieces whose sums are merged in float64. Long segments are cut into pieces of at most PIECE
# elements; short ones are grouped, `PIECE // L` whole segments to a unit, so that the fixed
# cost of a unit (clearing and reducing the lane accumulators) is paid once per ~PIECE elements
# rather than once per segment (a channel axis in the middle has segments of a few dozen).


@inline
def _unit_layout(L, A):
    """`(segments per unit, pieces per segment, units)` for `A` segments of `L`."""
    if L >= PIECE:
        P = (L + PIECE - 1) // PIECE
        return 1, P, A * P
    per = PIECE // max(L, 1)
    return per, 1, (A + per - 1) // per


@inline
def _unit_span(u, L, A, per, P):
    """Unit `u`: segments `[a0, a1)` and elements `[start, stop)` of each of them."""
    if L >= PIECE:
        a = u // P
        start = (u - a * P) * PIECE
        return a, a + 1, start, min(L, start + PIECE)
    a0 = u * per
    return a0, min(A, a0 + per), 0, L


@subroutine
def _segments_sums(xf, first, stride, a0, a1, L, K, acc):
    """Shifted sums of whole segments `a0..a1-1` in one set of lane accumulators."""
    lanes = acc.shape[1]
    nrows = L // lanes
    S = 0.0
    Q = 0.0
    if nrows == 0:  # short segments: float64 directly, without touching the lanes
        for a in range(a0, a1):
            for i in range(first + a * stride, first + a * stride + L):
                v = np.float64(load(xf[i]) - K)
                S += v
                Q += v * v
        return S, Q
    s = acc[0]
    q = acc[1]
    s[:] = 0
    q[:] = 0
    for a in range(a0, a1):
        base = first + a * stride
        body = xf[base : base + nrows * lanes].reshape((nrows, lanes))
        for r in range(nrows):
            for k in range(lanes):
                v = load(body[r, k]) - K
                s[k] += v
                q[k] += v * v
        for i in range(base + nrows * lanes, base + L):
            v = np.float64(load(xf[i]) - K)
            S += v
            Q += v * v
    for k in range(lanes):
        S += s[k]
        Q += q[k]
    return S, Q


@inline
def _unit_sums(xf, first, stride, u, L, A, per, P, K, acc):
    """Shifted sums of unit `u` of the segments that start at `first + a*stride`."""
    a0, a1, start, stop = _unit_span(u, L, A, per, P)
    if L >= PIECE or (a1 - a0 == 1 and L >= acc.shape[1]):
        base = first + a0 * stride
        return shifted_sums(xf[base + start : base + stop], K, acc)
    # Several segments, or one shorter than the lanes (indexed in place: slicing a few
    # elements costs more than summing them).
    return _segments_sums(xf, first, stride, a0, a1, L, K, acc)


@inline
def _slab_sums(xf, n, g, A, C, B, D, K, acc):
    """Shifted sums of a whole slab, units merged in order (`acc`: lane scratch)."""
    L = D * B
    per, P, U = _unit_layout(L, A)
    first = (n * A * C + g * D) * B
    S = 0.0
    Q = 0.0
    for u in range(U):
        s, q = _unit_sums(xf, first, C * B, u, L, A, per, P, K, acc)
        S += s
        Q += q
    return S, Q


@inline
def _slab_coefs(mu, r, gamma, beta, g, D, coef, xf):
    """Per-channel `(a, b')` of `y = (x - m_hi)*a + b'` into `coef[:D]`; returns m_hi."""
    mh = rounded(mu, xf)
    ml = mu - np.float64(mh)
    for d in range(D):
        c = g * D + d
        a = r * gamma[c]
        coef[d, 0] = a
        coef[d, 1] = beta[c] - ml * a
    return mh


def _slab_dz(epi, dyf, xf, n, g, A, C, B, D, mu, r, gamma):
    """With an epilogue: `dz = dy * act'(z)` over slab `(n, g)`, `z` as the forward made it.

    Without one this compiles to nothing (as `numba_gn.kernels.rows._sample_out_coefs`).
    """
    if epi is not None:
        _fused_slab_dz(epi, dyf, xf, n, g, A, C, B, D, mu, r, gamma)


@inline
def _fused_slab_dz(epi, dyf, xf, n, g, A, C, B, D, mu, r, gamma):
    L = D * B
    coef = compute_empty(xf, (D, 2))
    mh = _slab_coefs(mu, r, gamma, beta_of(epi, gamma), g, D, coef, xf)
    if B < SHORT_RUN:  # per-element coefficients, one call per segment
        spread = compute_empty(xf, (3, L))
        _spread(coef, 0, B, 0, L, spread[0])
        _spread(coef, 1, B, 0, L, spread[1])
        spread[2, :] = mh
        for a in range(A):
            base = ((n * A + a) * C + g * D) * B
            gradients_into(epi, dyf, xf, base, 1, L, spread[2], spread[0], spread[1], 0)
    else:  # a segment is D runs of B: rows with per-row coefficients, one call
        for a in range(A):
            base = ((n * A + a) * C + g * D) * B
            gradients_into(epi, dyf, xf, base, D, B, mh, coef[:, 0:1], coef[:, 1:2], 0)


@overload(_slab_dz, inline="always")
def _slab_dz_impl(epi, dyf, xf, n, g, A, C, B, D, mu, r, gamma):
    if isinstance(epi, types.NoneType):
        return lambda epi, dyf, xf, n, g, A, C, B, D, mu, r, gamma: None

    def fused(epi, dyf, xf, n, g, A, C, B, D, mu, r, gamma):
        _fused_slab_dz(epi, dyf, xf, n, g, A, C, B, D, mu, r, gamma)

    return fused


@subroutine
def _spread(coef, k, B, start, length, out):
    """`out[j] = coef[(start + j) // B, k]`: per-channel coefficients laid out per element."""
    if B == 1:  # channels-last: a plain (strided) copy
        for j in range(length):
            out[j] = coef[start + j, k]
        return
    d = start // B  # one division, then whole channel runs
    j = 0
    while j < length:
        stop = min(length, (d + 1) * B - start)
        v = coef[d, k]
        for t in range(j, stop):
            out[t] = v
        j = stop
        d += 1


@inline
def _normalize_piece(xf, yf, base, start, length, B, coef, mh, stream, scratch, epi, buf):
    """Normalise elements `[start, start+length)` of the segment that begins at `base`.

    Long channel runs take one output call each; short ones (`B < SHORT_RUN`, down to one
    element per channel in channels-last data) are first spread per element into `scratch`
    (3 x `PIECE` values), so the whole piece is one call with the same arithmetic.

    With an epilogue the coefficients take two forms only, per element (spread) or per run
    (rows), since each form compiles the epilogue's loops again; code for plain GroupNorm
    calls `affine` itself.
    """
    if B < SHORT_RUN:
        _spread(coef, 0, B, start, length, scratch[0])
        _spread(coef, 1, B, start, length, scratch[1])
        if has(epi):
            scratch[2, :length] = mh
            m = scratch[2, :length]
            fused_output(
                yf, xf, base + start, 1, length, m, scratch[0], scratch[1], 0, stream, epi, buf
            )
        else:
            affine(yf, xf, base + start, length, mh, scratch[0], scratch[1], 0, stream)
        return
    i = start
    end = start + length
    if has(epi):  # whole runs in one call (the fused loops are calls, not inlined)
        d = i // B
        if i > d * B:  # the end of a run
            stop = min(end, (d + 1) * B)
            a_rows = coef[d : d + 1, 0:1]
            b_rows = coef[d : d + 1, 1:2]
            fused_output(yf, xf, base + i, 1, stop - i, mh, a_rows, b_rows, 0, stream, epi, buf)
            i = stop
        k = (end - i) // B
        if k > 0:
            d = i // B
            a_rows = coef[d : d + k, 0:1]
            b_rows = coef[d : d + k, 1:2]
            fused_output(yf, xf, base + i, k, B, mh, a_rows, b_rows, 0, stream, epi, buf)
            i += k * B
        if i < end:  # the start of a run
            d = i // B
            a_rows = coef[d : d + 1, 0:1]
            b_rows = coef[d : d + 1, 1:2]
            fused_output(yf, xf, base + i, 1, end - i, mh, a_rows, b_rows, 0, stream, epi, buf)
        return
    while i < end:
        d = i // B
        stop = min(end, (d + 1) * B)
        affine(yf, xf, base + i, stop - i, mh, coef[d, 0], coef[d, 1], 0, stream)
        i = stop


@inline
def _slab_scratch(xf, C, G, B, lanes):
    """Scratch of `_forward_one_slab`: lane accumulators, per-channel and spread coefficients.

    Made once per kernel call (or parallel iteration) and reused by each slab: on short slabs
    three allocations per slab cost as much as the slab's arithmetic.
    """
    D = C // G
    # Only short channel runs use the spread coefficients; long ones need no scratch.
    spread = compute_empty(xf, (3, min(D * B, PIECE) if B < SHORT_RUN else 0))
    return compute_empty(xf, (2, lanes)), compute_empty(xf, (D, 2)), spread


@inline
def _forward_one_slab(xf, yf, s, G, A, C, B, gamma, beta, eps, work, mean, rstd, stream, epi):
    D = C // G
    L = D * B
    n = s // G
    g = s - n * G
    acc, coef, scratch = work
    K = _slab_shift(xf, n, g, A, C, B, D)
    S, Q = _slab_sums(xf, n, g, A, C, B, D, K, acc)
    mu, r = finish_stats(K, S, Q, A * L, eps)
    mean[s] = mu
    rstd[s] = r
    mh = _slab_coefs(mu, r, gamma, beta, g, D, coef, xf)
    buf = stream_buffer(xf, stream, epi)
    if B < SHORT_RUN and L <= PIECE:  # spread the coefficients once for every segment
        _spread(coef, 0, B, 0, L, scratch[0])
        _spread(coef, 1, B, 0, L, scratch[1])
        if has(epi):
            scratch[2, :] = mh
        for a in range(A):
            base = ((n * A + a) * C + g * D) * B
            if has(epi):  # per-element coefficients only (see `_normalize_piece`)
                fused_output(
                    yf, xf, base, 1, L, scratch[2], scratch[0], scratch[1], 0, stream, epi, buf
                )
            else:
                affine(yf, xf, base, L, mh, scratch[0], scratch[1], 0, stream)
    else:
        for a in range(A):
            base = ((n * A + a) * C + g * D) * B
            for start in range(0, L, PIECE):
                length = min(PIECE, L - start)
                _normalize_piece(
                    xf, yf, base, start, length, B, coef, mh, stream, scratch, epi, buf
                )
    store_fence(stream)


@kernel(parallel=True)
def forward_fused_par(xf, yf, N, G, A, C, B, gamma, beta, eps, lanes, mean, rstd, stream, epi):
    """Forward pass, one slab per parallel iteration (statistics then output, slab hot in L2)."""
    xf, yf, gamma, beta, mean, rstd, epi = borrowed((xf, yf, gamma, beta, mean, rstd, epi))
    for ss in prange(N * G):
        s = np.int64(ss)
        owner = _slab_scratch(xf, C, G, B, lanes)
        work = borrowed(owner)
        _forward_one_slab(xf, yf, s, G, A, C, B, gamma, beta, eps, work, mean, rstd, stream, epi)
        keep(owner)


@kernel
def forward_fused_ser(xf, yf, N, G, A, C, B, gamma, beta, eps, lanes, mean, rstd, stream, epi):
    """Serial twin of `forward_fused_par` (small inputs, forked children)."""
    xf, yf, gamma, beta, mean, rstd, epi = borrowed((xf, yf, gamma, beta, mean, rstd, epi))
    owner = _slab_scratch(xf, C, G, B, lanes)
    work = borrowed(owner)
    for s in range(N * G):
        _forward_one_slab(xf, yf, s, G, A, C, B, gamma, beta, eps, work, mean, rstd, stream, epi)
    keep(owner)


# chunked forward: pieces of every slab spread over all threads (few, large slabs)


@kernel(parallel=True)
def forward_chunked_par(
    xf, yf, N, G, A, C, B, gamma, beta, eps, lanes, mean, rstd, stream, epi
):
    """Forward pass with every slab's pieces spread over all threads (few, large slabs).

    Three phases: shifted sums of every unit (parallel), a merge per slab in unit order
    (serial, tiny), the output of every unit (parallel, same units so the same cores).
    """
    xf, yf, gamma, beta, mean, rstd, epi = borrowed((xf, yf, gamma, beta, mean, rstd, epi))
    D = C // G
    L = D * B
    per, P, U = _unit_layout(L, A)
    units = N * G * U
    owners = (np.empty((units, 2), dtype=np.float64), compute_empty(xf, (N * C, 2)))
    part, coef = borrowed(owners)
    for uu in prange(units):
        u = np.int64(uu)
        s = u // U
        n = s // G
        g = s - n * G
        K = _slab_shift(xf, n, g, A, C, B, D)
        acc_owner = compute_empty(xf, (2, lanes))
        acc = borrowed(acc_owner)
        first = (n * A * C + g * D) * B
        sums = _unit_sums(xf, first, C * B, u - s * U, L, A, per, P, K, acc)
        part[u, 0] = sums[0]
        part[u, 1] = sums[1]
        keep(acc_owner)
    mhs = compute_empty(xf, N * G)
    for s in range(N * G):
        n = s // G
        g = s - n * G
        K = _slab_shift(xf, n, g, A, C, B, D)
        S = 0.0
        Q = 0.0
        for u in range(s * U, (s + 1) * U):
            S += part[u, 0]
            Q += part[u, 1]
        mu, r = finish_stats(K, S, Q, A * L, eps)
        mean[s] = mu
        rstd[s] = r
        mhs[s] = _slab_coefs(mu, r, gamma, beta, g, D, coef[n * C + g * D :], xf)
    for uu in prange(units):
        u = np.int64(uu)
        s = u // U
        n = s // G
        g = s - n * G
        a0, a1, start, stop = _unit_span(u - s * U, L, A, per, P)
        coef_g = coef[n * C + g * D :]
        first = (n * A * C + g * D) * B
        scratch_owner = compute_empty(xf, (3, stop - start if B < SHORT_RUN else 0))
        scratch = borrowed(scratch_owner)
        buf = stream_buffer(xf, stream, epi)
        for a in range(a0, a1):
            base = first + a * C * B
            _normalize_piece(
                xf, yf, base, start, stop - start, B, coef_g, mhs[s], stream, scratch, epi, buf
            )
        store_fence(stream)
        keep(scratch_owner)
    keep(owners)


# ----------------------------------------------------------------------------------------------
# backward: units are pieces of channel runs (n, a, c) of B contiguous elements


@subroutine
def _segments_dy_sums(dyf, xf, first, stride, a0, a1, L, mh, ml, acc):
    """`dy_sums` of whole runs `a0..a1-1` in one set of lane accumulators."""
    lanes = acc.shape[1]
    nrows = L // lanes
    Sd = 0.0
    Sx = 0.0
    if nrows == 0:  # short runs: float64 directly, without touching the lanes
        for a in range(a0, a1):
            for i in range(first + a * stride, first + a * stride + L):
                g = np.float64(load(dyf[i]))
                Sd += g
                Sx += g * np.float64((load(xf[i]) - mh) - ml)
        return Sd, Sx
    sd = acc[0]
    sx = acc[1]
    sd[:] = 0
    sx[:] = 0
    for a in range(a0, a1):
        base = first + a * stride
        dbody = dyf[base : base + nrows * lanes].reshape((nrows, lanes))
        xbody = xf[base : base + nrows * lanes].reshape((nrows, lanes))
        for r in range(nrows):
            for k in range(lanes):
                g = load(dbody[r, k])
                sd[k] += g
                sx[k] += g * ((load(xbody[r, k]) - mh) - ml)
        for i in range(base + nrows * lanes, base + L):
            g = np.float64(load(dyf[i]))
            Sd += g
            Sx += g * np.float64((load(xf[i]) - mh) - ml)
    for k in range(lanes):
        Sd += sd[k]
        Sx += sx[k]
    return Sd, Sx


@inline
def _unit_dy_sums(dyf, xf, first, stride, u, L, A, per, P, mh, ml, acc):
    """`(sum(dy), sum(dy*(x-mean)))` of unit `u` of the runs at `first + a*stride`."""
    a0, a1, start, stop = _unit_span(u, L, A, per, P)
    if L >= PIECE or (a1 - a0 == 1 and L >= acc.shape[1]):
        lo = first + a0 * stride
        return dy_sums(dyf[lo + start : lo + stop], xf[lo + start : lo + stop], mh, ml, acc)
    return _segments_dy_sums(dyf, xf, first, stride, a0, a1, L, mh, ml, acc)


@inline
def _channel_sums(dyf, xf, n, c, A, C, B, mh, ml, acc, per, P, U):
    """`(sum(dy), sum(dy*(x-mean)))` over one (sample, channel), units merged in order.

    `(per, P, U)` is `_unit_layout` of the runs, computed once by the caller: integer
    divisions per channel cost more than the sums of a short channel.
    """
    first = (n * A * C + c) * B
    Sd = 0.0
    Sx = 0.0
    for u in range(U):
        d, x = _unit_dy_sums(dyf, xf, first, C * B, u, B, A, per, P, mh, ml, acc)
        Sd += d
        Sx += x
    return Sd, Sx


@subroutine
def _short_channel_sums(dyf, xf, n, g, A, C, B, D, mh, ml, per, U, db, ds):
    """`_channel_sums` of a group's channels whose runs are shorter than the lanes.

    The same float64 sums in the same unit order (what `_segments_dy_sums` does with no
    full row), written as one flat loop: through the nested helpers each channel cost about
    60 ns of array reference counting, more than the sums of a one-element run.
    """
    for c in range(g * D, (g + 1) * D):
        Sd = 0.0
        Sx = 0.0
        for u in range(U):
            ud = 0.0
            ux = 0.0
            for a in range(u * per, min(A, (u + 1) * per)):
                lo = ((n * A + a) * C + c) * B
                for i in range(lo, lo + B):
                    gv = np.float64(load(dyf[i]))
                    ud += gv
                    ux += gv * np.float64((load(xf[i]) - mh) - ml)
            Sd += ud
            Sx += ux
        db[n * C + c] = Sd
        ds[n * C + c] = Sx


@inline
def _run_channel_sums(dyf, xf, lo, D, B, mh, ml, acc, db, ds, row):
    """`_channel_sums` of `D` back-to-back runs of `B`, as a channels-first group's channels.

    `B` is a multiple of the lanes and below `PIECE`; the runs start at `lo`. Each channel
    is summed exactly as `dy_sums` sums its run (four rows per lane update, then the lanes
    in order), so the bits are those of every other path; but the group's block is viewed as
    rows of lanes once, rather than a view of each run and of its rows per channel. At
    B = 64 those views and their reference counts cost twice the sums (64K elements in runs
    of 64: 115 us one run at a time, 38 us this way; runs of 256: 38 -> 19 us). Indexing
    the flat arrays instead lost the vectorisation of the lane loop.
    """
    lanes = acc.shape[1]
    nrows = B // lanes
    dbody = dyf[lo : lo + D * B].reshape((D * nrows, lanes))
    xbody = xf[lo : lo + D * B].reshape((D * nrows, lanes))
    sd = acc[0]
    sx = acc[1]
    for d in range(D):
        db[row + d], ds[row + d] = dy_row_sums(
            dbody, xbody, d * nrows, (d + 1) * nrows, mh, ml, sd, sx
        )


@inline
def _whole_runs(A, B, lanes):
    """Whether each channel is one run of rows of lanes below a piece (`_run_channel_sums`)."""
    return A == 1 and B < PIECE and B % lanes == 0


@inline
def _group_dx_coefs(r, gamma, g, D, M, db, ds, row, coef):
    """Coefficients of `dx = c1*dy + c2*(x-mean) + c3` for the channels of one group."""
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
    """The gradient over `[start, start+length)` with one channel's coefficients."""
    if length >= SHORT_RUN:
        affine_grad(dxf, dyf, xf, start, length, mh, ml, c1, c2, c3, 0, stream)
        return
    # A call per short run would cost more than the run; the same fused multiply-adds inline.
    for i in range(start, start + length):
        t = (load(xf[i]) - mh) - ml
        dxf[i] = store(fma(c1, load(dyf[i]), fma(c2, t, c3)), dxf)


@inline
def _backward_scratch(xf, C, G, B, lanes):
    """Scratch of `_backward_one_slab` (as `_slab_scratch`): lanes, dx coefficients, c1."""
    D = C // G
    c1 = compute_empty(xf, D * B if B < SHORT_RUN else 0)
    return compute_empty(xf, (2, lanes)), compute_empty(xf, (D, 3)), c1


@inline
def _backward_one_slab(
    dyf, xf, dxf, s, G, A, C, B, gamma, mean, rstd, work, db, ds, stream, epi
):
    D = C // G
    n = s // G
    g = s - n * G
    mu = mean[s]
    r = rstd[s]
    acc, coef, c1 = work
    lanes = acc.shape[1]
    _slab_dz(epi, dyf, xf, n, g, A, C, B, D, mu, r, gamma)
    gf = grad_source(dyf, epi)  # `dz`, with an epilogue: read as `dy` from here on
    mh, ml = split_mean(mu, xf)
    per, P, U = _unit_layout(B, A)
    if B < lanes:
        _short_channel_sums(gf, xf, n, g, A, C, B, D, mh, ml, per, U, db, ds)
    elif _whole_runs(A, B, lanes):
        row = n * C + g * D
        _run_channel_sums(gf, xf, row * B, D, B, mh, ml, acc, db, ds, row)
    else:
        for d in range(D):
            c = g * D + d
            sd, sx = _channel_sums(gf, xf, n, c, A, C, B, mh, ml, acc, per, P, U)
            db[n * C + c] = sd
            ds[n * C + c] = sx
    _group_dx_coefs(r, gamma, g, D, A * D * B, db, ds, n * C, coef)
    if B < SHORT_RUN:  # c2 and c3 are the group's; only c1 differs per channel: spread it
        L = D * B
        _spread(coef, 0, B, 0, L, c1)
        for a in range(A):
            base = ((n * A + a) * C + g * D) * B
            affine_grad(dxf, gf, xf, base, L, mh, ml, c1, coef[0, 1], coef[0, 2], 0, stream)
    else:
        for d in range(D):
            c = g * D + d
            for a in range(A):
                base = ((n * A + a) * C + c) * B
                c1, c2, c3 = coef[d, 0], coef[d, 1], coef[d, 2]
                _dx_run(gf, xf, dxf, base, B, c1, c2, c3, mh, ml, stream)
    store_fence(stream)


@kernel(parallel=True)
def backward_fused_par(
    dyf, xf, dxf, N, G, A, C, B, gamma, mean, rstd, lanes, dgamma, dbeta, stream, epi
):
    """Backward pass, one slab per parallel iteration; then dgamma/dbeta serially."""
    dyf, xf, dxf, gamma, mean, rstd, dgamma, dbeta, epi = borrowed(
        (dyf, xf, dxf, gamma, mean, rstd, dgamma, dbeta, epi)
    )
    sums = (np.empty(N * C, dtype=np.float64), np.empty(N * C, dtype=np.float64))
    db, ds = borrowed(sums)
    for ss in prange(N * G):
        owner = _backward_scratch(xf, C, G, B, lanes)
        work = borrowed(owner)
        _backward_one_slab(
            dyf, xf, dxf, np.int64(ss), G, A, C, B, gamma, mean, rstd, work, db, ds, stream, epi
        )
        keep(owner)
    param_grads(db, ds, rstd, N, G, C, dgamma, dbeta)
    keep(sums)


@kernel
def backward_fused_ser(
    dyf, xf, dxf, N, G, A, C, B, gamma, mean, rstd, lanes, dgamma, dbeta, stream, epi
):
    """Serial twin of `backward_fused_par`."""
    dyf, xf, dxf, gamma, mean, rstd, dgamma, dbeta, epi = borrowed(
        (dyf, xf, dxf, gamma, mean, rstd, dgamma, dbeta, epi)
    )
    owner = (np.empty(N * C, dtype=np.float64), np.empty(N * C, dtype=np.float64))
    db, ds = borrowed(owner)
    scratch = _backward_scratch(xf, C, G, B, lanes)
    work = borrowed(scratch)
    for s in range(N * G):
        _backward_one_slab(
            dyf, xf, dxf, s, G, A, C, B, gamma, mean, rstd, work, db, ds, stream, epi
        )
    param_grads(db, ds, rstd, N, G, C, dgamma, dbeta)
    keep(owner)
    keep(scratch)


def _units_dz(epi, dyf, xf, units, U, G, A, C, B, D, per, P, gamma, mean, rstd):
    """With an epilogue: `dz` over every unit of `backward_chunked_par` (a parallel loop).

    Without one this compiles to nothing: behind `if has(epi):` Numba would still lower the
    dead parallel loop in every plain kernel.
    """
    if epi is not None:
        _fused_units_dz(epi, dyf, xf, units, U, G, A, C, B, D, per, P, gamma, mean, rstd)


@inline
def _fused_units_dz(epi, dyf, xf, units, U, G, A, C, B, D, per, P, gamma, mean, rstd):
    beta = beta_of(epi, gamma)
    for uu in prange(units):
        u = np.int64(uu)
        nc = u // U
        n = nc // C
        c = nc - n * C
        g = c // D
        coef = compute_empty(xf, (1, 2))
        mh = _slab_coefs(mean[n * G + g], rstd[n * G + g], gamma[c:], beta[c:], 0, 1, coef, xf)
        a0, a1, start, stop = _unit_span(u - nc * U, B, A, per, P)
        first = (n * A * C + c) * B
        for a in range(a0, a1):
            lo = first + a * C * B + start
            a_rows = coef[0:1, 0:1]
            b_rows = coef[0:1, 1:2]
            gradients_into(epi, dyf, xf, lo, 1, stop - start, mh, a_rows, b_rows, 0)


@overload(_units_dz, inline="always")
def _units_dz_impl(epi, dyf, xf, units, U, G, A, C, B, D, per, P, gamma, mean, rstd):
    if isinstance(epi, types.NoneType):
        return lambda epi, dyf, xf, units, U, G, A, C, B, D, per, P, gamma, mean, rstd: None

    def fused(epi, dyf, xf, units, U, G, A, C, B, D, per, P, gamma, mean, rstd):
        _fused_units_dz(epi, dyf, xf, units, U, G, A, C, B, D, per, P, gamma, mean, rstd)

    return fused


@kernel(parallel=True)
def backward_chunked_par(
    dyf, xf, dxf, N, G, A, C, B, gamma, mean, rstd, lanes, dgamma, dbeta, stream, epi
):
    """Backward pass with the pieces of every channel run spread over all threads.

    Phase 1 sums every unit of every channel's runs (parallel); phase 2 merges them per
    (sample, channel) in unit order and computes the dx coefficients, dgamma and dbeta (serial,
    tiny); phase 3 writes dx for every unit (parallel).
    """
    dyf, xf, dxf, gamma, mean, rstd, dgamma, dbeta, epi = borrowed(
        (dyf, xf, dxf, gamma, mean, rstd, dgamma, dbeta, epi)
    )
    D = C // G
    per, P, U = _unit_layout(B, A)
    units = N * C * U
    # phase 0: `dz` for every unit, which phases 1 and 3 then read as `dy`
    _units_dz(epi, dyf, xf, units, U, G, A, C, B, D, per, P, gamma, mean, rstd)
    gf = grad_source(dyf, epi)
    db = np.empty(N * C, dtype=np.float64)
    ds = np.empty(N * C, dtype=np.float64)
    # Channels-first runs shorter than a piece: blocks of a group's channels per work item,
    # summed by `_run_channel_sums` (one unit per channel, so no merge); otherwise units.
    runs = _whole_runs(A, B, lanes)
    if runs:
        sub = max(1, min(D, PIECE // B))
        blocks = (D + sub - 1) // sub
        items = N * G * blocks
    else:
        sub = 1
        blocks = 1
        items = units
    part = np.empty((0 if runs else units, 2), dtype=np.float64)
    for it in prange(items):
        i = np.int64(it)
        acc_owner = compute_empty(xf, (2, lanes))
        acc = borrowed(acc_owner)
        if runs:
            s = i // blocks
            n = s // G
            d0 = (i - s * blocks) * sub
            mh, ml = split_mean(mean[s], xf)
            row = n * C + (s - n * G) * D + d0
            _run_channel_sums(gf, xf, row * B, min(sub, D - d0), B, mh, ml, acc, db, ds, row)
        else:
            nc = i // U
            n = nc // C
            c = nc - n * C
            mh, ml = split_mean(mean[n * G + c // D], xf)
            first = (n * A * C + c) * B
            sums = _unit_dy_sums(gf, xf, first, C * B, i - nc * U, B, A, per, P, mh, ml, acc)
            part[i, 0] = sums[0]
            part[i, 1] = sums[1]
        keep(acc_owner)
    if not runs:
        for nc in range(N * C):
            Sd = 0.0
            Sx = 0.0
            for u in range(nc * U, (nc + 1) * U):
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
        u = np.int64(uu)
        nc = u // U
        n = nc // C
        c = nc - n * C
        mh, ml = split_mean(mean[n * G + c // D], xf)
        c1 = rounded(coef[nc, 0], xf)
        c2 = rounded(coef[nc, 1], xf)
        c3 = rounded(coef[nc, 2], xf)
        a0, a1, start, stop = _unit_span(u - nc * U, B, A, per, P)
        first = (n * A * C + c) * B
        for a in range(a0, a1):
            lo = first + a * C * B + start
            _dx_run(gf, xf, dxf, lo, stop - start, c1, c2, c3, mh, ml, stream)
        store_fence(stream)
