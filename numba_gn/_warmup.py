"""Compile (or load from the disk cache) kernels ahead of time, and say which it was.

A *task* is one dtype and one case: a small input whose forward and backward calls take one
kernel path. Between them the cases reach every kernel: the row kernels (serial, waves of
samples spread over all threads, whole samples per thread), the slab kernels (serial, fused,
chunked) for channels-first data and for channels-last data with wide rows, and the
convolution layers' `col2im` and Winograd tile transforms, max pooling, and the float32
activation kernels (ReLU, SiLU, sigmoid). When asked, each group norm case also runs fused
with an activation (with and without a residual), which compiles those kernels for that
activation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numba
import numpy as np

from numba_gn import _cache, _engine, _knobs
from numba_gn.functional import group_norm, group_norm_backward
from numba_gn.kernels.epilogue import CODES

#: The layouts a warm-up can be limited to (`conv`: the kernels of the other layers:
#: convolutions and activations; `dask`: the per-block kernels of `numba_gn.dask`, which needs
#: Dask installed and is warmed only when asked for).
LAYOUTS = ("channels-last", "channels-first", "conv", "dask")
DEFAULT_LAYOUTS = ("channels-last", "channels-first", "conv")
DTYPES = ("float32", "float64", "float16")
#: The fused activations a warm-up can add: the epilogue's (`group_norm(..., activation=)`;
#: `gelu_tanh` is `activation="gelu", approximate=True`), each with and without a residual.
ACTIVATIONS = tuple(CODES)


@dataclass(frozen=True)
class Case:
    """One kernel path: `group_norm(x, groups, axis=axis)` on an input of `shape`.

    With `activation`, the fused call `group_norm(..., activation=)` (`residual=x` as well
    when `residual`).
    """

    name: str
    layout: str
    shape: tuple[int, ...]
    axis: int
    groups: int
    parallel: bool
    passes: str = "both"  # group norm cases: "forward", "backward" or "both"
    activation: str | None = None  # group norm cases: fused with this activation (ACTIVATIONS)
    residual: bool = False  # ... and a residual


def _samples_shape() -> tuple[int, ...]:
    """A row-family shape with enough samples for whole samples per thread (depends on threads)."""
    n = _knobs.ROW_SAMPLES_MIN_PER_THREAD * max(numba.get_num_threads(), 1)
    c = 2 * max(1, -(-_knobs.ROW_FUSED_MIN_ELEMENTS // (4 * n)))  # two rows of c per sample
    return (n, 2, c)


def _slabs_shape() -> tuple[int, ...]:
    """A slab-family shape with enough slabs, large enough, for one slab per thread."""
    n = _knobs.FUSED_MIN_SLABS_PER_THREAD * max(numba.get_num_threads(), 1)
    return (n, 1, _knobs.FUSED_MIN_SLAB_ELEMENTS)


def cases() -> tuple[Case, ...]:
    """Every case, serial ones first.

    Group norm cases run on the strategy their name gives (`strategy`), whatever their size;
    the convolution, pooling and activation ones need at least `PARALLEL_MIN_ELEMENTS`.
    """
    samples = _samples_shape()
    return (
        Case("rows, serial", "channels-last", (2, 4, 8), -1, 4, False),
        Case("wide rows, serial", "channels-last", (1, 2, 4096), -1, 2, False),
        Case("slab, serial", "channels-first", (2, 8, 4), 1, 4, False),
        Case("rows, waves", "channels-last", (1, 512, 256), -1, 32, True),
        Case("rows, whole samples", "channels-last", samples, -1, samples[-1] // 2, True),
        Case("wide rows, fused", "channels-last", (4, 2, 4096), -1, 2, True),
        Case("wide rows, chunked", "channels-last", (2, 4, 4096), -1, 2, True),
        Case("slab, fused", "channels-first", _slabs_shape(), 1, 1, True),
        Case("slab, chunked", "channels-first", (1, 8, 4096), 1, 1, True),
        Case("col2im, serial", "conv", (1, 4, 4, 2), -1, 1, False),
        Case("col2im, parallel", "conv", (8, 34, 34, 8), -1, 1, True),
        Case("winograd, serial", "conv", (1, 4, 4, 2), -1, 1, False),
        Case("winograd, parallel", "conv", (8, 16, 16, 8), -1, 1, True),
        Case("max pooling, serial", "conv", (1, 4, 4, 2), -1, 1, False),
        Case("max pooling, parallel", "conv", (8, 32, 32, 4), -1, 1, True),
        Case("activations, serial", "conv", (2, 8), -1, 1, False),
        Case("activations, parallel", "conv", (4, _knobs.PARALLEL_MIN_ELEMENTS), -1, 1, True),
        Case("dask blocks", "dask", (2, 4, 6, 8), 1, 2, False),
    )


@dataclass
class Report:
    """What a warm-up did: kernels compiled and loaded (by name), seconds, the cache folder."""

    compiled: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cache: str | None = None

    def merge(self, other: Report) -> None:
        """Add another report's kernels and time (a task run in another process)."""
        self.compiled += other.compiled
        self.loaded += other.loaded
        self.seconds += other.seconds

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "compiled": self.compiled,
            "loaded": self.loaded,
            "seconds": self.seconds,
            "cache": self.cache,
        }


