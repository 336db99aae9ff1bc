"""Row family: channels-last-like data, where a group's run `L = D*B` is too short to vectorise.

The canonical view is a flat, C-contiguous array indexed as `(N, A, R)` with rows of
`R = C*B` values holding every channel. Each block of rows accumulates *per column* (vectorised
over the whole row) in the input dtype, shifted by the sample's first row; blocks are widened to
float64 and merged in block order, then columns are combined into groups with the parallel-axis
formula in float64. The output uses per-column coefficient vectors, so the last pass is a pure
vector FMA over the row whatever the group size.

Two parallel strategies compute the same bits: with many samples each thread takes whole
samples (`*_samples_par`: one launch, no barrier between a sample's passes); with few, every
sample's blocks are spread over all threads, a wave of samples at a time (`forward_par`,
`backward_par`).

A block never holds more than `MAX_BLOCK_ROWS` rows (float32 accumulation error stays at
~1e-7) and its size depends on the shape only, so results do not depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import prange, types
from numba.extending import overload

from numba_gn._jit import inline, kernel
from numba_gn.kernels._borrow import borrowed, keep
from numba_gn.kernels._common import (
    compute_empty,
    compute_zeros,
    load,
    param_grads,
    rounded,
)
from numba_gn.kernels._stream import affine_grad, store_fence
from numba_gn.kernels.epilogue import (
    beta_of,
    grad_source,
    gradients_into,
    has,
    output,
    stream_buffer,
)

#: Most rows a block accumulates in the input dtype before widening to float64.
MAX_BLOCK_ROWS = 64
#: Target size of a block in elements (its partial sums are 2*R float64 values).
BLOCK_ELEMENTS = 16384


@inline
def block_rows(A, R):
    """Rows per block: about `BLOCK_ELEMENTS`, at most `MAX_BLOCK_ROWS`, at least 1."""
    return max(1, min(MAX_BLOCK_ROWS, BLOCK_ELEMENTS // max(R, 1), A))


@inline
def _row(flat, i, R):
    """Row `i` of a flat array of rows of length `R` (a view)."""
    return flat[i * R : (i + 1) * R]


@inline
def _block_sums(xf, u, nb, A, R, rpb, part):
    n = u // nb
    b = u - n * nb
    r0 = b * rpb
    r1 = min(A, r0 + rpb)
    K = xf[n * A * R : (n * A + 1) * R]
    owner = (compute_zeros(xf, R), compute_zeros(xf, R))
    s, q = borrowed(owner)
    # Four rows per sweep over the accumulators: a quarter of the accumulator traffic.
    r = r0
    while r + 4 <= r1:
        x0 = _row(xf, n * A + r, R)
        x1 = _row(xf, n * A + r + 1, R)
        x2 = _row(xf, n * A + r + 2, R)
        x3 = _row(xf, n * A + r + 3, R)
        for j in range(R):
            k = load(K[j])
            v0 = load(x0[j]) - k
            v1 = load(x1[j]) - k
            v2 = load(x2[j]) - k
            v3 = load(x3[j]) - k
            s[j] += (v0 + v1) + (v2 + v3)
            q[j] += (v0 * v0 + v1 * v1) + (v2 * v2 + v3 * v3)
        r += 4
    for rr in range(r, r1):
        row = _row(xf, n * A + rr, R)
        for j in range(R):
            v = load(row[j]) - load(K[j])
            s[j] += v
            q[j] += v * v
    for j in range(R):
        part[u, 0, j] = s[j]
        part[u, 1, j] = q[j]
    keep(owner)


@inline
def _sample_totals(part, n, nb, R):
    """Per-column float64 totals of sample `n`'s block sums, added in block order."""
    first = np.zeros(R, dtype=np.float64)
    second = np.zeros(R, dtype=np.float64)
    for b in range(n * nb, (n + 1) * nb):
        for j in range(R):
            first[j] += part[b, 0, j]
            second[j] += part[b, 1, j]
    return first, second


