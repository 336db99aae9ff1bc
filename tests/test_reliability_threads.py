"""Concurrent Python threads and determinism across thread counts.

Each threading layer runs in its own interpreter (``NUMBA_THREADING_LAYER`` set in the child's
environment): ``workqueue`` aborts the whole process on concurrent parallel launches unless the
library serialises them, and an abort must fail one test, not kill pytest.

The child (``_CHILD``) runs 8 Python threads straight after import (the threading layer is not
known yet, so the library's first-launch guard is exercised too), each making ``CALLS`` calls
of every operation on a mix of shapes: small ones (serial kernels) and ones of at least 32768
elements that take every parallel kernel family (fused slabs, chunked slabs, rows). Each result
is hashed; the same calls are then made one at a time and every concurrent hash must equal the
sequential one (bitwise equality).
"""

from __future__ import annotations

import os
import threading
import time

import numba
import numpy as np
import pytest
from _subprocess import check_python, last_json_line, layer_probe, run_python

THREADS = 8
CALLS = 200  # per thread and per operation

# Shared by the thread and determinism children: cases and the operations run on them.
_COMMON = r"""
import hashlib, json, os, sys, threading
import numpy as np
import numba
import numba_gn
from numba_gn import group_norm, group_norm_backward
from numba_gn import autograd as ag

from numba_gn.layers import GroupNormalization

# (shape, axis, groups, dtype); the "par" ones have >= 32768 elements (parallel kernels).
CASES = [
    ((2, 4, 8), -1, 4, "float32"),            # slab family, serial
    ((3, 6, 5, 8), -1, 4, "float64"),         # row family, serial
    ((2, 8, 6, 5), 1, 4, "float16"),          # channels-first, serial, half
    ((4, 16, 32, 32), 1, 4, "float32"),       # par: fused slabs
    ((1, 8, 64, 128), 1, 2, "float64"),       # par: chunked slabs (2 slabs)
    ((2, 32, 16, 128), -1, 32, "float32"),    # par: rows, channels-last
    ((2, 16, 32, 64), (1, 2), 16, "float16"), # par: tuple axes, half
    ((64, 1024), -1, 32, "float64"),          # par: 2-D, long runs
    ((4, 512, 8, 8), 2, 4, "float32"),        # par: middle axis, row family
]

def make(case, seed):
    shape, axis, groups, dtype = case
    rng = np.random.default_rng(seed)
    x = (3.0 + rng.standard_normal(shape)).astype(dtype)
    axes = (axis,) if isinstance(axis, int) else axis
    cshape = tuple(shape[a] for a in axes)
    gamma = rng.uniform(0.5, 1.5, cshape).astype(np.float32)
    beta = rng.standard_normal(cshape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, dy

DATA = [make(c, i) for i, c in enumerate(CASES)]

def digest(*arrays):
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.asarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()

def op_forward(i):
    (shape, axis, groups, _), (x, gamma, beta, _) = CASES[i], DATA[i]
    y, mean, rstd = group_norm(x, groups, gamma, beta, axis=axis, return_stats=True)
    return digest(y, mean, rstd)

def op_backward(i):
    (shape, axis, groups, _), (x, gamma, beta, dy) = CASES[i], DATA[i]
    y, mean, rstd = group_norm(x, groups, gamma, beta, axis=axis, return_stats=True)
    dx, dg, db = group_norm_backward(dy, x, mean, rstd, groups, gamma, axis=axis)
    return digest(dx, dg, db)

def op_tape(i):
    (shape, axis, groups, _), (x, gamma, beta, dy) = CASES[i], DATA[i]
    xt, gt, bt = ag.Tensor(x), ag.Tensor(gamma), ag.Tensor(beta)
    with ag.GradientTape() as tape:
        tape.watch([xt, gt, bt])
        y = ag.group_norm(xt, groups, gt, bt, axis=axis)
        loss = ag.sum(y * dy)
    grads = tape.gradient(loss, [xt, gt, bt])
    return digest(y.numpy(), *grads)

LAYERS = {}

def layer_for(i):
    shape, axis, groups, _ = CASES[i]
    layer = GroupNormalization(groups=groups, axis=axis)
    x, gamma, beta, _ = DATA[i]
    layer(x)  # build
    layer.set_weights([gamma, beta])
    return layer

def op_layer(i):
    layer = LAYERS[i]
    x, _, _, dy = DATA[i]
    xt = ag.Tensor(x)
    with ag.GradientTape() as tape:
        tape.watch(xt)
        y = layer(xt)
        loss = ag.sum(y * dy)
    grads = tape.gradient(loss, [xt, *layer.trainable_weights])
    return digest(np.asarray(y), *grads)

OPS = {
    "group_norm": op_forward, "group_norm_backward": op_backward, "tape": op_tape, "layer": op_layer
}
"""

