"""`numba-gn bench --dask`: `numba_gn.dask` next to in-memory numba_gn, `dask.array` and clusters.

One run measures, on a float32 `(N, C, H, W)` array (`(64, 256, 64, 64)` at `--size full`,
32 groups, channel axis 1, affine gamma/beta, data `1e4 + N(0, 1)`), the median seconds of
`--repeat` samples after one untimed call (which compiles or loads the kernels):

* `in_memory`: `numba_gn.group_norm` on the NumPy array, with all of Numba's threads;
* `dask_threads`: `numba_gn.dask.group_norm` on the array in 16 batch chunks, persisted with
  the threaded scheduler (the chunks stay in memory, as the in-memory result does);
  `dask_threads_compute` the same with `.compute()` (which also concatenates the chunks);
* `dask_reductions`: the same group norm written with `dask.array` reductions (mean and
  variance of the array reshaped to `(N, G, C/G, H, W)`), on the same chunks;
* `dask_threads_blocks` / `dask_reductions_blocks`: both again with the array chunked along
  the channel and spatial axes as well, in as many chunks as the batch-chunked array
  (`(16, 128, 32, 64)` at `--size full`: 4 x 2 x 2 chunks of 16 MiB);
  `pool_blocks`: the same block tasks run on a pool of threads (one per CPU) without Dask,
  i.e. the blocked algorithm's own cost; `dask_threads_fine`: `numba_gn.dask` with much
  smaller blocks (`(4, 64, 32, 32)`: 256 of 1 MiB), where Dask's cost per task shows;
* `cluster_2_workers` / `cluster_1_worker`: `numba_gn.dask.group_norm` of a batch-chunked
  array of the same shape and distribution, persisted on a `LocalCluster` of two single-thread
  worker processes, with the data made and kept on the workers (on both, or all on one);
* `out_of_core`: a Zarr store larger than the workers' memory limit (2 GiB, two workers of
  640 MiB each, at `--size full`) normalised into another store (uncompressed, both in a
  temporary folder), one run: seconds, GB/s (bytes read + written), and the peak memory (RSS)
  of each worker process.

Ratios compare the medians (above 1: the first is slower). `--size tiny` (or `numba-gn bench
--dask --quick`) runs everything on tiny arrays, as a smoke test; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from numba_gn._atomic import write_text
from numba_gn._timing import median_of_runs

__all__ = ["SIZES", "Size", "main", "measure", "print_report", "run"]

SCHEMA = 1
OFFSET = 1e4
EPSILON = 1e-3


@dataclass(frozen=True)
class Size:
    """The arrays of one `--size`."""

    shape: tuple[int, int, int, int]  # (N, C, H, W), float32
    groups: int
    batch_chunk: int  # samples per chunk of the batch-chunked array
    block_chunks: tuple[int, int, int, int]  # chunked along every axis, as many chunks
    fine_chunks: tuple[int, int, int, int]  # chunked along every axis, small blocks
    store_samples: int  # samples of the out-of-core store (same C, H, W)
    memory_limit: str  # per worker of the out-of-core cluster


SIZES = {
    "tiny": Size((8, 32, 8, 8), 8, 2, (4, 16, 4, 8), (2, 8, 4, 4), 32, "2GiB"),
    "small": Size((16, 64, 32, 32), 32, 4, (8, 32, 16, 32), (2, 16, 8, 16), 128, "2GiB"),
    "full": Size((64, 256, 64, 64), 32, 4, (16, 128, 32, 64), (4, 64, 32, 32), 512, "640MiB"),
}

#: The scheduler's HTTP routes on a free port: even without a dashboard they would take 8787,
#: which another cluster on the machine may hold.
_NO_FIXED_PORT = {"dashboard_address": ":0"}


def group_norm_reductions(x: Any, groups: int, gamma: np.ndarray, beta: np.ndarray) -> Any:
    """Group norm of a `(N, C, ...)` Dask array written with `dask.array` reductions."""
    import dask.array as da

    n, c = x.shape[:2]
    rest = x.shape[2:]
    xg = x.reshape((n, groups, c // groups, *rest))
    axes = tuple(range(2, xg.ndim))
    mean = xg.mean(axis=axes, keepdims=True)
    var = xg.var(axis=axes, keepdims=True)
    y = ((xg - mean) / da.sqrt(var + EPSILON)).reshape(x.shape)
    shape = (1, c) + (1,) * len(rest)
    return y * gamma.reshape(shape) + beta.reshape(shape)


def blocks_on_a_pool(x: np.ndarray, chunks: tuple[int, ...], groups: int, gamma: np.ndarray,
                     beta: np.ndarray, pool: Any) -> list[np.ndarray]:
    """The forward of `numba_gn.dask` on `(N, C, ...)` blocks, run on a thread pool, no Dask.

    The same block tasks (moments, merge per batch chunk, output) with the work of Dask's
    scheduler taken away: what the blocked graph would cost if scheduling were free.
    """
    import itertools

    import numba_gn.dask as gd

    setup = gd._Setup(x, groups, None, 1)
    params = np.concatenate([gamma, beta]).astype(np.float64)
    starts = [range(0, n, c) for n, c in zip(x.shape, chunks, strict=True)]
    blocks = [tuple(slice(a, a + c) for a, c in zip(corner, chunks, strict=True))
              for corner in itertools.product(*starts)]

    def moments(b: tuple[slice, ...]) -> np.ndarray:
        with gd._task_threads(None):
            return gd._moments_block(x[b], np.arange(setup.C)[b[1]], layout=setup.layout)

    by_batch_chunk: dict[int, list[np.ndarray]] = {}
    for b, part in zip(blocks, pool.map(moments, blocks), strict=True):
        by_batch_chunk.setdefault(b[0].start, []).append(part)
    axes = tuple(range(1, x.ndim))
    stats = {k: gd._finish_moments(np.concatenate(v, axis=1), axes, epsilon=EPSILON)
             for k, v in by_batch_chunk.items()}

    def apply(b: tuple[slice, ...]) -> np.ndarray:
        with gd._task_threads(None):
            return gd._apply_block(x[b], np.arange(setup.C)[b[1]], stats[b[0].start], params,
                                   layout=setup.layout)

    return list(pool.map(apply, blocks))


_sampler: dict[str, Any] = {}


def _start_rss_sampler(interval: float = 0.005) -> int:
    """In a worker: sample this process's resident memory every `interval` s; returns it now.

    Sampled rather than read from `getrusage`: a worker process forked from a large parent
    inherits the parent's peak there, which says nothing about the worker's own use.
    """
    import threading

    import psutil  # a dependency of distributed

    proc = psutil.Process()
    state = {"peak": proc.memory_info().rss, "stop": threading.Event()}

    def sample() -> None:
        while not state["stop"].wait(interval):
            state["peak"] = max(state["peak"], proc.memory_info().rss)

    thread = threading.Thread(target=sample, name="numba_gn-rss-sampler", daemon=True)
    thread.start()
    _sampler.update(state=state, thread=thread)
    return state["peak"]


def _stop_rss_sampler() -> int:
    """In a worker: stop `_start_rss_sampler`; the peak resident memory it saw, in bytes."""
    state = _sampler.pop("state")
    state["stop"].set()
    _sampler.pop("thread").join()
    return int(state["peak"])


def _zarr_array(path: str, shape: tuple[int, ...], chunks: tuple[int, ...]) -> Any:
    """A new uncompressed float32 Zarr array at `path` (zarr 2 or 3)."""
    import zarr

    if int(zarr.__version__.split(".")[0]) >= 3:
        return zarr.create_array(
            store=path, shape=shape, chunks=chunks, dtype="float32", compressors=None
        )
    return zarr.open_array(
        path, mode="w", shape=shape, chunks=chunks, dtype="float32", compressor=None
    )


def measure(size: str = "full", repeat: int = 5, workdir: str | None = None,
            progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every measurement of `size`; returns the JSON-ready report."""
    import dask.array as da
    import numba
    from dask import core
    from distributed import Client, LocalCluster, wait

    import numba_gn
    import numba_gn.dask as gd

    say = progress or (lambda text: None)
    spec = SIZES[size]
    n, c, h, w = spec.shape
    rng = np.random.default_rng(0)
    x = (OFFSET + rng.standard_normal(spec.shape, dtype=np.float32)).astype(np.float32)
    gamma = (1 + 0.1 * rng.standard_normal(c)).astype(np.float32)
    beta = (0.1 * rng.standard_normal(c)).astype(np.float32)
    G = spec.groups
    batch = (spec.batch_chunk, c, h, w)
    xb = da.from_array(x, chunks=batch)
    xk = da.from_array(x, chunks=spec.block_chunks)
    xf = da.from_array(x, chunks=spec.fine_chunks)
    seconds: dict[str, float] = {}

    def persist(arr: Any) -> None:
        out = arr.persist(scheduler="threads")
        del out

    say("in-memory numba_gn.group_norm")
    seconds["in_memory"] = median_of_runs(
        lambda: numba_gn.group_norm(x, G, gamma, beta, axis=1), repeat
    )
    for label, arr in (("", xb), ("_blocks", xk)):
        say(f"numba_gn.dask, threaded scheduler{label.replace('_', ', ')}")
        seconds["dask_threads" + label] = median_of_runs(
            lambda arr=arr: persist(gd.group_norm(arr, G, gamma, beta, axis=1)), repeat
        )
        say(f"dask.array reductions{label.replace('_', ', ')}")
        seconds["dask_reductions" + label] = median_of_runs(
            lambda arr=arr: persist(group_norm_reductions(arr, G, gamma, beta)), repeat
        )
    say("the blocked tasks on a pool of threads, without Dask")
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        seconds["pool_blocks"] = median_of_runs(
            lambda: blocks_on_a_pool(x, spec.block_chunks, G, gamma, beta, pool), repeat
        )
    say("numba_gn.dask, threaded scheduler, small blocks")
    seconds["dask_threads_fine"] = median_of_runs(
        lambda: persist(gd.group_norm(xf, G, gamma, beta, axis=1)), repeat
    )
    say("numba_gn.dask, threaded scheduler, compute()")
    seconds["dask_threads_compute"] = median_of_runs(
        lambda: gd.group_norm(xb, G, gamma, beta, axis=1).compute(scheduler="threads"), repeat
    )

    say("LocalCluster: 2 worker processes of 1 thread")
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        scheduler_kwargs=_NO_FIXED_PORT,
        memory_limit=0,
    ) as cluster, Client(cluster) as client:
        workers = sorted(client.scheduler_info()["workers"])

        persisted: list[Any] = []

        def on_cluster(data: Any, where: list[str] | None) -> None:
            y = client.persist(gd.group_norm(data, G, gamma, beta, axis=1), workers=where)
            wait(y)
            persisted.append(y)

        def release() -> None:
            # Every run has the same keys: wait until the scheduler has released them, so that
            # the next run computes them again rather than finding them in the workers' memory.
            keys = list(core.flatten(persisted.pop().__dask_keys__()))
            deadline = time.perf_counter() + 10
            while time.perf_counter() < deadline and any(client.who_has(keys).values()):
                time.sleep(0.005)

        def timed(where: list[str] | None) -> float:
            # The same kind of data, made on the workers (shipping `x` through the scheduler
            # would time the transfer), with a seed of its own per run: nothing is shared.
            rng_d = da.random.default_rng(len(where or ()))
            made = OFFSET + rng_d.standard_normal(spec.shape, chunks=batch, dtype=np.float32)
            data = client.persist(made.astype(np.float32), workers=where)
            wait(data)
            try:
                return median_of_runs(lambda: on_cluster(data, where), repeat, after=release)
            finally:
                client.cancel(data)

        seconds["cluster_2_workers"] = timed(None)
        say("LocalCluster: 1 worker process of 1 thread")
        seconds["cluster_1_worker"] = timed(workers[:1])

    say("out of core: Zarr store to Zarr store")
    with tempfile.TemporaryDirectory(dir=workdir, prefix="numba-gn-bench-dask-") as tmp:
        out_of_core = _out_of_core(spec, gamma, beta, tmp)

    def ratio(a: str, b: str) -> float:
        return seconds[a] / seconds[b]

    return {
        "schema": SCHEMA,
        "size": size,
        "shape": list(spec.shape),
        "dtype": "float32",
        "groups": G,
        "batch_chunks": list(batch),
        "block_chunks": list(spec.block_chunks),
        "fine_chunks": list(spec.fine_chunks),
        "repeat": repeat,
        "numba_threads": numba.get_num_threads(),
        "cpus": os.cpu_count(),
        "seconds": seconds,
        "ratios": {
            "dask_threads / in_memory": ratio("dask_threads", "in_memory"),
            "dask_threads_compute / in_memory": ratio("dask_threads_compute", "in_memory"),
            "dask_reductions / dask_threads": ratio("dask_reductions", "dask_threads"),
            "dask_threads_blocks / in_memory": ratio("dask_threads_blocks", "in_memory"),
            "dask_threads_blocks / dask_threads": ratio("dask_threads_blocks", "dask_threads"),
            "pool_blocks / in_memory": ratio("pool_blocks", "in_memory"),
            "dask_threads_fine / in_memory": ratio("dask_threads_fine", "in_memory"),
            "dask_reductions_blocks / dask_threads_blocks": ratio(
                "dask_reductions_blocks", "dask_threads_blocks"
            ),
            "cluster_1_worker / cluster_2_workers": ratio("cluster_1_worker", "cluster_2_workers"),
            "cluster_2_workers / dask_threads": ratio("cluster_2_workers", "dask_threads"),
        },
        "out_of_core": out_of_core,
    }


