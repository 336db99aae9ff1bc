"""``numba-gn warmup`` fills an empty cache that later processes load from, and ``numba-gn info``
compiles nothing.

Loads and compiles are counted from Numba's own cache statistics (``dispatcher.stats``), not from
times. Only the serial float64 kernels are warmed here, to keep the compile time down.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _subprocess import child_env

from numba_gn import _warmup
from numba_gn.cli import build_parser
from numba_gn.kernels.epilogue import CODES


def _numba_gn(args: list[str], cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "numba_gn", *args],
        env=child_env({"NUMBA_CACHE_DIR": str(cache), "PYTHONDONTWRITEBYTECODE": "1"}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


_WARM = ["warmup", "--dtype", "float64", "--serial-only", "--json"]


@pytest.fixture(scope="module")
def warmed(tmp_path_factory):
    """An empty cache warmed by two processes, then warmed again by one."""
    cache = tmp_path_factory.mktemp("warm") / "cache"
    first = _numba_gn([*_WARM, "--jobs", "2"], cache)
    second = _numba_gn(_WARM, cache)
    return cache, first, second


def test_warmup_fills_an_empty_cache(warmed):
    cache, first, _ = warmed
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    tasks = _warmup.tasks(["float64"], _warmup.DEFAULT_LAYOUTS, parallel=False)
    assert summary["tasks"] == len(tasks) == 6  # float64: no activation kernels
    assert summary["jobs"] == 2 and summary["failed"] is False
    # forward and backward of the serial row and slab kernels, the conv kernels, their helpers
    assert summary["compiled"] >= 5
    assert summary["cache"] == str(cache) and summary["cache_writable"] is True
    assert any(cache.rglob("*.nbc"))
    # one progress line per task, a group norm task being run as its two passes
    assert first.stderr.count("float64") == len(_warmup._split_passes(tasks)) == 9
    lines = [ln for ln in first.stderr.splitlines() if ln.startswith("[")]
    assert lines[-1].startswith("[9/9] ")  # counted against the passes, not the tasks


def test_second_process_loads_without_compiling(warmed):
    _, _, second = warmed
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["compiled"] == 0
    # forward and backward of the serial row and slab kernels, col2im, the four Winograd
    # transforms and max pooling's two kernels: the helpers they call are part of their
    # cached machine code and are not loaded separately
    assert summary["loaded"] == 11


def test_info_compiles_nothing(tmp_path):
    cache = tmp_path / "cache"
    res = _numba_gn(["info"], cache, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "threading layer" in res.stdout and str(cache) in res.stdout
    assert not list(cache.rglob("*.nbc"))


def test_warmup_arguments_are_checked():
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["warmup", "--dtype", "int8"])
    with pytest.raises(SystemExit):
        parser.parse_args(["warmup", "--layout", "sideways"])
    with pytest.raises(ValueError, match="`dtypes`"):
        _warmup.tasks(["int8"])
    with pytest.raises(ValueError, match="`layouts`"):
        _warmup.tasks(["float32"], ["sideways"])


def test_warmup_cases_reach_every_kernel_path():
    """Each family/strategy the engine can choose has a case, run on that strategy."""
    names = {c.name for c in _warmup.cases()}
    assert {"rows, serial", "slab, serial", "rows, waves", "rows, whole samples"} <= names
    assert {"slab, fused", "slab, chunked", "col2im, serial", "col2im, parallel"} <= names
    for case in _warmup.cases():
        if case.layout in ("channels-last", "channels-first"):  # forced, whatever the size
            assert (_warmup.strategy(case) == "serial") == (not case.parallel), case


def _cached_in(cache: Path, kernels: list[str]) -> str:
    code = f"from numba_gn import _warmup; print(_warmup.cached({kernels!r}))"
    res = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env({"NUMBA_CACHE_DIR": str(cache)}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_cached_looks_for_the_kernels_index_files(warmed, tmp_path):
    cache = warmed[0]
    assert _cached_in(cache, ["rows.forward_ser", "slab.backward_fused_ser"]) == "True"
    assert _cached_in(cache, ["rows.forward_samples_par"]) == "False"  # warmed serial only
    assert _cached_in(tmp_path / "empty", ["rows.forward_ser"]) == "False"
    with pytest.raises(ValueError, match="unknown kernels"):
        _warmup.cached(["rows.no_such_kernel"])


def test_warmup_picks_cases_by_name_and_checks_jobs():
    todo = _warmup.tasks(["float32"], names=["rows, serial", "activations, serial"])
    assert [c.name for _, c in todo] == ["rows, serial", "activations, serial"]
    with pytest.raises(ValueError, match="`names`"):
        _warmup.tasks(["float32"], names=["rows, sideways"])
    for jobs in (0, 1.5, True):
        with pytest.raises(ValueError, match="`jobs`"):
            _warmup.warmup(("float32",), names=["rows, serial"], jobs=jobs)


def test_tasks_are_spread_by_cost():
    todo = _warmup.tasks(
        ["float32"], names=["rows, serial", "rows, whole samples", "col2im, serial"]
    )
    shares = _warmup._shares(_warmup._split_passes(todo), 2)
    labels = [sorted(f"{c.name} {c.passes}" for _, c in share) for share in shares]
    # The two parallel passes go to different processes, then the serial ones fill up; the
    # greedy pass leaves 65 against 74 (tenths of a second), a swap of the serial passes
    # 69 against 70.
    assert labels == [
        ["rows, serial forward", "rows, whole samples backward"],
        ["col2im, serial both", "rows, serial backward", "rows, whole samples forward"],
    ]
    assert [sum(map(_warmup._cost, share)) for share in shares] == [69, 70]


def test_the_demo_kernels_are_split_evenly():
    from numba_gn.cli import demo

    todo = _warmup._split_passes(_warmup.tasks(["float32"], names=demo.DEMO_CASES))
    for jobs in (2, 3, 4):
        shares = _warmup._shares(todo, jobs)
        assert sorted(map(repr, (t for share in shares for t in share))) == sorted(
            map(repr, todo)
        )  # every task once
    loads = [sum(map(_warmup._cost, share)) for share in _warmup._shares(todo, 2)]
    assert sorted(loads) == [34, 40]


def test_demo_kernel_names_are_known():
    from numba_gn.cli import demo

    _warmup.cached(demo.DEMO_KERNELS)  # raises for a name that is not a kernel
    assert set(demo.DEMO_CASES) <= {c.name for c in _warmup.cases()}


def test_dask_layout_warms_the_block_kernels():
    """`--layout dask` compiles (or loads) every per-block kernel of `numba_gn.dask`."""
    pytest.importorskip("dask")
    import numba

    from numba_gn.kernels import partial

    _warmup.warmup(("float64",), parallel=False, layouts=("dask",))
    kernels = [partial.block_moments, partial.block_apply, partial.block_dy_sums, partial.block_dx]
    for kernel in kernels:
        assert any(sig[0].dtype == numba.float64 for sig in kernel.signatures), kernel
    assert "dask" not in _warmup.DEFAULT_LAYOUTS  # needs Dask: only when asked for


def test_activations_add_the_fused_cases():
    plain = _warmup.tasks(["float32"], ["channels-last", "conv"], parallel=False)
    todo = _warmup.tasks(
        ["float32"], ["channels-last", "conv"], parallel=False, activations=["linear", "gelu"]
    )
    # each group norm case, then its fused variants; linear alone is plain GroupNorm
    assert [c.name for _, c in todo if c.name.startswith("rows, serial")] == [
        "rows, serial",
        "rows, serial, linear + residual",
        "rows, serial, gelu",
        "rows, serial, gelu + residual",
    ]
    fused = [c for _, c in todo if c.activation is not None]
    assert len(todo) == len(plain) + len(fused)
    assert {c.layout for c in fused} == {"channels-last"}  # not the conv and activation cases
    assert all(c.residual == c.name.endswith("+ residual") for c in fused)
    # split into passes like any group norm case, the activation kept
    assert {c.activation for _, c in _warmup._split_passes(todo)} == {None, "linear", "gelu"}
    with pytest.raises(ValueError, match="`activations`"):
        _warmup.tasks(["float32"], activations=["tanh"])
    args = build_parser().parse_args(["warmup", "--activation", "silu", "gelu_tanh"])
    assert args.activation == ["silu", "gelu_tanh"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["warmup", "--activation", "swish!"])


def test_warmup_compiles_the_fused_kernels_of_an_activation(tmp_path):
    """Warming relu compiles relu's fused kernels, with and without a residual.

    In a child process with an empty cache: in this one, earlier tests may have compiled them.
    """
    code = (
        "import json\n"
        "from numba_gn import _warmup\n"
        "from numba_gn.kernels import rows\n"
        "report = _warmup.warmup(('float32',), layouts=('channels-last',),\n"
        "                        names=['rows, serial'], activations=['relu'])\n"
        "epilogues = [str(sig[-1]) for k in (rows.forward_ser, rows.backward_ser)\n"
        "             for sig in k.signatures]\n"
        "print(json.dumps({'compiled': report.compiled, 'epilogues': epilogues}))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env({"NUMBA_CACHE_DIR": str(tmp_path / "cache")}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr
    data = json.loads(child.stdout.strip().splitlines()[-1])
    # plain, relu, relu + residual: three specialisations of each pass, all compiled
    assert data["compiled"].count("rows.forward_ser") == 3
    assert data["compiled"].count("rows.backward_ser") == 3
    # the epilogue is the last argument; relu's code is the number of dimensions of its array
    code_array = f"array(int8, {CODES['relu']}d, C)"
    fused = [e for e in data["epilogues"] if code_array in e]
    assert len(fused) == 4, data["epilogues"]  # two passes, with and without a residual