_CHILD = (
    _COMMON
    + r"""
THREADS, CALLS = int(sys.argv[1]), int(sys.argv[2])
for i in range(len(CASES)):
    LAYERS[i] = layer_for(i)  # built in the main thread, called by all threads

results = [[] for _ in range(THREADS)]
errors = []
barrier = threading.Barrier(THREADS)

def worker(t):
    try:
        barrier.wait()
        for k in range(CALLS):
            i = (t * 5 + k) % len(CASES)
            for name, op in OPS.items():
                results[t].append((name, i, op(i)))
    except BaseException as exc:  # report, do not hang the barrier
        errors.append(f"thread {t}: {type(exc).__name__}: {exc}")
        barrier.abort()

threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
for th in threads:
    th.start()
for th in threads:
    th.join(timeout=300)
hung = sum(th.is_alive() for th in threads)

expected = {(name, i): op(i) for name, op in OPS.items() for i in range(len(CASES))}
calls = {name: 0 for name in OPS}
mismatches = []
for t in range(THREADS):
    for name, i, h in results[t]:
        calls[name] += 1
        if h != expected[(name, i)]:
            mismatches.append(f"thread {t}: {name} on case {i} ({CASES[i]})")
print(json.dumps({
    "layer": numba.threading_layer(),
    "threads": numba.get_num_threads(),
    "calls": calls,
    "mismatches": mismatches[:20],
    "n_mismatches": len(mismatches),
    "errors": errors,
    "hung": hung,
}))
sys.stdout.flush()
os._exit(0 if not errors and not hung else 1)
"""
)


@pytest.mark.parametrize("layer", ["omp", "workqueue", "tbb"])
def test_concurrent_threads_bitwise_equal_sequential(layer):
    if layer != "workqueue":  # workqueue is always built; the others depend on the platform
        why = layer_probe(layer)
        if why is not None:
            pytest.skip(f"Numba threading layer {layer!r} is not available here: {why}")
    res = run_python(
        _CHILD,
        env={"NUMBA_THREADING_LAYER": layer},
        args=(str(THREADS), str(CALLS)),
        timeout=240,
    )
    assert not res.timed_out and res.rc == 0, res.describe()
    report = last_json_line(res.stdout)
    assert report["layer"] == layer
    assert "layer" in report["calls"]
    assert report["errors"] == [] and report["hung"] == 0
    assert report["n_mismatches"] == 0, report["mismatches"]
    for name, n in report["calls"].items():
        assert n == THREADS * CALLS, (name, n)
    assert "Traceback" not in res.stderr, res.describe()


# ----------------------------------------------------------------------------------------------
# Determinism across thread counts

_DETERMINISM_CHILD = (
    _COMMON
    + r"""
MAX = numba.config.NUMBA_NUM_THREADS
for i in range(len(CASES)):
    LAYERS[i] = layer_for(i)
by_count = {}
for k in range(1, MAX + 1):
    numba.set_num_threads(k)
    by_count[k] = {f"{name}:{i}": op(i) for name, op in OPS.items() for i in range(len(CASES))}
base = by_count[1]
diff = {k: sorted(key for key in base if d[key] != base[key]) for k, d in by_count.items()}
print(json.dumps({"max": MAX, "diff": diff, "ops": sorted(OPS), "layer": numba.threading_layer()}))
"""
)


@pytest.mark.parametrize("layer", ["omp", "workqueue"])
def test_bitwise_identical_for_every_thread_count(layer):
    """1 thread (serial kernels) vs 2..8 threads (parallel kernels, chunking by thread count)."""
    if layer == "omp" and layer_probe(layer) is not None:
        pytest.skip("OpenMP threading layer not available here")
    res = check_python(
        _DETERMINISM_CHILD,
        env={"NUMBA_THREADING_LAYER": layer, "NUMBA_NUM_THREADS": "8"},
        timeout=240,
    )
    report = last_json_line(res.stdout)
    assert report["max"] == 8 and report["layer"] == layer
    assert {"group_norm", "group_norm_backward", "tape"} <= set(report["ops"])
    assert "layer" in report["ops"]
    assert all(not keys for keys in report["diff"].values()), report["diff"]


