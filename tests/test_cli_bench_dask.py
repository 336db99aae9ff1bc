"""`numba-gn bench --dask` runs end to end on tiny arrays and reports every measurement.

Only the structure of the report is checked (every timing present and positive, the ratios,
the out-of-core run's memory figures), never the timings themselves: the tiny run is a smoke
test. The peer it times, group norm written with `dask.array` reductions, is checked against the
float64 reference, so the comparison is between two correct implementations.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
pytest.importorskip("distributed")
pytest.importorskip("zarr")

from reference import group_norm_ref  # noqa: E402

from numba_gn.cli import bench_dask  # noqa: E402

TIMINGS = {
    "in_memory", "dask_threads", "dask_threads_compute", "dask_reductions",
    "dask_threads_blocks", "dask_reductions_blocks", "dask_threads_fine", "pool_blocks",
    "cluster_2_workers",
    "cluster_1_worker",
}
RATIOS = {
    "dask_threads / in_memory", "dask_threads_compute / in_memory",
    "dask_reductions / dask_threads", "dask_threads_blocks / in_memory",
    "dask_threads_blocks / dask_threads", "dask_threads_fine / in_memory",
    "pool_blocks / in_memory",
    "dask_reductions_blocks / dask_threads_blocks", "cluster_1_worker / cluster_2_workers",
    "cluster_2_workers / dask_threads",
}


def test_bench_dask_quick_reports_every_measurement(tmp_path):
    out = tmp_path / "dask.json"
    proc = subprocess.run(
        [sys.executable, "-m", "numba_gn", "bench", "--dask", "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["schema"] == bench_dask.SCHEMA and report["size"] == "tiny"
    assert report["shape"] == list(bench_dask.SIZES["tiny"].shape)
    assert report["repeat"] >= 1 and report["numba_threads"] >= 1
    assert set(report["seconds"]) == TIMINGS
    assert all(isinstance(t, float) and t > 0 for t in report["seconds"].values())
    assert set(report["ratios"]) == RATIOS
    assert all(r > 0 for r in report["ratios"].values())
    ooc = report["out_of_core"]
    assert ooc["store_bytes"] == 4 * np.prod(ooc["store_shape"]) and ooc["workers"] == 2
    assert ooc["seconds"] > 0 and ooc["gbps"] > 0
    assert ooc["max_abs_diff_first_chunk"] == 0.0  # batch chunks: the in-memory bits
    if sys.platform != "win32":
        assert len(ooc["peak_worker_rss_bytes"]) == 2
        assert all(p >= s for p, s in zip(ooc["peak_worker_rss_bytes"],
                                          ooc["start_worker_rss_bytes"], strict=True))
    for line in ("in_memory", "ratios", "dask_threads / in_memory", "out of core", "peak worker"):
        assert line in proc.stdout
    assert not list(tmp_path.glob("numba-gn-bench-dask-*"))  # the stores are gone


def test_the_full_size_is_the_documented_one():
    full = bench_dask.SIZES["full"]
    assert full.shape == (64, 256, 64, 64) and full.shape[0] // full.batch_chunk == 16
    # the blocked array: as many chunks, split along the channels and space as well
    counts = [s // c for s, c in zip(full.shape, full.block_chunks, strict=True)]
    assert np.prod(counts) == 16 and counts[1] > 1 and max(counts[2:]) > 1
    assert all(s % c == 0 for s, c in zip(full.shape, full.fine_chunks, strict=True))
    assert np.prod([s // c for s, c in zip(full.shape, full.fine_chunks, strict=True)]) == 256
    store = full.store_samples * np.prod(full.shape[1:]) * 4
    from dask.utils import parse_bytes

    assert store > 2 * parse_bytes(full.memory_limit)  # larger than both workers' limits


def test_the_dask_reductions_peer_is_correct(rng):
    x = (100 + rng.standard_normal((4, 16, 5, 3))).astype(np.float64)
    gamma, beta = rng.standard_normal(16), rng.standard_normal(16)
    for chunks in ((1, 16, 5, 3), (2, 8, 3, 3)):
        y = bench_dask.group_norm_reductions(da.from_array(x, chunks=chunks), 4, gamma, beta)
        ref, _, _ = group_norm_ref(x, 4, gamma, beta, axis=1, epsilon=bench_dask.EPSILON)
        np.testing.assert_allclose(y.compute(scheduler="sync"), ref, atol=1e-9)


def test_the_pool_of_blocks_computes_the_blocked_graph(rng):
    """The no-Dask measurement runs the blocked algorithm: its blocks are Dask's, bit for bit."""
    from concurrent.futures import ThreadPoolExecutor

    import numba_gn.dask as gd

    x = (100 + rng.standard_normal((4, 16, 6, 8))).astype(np.float32)
    gamma = (1 + 0.1 * rng.standard_normal(16)).astype(np.float32)
    beta = (0.1 * rng.standard_normal(16)).astype(np.float32)
    chunks = (2, 8, 3, 8)
    with ThreadPoolExecutor(2) as pool:
        blocks = bench_dask.blocks_on_a_pool(x, chunks, 4, gamma, beta, pool)
    y = gd.group_norm(da.from_array(x, chunks=chunks), 4, gamma, beta, axis=1,
                      epsilon=bench_dask.EPSILON).compute(scheduler="sync")
    corners = [(n, c, h) for n in (0, 2) for c in (0, 8) for h in (0, 3)]
    assert len(blocks) == len(corners)
    for (n, c, h), block in zip(corners, blocks, strict=True):
        np.testing.assert_array_equal(block, y[n : n + 2, c : c + 8, h : h + 3])


def test_bench_help_lists_dask():
    from numba_gn.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["bench", "--dask", "--quick"])
    assert args.dask and args.quick
