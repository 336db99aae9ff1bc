"""Group normalisation of Dask arrays, lazily: `group_norm` and `group_norm_backward`.

The semantics, arguments, defaults and error messages are those of `numba_gn.group_norm` and
`numba_gn.group_norm_backward` (Keras's `GroupNormalization`); the results are lazy Dask
arrays. Arguments are checked when the graph is built, not when it runs. `numba_gn.group_norm`
and `numba_gn.group_norm_backward` given a Dask array come here.

How the graph is built depends on the chunks of `x`:

* **chunked along the batch axis only** (one chunk along every other axis): one task per chunk
  runs the in-memory `numba_gn.group_norm` on it. Every (sample, group) is inside one chunk, so
  the result is bitwise the in-memory one. The backward is one in-memory backward per chunk,
  plus a sum of the chunks' `dgamma`/`dbeta` (in float64).
* **chunked along other axes too**: a group may span chunks, and a chunk may hold a part of a
  group. Each block's task computes partial statistics of every (sample, group) it touches
  (`numba_gn.kernels.partial.block_moments`: a count, and a mean and a sum of squared
  deviations `M2` from float64-merged shifted sums); they are merged exactly in float64 by a
  tree reduction with the pairwise formula of Chan, Golub and LeVeque; a second task per block
  then writes its output with the merged mean and `rstd`. The backward sums `dy` and
  `dy * (x - mean)` per (sample, channel) and block, reduces them the same way and writes `dx`
  per block.

Inside a task numba_gn runs with one Numba thread unless the scheduler gives the task more
(see `task_threads`): every Dask thread runs one task at a time, so a process with `T` Dask
threads keeps `T` cores busy.

This module needs Dask (`pip install numba_gn[dask]`) and is imported explicitly
(`import numba_gn.dask`) or by a call with a Dask array; `import numba_gn` never imports dask.
See `docs/pipelines/dask.md`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Literal, NamedTuple, overload

import numba
import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # the module is useless without it: say how to get it
    raise ImportError(
        "numba_gn.dask needs Dask: install it with `pip install \"dask[array]\"` "
        "(or `pip install numba_gn[dask]`)."
    ) from exc

from numba_gn import _args, _checks, _engine, _knobs, _threading, buffers
from numba_gn import functional as _functional
from numba_gn.kernels import partial as _partial

__all__ = ["THREADS_KEY", "group_norm", "group_norm_backward", "task_threads", "warmup"]

#: Dask configuration key: Numba threads per task for graphs built while it is set
#: (`dask.config.set({"numba_gn.threads-per-task": 4})`); None (the default) means the rule
#: of `task_threads`.
THREADS_KEY = "numba_gn.threads-per-task"

_F16 = np.dtype(np.float16)


# -- arguments -------------------------------------------------------------------------------------


def _fake(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A read-only array of `shape` and `dtype` that takes no memory (for validation only)."""
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


def _is_dask(a: object) -> bool:
    return isinstance(a, da.Array)


def _checked(a: object, name: str) -> da.Array | np.ndarray:
    """`a` as a float Dask array or ndarray, checked like the in-memory argument `name`."""
    if not _is_dask(a):
        return _args.as_float_array(a, name, masked_hint=_functional._MASKED_HINT)
    _args.check_not_masked(a._meta, name, _functional._MASKED_HINT)
    dt = a.dtype
    if dt.kind == "f" and dt.itemsize in (2, 4, 8) and not dt.isnative:
        a = a.astype(dt.newbyteorder("="))  # big-endian floats: converted, as in memory
    else:
        _args.as_float_array(np.empty(0, dtype=dt), name)  # the in-memory dtype check
    if any(math.isnan(s) for s in a.shape):
        raise ValueError(
            f"`{name}` has unknown chunk sizes (shape {a.shape}); call "
            f"`{name}.compute_chunk_sizes()` first."
        )
    return a


def _lazy(a: da.Array | np.ndarray, chunks: Any = -1) -> da.Array:
    """A checked argument as a Dask array (an ndarray becomes one with `chunks`)."""
    return a if _is_dask(a) else da.from_array(a, chunks=chunks)


class _Layout(NamedTuple):
    """How a block maps onto the kernels' canonical `(N, A, C, B)` view (static per call)."""

    perm: tuple[int, ...]  # block axes -> (batch, before..., channel axes..., after...)
    inverse: tuple[int, ...]
    before: int  # number of non-channel axes before the channel axes
    channels: int  # number of channel axes
    rank: tuple[int, ...]  # channel-index block axes (ascending axis order) -> `axis` order
    groups: int
    group_channels: int  # D = C // G (0 without channels)


class _Setup:
    """A checked call: channel axes, their shape, the groups and the block layout."""

    def __init__(self, x: da.Array, groups: object, group_size: object, axis: object):
        if x.ndim < 2:  # the in-memory message (numba_gn.functional._Plan)
            raise ValueError(
                f"`x` must have at least 2 dimensions (batch and channels), got shape {x.shape}."
            )
        self.axes = _args.normalize_axes(axis, x.ndim)
        self.channel_shape = tuple(x.shape[a] for a in self.axes)
        self.C = math.prod(self.channel_shape)
        self.G = _args.resolve_groups(groups, group_size, self.C)
        rest = [a for a in range(1, x.ndim) if a not in self.axes]
        before = [a for a in rest if a < self.axes[0]]
        perm = (0, *before, *self.axes, *[a for a in rest if a > self.axes[0]])
        ascending = sorted(self.axes)
        self.layout = _Layout(
            perm=perm,
            inverse=tuple(int(i) for i in np.argsort(perm)),
            before=len(before),
            channels=len(self.axes),
            rank=tuple(ascending.index(a) for a in self.axes),
            groups=self.G,
            group_channels=self.C // self.G if self.G else 0,
        )
        #: elements of one (sample, group): the count every group's statistics are over
        self.group_count = math.prod(x.shape[1:]) // self.G if self.G else 0