def _dispatchers() -> list[Any]:
    """Every Numba dispatcher of the kernels (entry points and the helpers they call)."""
    from numba.core.registry import CPUDispatcher

    from numba_gn.kernels import activations, partial, pool, rows, slab
    from numba_gn.kernels import conv as conv_kernels

    found = []
    for module in (slab, rows, conv_kernels, pool, activations, partial):
        for value in vars(module).values():
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == module.__name__:
                found.append(value)
    return found


def cached(kernels: Iterable[str]) -> bool:
    """Whether every named kernel (`"module.function"`, as in `Report`) is in the disk cache.

    A cheap look for each kernel's index file, without loading anything: True means the
    kernels were compiled and saved before, for some signatures.
    """
    wanted = set(kernels)
    found = set()
    for d in _dispatchers():
        name = f"{d.py_func.__module__.rsplit('.', 1)[-1]}.{d.py_func.__name__}"
        if name in wanted:
            cache = getattr(d, "_cache", None)
            if cache is None or not hasattr(cache, "has_index") or not cache.has_index():
                return False
            found.add(name)
    unknown = wanted - found
    if unknown:
        raise ValueError(f"`kernels` names unknown kernels: {sorted(unknown)}")
    return True


def _counts(dispatchers: Sequence[Any]) -> dict[str, tuple[int, int]]:
    out = {}
    for d in dispatchers:
        stats = d.stats
        key = f"{d.py_func.__module__.rsplit('.', 1)[-1]}.{d.py_func.__name__}"
        out[key] = (sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
    return out


def _run_case(case: Case, dtype: str) -> None:
    size = int(np.prod(case.shape))
    x = np.linspace(-1.0, 1.0, size).reshape(case.shape).astype(dtype)
    if case.name.startswith("winograd"):
        _run_winograd(x)
        return
    if case.name.startswith("max pooling"):
        _run_max_pool(x, case.parallel)
        return
    if case.layout == "dask":
        from numba_gn import dask as gn_dask

        gn_dask._warm_blocks(dtype)
        return
    if case.name.startswith("activations"):
        from numba_gn.kernels import activations

        for name in activations.CODES:
            activations.backward(name, x, activations.forward(name, x))
        return
    if case.layout == "conv":
        from numba_gn.kernels.conv import col2im

        n, h, w, c = case.shape
        cols = np.ones((n * (h - 2) * (w - 2), 9 * c), dtype=dtype)
        col2im(cols, case.shape, (3, 3), (1, 1), (1, 1), (h - 2, w - 2))
        return
    fused = {}
    if case.activation is not None:
        tanh = case.activation == "gelu_tanh"
        fused = {"activation": "gelu" if tanh else case.activation, "approximate": tanh}
        if case.residual:
            fused["residual"] = x
    with _engine.forced(strategy=strategy(case)):
        if case.passes != "backward":
            y, mean, rstd = group_norm(x, case.groups, axis=case.axis, return_stats=True, **fused)
        else:  # any statistics of the right shape compile the same backward kernels
            y = x
            mean = np.zeros((x.shape[0], case.groups))
            rstd = np.ones((x.shape[0], case.groups))
        if case.passes != "forward":
            group_norm_backward(y, x, mean, rstd, case.groups, axis=case.axis, **fused)


def strategy(case: Case) -> str:
    """The kernel strategy a group norm case runs (see `numba_gn._engine.Path`).

    Forced rather than chosen from the size, so that the case compiles the kernels its name
    says with a small input, whatever the limits in `numba_gn._knobs` are.
    """
    if not case.parallel:
        return "serial"
    return "chunked" if "chunked" in case.name or "waves" in case.name else "fused"


def _run_max_pool(x: np.ndarray, parallel: bool) -> None:
    """2x2 max pooling of `x` (N, H, W, C) and its backward, as `MaxPooling2D` runs them."""
    from numba_gn.kernels import pool

    n, h, w, c = x.shape
    y = np.empty((n, h // 2, w // 2, c), dtype=x.dtype)
    arg = np.empty(y.shape, dtype=np.int32)
    forward, backward = (
        (pool.max_pool_par, pool.max_pool_backward_par)
        if parallel
        else (pool.max_pool_ser, pool.max_pool_backward_ser)
    )
    forward(x, 2, 2, 2, 2, 0, 0, y, arg)
    backward(y, arg, np.empty_like(x))


def _run_winograd(x: np.ndarray) -> None:
    """The four Winograd transforms of a "same" 3x3 convolution of `x` (N, H, W, C)."""
    from numba_gn.kernels import conv as kc

    n, h, w, c = x.shape
    tiles = (-(-h // 2), -(-w // 2))
    v = kc.winograd_input(x, (1, 1), tiles)
    y = kc.winograd_output(v, np.zeros(c, dtype=x.dtype), x.shape)
    kc.winograd_input_grad(kc.winograd_output_grad(y), x.shape, (1, 1), tiles)


def _fused(case: Case, activations: Sequence[str]) -> list[Case]:
    """The fused variants of a group norm case: each activation without and with a residual.

    Without a residual, `linear` is plain GroupNorm: no variant.
    """
    return [
        replace(
            case,
            name=f"{case.name}, {act}" + (" + residual" if residual else ""),
            activation=act,
            residual=residual,
        )
        for act in activations
        for residual in (False, True)
        if residual or act != "linear"
    ]


def tasks(
    dtypes: Iterable[str | np.dtype] = ("float32", "float64"),
    layouts: Iterable[str] = DEFAULT_LAYOUTS,
    parallel: bool = True,
    names: Iterable[str] | None = None,
    activations: Iterable[str] = (),
) -> list[tuple[str, Case]]:
    """The (dtype, case) pairs a warm-up runs, checked; `names` picks cases by name.

    `activations` adds the fused kernels of each group norm case for those activations.
    """
    dts = [np.dtype(d).name for d in dtypes]
    for d in dts:
        if d not in DTYPES:
            raise ValueError(f"`dtypes` may hold {', '.join(DTYPES)}; got {d!r}.")
    lays = list(layouts)
    for lay in lays:
        if lay not in LAYOUTS:
            raise ValueError(f"`layouts` may hold {', '.join(LAYOUTS)}; got {lay!r}.")
    chosen = [c for c in cases() if c.layout in lays and (parallel or not c.parallel)]
    if names is not None:
        wanted = list(names)
        known = {c.name for c in cases()}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise ValueError(
                f"`names` must be case names ({', '.join(sorted(known))}); got {unknown}."
            )
        chosen = [c for c in chosen if c.name in wanted]
    acts = [activations] if isinstance(activations, str) else list(activations)
    for act in acts:
        if act not in ACTIVATIONS:
            raise ValueError(f"`activations` may hold {', '.join(ACTIVATIONS)}; got {act!r}.")
    if acts:
        group_norm_layouts = ("channels-last", "channels-first")
        chosen = [
            v for c in chosen
            for v in [c, *(_fused(c, acts) if c.layout in group_norm_layouts else [])]
        ]
    # The conv kernels are float32/float64 only (the layers compute float16 in float32), the
    # activation kernels float32 only (other dtypes use NumPy).
    return [
        (d, c)
        for d in dts
        for c in chosen
        if not (c.layout == "conv" and d == "float16")
        and not (c.name.startswith("activations") and d != "float32")
    ]


def run_tasks(
    todo: Sequence[tuple[str, Case]],
    progress: Callable[[int, int, str, Report], None] | None = None,
) -> Report:
    """Run `todo` in this process; `progress(done, total, label, step_report)` after each."""
    dispatchers = _dispatchers()
    report = Report(cache=_cache.cache_root())
    for i, (dtype, case) in enumerate(todo):
        before = _counts(dispatchers)
        start = time.perf_counter()
        _run_case(case, dtype)
        step = Report(seconds=time.perf_counter() - start, cache=report.cache)
        for name, (hits, misses) in _counts(dispatchers).items():
            h0, m0 = before[name]
            step.loaded += [name] * (hits - h0)
            step.compiled += [name] * (misses - m0)
        report.merge(step)
        if progress is not None:
            passes = "" if case.passes == "both" else f" ({case.passes})"
            progress(i + 1, len(todo), f"{dtype} {case.name}{passes}", step)
    return report


_CHILD = (
    "import json, sys\n"
    "from numba_gn import _warmup\n"
    "todo = [(d, _warmup.Case(*c)) for d, c in json.loads(sys.argv[1])]\n"
    "def say(done, total, label, step):\n"
    "    print(json.dumps({'label': label, **step.as_dict()}), flush=True)\n"
    "_warmup.run_tasks(todo, say)\n"
)


def _split_passes(todo: Sequence[tuple[str, Case]]) -> list[tuple[str, Case]]:
    """Group norm tasks as a forward and a backward task each (two processes can take them)."""
    out = []
    for dtype, case in todo:
        if case.layout == "conv" or case.passes != "both":
            out.append((dtype, case))
        else:
            out += [(dtype, replace(case, passes=p)) for p in ("forward", "backward")]
    return out


def _cost(task: tuple[str, Case]) -> int:
    """A task's compile time relative to the others, from measured compile times.

    Measured per task in one process with an empty cache: a parallel group norm backward
    compiles slowest, then its forward, then the serial passes; the fused kernels add their
    activation's loops; convolution and activation tasks are the quickest. The scale is
    tenths of a second on the 2-core test VM (only ratios matter).
    """
    case = task[1]
    if case.layout == "conv":
        return 10
    if case.passes == "both":
        weight = 85 if case.parallel else 45
    elif case.passes == "backward":
        weight = 45 if case.parallel else 20
    else:
        weight = 40 if case.parallel else 24
    return weight + (20 if case.activation is not None else 0)


def _shares(todo: Sequence[tuple[str, Case]], jobs: int) -> list[list[tuple[str, Case]]]:
    """`todo` over `jobs` processes, so that the slowest process finishes soonest.

    Longest first, each to the least loaded; then single moves and swaps between the most and
    the least loaded share while they shorten the longer one (greedy alone left the demo's
    two processes 1.3 s apart).
    """
    shares: list[list[tuple[str, Case]]] = [[] for _ in range(jobs)]
    loads = [0] * jobs
    for task in sorted(todo, key=_cost, reverse=True):
        i = loads.index(min(loads))
        shares[i].append(task)
        loads[i] += _cost(task)
    improved = jobs > 1
    while improved:
        improved = False
        hi, lo = loads.index(max(loads)), loads.index(min(loads))
        gap = loads[hi] - loads[lo]
        best = (0, None, None)  # (reduction of the larger load, task from hi, task from lo)
        for a in shares[hi]:
            for b in [None, *shares[lo]]:
                delta = _cost(a) - (_cost(b) if b is not None else 0)
                gain = min(delta, gap - delta)  # the larger of the two loads falls by this
                if 0 < delta < gap and gain > best[0]:
                    best = (gain, a, b)
        if best[1] is not None:
            _, a, b = best
            shares[hi].remove(a)
            shares[lo].append(a)
            if b is not None:
                shares[lo].remove(b)
                shares[hi].append(b)
            loads = [sum(_cost(t) for t in share) for share in shares]
            improved = True
    return shares


def run_tasks_in_processes(
    todo: Sequence[tuple[str, Case]],
    jobs: int,
    progress: Callable[[int, int, str, Report], None] | None = None,
) -> tuple[Report, bool]:
    """Run `todo` over `jobs` child processes sharing the disk cache.

    Numba compiles with the GIL held, so processes are the way to use several cores. Group norm
    tasks are split into their forward and backward passes and the tasks are spread by their
    expected cost. Returns the merged report and whether a child failed;
    `progress(done, total, label, step_report)` is called (from reader threads, one at a
    time) as each task finishes, counting a group norm task's passes separately.
    """
    import json
    import subprocess
    import sys
    import threading
    from dataclasses import astuple

    report = Report(cache=_cache.cache_root())
    split = _split_passes(todo)
    shares = _shares(split, jobs)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps([(d, astuple(c)) for d, c in share])],
            stdout=subprocess.PIPE,
            text=True,
        )
        for share in shares
        if share
    ]
    lock = threading.Lock()
    done = [0]  # tasks reported so far, by all children

    def read(child: subprocess.Popen) -> None:
        assert child.stdout is not None
        with child.stdout:
            _read_lines(child.stdout)

    def _read_lines(stream: Any) -> None:
        for line in stream:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            step = Report(data["compiled"], data["loaded"], data["seconds"], data["cache"])
            with lock:
                report.compiled += step.compiled
                report.loaded += step.loaded
                done[0] += 1
                if progress is not None:
                    progress(done[0], len(split), data["label"], step)

    readers = [threading.Thread(target=read, args=(c,)) for c in children]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    failed = [c.wait() for c in children]
    return report, any(failed)


def warmup(
    dtypes: Iterable[str | np.dtype] = ("float32", "float64"),
    parallel: bool = True,
    layouts: Iterable[str] = DEFAULT_LAYOUTS,
    *,
    names: Iterable[str] | None = None,
    jobs: int = 1,
    activations: Iterable[str] = (),
) -> Report:
    """Compile or load every kernel the given dtypes and layouts can use, now.

    First-call latency then moves here (application start-up, a worker's set-up, a container
    image's build step). With a warm disk cache this takes well under a second; with an empty
    one, seconds per kernel (`numba-gn warmup --jobs N` spreads that over processes).

    Parameters
    ----------
    dtypes : iterable of str or dtype, default ("float32", "float64")
        Any of float32, float64, float16.
    parallel : bool, default True
        Also the parallel kernels (used for larger inputs; see `numba_gn._knobs`).
    layouts : iterable of str, default ("channels-last", "channels-first", "conv")
        Any of "channels-last", "channels-first", "conv" (the convolution layers' and
        activations' kernels) and "dask" (the per-block kernels of `numba_gn.dask`; needs
        Dask).
    names : iterable of str, optional
        Only the cases with these names (see `cases()`), for an application that knows
        which kernels it uses.
    activations : iterable of str, default ()
        Also the fused kernels (`group_norm(..., activation=, residual=)`) for these
        activations (`ACTIVATIONS`; `"gelu_tanh"` is gelu with `approximate=True`), with and
        without a residual: a model's GroupNormalization followed by an activation runs them
        (see `Model.compile(fuse=...)`). Each activation costs about as much as the plain
        kernels again, twice.
    jobs : int, default 1
        Processes compiling at once. Numba compiles with the GIL held, so with an empty cache
        `jobs` up to the number of cores divides the wall time; each child costs an import
        (about a second) even when everything is cached already.

    Returns
    -------
    Report
        The kernels compiled and those loaded from the disk cache (a name per specialisation),
        the seconds taken and the cache folder.
    """
    todo = tasks(dtypes, layouts, parallel, names, activations)
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"`jobs` must be an int >= 1, got {jobs!r}.")
    if jobs == 1:
        return run_tasks(todo)
    start = time.perf_counter()
    report, failed = run_tasks_in_processes(todo, jobs)
    if failed:
        raise RuntimeError("a warm-up process failed; run `numba-gn warmup` to see its error")
    report.seconds = time.perf_counter() - start
    return report