def _out_of_core(spec: Size, gamma: np.ndarray, beta: np.ndarray, tmp: str) -> dict[str, Any]:
    """Normalise a Zarr store into another on a cluster with a memory limit per worker."""
    import dask.array as da
    from dask.utils import parse_bytes
    from distributed import Client, LocalCluster

    import numba_gn
    import numba_gn.dask as gd

    n, c, h, w = spec.shape
    shape = (spec.store_samples, c, h, w)
    chunks = (spec.batch_chunk, c, h, w)
    source = _zarr_array(os.path.join(tmp, "source.zarr"), shape, chunks)
    target = _zarr_array(os.path.join(tmp, "target.zarr"), shape, chunks)
    # The source is written chunk by chunk (threaded scheduler), never whole in memory.
    data = OFFSET + da.random.default_rng(1).standard_normal(shape, chunks=chunks,
                                                             dtype=np.float32)
    da.store(data.astype(np.float32), source, lock=False, scheduler="threads")
    store_bytes = math.prod(shape) * 4
    limit = parse_bytes(spec.memory_limit)
    workers = 2
    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
        scheduler_kwargs=_NO_FIXED_PORT,
        memory_limit=spec.memory_limit,
    ) as cluster, Client(cluster) as client:
        before = client.run(_start_rss_sampler)
        y = gd.group_norm(da.from_zarr(source), spec.groups, gamma, beta, axis=1)
        t0 = time.perf_counter()
        da.store(y, target, lock=False)
        elapsed = time.perf_counter() - t0
        peaks = client.run(_stop_rss_sampler)
    first = np.asarray(source[: spec.batch_chunk])
    diff = np.max(np.abs(np.asarray(target[: spec.batch_chunk])
                         - numba_gn.group_norm(first, spec.groups, gamma, beta, axis=1)))
    return {
        "store_shape": list(shape),
        "store_chunks": list(chunks),
        "store_bytes": store_bytes,
        "workers": workers,
        "memory_limit_bytes": limit,
        "store_larger_than_memory_limit": store_bytes > workers * limit,
        "seconds": elapsed,
        "gbps": 2 * store_bytes / elapsed / 1e9,
        "peak_worker_rss_bytes": sorted(v for v in peaks.values() if v is not None) or None,
        "start_worker_rss_bytes": sorted(v for v in before.values() if v is not None) or None,
        "max_abs_diff_first_chunk": float(diff),
    }