def _batch_only(x: da.Array) -> bool:
    """Whether `x` has a single chunk along every non-batch axis."""
    return all(len(c) == 1 for c in x.chunks[1:])


def _param(p: object, name: str, fill: float, setup: _Setup, x_shape: tuple) -> Any:
    """gamma/beta as a flat float64 array of the channels (NumPy, or Dask if given Dask)."""
    if not _is_dask(p):
        return _args.param_array(p, name, setup.channel_shape, fill, x_shape)
    _args.check_not_masked(p._meta, name)
    _args.param_array(_fake(p.shape, p.dtype), name, setup.channel_shape, fill, x_shape)
    return p.rechunk(-1).astype(np.float64).reshape(-1)


def _params(parts: Sequence[Any]) -> da.Array:
    """Flat parameter arrays concatenated into one single-chunk float64 Dask array."""
    if not any(_is_dask(p) for p in parts):
        return da.from_array(np.concatenate(parts), chunks=-1)
    return da.concatenate([da.asarray(p) for p in parts]).rechunk(-1)


def _stats(a: object, name: str, shape: tuple[int, int], batch_chunks: tuple) -> da.Array:
    """`mean`/`rstd` checked as in memory, as float64 Dask arrays chunked like the batch."""
    chunks = (batch_chunks, (shape[1],))
    if not _is_dask(a):
        return da.from_array(_functional._stats_array(a, name, shape).reshape(shape), chunks)
    _args.check_not_masked(a._meta, name)
    _functional._stats_array(_fake(a.shape, a.dtype), name, shape)
    return a.astype(np.float64).rechunk(chunks)


def _meta(ndim: int, dtype: Any) -> np.ndarray:
    return np.empty((0,) * ndim, dtype=dtype)


# -- threads ---------------------------------------------------------------------------------------


def _threads_setting() -> int | None:
    """The `THREADS_KEY` setting, checked, read when a graph is built."""
    value = dask.config.get(THREADS_KEY, None)
    if value is None:
        return None
    return _checks.integer(value, THREADS_KEY, low=1)


def _worker() -> Any:
    """The Dask distributed worker running the current task, or None."""
    distributed = sys.modules.get("distributed")  # imported by whoever started a worker
    if distributed is None:
        return None
    try:
        return distributed.get_worker()
    except ValueError:
        return None


def task_threads(requested: int | None = None) -> int:
    """The Numba threads numba_gn uses inside the Dask task running in this thread.

    This is the thread count of the in-memory calls of batch-chunked graphs (the per-block
    kernels of other chunkings are serial). The rule: one thread, unless the scheduler gives
    the task more. Every Dask thread runs one task at a time, so a worker (or the threaded
    scheduler) with `T` threads keeps `T` cores busy with `T` single-threaded tasks, and more
    threads per task would only oversubscribe the cores. A task gets more threads when

    * it was built while `THREADS_KEY` was set (`requested`): that many, for every task of
      the graph (for the synchronous scheduler, or workers with one Dask thread each but
      several cores);
    * it runs on a distributed worker holding `k` of the worker resource `threads`
      (workers started with `--resources threads=K`, the graph computed with
      `client.compute(y, resources={"threads": k})` or `client.persist`): the scheduler
      then runs it only where `k` of them are free, and it gets `k`.

    Always between 1 and `NUMBA_NUM_THREADS`.

    Args:
        requested: The `THREADS_KEY` setting the task's graph was built with.
    """
    k = requested
    if k is None:
        k = 1
        worker = _worker()
        if worker is not None:
            try:
                task = worker.state.tasks[worker.get_current_task()]
                k = int(task.resource_restrictions.get("threads", 1))
            except (KeyError, AttributeError, TypeError, ValueError):
                k = 1  # not inside a task, or a distributed without these attributes
    return max(1, min(int(k), numba.config.NUMBA_NUM_THREADS))


@contextlib.contextmanager
def _task_threads(requested: int | None) -> Iterator[None]:
    """Run the block with `task_threads(requested)` Numba threads in this thread.

    `numba.set_num_threads` is per thread and is what numba_gn's parallel launches honour;
    the previous count is restored, since the scheduler reuses its threads.
    """
    if _threading.in_forked_child():  # serial kernels there anyway: start no thread pool
        yield
        return
    k = task_threads(requested)
    before = numba.get_num_threads()
    if k == before:
        yield
        return
    numba.set_num_threads(k)
    try:
        yield
    finally:
        numba.set_num_threads(before)


# -- tasks: batch-only chunks ----------------------------------------------------------------------


def _split_params(p: np.ndarray, shape: tuple[int, ...], count: int) -> list[np.ndarray]:
    size = math.prod(shape)
    return [p[i * size : (i + 1) * size].reshape(shape) for i in range(count)]


