"""The asv suite cannot rot silently: every benchmark is well-formed, sets up and runs once.

asv only collects methods named ``time_``/``timeraw_``/``peakmem_``/``mem_``/``track_`` and
silently ignores anything else (pandas once had benchmarks named ``test_method`` that never ran),
and a ``params``/``param_names`` mismatch only shows up when asv is run. Each benchmark is run
here once on its smallest parameters (``tiny``), which is fast.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import json
import math
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ASV_DIR = Path(__file__).resolve().parents[1] / "asv_bench"
BENCH_PREFIX = re.compile(r"^(time|timeraw|peakmem|mem|track)_")
HOOKS = {"setup", "teardown", "setup_cache", "teardown_cache"}


def _modules():
    sys.path.insert(0, str(ASV_DIR))
    try:
        pkg = importlib.import_module("benchmarks")
        assert Path(pkg.__file__).parent == ASV_DIR / "benchmarks", "another 'benchmarks' package"
        names = [m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("bench_")]
        return [importlib.import_module(f"benchmarks.{n}") for n in sorted(names)]
    finally:
        sys.path.remove(str(ASV_DIR))


MODULES = _modules()
CLASSES = [
    obj
    for mod in MODULES
    for _, obj in inspect.getmembers(mod, inspect.isclass)
    if obj.__module__ == mod.__name__ and not obj.__name__.startswith("_")
]


#: Run in a child interpreter: importing torch loads its own OpenMP runtime, which must not
#: leak into the pytest process (other tests fork and check threading behaviour).
OUT_OF_PROCESS = {
    "benchmarks.bench_peers.TorchForward",
    "benchmarks.bench_peers.TorchForwardBackward",
}


def _run_once_in_child(cls, params):
    code = f"""
import sys
sys.path.insert(0, {str(ASV_DIR)!r})
from {cls.__module__} import {cls.__name__} as cls
bench = cls()
try:
    bench.setup(*{params!r})
except NotImplementedError as exc:
    print("SKIP", exc)
    sys.exit(0)
for name in {_bench_methods(cls)!r}:
    getattr(bench, name)(*{params!r})
if hasattr(bench, "teardown"):
    bench.teardown(*{params!r})
print("RAN")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    if proc.stdout.startswith("SKIP"):
        pytest.skip(proc.stdout.strip())
    assert "RAN" in proc.stdout


def _bench_methods(cls):
    return [n for n, _ in inspect.getmembers(cls, inspect.isfunction) if BENCH_PREFIX.match(n)]


def _smallest(cls):
    """One parameter combination: "tiny" (or "warm", float32) where offered, else the first."""
    params = getattr(cls, "params", [])
    if params and not isinstance(params[0], (list, tuple)):
        params = [params]
    return tuple(next((p for p in ps if p in ("tiny", "warm")), ps[0]) for ps in params)


def test_the_suite_is_found():
    names = {m.__name__.rsplit(".", 1)[1] for m in MODULES}
    assert {"bench_groupnorm", "bench_peers", "bench_compile"} <= names
    assert len(CLASSES) >= 8