def _fmt_s(t: float) -> str:
    return f"{t * 1e3:9.2f} ms" if t < 1 else f"{t:9.3f} s "


def print_report(report: dict[str, Any], stream: Any = None) -> None:
    """The report as readable tables."""
    out = stream or sys.stdout
    shape = "x".join(str(s) for s in report["shape"])
    print(f"numba_gn.dask benchmark: float32 {shape}, {report['groups']} groups, "
          f"batch chunks {tuple(report['batch_chunks'])}, blocks {tuple(report['block_chunks'])} "
          f"and {tuple(report['fine_chunks'])}, "
          f"median of {report['repeat']} (Numba threads {report['numba_threads']}, "
          f"{report['cpus']} CPUs)", file=out)
    print("", file=out)
    for name, t in report["seconds"].items():
        print(f"  {name:<28} {_fmt_s(t)}", file=out)
    print("", file=out)
    print("ratios (median / median; above 1: the first is slower)", file=out)
    for name, r in report["ratios"].items():
        print(f"  {name:<46} {r:7.2f}", file=out)
    ooc = report["out_of_core"]
    peaks = ooc["peak_worker_rss_bytes"]
    peak = "n/a" if not peaks else ", ".join(f"{p / 2**20:.0f} MiB" for p in peaks)
    print("", file=out)
    print(f"out of core: Zarr store {ooc['store_bytes'] / 2**20:.0f} MiB -> Zarr store, "
          f"{ooc['workers']} workers x {ooc['memory_limit_bytes'] / 2**20:.0f} MiB limit"
          f"{'' if ooc['store_larger_than_memory_limit'] else ' (store smaller than limits)'}",
          file=out)
    print(f"  {_fmt_s(ooc['seconds']).strip()}, {ooc['gbps']:.2f} GB/s read+written, "
          f"peak worker RSS {peak}; max |diff| of the first chunk "
          f"{ooc['max_abs_diff_first_chunk']:.1e}", file=out)