def _forward_chunk(
    xb: np.ndarray,
    pb: np.ndarray,
    *,
    groups: object,
    group_size: object,
    channel_axes: tuple[int, ...],
    channel_shape: tuple[int, ...],
    epsilon: float,
    threads: int | None,
    stats: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | np.ndarray:
    """The in-memory forward of one batch chunk: `(y, mean, rstd)`, or `y` alone."""
    gamma, beta = _split_params(pb, channel_shape, 2)
    with _task_threads(threads):
        return _functional.group_norm(
            xb, groups, gamma, beta, axis=channel_axes, epsilon=epsilon, group_size=group_size,
            return_stats=stats,
        )


def _backward_chunk(
    dyb: np.ndarray,
    xb: np.ndarray,
    mb: np.ndarray,
    rb: np.ndarray,
    gb: np.ndarray,
    *,
    groups: object,
    group_size: object,
    channel_axes: tuple[int, ...],
    channel_shape: tuple[int, ...],
    threads: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The in-memory backward of one batch chunk: `dx`, and float64 (dgamma, dbeta) sums.

    The sums are returned as an `(n, 2*C)` array with the chunk's totals in its first row and
    zeros elsewhere, so that summing over the batch axis adds the chunks' totals (exactly:
    adding zeros changes no bit).
    """
    (gamma,) = _split_params(gb, channel_shape, 1)  # float64: float64 dgamma and dbeta
    with _task_threads(threads):
        dx, dgamma, dbeta = _functional.group_norm_backward(
            dyb, xb, mb, rb, groups, gamma, axis=channel_axes, group_size=group_size
        )
    C = gamma.size
    sums = np.zeros((xb.shape[0], 2 * C))
    if xb.shape[0]:
        sums[0, :C] = dgamma.reshape(-1)
        sums[0, C:] = dbeta.reshape(-1)
    return dx, sums


# -- tasks: blocks ---------------------------------------------------------------------------------


class _Block(NamedTuple):
    """One block in the kernels' canonical `(N, A, C, B)` view, read where it lies."""

    flat: np.ndarray  # read-only 1-D span holding the block; 16-bit floats as integer bits
    shape: tuple[int, ...]  # canonical (transposed) shape
    N: int
    A: int
    C: int
    B: int
    strides: tuple[int, int, int]  # (sN, sA, sC) in elements of `flat`; runs of B contiguous


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of `a` (kernels get one specialisation, whatever the caller's flags)."""
    v = a.view()
    v.flags.writeable = False
    return v


def _is_bfloat16(dtype: np.dtype) -> bool:
    """ml_dtypes' bfloat16 (recognised by its name: nothing to import)."""
    return dtype.kind == "V" and dtype.itemsize == 2 and dtype.name == "bfloat16"


def _storage(flat: np.ndarray) -> np.ndarray:
    """The kernels' view of a flat array: the 16-bit float formats as integer bits.

    float16 travels as uint16 and bfloat16 as int16 bits, as in `numba_gn.functional`; the
    kernels' `load` and `store` convert them (see `numba_gn.kernels._common`).
    """
    if flat.dtype == _F16:
        return flat.view(np.uint16)
    if _is_bfloat16(flat.dtype):
        return flat.view(np.int16)
    return flat


def _merged_stride(shape: Sequence[int], strides: Sequence[int]) -> int | None:
    """The element stride of axes merged into one (row-major), or None if they do not merge.

    Axes of length 1 do not count; with none left any stride will do (0).
    """
    dims = [(n, st) for n, st in zip(shape, strides, strict=True) if n != 1]
    for (_, outer), (n, inner) in zip(dims, dims[1:], strict=False):
        if outer != inner * n:
            return None
    return dims[-1][1] if dims else 0


def _in_place(
    t: np.ndarray, i: int, k: int, dims: tuple[int, int, int, int]
) -> tuple[np.ndarray, tuple[int, int, int]] | None:
    """A flat span of `t`'s memory and the canonical element strides, if `t` allows it.

    `t` is the block in canonical axis order (batch, before: `[1, i)`, channels: `[i, k)`,
    after), `dims` its `(N, A, C, B)`; the kernels need each run of the after-axes contiguous,
    and the before-axes and the channel axes each merged into one stride. A chunk of
    `dask.array.from_array` is a view of the whole array: read in place, its copy is saved,
    and the page faults of a new array.
    """
    item = t.itemsize
    if t.size == 0 or any(st < 0 or st % item for st in t.strides):
        return None
    el = [st // item for st in t.strides]
    N, A, C, B = dims
    run = _merged_stride(t.shape[k:], el[k:])
    sA = _merged_stride(t.shape[1:i], el[1:i])
    sC = _merged_stride(t.shape[i:k], el[i:k])
    if (B > 1 and run != 1) or sA is None or sC is None:  # (a broadcast run has stride 0)
        return None
    sN = el[0] if N != 1 else 0
    span = 1 + (N - 1) * sN + (A - 1) * sA + (C - 1) * sC + (B - 1)
    flat = np.lib.stride_tricks.as_strided(t, shape=(span,), strides=(item,), writeable=False)
    return flat, (sN, sA, sC)


def _canonical(b: np.ndarray, layout: _Layout) -> _Block:
    t = np.asarray(b).transpose(layout.perm)
    shape = t.shape
    i, k = 1 + layout.before, 1 + layout.before + layout.channels
    N, A, C, B = shape[0], math.prod(shape[1:i]), math.prod(shape[i:k]), math.prod(shape[k:])
    found = _in_place(t, i, k, (N, A, C, B))
    if found is None:  # copied into canonical order
        flat, strides = np.ascontiguousarray(t).reshape(-1), (A * C * B, C * B, B)
    else:
        flat, strides = found
    return _Block(_read_only(_storage(flat)), shape, N, A, C, B, strides)


def _groups_of(chan: np.ndarray, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Global channel and group index of each local channel (canonical order)."""
    channels = np.ascontiguousarray(chan.transpose(layout.rank), dtype=np.int64).reshape(-1)
    if layout.group_channels == 0:
        return channels, _read_only(np.zeros(0, dtype=np.int64))
    return channels, _read_only(channels // layout.group_channels)


def _output(block: _Block, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """A new canonical output for `block` and the kernels' flat view of it.

    Large outputs come from `numba_gn.buffers`, as the in-memory results do: a graph computed
    again reuses the memory of results that are gone instead of faulting in fresh pages.
    """
    out = buffers.empty(block.shape, dtype)
    return out, _storage(out.reshape(-1))


def _streams(out: np.ndarray) -> bool:
    """Whether a block's output is written with streaming stores: the in-memory rule."""
    return out.nbytes >= _knobs.STREAM_MIN_BYTES


def _moments_block(xb: np.ndarray, chan: np.ndarray, *, layout: _Layout) -> np.ndarray:
    """Partial `(count, mean, M2)` of every (sample, group) of one block.

    Shaped `(n, 1, ..., 1, 3, G)`: one entry per block along every non-batch axis, so the
    partials of a batch chunk line up along those axes for the reduction.
    """
    blk = _canonical(xb, layout)
    _, grp = _groups_of(chan, layout)
    G = layout.groups
    out = np.empty((blk.N, 3, G))
    lanes = _engine._lanes(blk.flat.dtype, blk.B)
    _partial.block_moments(
        blk.flat, blk.N, blk.A, blk.C, blk.B, *blk.strides, grp, G, lanes, out
    )
    return out.reshape((blk.N,) + (1,) * (xb.ndim - 1) + (3, G))


def _merge(parts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge `(n, K, 3, G)` partials `(count, mean, M2)` along K into `(n, G)` each.

    Pairwise formula (Chan, Golub and LeVeque): for partials `a` and `b`,
    `n = na + nb`, `d = mean_b - mean_a`, `mean = mean_a + d * nb/n`,
    `M2 = M2_a + M2_b + d**2 * na*nb/n`. Every term is a deviation from a mean, never a raw
    sum of squares, so nothing cancels however far the data sit from zero. An empty partial
    (`count == 0`) leaves the other unchanged, bit for bit.
    """
    n = parts[:, 0, 0].copy()
    m = parts[:, 0, 1].copy()
    m2 = parts[:, 0, 2].copy()
    with np.errstate(all="ignore"):  # 0/0 of empty partials: discarded by the selects below
        for k in range(1, parts.shape[1]):
            nb, mb, m2b = parts[:, k, 0], parts[:, k, 1], parts[:, k, 2]
            total = n + nb
            d = mb - m
            f = nb / total
            merged_m = m + d * f
            merged_m2 = (m2 + m2b) + d * d * (n * f)
            a_empty, b_empty = n == 0, nb == 0
            m = np.where(b_empty, m, np.where(a_empty, mb, merged_m))
            m2 = np.where(b_empty, m2, np.where(a_empty, m2b, merged_m2))
            n = total
    return n, m, m2


def _flat_partials(x: np.ndarray) -> np.ndarray:
    """Concatenated partials `(n, k1, ..., 3, G)` as `(n, K, 3, G)`."""
    return x.reshape(x.shape[0], math.prod(x.shape[1:-2]), x.shape[-2], x.shape[-1])


def _keep(x: np.ndarray, axis: Any = None, keepdims: bool = True) -> np.ndarray:
    """The reduction's per-block step: the block's partials are already computed."""
    return x


def _combine_moments(x: np.ndarray, axis: tuple[int, ...], keepdims: bool = True) -> np.ndarray:
    """One step of the tree: merge concatenated partials into one per batch chunk."""
    n, m, m2 = _merge(_flat_partials(x))
    out = np.stack([n, m, m2], axis=1)
    return out.reshape((x.shape[0],) + (1,) * len(axis) + out.shape[1:])


def _finish_moments(
    x: np.ndarray, axis: tuple[int, ...], keepdims: bool = False, *, epsilon: float
) -> np.ndarray:
    """The last step: merged partials to `(n, 3, G)` rows `mean`, `rstd`, count.

    As the in-memory kernels: variance clamped at zero, `rstd = 1/sqrt(var + epsilon)`; a
    group with no elements has NaN statistics (a mean of nothing).
    """
    n, m, m2 = _merge(_flat_partials(x))
    with np.errstate(all="ignore"):
        var = np.maximum(m2 / n, 0.0)  # NaN (from NaN or Inf data) stays NaN
        rstd = 1.0 / np.sqrt(var + epsilon)
    empty = n == 0
    m = np.where(empty, np.nan, m)
    rstd = np.where(empty, np.nan, rstd)
    return np.stack([m, rstd, n], axis=1)


def _apply_block(
    xb: np.ndarray, chan: np.ndarray, stats: np.ndarray, params: np.ndarray, *, layout: _Layout
) -> np.ndarray:
    """The output of one block from its batch chunk's `(mean, rstd, count)` rows."""
    blk = _canonical(xb, layout)
    channels, grp = _groups_of(chan, layout)
    C = params.size // 2
    gamma = _read_only(params[:C][channels])
    beta = _read_only(params[C:][channels])
    mean = _read_only(np.ascontiguousarray(stats[:, 0]).reshape(-1))
    rstd = _read_only(np.ascontiguousarray(stats[:, 1]).reshape(-1))
    y, yf = _output(blk, xb.dtype)
    _partial.block_apply(
        blk.flat, yf, blk.N, blk.A, blk.C, blk.B, *blk.strides, grp, layout.groups, mean, rstd,
        gamma, beta, _streams(y),
    )
    return y.transpose(layout.inverse)


def _dy_sums_block(
    dyb: np.ndarray, xb: np.ndarray, chan: np.ndarray, mb: np.ndarray, *, layout: _Layout
) -> np.ndarray:
    """Per (sample, channel) `sum(dy)` and `sum(dy*(x - mean))` of one block.

    Shaped like the block with one entry along every non-channel, non-batch axis, and a last
    axis of 2, so that summing over those axes gives the sums of a whole (sample, channel).
    """
    x = _canonical(xb, layout)
    dy = _canonical(dyb, layout)
    _, grp = _groups_of(chan, layout)
    mean = _read_only(np.ascontiguousarray(mb, dtype=np.float64).reshape(-1))
    out = np.empty((x.N, x.C, 2))
    lanes = _engine._lanes(x.flat.dtype, x.B)
    _partial.block_dy_sums(
        dy.flat, *dy.strides, x.flat, x.N, x.A, x.C, x.B, *x.strides, grp, layout.groups, mean,
        lanes, out,
    )
    # (n, channels in `axis` order, 2) -> the block's axis order, ones elsewhere
    i = 1 + layout.before
    cshape = x.shape[i : i + layout.channels]
    out = out.reshape((x.N, *cshape, 2))
    ascending = [layout.rank.index(j) for j in range(layout.channels)]
    out = out.transpose(0, *[1 + j for j in ascending], layout.channels + 1)
    shape = [x.N] + [1] * (xb.ndim - 1) + [2]
    for j, a in enumerate(sorted(layout.perm[i : i + layout.channels])):
        shape[a] = out.shape[1 + j]
    return out.reshape(shape)


def _gather_channels(summed: np.ndarray, *, layout: _Layout) -> np.ndarray:
    """A batch chunk's `(n, channel axes in ascending order, 2)` sums as `(n, C, 2)`.

    The channels are put in the order of `axis` and flattened, as the groups count them.
    """
    t = summed.transpose(0, *[1 + r for r in layout.rank], layout.channels + 1)
    return t.reshape(summed.shape[0], math.prod(summed.shape[1:-1]), 2)


def _param_grads_chunk(sums: np.ndarray, rb: np.ndarray, *, groups: int) -> np.ndarray:
    """`dgamma` and `dbeta` of a batch chunk, as `(n, 2*C)` with the totals in the first row.

    `dgamma[c] = sum_n rstd[n, g(c)] * sum(dy*(x - mean))[n, c]`, `dbeta[c] = sum_n
    sum(dy)[n, c]`; the other rows are zeros, so a sum over the batch axis adds the chunks'
    totals.
    """
    n, C = sums.shape[:2]
    out = np.zeros((n, 2 * C))
    if n and C:
        rc = np.repeat(rb, C // groups, axis=1)  # rstd of each channel's group
        out[0, :C] = (rc * sums[:, :, 1]).sum(axis=0)
        out[0, C:] = sums[:, :, 0].sum(axis=0)
    return out


def _dx_coefs(
    sums: np.ndarray, rb: np.ndarray, gb: np.ndarray, *, groups: int, count: int
) -> np.ndarray:
    """`(c2, c3)` of every (sample, group) of a batch chunk, as `(n, 2, G)`.

    `c2 = -rstd**3 * sum_c gamma*sum(dy*(x-mean)) / M`, `c3 = -rstd * sum_c gamma*sum(dy) / M`
    with `M` the elements of a group (the in-memory kernels' formula).
    """
    n, D = sums.shape[0], gb.size // groups
    gdb = (gb * sums[:, :, 0]).reshape(n, groups, D).sum(axis=2)
    gds = (gb * sums[:, :, 1]).reshape(n, groups, D).sum(axis=2)
    with np.errstate(all="ignore"):
        c2 = -rb * rb * rb * gds / count
        c3 = -rb * gdb / count
    return np.stack([c2, c3], axis=1)


def _dx_block(
    dyb: np.ndarray,
    xb: np.ndarray,
    chan: np.ndarray,
    mb: np.ndarray,
    rb: np.ndarray,
    coef: np.ndarray,
    gb: np.ndarray,
    *,
    layout: _Layout,
) -> np.ndarray:
    """`dx` of one block from its batch chunk's statistics and coefficients."""
    x = _canonical(xb, layout)
    dy = _canonical(dyb, layout)
    channels, grp = _groups_of(chan, layout)
    mean = _read_only(np.ascontiguousarray(mb, dtype=np.float64).reshape(-1))
    rstd = _read_only(np.ascontiguousarray(rb, dtype=np.float64).reshape(-1))
    coef = _read_only(np.ascontiguousarray(coef, dtype=np.float64))
    gamma = _read_only(gb[channels])
    dx, dxf = _output(x, xb.dtype)
    _partial.block_dx(
        dy.flat, *dy.strides, x.flat, dxf, x.N, x.A, x.C, x.B, *x.strides, grp, layout.groups,
        mean, rstd, coef, gamma, _streams(dx),
    )
    return dx.transpose(layout.inverse)


def _zeros_block(b: np.ndarray) -> np.ndarray:
    return np.zeros(b.shape, dtype=b.dtype)


# -- graphs ----------------------------------------------------------------------------------------


def _indices(ndim: int) -> tuple[str, ...]:
    return tuple(f"i{k}" for k in range(ndim))


def _channel_index(x: da.Array, setup: _Setup) -> da.Array:
    """The flat channel index over the channel axes, chunked like `x` there.

    Axes in ascending order (as blockwise pairs them with `x`'s); each block's task reads
    from it which channels, hence which groups, it holds.
    """
    ascending = sorted(setup.axes)
    idx = np.arange(setup.C, dtype=np.int64).reshape(setup.channel_shape)
    idx = idx.transpose([setup.axes.index(a) for a in ascending])
    return da.from_array(idx, chunks=tuple(x.chunks[a] for a in ascending))


def _one_per_block(x: da.Array, axes: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """`adjust_chunks` giving every block one element along `axes`."""
    ind = _indices(x.ndim)
    return {ind[a]: (1,) * len(x.chunks[a]) for a in axes}


def _pick(t: tuple, i: int, ndim: int) -> np.ndarray:
    """Output `i` of a per-chunk task, with trailing axes of one up to `ndim` dimensions."""
    a = t[i]
    return a.reshape(a.shape + (1,) * (ndim - a.ndim))


def _per_batch_chunk(
    func: Any, x: da.Array, arrays: Sequence[tuple[da.Array, tuple]], widths: Sequence[int],
    token: str, **kwargs: Any,
) -> list[da.Array]:
    """One task of `func` per batch chunk; its outputs as Dask arrays.

    `func` gets the blocks of `arrays` (each with its blockwise index; indices of `x`'s
    non-batch axes and the extra ones have a single chunk) and returns a tuple: an array of
    `x`'s block shape, then 2-D `(n, width)` arrays, one per entry of `widths`.
    """
    nd = x.ndim
    xi = _indices(nd)
    arginds = [a for pair in arrays for a in pair]
    tmp = da.blockwise(
        func, xi, *arginds, concatenate=True, align_arrays=False, dtype=object,
        meta=_meta(nd, object), token=token, **kwargs,
    )
    # Tuples are split by plain blockwise tasks of the same rank (`_pick`), then reshaped:
    # neither contracting the tuple's axes (blockwise would concatenate the tuples) nor
    # `getitem` tasks (which Dask's slice fusion mistakes for array slices).
    outs = [
        da.blockwise(
            _pick, xi, tmp, xi, align_arrays=False, dtype=x.dtype, meta=_meta(nd, x.dtype),
            i=0, ndim=nd,
        )
    ]
    for i, width in enumerate(widths, start=1):
        adjust = {xi[k]: (1,) for k in range(2, nd)}
        adjust[xi[1]] = (width,)
        leaf = da.blockwise(
            _pick, xi, tmp, xi, adjust_chunks=adjust, align_arrays=False, dtype=np.float64,
            meta=_meta(nd, np.float64), i=i, ndim=nd,
        )
        outs.append(leaf.reshape(x.shape[0], width) if nd > 2 else leaf)
    return outs


def _forward_by_batch(
    x: da.Array,
    setup: _Setup,
    params: da.Array,
    groups: object,
    group_size: object,
    epsilon: float,
    threads: int | None,
    stats: bool,
) -> list[da.Array]:
    xi = _indices(x.ndim)
    options = dict(
        groups=groups,
        group_size=group_size,
        channel_axes=setup.axes,
        channel_shape=setup.channel_shape,
        epsilon=epsilon,
        threads=threads,
    )
    if not stats:  # one layer of one task per chunk: Dask's per-layer costs count here
        y = da.blockwise(
            _forward_chunk, xi, x, xi, params, ("p",), concatenate=True, align_arrays=False,
            dtype=x.dtype, meta=_meta(x.ndim, x.dtype), token="group_norm", stats=False,
            **options,
        )
        return [y]
    return _per_batch_chunk(
        _forward_chunk,
        x,
        [(x, xi), (params, ("p",))],
        (setup.G, setup.G),
        "group_norm",
        **options,
    )


def _forward_by_block(
    x: da.Array, setup: _Setup, params: da.Array, epsilon: float
) -> tuple[da.Array, da.Array, da.Array]:
    nd = x.ndim
    xi = _indices(nd)
    ci = tuple(xi[a] for a in sorted(setup.axes))
    chan = _channel_index(x, setup)
    G = setup.G
    parts = da.blockwise(
        _moments_block,
        xi + ("S", "G"),
        x,
        xi,
        chan,
        ci,
        new_axes={"S": 3, "G": G},
        adjust_chunks=_one_per_block(x, range(1, nd)),
        dtype=np.float64,
        meta=_meta(nd + 2, np.float64),
        concatenate=True,
        align_arrays=False,
        token="group_norm-moments",
        layout=setup.layout,
    )
    stats = da.reduction(
        parts,
        _keep,
        functools.partial(_finish_moments, epsilon=epsilon),
        combine=_combine_moments,
        axis=tuple(range(1, nd)),
        keepdims=False,
        dtype=np.float64,
        concatenate=True,
        meta=_meta(3, np.float64),
        name="group_norm-stats",
    )
    y = da.blockwise(
        _apply_block,
        xi,
        x,
        xi,
        chan,
        ci,
        stats,
        (xi[0], "S", "G"),
        params,
        ("P",),
        dtype=x.dtype,
        meta=_meta(nd, x.dtype),
        concatenate=True,
        align_arrays=False,
        token="group_norm-apply",
        layout=setup.layout,
    )
    return y, stats[:, 0], stats[:, 1]


# -- public API ------------------------------------------------------------------------------------


@overload
def group_norm(
    x: Any,
    groups: int = ...,
    gamma: Any = ...,
    beta: Any = ...,
    *,
    axis: int | tuple[int, ...] = ...,
    epsilon: float = ...,
    group_size: int | None = ...,
    return_stats: Literal[False] = ...,
) -> da.Array: ...
@overload
def group_norm(
    x: Any,
    groups: int = ...,
    gamma: Any = ...,
    beta: Any = ...,
    *,
    axis: int | tuple[int, ...] = ...,
    epsilon: float = ...,
    group_size: int | None = ...,
    return_stats: Literal[True],
) -> tuple[da.Array, da.Array, da.Array]: ...
def group_norm(
    x,
    groups=32,
    gamma=None,
    beta=None,
    *,
    axis=-1,
    epsilon=1e-3,
    group_size=None,
    return_stats=False,
):
    """Group-normalise a Dask array lazily (Keras semantics, as `numba_gn.group_norm`).

    Args:
        x: Dask array of a float dtype `numba_gn.group_norm` takes (float16, float32,
            float64), ndim >= 2, axis 0 the batch axis, with known chunk sizes. Anything else
            is checked as `numba_gn.group_norm` checks it and wrapped in a single-chunk Dask
            array.
        groups: Number of groups (`-1`: one per channel), as in `numba_gn.group_norm`.
        gamma: Scale per channel, of the channel shape (NumPy or Dask); None means 1.
        beta: Offset per channel, of the channel shape (NumPy or Dask); None means 0.
        axis: The channel axis, or a tuple of axes forming one channel space.
        epsilon: Added to the variance inside the square root.
        group_size: Channels per group, instead of `groups`.
        return_stats: Also return `mean` and `rstd = 1/sqrt(var + epsilon)`, float64 of
            shape (N, G), chunked like the batch axis of `x`.

    Returns:
        A lazy `y` with the shape, dtype and chunks of `x`; or `(y, mean, rstd)` with
        `return_stats`.

    Raises:
        TypeError, ValueError: As `numba_gn.group_norm`, when the graph is built; nothing is
            checked or computed in the tasks but the data.

    Chunked along the batch axis only, each chunk is one task of the in-memory
    `numba_gn.group_norm`, and the result is bitwise the in-memory one. Chunked along other
    axes too, per-block partial statistics are merged in float64 (see the module doc and
    `docs/pipelines/dask.md`).
    """
    xd = _checked(x, "x")
    setup = _Setup(xd, groups, group_size, axis)
    xd = _lazy(xd)
    g = _param(gamma, "gamma", 1.0, setup, xd.shape)
    b = _param(beta, "beta", 0.0, setup, xd.shape)
    eps = _args.check_epsilon(epsilon)
    if return_stats is not False and return_stats is not True:
        return_stats = _checks.boolean(return_stats, "return_stats")
    params = _params([g, b])
    if _batch_only(xd):
        threads = _threads_setting()
        outs = _forward_by_batch(xd, setup, params, groups, group_size, eps, threads, return_stats)
        if not return_stats:
            return outs[0]
        y, mean, rstd = outs
    else:
        y, mean, rstd = _forward_by_block(xd, setup, params, eps)
    return (y, mean, rstd) if return_stats else y


def group_norm_backward(
    dy: Any,
    x: Any,
    mean: Any,
    rstd: Any,
    groups: int = 32,
    gamma: Any = None,
    *,
    axis: int | tuple[int, ...] = -1,
    group_size: int | None = None,
) -> tuple[da.Array, da.Array, da.Array]:
    """Gradients of `group_norm` on Dask arrays, lazily (as `numba_gn.group_norm_backward`).

    Args:
        dy: Gradient of the loss with respect to `y`, of the shape of `x` (Dask or NumPy;
            rechunked like `x`).
        x: The forward input (a Dask array; NumPy input is wrapped like `dy`'s chunks).
        mean: The statistics `group_norm(..., return_stats=True)` returned, (N, G).
        rstd: As `mean`.
        groups: As in the forward call.
        gamma: As in the forward call (None means ones).
        axis: As in the forward call.
        group_size: As in the forward call.

    Returns:
        Lazy `(dx, dgamma, dbeta)`: `dx` with the shape, dtype and chunks of `x`; `dgamma`
        and `dbeta` with the channel shape, in gamma's float dtype (or x's compute dtype when
        gamma is None), summed over the batch in float64.

    Raises:
        TypeError, ValueError: As `numba_gn.group_norm_backward`, when the graph is built.
    """
    xd = _checked(x, "x")
    setup = _Setup(xd, groups, group_size, axis)
    g = _param(gamma, "gamma", 1.0, setup, xd.shape)
    dyd = _checked(dy, "dy")
    if dyd.shape != xd.shape:
        raise ValueError(f"`dy` must have the shape of `x` {xd.shape}, got {dyd.shape}.")
    if not _is_dask(xd) and _is_dask(dyd):
        xd = da.from_array(xd, chunks=dyd.chunks)
    xd = _lazy(xd)
    dyd = _lazy(dyd, xd.chunks)
    if dyd.dtype != xd.dtype:
        dyd = dyd.astype(xd.dtype)
    if dyd.chunks != xd.chunks:
        dyd = dyd.rechunk(xd.chunks)
    N, G = xd.shape[0], setup.G
    m = _stats(mean, "mean", (N, G), xd.chunks[0])
    r = _stats(rstd, "rstd", (N, G), xd.chunks[0])
    if isinstance(gamma, (np.ndarray, da.Array)) and gamma.dtype.kind == "f":
        pdtype = gamma.dtype.newbyteorder("=")
    elif xd.dtype == _F16 or _is_bfloat16(xd.dtype):  # 16-bit sums would lose most digits
        pdtype = np.dtype(np.float32)
    else:
        pdtype = xd.dtype
    gp = _params([g])
    if _batch_only(xd):
        dx, sums = _backward_by_batch(dyd, xd, m, r, gp, setup, groups, group_size)
    elif xd.size == 0:
        dx = xd.map_blocks(_zeros_block, dtype=xd.dtype, meta=_meta(xd.ndim, xd.dtype))
        sums = da.zeros((2, setup.C), chunks=-1)
    else:
        dx, sums = _backward_by_block(dyd, xd, m, r, gp, setup)
    dgamma = sums[0].astype(pdtype).reshape(setup.channel_shape)
    dbeta = sums[1].astype(pdtype).reshape(setup.channel_shape)
    return dx, dgamma, dbeta


def _backward_by_batch(
    dy: da.Array,
    x: da.Array,
    mean: da.Array,
    rstd: da.Array,
    gparams: da.Array,
    setup: _Setup,
    groups: object,
    group_size: object,
) -> tuple[da.Array, da.Array]:
    xi = _indices(x.ndim)
    dx, sums = _per_batch_chunk(
        _backward_chunk,
        x,
        [(dy, xi), (x, xi), (mean, (xi[0], "g")), (rstd, (xi[0], "g")), (gparams, ("p",))],
        (2 * setup.C,),
        "group_norm_backward",
        groups=groups,
        group_size=group_size,
        channel_axes=setup.axes,
        channel_shape=setup.channel_shape,
        threads=_threads_setting(),
    )
    return dx, sums.sum(axis=0).reshape(2, setup.C)


def _backward_by_block(
    dy: da.Array, x: da.Array, mean: da.Array, rstd: da.Array, gparams: da.Array, setup: _Setup
) -> tuple[da.Array, da.Array]:
    nd = x.ndim
    xi = _indices(nd)
    ci = tuple(xi[a] for a in sorted(setup.axes))
    chan = _channel_index(x, setup)
    others = [a for a in range(1, nd) if a not in setup.axes]
    parts = da.blockwise(
        _dy_sums_block,
        xi + ("Q",),
        dy,
        xi,
        x,
        xi,
        chan,
        ci,
        mean,
        (xi[0], "G"),
        new_axes={"Q": 2},
        adjust_chunks=_one_per_block(x, others),
        dtype=np.float64,
        meta=_meta(nd + 1, np.float64),
        concatenate=True,
        align_arrays=False,
        token="group_norm_backward-sums",
        layout=setup.layout,
    )
    # Summed over the blocks of each (batch chunk, channel chunk) by Dask's tree reduction,
    # then the channel chunks of a batch chunk gathered into (n, C, 2), channels in `axis`
    # order, by one task (a few numbers per channel).
    summed = parts.sum(axis=tuple(others)) if others else parts
    sums = da.blockwise(
        _gather_channels,
        (xi[0], "C", "Q"),
        summed,
        (xi[0], *ci, "Q"),
        new_axes={"C": setup.C},
        dtype=np.float64,
        meta=_meta(3, np.float64),
        concatenate=True,
        align_arrays=False,
        token="group_norm_backward-gather",
        layout=setup.layout,
    )
    coef = da.blockwise(
        _dx_coefs,
        (xi[0], "K", "G"),
        sums,
        (xi[0], "C", "Q"),
        rstd,
        (xi[0], "G"),
        gparams,
        ("P",),
        new_axes={"K": 2},
        dtype=np.float64,
        meta=_meta(3, np.float64),
        concatenate=True,
        align_arrays=False,
        token="group_norm_backward-coefs",
        groups=setup.G,
        count=setup.group_count,
    )
    dx = da.blockwise(
        _dx_block,
        xi,
        dy,
        xi,
        x,
        xi,
        chan,
        ci,
        mean,
        (xi[0], "G"),
        rstd,
        (xi[0], "G"),
        coef,
        (xi[0], "K", "G"),
        gparams,
        ("P",),
        dtype=x.dtype,
        meta=_meta(nd, x.dtype),
        concatenate=True,
        align_arrays=False,
        token="group_norm_backward-dx",
        layout=setup.layout,
    )
    grads = da.blockwise(
        _param_grads_chunk,
        (xi[0], "K"),
        sums,
        (xi[0], "C", "Q"),
        rstd,
        (xi[0], "G"),
        new_axes={"K": 2 * setup.C},
        dtype=np.float64,
        meta=_meta(2, np.float64),
        concatenate=True,
        align_arrays=False,
        token="group_norm_backward-params",
        groups=setup.G,
    )
    return dx, grads.sum(axis=0).reshape(2, setup.C)


# -- warm-up ---------------------------------------------------------------------------------------


def warmup(dtypes: Sequence[str | np.dtype] = ("float32", "float64")) -> None:
    """Compile (or load from the disk cache) every kernel Dask tasks use, in this process.

    Run it where the kernel cache is writable before starting workers (or on each machine):
    workers started afterwards load the kernels instead of compiling them. It covers the
    serial in-memory kernels (what a task runs with one thread, see `task_threads`) and the
    per-block kernels of `numba_gn.kernels.partial`. A task given several threads also uses
    the parallel in-memory kernels: `numba-gn warmup` compiles those.

    Args:
        dtypes: Any of float32, float64, float16.
    """
    from numba_gn import _warmup

    _warmup.warmup(dtypes, parallel=False, layouts=("channels-last", "channels-first", "dask"))


def _warm_blocks(dtype: str | np.dtype) -> None:
    """Run the per-block kernels once for `dtype` (the `"dask"` case of `numba-gn warmup`)."""
    x = np.linspace(-1.0, 1.0, 2 * 4 * 6 * 8).reshape(2, 4, 6, 8).astype(dtype)
    for axis, chunks in ((1, (1, 2, 3, 4)), (-1, (1, 2, 3, 3))):
        xd = da.from_array(x, chunks=chunks)
        y, mean, rstd = group_norm(xd, 2, axis=axis, return_stats=True)
        grads = group_norm_backward(y, xd, mean, rstd, 2, axis=axis)
        dask.compute(y, *grads, scheduler="sync")