@inline
def _merge_sample(xf, n, nb, G, A, C, B, gamma, beta, eps, part, mean, rstd, coef):
    """Stats of sample `n` from its block sums, then its per-column output coefficients.

    Written as loops over columns or over groups, each with one job: with one channel per
    group (instance normalisation, Keras's `groups=-1`) a loop per group that does everything
    ran one division chain at a time. The divisions and square roots now run vectorised, and
    the operations on each value, hence the bits, are what they were.
    """
    R = C * B
    D = C // G
    L = D * B
    k0 = n * A * R
    S, Q = _sample_totals(part, n, nb, R)
    # Per column: its mean (the shift plus the mean of the shifted values) and its sum of
    # squared deviations from that mean.
    for j in range(R):
        s = S[j]
        Q[j] = Q[j] - s * s / A
        S[j] = np.float64(load(xf[k0 + j])) + s / A
    mu_n = mean[n * G : (n + 1) * G]
    r_n = rstd[n * G : (n + 1) * G]
    # The group mean as its first column's mean plus the mean of the columns' differences from
    # it: summed directly, thousands of column means near a large offset lost about ten ulps of
    # the offset (float64 at offset 1e4, spread 1e-2: 2e-9 of the spread in y).
    for g in range(G):
        shift = S[g * L]
        total = 0.0
        for j in range(g * L, (g + 1) * L):
            total += S[j] - shift
        mu_n[g] = total
    for g in range(G):
        mu_n[g] = S[g * L] + mu_n[g] / L
    # Parallel-axis formula: the columns' squared deviations plus their means' spread.
    for g in range(G):
        mu = mu_n[g]
        m2 = 0.0
        for j in range(g * L, (g + 1) * L):
            dm = S[j] - mu
            m2 += Q[j] + A * dm * dm
        r_n[g] = m2  # the group's sum of squares, turned into rstd below
    for g in range(G):
        var = r_n[g] / (A * L)
        var = 0.0 if var < 0.0 else var  # NaN stays NaN
        r_n[g] = 1.0 / np.sqrt(var + eps)
    for g in range(G):
        _group_out_coefs(xf, mu_n[g], r_n[g], g, D, B, gamma, beta, coef[n])


@inline
def _group_out_coefs(xf, mu, r, g, D, B, gamma, beta, coef):
    """Group `g`'s per-column `(m_hi, a, b')` of `y = (x - m_hi)*a + b'` into `coef` (3, R)."""
    mh = rounded(mu, xf)
    ml = mu - np.float64(mh)
    # Channel by channel, not `c = j // B` per column: an integer division per column
    # cost more than the rest of the merge.
    for c in range(g * D, (g + 1) * D):
        a = r * gamma[c]
        b = beta[c] - ml * a
        for j in range(c * B, (c + 1) * B):
            coef[0, j] = mh
            coef[1, j] = a
            coef[2, j] = b


@inline
def _apply_block(xf, yf, u, nb, A, R, rpb, coef, stream, epi):
    n = u // nb
    b = u - n * nb
    r0 = b * rpb
    r1 = min(A, r0 + rpb)
    buf = stream_buffer(xf, stream, epi)
    lo = (n * A + r0) * R
    output(yf, xf, lo, r1 - r0, R, coef[n, 0], coef[n, 1], coef[n, 2], 0, stream, epi, buf)
    store_fence(stream)


@inline
def _forward_scratch(xf, N, nb, R):
    """The forward kernels' arrays: block sums and per-column output coefficients."""
    return np.empty((N * nb, 2, R), dtype=np.float64), compute_empty(xf, (N, 3, R))


@kernel(parallel=True)
def forward_par(xf, yf, N, G, A, C, B, gamma, beta, eps, mean, rstd, wave, stream, epi):
    """Forward pass, `wave` samples at a time: block sums, per-sample merge, output.

    Each wave's second read of x (the output pass) comes from the cache when the wave fits in
    it; waves change the order of work only, never the arithmetic.
    """
    xf, yf, gamma, beta, mean, rstd, epi = borrowed((xf, yf, gamma, beta, mean, rstd, epi))
    R = C * B
    rpb = block_rows(A, R)
    nb = (A + rpb - 1) // rpb
    owners = _forward_scratch(xf, N, nb, R)
    part, coef = borrowed(owners)
    for n0 in range(0, N, wave):
        n1 = min(N, n0 + wave)
        for uu in prange(n0 * nb, n1 * nb):
            _block_sums(xf, np.int64(uu), nb, A, R, rpb, part)
        for nn in prange(n0, n1):
            n = np.int64(nn)
            _merge_sample(xf, n, nb, G, A, C, B, gamma, beta, eps, part, mean, rstd, coef)
        for uu in prange(n0 * nb, n1 * nb):
            _apply_block(xf, yf, np.int64(uu), nb, A, R, rpb, coef, stream, epi)
    keep(owners)