def run(size: str, repeat: int, json_path: str | None = None, workdir: str | None = None,
        threads: int | None = None) -> int:
    """Measure, print, optionally write JSON; the exit status."""
    import numba

    if threads is not None:
        limit = numba.config.NUMBA_NUM_THREADS
        if not 1 <= threads <= limit:
            print(f"--threads must be between 1 and {limit} (NUMBA_NUM_THREADS)", file=sys.stderr)
            return 2
        numba.set_num_threads(threads)
    if repeat < 1:
        print("--repeat must be at least 1", file=sys.stderr)
        return 2

    def say(text: str) -> None:
        print(f"... {text}", file=sys.stderr, flush=True)

    report = measure(size, repeat, workdir, progress=say)
    print_report(report)
    if json_path:
        write_text(json_path, json.dumps(report, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m numba_gn.cli.bench_dask`: the same benchmark with a choice of sizes."""
    parser = argparse.ArgumentParser(prog="python -m numba_gn.cli.bench_dask",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="array sizes (default: full; tiny: a smoke test)")
    parser.add_argument("--repeat", type=int, default=5, help="timed samples per measurement")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument("--workdir", help="folder for the temporary Zarr stores")
    parser.add_argument("--threads", type=int, help="Numba threads of the in-memory call")
    args = parser.parse_args(argv)
    return run(args.size, args.repeat, args.json, args.workdir, args.threads)


if __name__ == "__main__":
    sys.exit(main())