def test_asv_config_benchmarks_in_fresh_processes():
    text = (ASV_DIR / "asv.conf.json").read_text()
    conf = json.loads("\n".join(ln for ln in text.splitlines() if not ln.strip().startswith("//")))
    assert conf["launch_method"] == "spawn"
    assert conf["benchmark_dir"] == "benchmarks"
    assert conf["results_dir"].startswith(".asv") and conf["html_dir"].startswith(".asv")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_benchmark_class_is_well_formed(cls):
    methods = _bench_methods(cls)
    assert methods, f"{cls.__name__} has no method asv would run"
    public = [
        n
        for n, _ in inspect.getmembers(cls, inspect.isfunction)
        if not n.startswith("_") and n not in HOOKS
    ]
    assert sorted(public) == sorted(methods), "public methods asv would silently ignore"
    params = getattr(cls, "params", None)
    names = getattr(cls, "param_names", None)
    if params is None:
        assert names is None
        return
    assert isinstance(params, list) and all(isinstance(p, list) and p for p in params)
    assert len(params) == len(names), "params and param_names differ in length"
    assert len(set(names)) == len(names)
    for combo in itertools.product(*params):
        assert all(isinstance(v, str) for v in combo), "string params keep asv labels readable"
    for name in [*methods, "setup"]:
        fn = getattr(cls, name, None)
        if fn is not None:
            n_args = len(inspect.signature(fn).parameters) - 1
            assert n_args == len(names), f"{name} takes {n_args} parameters, not {len(names)}"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_benchmark_sets_up_and_runs_once(cls):
    params = _smallest(cls)
    if f"{cls.__module__}.{cls.__name__}" in OUT_OF_PROCESS:
        _run_once_in_child(cls, params)
        return
    bench = cls()
    if hasattr(bench, "setup"):
        try:
            bench.setup(*params)
        except NotImplementedError as exc:  # how asv skips (e.g. PyTorch not installed)
            pytest.skip(f"setup skipped: {exc}")
    for name in _bench_methods(cls):
        result = getattr(bench, name)(*params)
        if name.startswith("timeraw_"):
            code, setup = result if isinstance(result, tuple) else (result, "")
            # The code asv would time in a fresh interpreter must run there.
            proc = subprocess.run(
                [sys.executable, "-c", setup + "\n" + code],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, proc.stderr
        elif name.startswith("track_"):
            assert isinstance(result, (int, float))
    if hasattr(bench, "teardown"):  # e.g. restores the BLAS thread count
        bench.teardown(*params)


def test_large_arrays_run_in_float32_only_by_default(monkeypatch):
    from benchmarks import bench_groupnorm, common

    monkeypatch.delenv("NUMBA_GN_ASV_ALL", raising=False)
    with pytest.raises(NotImplementedError):  # raised before any array is allocated
        bench_groupnorm.GroupNormForward().setup("large", "float64")
    assert math.prod(common.SIZES["large"]) * 4 >= 100e6


def test_every_layout_holds_the_same_elements():
    from benchmarks import common

    for size in common.SIZES:
        shapes = [common.layout_shape(layout, size)[0] for layout in common.LAYOUTS]
        assert len({math.prod(s) for s in shapes}) == 1, shapes


# -- the README's Benchmarks section -----------------------------------------------------------

README = ASV_DIR.parent / "README.md"


def _asv_names():
    """Every benchmark combination as asv's ``--bench`` regex sees it: ``name(param, ...)``.

    asv (``asv.benchmarks.Benchmarks``) searches each regex in the benchmark's name relative to
    the benchmark folder followed by its parameters' reprs, comma-separated, in parentheses.
    """
    names = []
    for cls in CLASSES:
        module = cls.__module__.split(".", 1)[1]
        params = getattr(cls, "params", [])
        for method in _bench_methods(cls):
            name = f"{module}.{cls.__name__}.{method}"
            if not params:
                names.append(name)
                continue
            for combo in itertools.product(*params):
                names.append(f"{name}({', '.join(repr(v) for v in combo)})")
    return names


def _benchmarks_section():
    text = README.read_text("utf-8")
    return text[text.index("## Benchmarks") : text.index("## Documentation")]


def test_readme_selections_pick_what_they_say():
    listed = re.findall(r'^- `--bench "([^"]+)"` \((\d+)\)', _benchmarks_section(), re.M)
    assert len(listed) >= 5, "the README lists the quick-check selections"
    names = _asv_names()
    for regex, count in listed:
        picked = [n for n in names if re.search(regex, n)]
        assert len(picked) == int(count), (regex, picked)


def test_readme_benchmark_commands_are_what_ci_runs():
    """The asv lines of .ci/run are the README's, character for character, in the same order."""
    readme_block = re.search(r"```bash\n(.*?)```", _benchmarks_section(), re.S)[1]
    readme = [ln.split("   #")[0].strip() for ln in readme_block.splitlines()]
    readme = [ln for ln in readme if ln.startswith("asv ")]
    ci_text = (ASV_DIR.parent / ".ci" / "run").read_text()
    ci = [ln.strip() for ln in ci_text.splitlines() if ln.strip().startswith("asv ")]
    assert readme == ci
    assert ci[0] == "asv machine --yes"  # a fresh machine has no answers to asv's questions
    names = _asv_names()
    for regex in re.findall(r'--bench "([^"]+)"', ci[-1]):  # each one runs something
        assert any(re.search(regex, n) for n in names), regex


def test_missing_torch_is_skipped_with_the_reason():
    code = f"""
import sys
sys.modules["torch"] = None  # as if PyTorch were not installed
sys.path.insert(0, {str(ASV_DIR)!r})
from benchmarks import bench_peers, bench_training
for cls in (bench_peers.TorchForward, bench_peers.TorchForwardBackward):
    try:
        cls().setup("tiny", "float32")
    except NotImplementedError as exc:
        print(exc)
try:
    bench_training.TorchTrainingStep().setup()
except NotImplementedError as exc:
    print(exc)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == ["PyTorch not installed: pip install torch to compare"] * 3