@kernel
def forward_ser(xf, yf, N, G, A, C, B, gamma, beta, eps, mean, rstd, stream, epi):
    """The three forward phases in one serial call (small inputs, forked children)."""
    xf, yf, gamma, beta, mean, rstd, epi = borrowed((xf, yf, gamma, beta, mean, rstd, epi))
    R = C * B
    rpb = block_rows(A, R)
    nb = (A + rpb - 1) // rpb
    owners = _forward_scratch(xf, N, nb, R)
    part, coef = borrowed(owners)
    for u in range(N * nb):
        _block_sums(xf, u, nb, A, R, rpb, part)
    for n in range(N):
        _merge_sample(xf, n, nb, G, A, C, B, gamma, beta, eps, part, mean, rstd, coef)
    for u in range(N * nb):
        _apply_block(xf, yf, u, nb, A, R, rpb, coef, stream, epi)
    keep(owners)


# ----------------------------------------------------------------------------------------------
# backward


@inline
def _centres(xf, mean, n, G, C, B, cen):
    """Per-column `(m_hi, m_lo)` of sample `n` in x's dtype, into `cen` of shape (2, R)."""
    L = (C // G) * B
    for g in range(G):
        mu = mean[n * G + g]
        mh = rounded(mu, xf)
        lo = mu - np.float64(mh)
        for j in range(g * L, (g + 1) * L):
            cen[0, j] = mh
            cen[1, j] = lo


def _sample_out_coefs(xf, n, G, C, B, gamma, mean, rstd, epi, ocoef):
    """With an epilogue: sample `n`'s forward output coefficients (to recompute `z`).

    Without one this compiles to nothing. Behind `if has(epi):` Numba would still type and
    lower the loop in every plain backward kernel (in a parallel one, inside its parallel
    region), which made those kernels noticeably slower to compile.
    """
    if epi is not None:
        _fused_out_coefs(xf, n, G, C, B, gamma, mean, rstd, epi, ocoef)


@inline
def _fused_out_coefs(xf, n, G, C, B, gamma, mean, rstd, epi, ocoef):
    D = C // G
    beta = beta_of(epi, gamma)
    for g in range(G):
        _group_out_coefs(xf, mean[n * G + g], rstd[n * G + g], g, D, B, gamma, beta, ocoef[n])


@overload(_sample_out_coefs, inline="always")
def _sample_out_coefs_impl(xf, n, G, C, B, gamma, mean, rstd, epi, ocoef):
    if isinstance(epi, types.NoneType):
        return lambda xf, n, G, C, B, gamma, mean, rstd, epi, ocoef: None

    def fused(xf, n, G, C, B, gamma, mean, rstd, epi, ocoef):
        _fused_out_coefs(xf, n, G, C, B, gamma, mean, rstd, epi, ocoef)

    return fused


@inline
def _dz_block(epi, dyf, xf, u, nb, A, R, rpb, ocoef):
    """With an epilogue: `dz = dy * act'(z)` over block `u`'s rows."""
    if has(epi):
        n = u // nb
        b = u - n * nb
        r0 = b * rpb
        rows = min(A, r0 + rpb) - r0
        lo = (n * A + r0) * R
        gradients_into(epi, dyf, xf, lo, rows, R, ocoef[n, 0], ocoef[n, 1], ocoef[n, 2], 0)


@inline
def _bwd_block_sums(dyf, xf, u, nb, A, R, rpb, cen, part):
    n = u // nb
    b = u - n * nb
    r0 = b * rpb
    r1 = min(A, r0 + rpb)
    mh = cen[n, 0]
    ml = cen[n, 1]
    owner = (compute_zeros(xf, R), compute_zeros(xf, R))
    sd, sx = borrowed(owner)
    r = r0
    # Four rows per sweep over the accumulators and centres: their loads and stores, not the
    # data, bounded this loop with two.
    while r + 4 <= r1:
        g0 = _row(dyf, n * A + r, R)
        g1 = _row(dyf, n * A + r + 1, R)
        g2 = _row(dyf, n * A + r + 2, R)
        g3 = _row(dyf, n * A + r + 3, R)
        x0 = _row(xf, n * A + r, R)
        x1 = _row(xf, n * A + r + 1, R)
        x2 = _row(xf, n * A + r + 2, R)
        x3 = _row(xf, n * A + r + 3, R)
        for j in range(R):
            m = mh[j]
            lo = ml[j]
            a0 = load(g0[j])
            a1 = load(g1[j])
            a2 = load(g2[j])
            a3 = load(g3[j])
            sd[j] += (a0 + a1) + (a2 + a3)
            sx[j] += (a0 * ((load(x0[j]) - m) - lo) + a1 * ((load(x1[j]) - m) - lo)) + (
                a2 * ((load(x2[j]) - m) - lo) + a3 * ((load(x3[j]) - m) - lo)
            )
        r += 4
    for rr in range(r, r1):
        dys = _row(dyf, n * A + rr, R)
        xs = _row(xf, n * A + rr, R)
        for j in range(R):
            g = load(dys[j])
            sd[j] += g
            sx[j] += g * ((load(xs[j]) - mh[j]) - ml[j])
    for j in range(R):
        part[u, 0, j] = sd[j]
        part[u, 1, j] = sx[j]
    keep(owner)


@inline
def _bwd_merge_sample(n, nb, G, A, C, B, gamma, rstd, part, db, ds, coef):
    """Per-channel sums of sample `n` and its per-column dx coefficients (c1, c2, c3)."""
    R = C * B
    D = C // G
    M = A * D * B
    Sd, Sx = _sample_totals(part, n, nb, R)
    for c in range(C):
        d_sum = 0.0
        x_sum = 0.0
        for j in range(c * B, (c + 1) * B):
            d_sum += Sd[j]
            x_sum += Sx[j]
        db[n * C + c] = d_sum
        ds[n * C + c] = x_sum
    for g in range(G):
        r = rstd[n * G + g]
        sum_gdb = 0.0
        sum_gds = 0.0
        for c in range(g * D, (g + 1) * D):
            sum_gdb += gamma[c] * db[n * C + c]
            sum_gds += gamma[c] * ds[n * C + c]
        c2 = -r * r * r * sum_gds / M
        c3 = -r * sum_gdb / M
        for c in range(g * D, (g + 1) * D):
            c1 = r * gamma[c]
            for j in range(c * B, (c + 1) * B):
                coef[n, 0, j] = c1
                coef[n, 1, j] = c2
                coef[n, 2, j] = c3


@inline
def _bwd_apply_block(dyf, xf, dxf, u, nb, A, R, rpb, cen, coef, stream):
    n = u // nb
    b = u - n * nb
    r0 = b * rpb
    r1 = min(A, r0 + rpb)
    mh = cen[n, 0]
    ml = cen[n, 1]
    for r in range(r0, r1):
        lo = (n * A + r) * R
        affine_grad(dxf, dyf, xf, lo, R, mh, ml, coef[n, 0], coef[n, 1], coef[n, 2], 0, stream)
    store_fence(stream)


@inline
def _backward_scratch(xf, N, nb, C, R, epi):
    """The backward kernels' arrays: centres, block sums, dx and output coefficients, sums."""
    return (
        compute_empty(xf, (N, 2, R)),
        np.empty((N * nb, 2, R), dtype=np.float64),
        compute_empty(xf, (N, 3, R)),
        compute_empty(xf, (N if has(epi) else 0, 3, R)),
        np.empty(N * C, dtype=np.float64),
        np.empty(N * C, dtype=np.float64),
    )


@kernel(parallel=True)
def backward_par(
    dyf, xf, dxf, N, G, A, C, B, gamma, mean, rstd, dgamma, dbeta, wave, stream, epi
):
    """Backward pass, `wave` samples at a time (see `forward_par`), then dgamma/dbeta.

    With an epilogue, each block first turns its `dy` into `dz` (see `numba_gn.kernels.
    epilogue`), which the rest reads instead.
    """
    dyf, xf, dxf, gamma, mean, rstd, dgamma, dbeta, epi = borrowed(
        (dyf, xf, dxf, gamma, mean, rstd, dgamma, dbeta, epi)
    )
    R = C * B
    rpb = block_rows(A, R)
    nb = (A + rpb - 1) // rpb
    owners = _backward_scratch(xf, N, nb, C, R, epi)
    cen, part, coef, ocoef, db, ds = borrowed(owners)
    gf = grad_source(dyf, epi)
    for n0 in range(0, N, wave):
        n1 = min(N, n0 + wave)
        for nn in prange(n0, n1):
            n = np.int64(nn)
            _centres(xf, mean, n, G, C, B, cen[n])
            _sample_out_coefs(xf, n, G, C, B, gamma, mean, rstd, epi, ocoef)
        for uu in prange(n0 * nb, n1 * nb):
            _dz_block(epi, dyf, xf, np.int64(uu), nb, A, R, rpb, ocoef)
            _bwd_block_sums(gf, xf, np.int64(uu), nb, A, R, rpb, cen, part)
        for nn in prange(n0, n1):
            _bwd_merge_sample(np.int64(nn), nb, G, A, C, B, gamma, rstd, part, db, ds, coef)
        for uu in prange(n0 * nb, n1 * nb):
            _bwd_apply_block(gf, xf, dxf, np.int64(uu), nb, A, R, rpb, cen, coef, stream)
    param_grads(db, ds, rstd, N, G, C, dgamma, dbeta)
    keep(owners)


@kernel
def backward_ser(dyf, xf, dxf, N, G, A, C, B, gamma, mean, rstd, dgamma, dbeta, stream, epi):
    """The three backward phases in one serial call."""
    dyf, xf, dxf, gamma, mean, rstd, dgamma, dbeta, epi = borrowed(
        (dyf, xf, dxf, gamma, mean, rstd, dgamma, dbeta, epi)
    )
    R = C * B
    rpb = block_rows(A, R)
    nb = (A + rpb - 1) // rpb
    owners = _backward_scratch(xf, N, nb, C, R, epi)
    cen, part, coef, ocoef, db, ds = borrowed(owners)
    gf = grad_source(dyf, epi)
    for n in range(N):
        _centres(xf, mean, n, G, C, B, cen[n])
        _sample_out_coefs(xf, n, G, C, B, gamma, mean, rstd, epi, ocoef)
    for u in range(N * nb):
        _dz_block(epi, dyf, xf, u, nb, A, R, rpb, ocoef)
        _bwd_block_sums(gf, xf, u, nb, A, R, rpb, cen, part)
    for n in range(N):
        _bwd_merge_sample(n, nb, G, A, C, B, gamma, rstd, part, db, ds, coef)
    param_grads(db, ds, rstd, N, G, C, dgamma, dbeta)
    for u in range(N * nb):
        _bwd_apply_block(gf, xf, dxf, u, nb, A, R, rpb, cen, coef, stream)
    keep(owners)


@kernel(parallel=True)
def forward_samples_par(xf, yf, N, G, A, C, B, gamma, beta, eps, mean, rstd, stream, epi):
    """Forward pass, one whole sample per parallel iteration (many samples: no barriers)."""
    xf, yf, gamma, beta, mean, rstd, epi = borrowed((xf, yf, gamma, beta, mean, rstd, epi))
    R = C * B
    rpb = block_rows(A, R)
    nb = (A + rpb - 1) // rpb
    owners = _forward_scratch(xf, N, nb, R)
    part, coef = borrowed(owners)
    for nn in prange(N):
        n = np.int64(nn)
        for u in range(n * nb, (n + 1) * nb):
            _block_sums(xf, u, nb, A, R, rpb, part)
        _merge_sample(xf, n, nb, G, A, C, B, gamma, beta, eps, part, mean, rstd, coef)
        for u in range(n * nb, (n + 1) * nb):
            _apply_block(xf, yf, u, nb, A, R, rpb, coef, stream, epi)
    keep(owners)


@kernel(parallel=True)
def backward_samples_par(
    dyf, xf, dxf, N, G, A, C, B, gamma, mean, rstd, dgamma, dbeta, stream, epi
):
    """Backward pass, one whole sample per parallel iteration; then dgamma/dbeta."""
    dyf, xf, dxf, gamma, mean, rstd, dgamma, dbeta, epi = borrowed(
        (dyf, xf, dxf, gamma, mean, rstd, dgamma, dbeta, epi)
    )
    R = C * B
    rpb = block_rows(A, R)
    nb = (A + rpb - 1) // rpb
    owners = _backward_scratch(xf, N, nb, C, R, epi)
    cen, part, coef, ocoef, db, ds = borrowed(owners)
    gf = grad_source(dyf, epi)
    for nn in prange(N):
        n = np.int64(nn)
        _centres(xf, mean, n, G, C, B, cen[n])
        _sample_out_coefs(xf, n, G, C, B, gamma, mean, rstd, epi, ocoef)
        for u in range(n * nb, (n + 1) * nb):
            _dz_block(epi, dyf, xf, u, nb, A, R, rpb, ocoef)
            _bwd_block_sums(gf, xf, u, nb, A, R, rpb, cen, part)
        _bwd_merge_sample(n, nb, G, A, C, B, gamma, rstd, part, db, ds, coef)
        for u in range(n * nb, (n + 1) * nb):
            _bwd_apply_block(gf, xf, dxf, u, nb, A, R, rpb, cen, coef, stream)
    param_grads(db, ds, rstd, N, G, C, dgamma, dbeta)
    keep(owners)
