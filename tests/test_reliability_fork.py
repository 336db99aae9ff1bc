"""A process that used the parallel kernels forks, and the children use them.

GNU OpenMP kills a forked child that launches a parallel region after its parent did
("fork() called from a process already using GNU OpenMP"); numba_gn notices the fork
(``os.register_at_fork``) and runs serial kernels in the child, which compute the same bits.
Everything runs in a subprocess with a timeout: a killed worker would otherwise hang a
``multiprocessing.Pool`` forever, and an abort must not take pytest down.
"""

from __future__ import annotations

import pytest
from _subprocess import check_python, last_json_line, layer_probe

RUNS = 5  # fork runs per threading layer, each with CHILDREN children started at once
CHILDREN = 2
POOL_TASKS = 6

_CHILD = r"""
import json, multiprocessing as mp, os, sys
import numpy as np
import numba
import numba_gn
from numba_gn import _threading, group_norm, group_norm_backward
from numba_gn import autograd as ag

RUNS, CHILDREN, POOL_TASKS = (int(a) for a in sys.argv[1:4])

# >= 32768 elements each, so the parent takes the parallel kernels (several families).
CASES = [
    ((4, 16, 32, 32), 1, 4, "float32"),
    ((1, 8, 64, 128), 1, 2, "float64"),
    ((2, 32, 16, 128), -1, 32, "float32"),
    ((2, 16, 32, 64), (1, 2), 16, "float16"),
    ((2, 4, 8), -1, 4, "float64"),  # and one small (serial) case
]

def data(i):
    shape, axis, groups, dtype = CASES[i]
    rng = np.random.default_rng(i)
    x = (2.0 + rng.standard_normal(shape)).astype(dtype)
    return x, rng.standard_normal(shape).astype(dtype)

def compute(i):
    shape, axis, groups, _ = CASES[i]
    x, dy = data(i)
    y, m, r = group_norm(x, groups, axis=axis, return_stats=True)
    dx, dg, db = group_norm_backward(dy, x, m, r, groups, axis=axis)
    xt = ag.Tensor(x)
    with ag.GradientTape() as tape:
        tape.watch(xt)
        loss = ag.sum(ag.group_norm(xt, groups, axis=axis) * dy)
    (gx,) = tape.gradient(loss, [xt])
    return [a.tobytes() for a in (y, m, r, dx, dg, db, gx)]

# The parent uses the parallel kernels first: after this, GNU OpenMP is "in use".
EXPECTED = [compute(i) for i in range(len(CASES))]
assert numba.get_num_threads() == 1 or _threading.threading_layer() is not None
PARENT_LAYER = _threading.threading_layer()

def child_main():
    bad = [i for i in range(len(CASES)) if compute(i) != EXPECTED[i]]
    if not _threading.in_forked_child():
        bad.append("not marked as forked")
    if bad:
        print(f"child {os.getpid()}: mismatches {bad}", file=sys.stderr)
        os._exit(1)
    os._exit(0)

def pool_task(k):
    i = k % len(CASES)
    return compute(i) == EXPECTED[i] and _threading.in_forked_child()

ctx = mp.get_context("fork")
exitcodes = []
for run in range(RUNS):
    procs = [ctx.Process(target=child_main) for _ in range(CHILDREN)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        exitcodes.append(p.exitcode)
    # The parent keeps using the parallel kernels between forks.
    assert all(compute(i) == EXPECTED[i] for i in range(len(CASES)))

with ctx.Pool(CHILDREN) as pool:
    pool_ok = pool.map(pool_task, range(POOL_TASKS))

print(json.dumps({
    "parent_layer": PARENT_LAYER,
    "exitcodes": exitcodes,
    "pool_ok": pool_ok,
    "parent_forked": _threading.in_forked_child(),
}))
"""


@pytest.mark.parametrize("layer", [None, "omp", "workqueue", "tbb"])
def test_forked_children_get_correct_results(layer):
    env = {"NUMBA_NUM_THREADS": "2"}  # parallel kernels even on a 1-core runner
    if layer is not None:
        why = layer_probe(layer) if layer != "workqueue" else None
        if why is not None:
            pytest.skip(f"Numba threading layer {layer!r} is not available here: {why}")
        env["NUMBA_THREADING_LAYER"] = layer
    res = check_python(
        _CHILD, env=env, args=(str(RUNS), str(CHILDREN), str(POOL_TASKS)), timeout=180
    )
    report = last_json_line(res.stdout)
    if layer is not None:
        assert report["parent_layer"] == layer
    assert report["parent_forked"] is False
    assert report["exitcodes"] == [0] * (RUNS * CHILDREN), res.describe()
    assert report["pool_ok"] == [True] * POOL_TASKS
    assert "fork() called from a process already using" not in res.stderr


_TASK_MODULE = """
import numpy as np
from numba_gn import group_norm

def task(seed):
    x = np.random.default_rng(seed).standard_normal((4, 64, 16, 16)).astype(np.float32)
    return group_norm(x, 32, axis=1).tobytes()
"""

_START_METHODS_CHILD = r"""
import json, multiprocessing as mp, sys
sys.path.insert(0, sys.argv[1])
from gn_task import task

# The parent used the parallel kernels before starting the workers.
expected = [task(s) for s in range(4)]
out = {}
for method in ("spawn", "forkserver"):
    with mp.get_context(method).Pool(2) as pool:
        out[method] = pool.map(task, range(4)) == expected
print(json.dumps(out))
"""


def test_recommended_start_methods(tmp_path):
    """The documented choices, ``spawn`` and ``forkserver``, work after the parent used kernels."""
    (tmp_path / "gn_task.py").write_text(_TASK_MODULE)
    res = check_python(_START_METHODS_CHILD, args=(str(tmp_path),), timeout=180)
    assert last_json_line(res.stdout) == {"spawn": True, "forkserver": True}