def test_set_num_threads_in_process_is_bitwise_stable():
    """The same in the test process, for every available count (and back to the default)."""
    from numba_gn import autograd as ag
    from numba_gn import group_norm, group_norm_backward

    rng = np.random.default_rng(3)
    x = (5.0 + rng.standard_normal((4, 64, 16, 16))).astype(np.float32)
    gamma = rng.uniform(0.5, 2.0, 64)
    beta = rng.standard_normal(64)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    default = numba.get_num_threads()

    def run():
        y, m, r = group_norm(x, 32, gamma, beta, axis=1, return_stats=True)
        grads = group_norm_backward(dy, x, m, r, 32, gamma, axis=1)
        xt, gt = ag.Tensor(x), ag.Tensor(gamma)
        with ag.GradientTape() as tape:
            tape.watch([xt, gt])
            loss = ag.sum(ag.group_norm(xt, 32, gt, None, axis=1) * dy)
        tgrads = tape.gradient(loss, [xt, gt])
        out = [y, m, r, *grads, *tgrads]
        from numba_gn.layers import GroupNormalization

        layer = GroupNormalization(groups=32, axis=1)
        layer(x)
        layer.set_weights([gamma.astype(np.float32), beta.astype(np.float32)])
        with ag.GradientTape() as tape:
            tape.watch(xt)
            yl = layer(xt)
            loss = ag.sum(yl * dy)
        out += [yl.numpy(), *tape.gradient(loss, [xt, *layer.trainable_weights])]
        return out

    try:
        results = {}
        for k in range(1, numba.config.NUMBA_NUM_THREADS + 1):
            numba.set_num_threads(k)
            results[k] = run()
    finally:
        numba.set_num_threads(default)
    for k, arrays in results.items():
        for a, b in zip(arrays, results[1], strict=True):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), k


def test_pip_installed_tbb_is_loaded_from_the_environment(tmp_path, monkeypatch):
    """``pip install tbb`` in a venv leaves libtbb where the loader does not look: load it."""
    import glob
    import sys

    from numba_gn import _threading

    found = glob.glob(os.path.join(sys.prefix, "lib", "libtbb.so.12*"))
    if sys.platform != "linux" or not found:
        pytest.skip("no pip-installed libtbb in this environment")
    prefix = tmp_path / "venv"
    (prefix / "lib").mkdir(parents=True)
    (prefix / "lib" / "libtbb.so.12").symlink_to(found[0])
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(_threading, "pip_tbb", None)
    assert _threading.load_pip_tbb() == str(prefix / "lib" / "libtbb.so.12")
    # a setting that names another layer is respected: nothing is loaded
    monkeypatch.setattr(_threading, "pip_tbb", None)
    monkeypatch.setattr(_threading.numba.config, "THREADING_LAYER", "omp")
    assert _threading.load_pip_tbb() is None


def test_parallel_calls_restore_the_callers_chunk_size():
    """The fused kernels schedule dynamically; the caller's Numba chunk size is left as it was."""
    from numba_gn import _engine, group_norm, group_norm_backward

    x = np.random.default_rng(0).standard_normal((8, 64, 64)).astype(np.float32)
    before = numba.get_parallel_chunksize()
    numba.set_parallel_chunksize(7)
    try:
        with _engine.forced(strategy="fused"):
            y, mean, rstd = group_norm(x, 32, axis=1, return_stats=True)
            group_norm_backward(y, x, mean, rstd, 32, axis=1)
        assert numba.get_parallel_chunksize() == 7
    finally:
        numba.set_parallel_chunksize(before)


# -- map_in_threads: chunks of serial work spread over Python threads -----------------------------


def test_map_in_threads_returns_every_result_in_index_order():
    from numba_gn import _threading

    seen = []
    results = _threading.map_in_threads(lambda i: seen.append(i) or i * i, 23)
    assert results == [i * i for i in range(23)]
    assert sorted(seen) == list(range(23))  # each index exactly once


def test_map_in_threads_runs_kernels_serially_and_nested_maps_in_place():
    """Inside a task no kernel goes parallel and a nested map stays in the task's thread."""
    from numba_gn import _threading

    big = 1 << 22

    def task(i):
        inner = _threading.map_in_threads(lambda j: threading.get_ident(), 3)
        return _threading.use_parallel(big), inner, threading.get_ident()

    for parallel, inner, ident in _threading.map_in_threads(task, 6):
        assert parallel is False
        assert inner == [ident] * 3
    assert _threading.use_parallel(big) is (numba.get_num_threads() > 1)  # restored after


def test_map_in_threads_uses_numbas_thread_count():
    from numba_gn import _threading

    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        idents = _threading.map_in_threads(lambda i: threading.get_ident(), 8)
    finally:
        numba.set_num_threads(threads)
    assert set(idents) == {threading.get_ident()}
    if threads > 1:  # with more threads the pool shares the work (each call sleeps a little)
        idents = _threading.map_in_threads(lambda i: time.sleep(0.01) or threading.get_ident(), 8)
        assert len(set(idents)) > 1


def test_map_in_threads_raises_the_first_error_after_every_started_call_ended():
    from numba_gn import _threading

    running = [0]
    lock = threading.Lock()
    calls = []

    def task(i):
        with lock:
            running[0] += 1
            calls.append(i)
        try:
            time.sleep(0.005)
            if i == 2:
                raise ValueError("chunk 2 failed")
            return i
        finally:
            with lock:
                running[0] -= 1

    with pytest.raises(ValueError, match="chunk 2 failed"):
        _threading.map_in_threads(task, 50)
    assert running[0] == 0  # nothing still writes into the caller's arrays
    assert len(calls) < 50  # the other threads stopped taking work
