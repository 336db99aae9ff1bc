"""Run the kernels on arrays that are already validated: layout, kernel choice, launches.

Every input is seen through a *canonical view*: a C-contiguous array whose axes are ordered
`(batch, before..., channels..., after...)`, flattened to `(N, A, C, B)`. When the caller's
memory is already in such an order (C-contiguous input, or a channels-last array seen through a
transposed NCHW view) the view costs nothing; otherwise one copy is made.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from typing import NamedTuple

import numba
import numpy as np

from numba_gn import _knobs, _threading, buffers
from numba_gn.kernels import LANES, rows, slab


class Canonical:
    """How an array maps onto the kernels' flat `(N, A, C, B)` view."""

    __slots__ = ("perm", "inverse", "N", "A", "C", "B", "size", "families")

    def __init__(self, x: np.ndarray, axes: tuple[int, ...]):
        self.perm = _memory_order(x, axes)
        identity = self.perm == tuple(range(x.ndim))
        self.inverse = None if identity else tuple(np.argsort(self.perm).tolist())
        self.size = x.size
        self.families: dict[int, str] = {}  # groups -> kernel family, filled by choose()
        shape = x.shape
        ordered = [shape[p] for p in self.perm]
        first = self.perm.index(axes[0])
        k = len(axes)
        self.N = shape[0]
        self.A = math.prod(ordered[1:first])
        self.C = math.prod(ordered[first : first + k])
        self.B = math.prod(ordered[first + k :])

    def view(self, a: np.ndarray) -> np.ndarray:
        """`a` in canonical order as a flat C-contiguous array (a copy only if needed)."""
        if self.inverse is None and a.flags.c_contiguous:  # the common case, without a transpose
            return a.reshape(-1)
        t = a.transpose(self.perm)
        if not t.flags.c_contiguous:
            copy = buffers.empty(t.shape, t.dtype)
            np.copyto(copy, t)
            t = copy
        return t.reshape(-1)

    def is_view(self, a: np.ndarray) -> bool:
        """Whether `view` of `a` shares memory with `a` (no copy)."""
        return a.transpose(self.perm).flags.c_contiguous

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A new array of logical `shape` whose memory is in canonical order.

        Large arrays come from `numba_gn.buffers` (no page faults when a call repeats).
        """
        if self.inverse is None:
            if self.size * dtype.itemsize < buffers.MIN_BYTES:  # small: skip the pool's checks
                return np.empty(shape, dtype=dtype)
            return buffers.empty(shape, dtype)
        ordered = tuple(shape[p] for p in self.perm)
        return buffers.empty(ordered, dtype).transpose(self.inverse)


def _memory_order(x: np.ndarray, axes: tuple[int, ...]) -> tuple[int, ...]:
    """Axis order with batch first and the channel axes adjacent (in the given order).

    Prefer an order in which `x` is already C-contiguous (no copy): its logical order, or the
    order of decreasing strides (a channels-last array seen through a transposed NCHW view).
    Otherwise keep the logical order with the channel axes gathered where the first one is.
    """
    rest = [a for a in range(1, x.ndim) if a not in axes]
    logical = (0, *[a for a in rest if a < axes[0]], *axes, *[a for a in rest if a > axes[0]])
    if x.transpose(logical).flags.c_contiguous:
        return logical
    by_stride = sorted(range(1, x.ndim), key=lambda a: -abs(x.strides[a]))
    pos = [by_stride.index(a) for a in axes]
    if pos == list(range(pos[0], pos[0] + len(axes))):
        perm = (0, *by_stride)
        if x.transpose(perm).flags.c_contiguous:
            return perm
    return logical


def _wave_samples(sample_bytes: int) -> int:
    """Samples per wave of the row kernels: about `WAVE_BYTES` of input, at least one.

    The row kernels read a sample twice (statistics, then output); doing a few samples at a time
    keeps the second read in the last-level cache. Waves only change the order of work, never
    the arithmetic, so results do not depend on them.
    """
    return max(1, _knobs.WAVE_BYTES // max(sample_bytes, 1))


def _row_family(A: int, C: int, B: int, G: int) -> bool:
    """Whether the row kernels (rather than the slab kernels) handle this canonical shape."""
    if A <= 1:  # one row per sample: the per-block partial sums would outweigh the data
        return False
    if (C // G) * B < _knobs.ROW_MAX_RUN:
        return True
    # Short channel runs (channels-last data with few groups) cost the slab kernels a loop per
    # run; rows that are not too long go to the row kernels instead.
    return B < slab.SHORT_RUN and C * B <= _knobs.ROW_MAX_ELEMENTS


def _lanes(dtype: np.dtype, run: int) -> int:
    """Independent accumulators of the slab kernels' sums: `LANES`, fewer for short runs.

    Each piece's lanes are cleared and reduced in float64 once; with runs of a few dozen
    elements, 64 lanes cost more than the sums. A quarter of the run (a power of two, at least
    8) keeps four rows per lane update. Depends on the shape only, so every path and thread
    count still gives the same bits.
    """
    quarter = max(run // 4, 8)
    return min(LANES[dtype], 1 << (quarter.bit_length() - 1))


class Path(NamedTuple):
    """The kernels a call runs: family, strategy and whether outputs are streamed.

    `family` is `"rows"` or `"slab"`; `strategy` is `"serial"`, `"fused"` (slab: one
    slab per thread; rows: whole samples per thread) or `"chunked"` (slab: pieces of every
    slab over all threads; rows: every sample's blocks over all threads, a wave at a time).
    Every path computes the same bits.
    """

    family: str
    strategy: str
    stream: bool


class _Forced(threading.local):
    strategy: str | None = None
    stream: bool | None = None
    last: Path | None = None


_forced = _Forced()
_STRATEGIES = ("serial", "fused", "chunked")


@contextlib.contextmanager
def forced(*, strategy: str | None = None, stream: bool | None = None) -> Iterator[None]:
    """Run the calls made in this block (in this thread) on the given path.

    A supported way for tests and benchmarks to reach every kernel on any input size:
    `strategy` is one of `"serial"`, `"fused"`, `"chunked"` (see `Path`; a
    parallel strategy still runs serially in a forked child), `stream` forces streaming
    stores on or off. None keeps the automatic choice.
    """
    if strategy is not None and strategy not in _STRATEGIES:
        raise ValueError(f"`strategy` must be one of {_STRATEGIES} or None, got {strategy!r}.")
    saved = (_forced.strategy, _forced.stream)
    _forced.strategy, _forced.stream = strategy, stream
    try:
        yield
    finally:
        _forced.strategy, _forced.stream = saved


def last_path() -> Path | None:
    """The path of the last call made in this thread (for tests and benchmarks)."""
    return _forced.last


_PATHS = {
    (family, strategy, stream): Path(family, strategy, stream)
    for family in ("rows", "slab")
    for strategy in _STRATEGIES
    for stream in (False, True)
}


def choose(canon: Canonical, groups: int, size: int, out_bytes: int) -> Path:
    """The path for a forward or backward call: one decision for both passes."""
    family = canon.families.get(groups)
    if family is None:
        rows_ = _row_family(canon.A, canon.C, canon.B, groups)
        family = canon.families[groups] = "rows" if rows_ else "slab"
    strategy = _forced.strategy
    if strategy is None:
        parallel = _threading.use_parallel(size, _knobs.GROUP_NORM_PARALLEL_MIN_ELEMENTS)
        strategy = _strategy(canon, family, groups, size) if parallel else "serial"
    elif strategy != "serial" and _threading.in_forked_child():
        strategy = "serial"  # see numba_gn._threading: parallel kernels are unsafe there
    stream = _forced.stream
    if stream is None:
        stream = out_bytes >= _knobs.STREAM_MIN_BYTES
    path = _PATHS[family, strategy, stream]
    _forced.last = path
    return path


def _strategy(canon: Canonical, family: str, groups: int, size: int) -> str:
    """The automatic strategy of a call that may run in parallel (see `numba_gn._knobs`)."""
    threads = numba.get_num_threads()
    if family == "rows":
        if canon.N >= _knobs.ROW_SAMPLES_MIN_PER_THREAD * threads:
            return "fused" if size >= _knobs.ROW_FUSED_MIN_ELEMENTS else "serial"
        if size < _knobs.ROW_FEW_SAMPLES_MIN_ELEMENTS:
            return "serial"
        # Few samples: whole samples per thread still balance when they divide evenly.
        return "fused" if canon.N % threads == 0 else "chunked"
    slabs = canon.N * groups
    many = slabs >= _knobs.FUSED_MIN_SLABS_PER_THREAD * threads
    return "fused" if many and size >= _knobs.FUSED_MIN_SLAB_ELEMENTS * slabs else "chunked"


def _chunk(strategy: str, iterations: int) -> int:
    """Dynamic scheduling for the fused kernels (`iterations` independent slabs or samples).

    The chunked kernels keep Numba's even split (0): their output pass relies on each thread
    meeting the units it summed in the statistics pass in its own cache.
    """
    return _threading.dynamic_chunk(iterations) if strategy == "fused" else 0


def forward(
    xc: np.ndarray,
    yc: np.ndarray,
    canon: Canonical,
    groups: int,
    gamma: np.ndarray,
    beta: np.ndarray,
    epsilon: float,
    epi: tuple | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise flat canonical `xc` into `yc`; returns float64 `(mean, rstd)` of (N*G,).

    `epi` is a forward epilogue `(code, slope, residual)` (see `numba_gn.kernels.epilogue`)
    or None.
    """
    N, A, C, B = canon.N, canon.A, canon.C, canon.B
    G = groups
    mean = np.empty(N * G, dtype=np.float64)
    rstd = np.empty(N * G, dtype=np.float64)
    family, strategy, stream = choose(canon, G, xc.size, yc.nbytes)
    args = (xc, yc, N, G, A, C, B, gamma, beta, epsilon)
    if family == "rows":
        if strategy == "serial":
            rows.forward_ser(*args, mean, rstd, stream, epi)
            return mean, rstd
        with _threading.parallel_launch(_chunk(strategy, N)):
            if strategy == "fused":
                rows.forward_samples_par(*args, mean, rstd, stream, epi)
            else:
                wave = _wave_samples(A * C * B * xc.itemsize)
                rows.forward_par(*args, mean, rstd, wave, stream, epi)
        return mean, rstd
    lanes = _lanes(xc.dtype, (C // G) * B)
    if strategy == "serial":
        slab.forward_fused_ser(*args, lanes, mean, rstd, stream, epi)
        return mean, rstd
    with _threading.parallel_launch(_chunk(strategy, N * G)):
        if strategy == "fused":
            slab.forward_fused_par(*args, lanes, mean, rstd, stream, epi)
        else:
            slab.forward_chunked_par(*args, lanes, mean, rstd, stream, epi)
    return mean, rstd


def backward(
    dyc: np.ndarray,
    xc: np.ndarray,
    dxc: np.ndarray,
    canon: Canonical,
    groups: int,
    gamma: np.ndarray,
    mean: np.ndarray,
    rstd: np.ndarray,
    epi: tuple | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of the canonical views; writes `dxc`, returns float64 (dgamma, dbeta) of (C,).

    `epi` is a backward epilogue `(code, slope, residual, beta, dz)` or None.
    """
    N, A, C, B = canon.N, canon.A, canon.C, canon.B
    G = groups
    dgamma = np.empty(C, dtype=np.float64)
    dbeta = np.empty(C, dtype=np.float64)
    family, strategy, stream = choose(canon, G, xc.size, dxc.nbytes)
    args = (dyc, xc, dxc, N, G, A, C, B, gamma, mean, rstd)
    if family == "rows":
        if strategy == "serial":
            rows.backward_ser(*args, dgamma, dbeta, stream, epi)
            return dgamma, dbeta
        with _threading.parallel_launch(_chunk(strategy, N)):
            if strategy == "fused":
                rows.backward_samples_par(*args, dgamma, dbeta, stream, epi)
            else:
                wave = _wave_samples(2 * A * C * B * xc.itemsize)
                rows.backward_par(*args, dgamma, dbeta, wave, stream, epi)
        return dgamma, dbeta
    lanes = _lanes(xc.dtype, (C // G) * B)
    if strategy == "serial":
        slab.backward_fused_ser(*args, lanes, dgamma, dbeta, stream, epi)
        return dgamma, dbeta
    with _threading.parallel_launch(_chunk(strategy, N * G)):
        if strategy == "fused":
            slab.backward_fused_par(*args, lanes, dgamma, dbeta, stream, epi)
        else:
            slab.backward_chunked_par(*args, lanes, dgamma, dbeta, stream, epi)
    return dgamma, dbeta
