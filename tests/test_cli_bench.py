"""``numba-gn bench``: the quick run works end to end and its JSON has what the docs page reads."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import numba_gn
from numba_gn._peers import numpy_forward_backward
from numba_gn.cli import bench


def _bench(tmp_path, *args, env=None):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "numba_gn", "bench", "--quick", "--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(out.read_text())


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One quick run (with PyTorch when it is installed), shared by the tests below.

    One thread keeps it fast on a busy machine; the user's OpenMP wait policy must be kept.
    """
    return _bench(
        tmp_path_factory.mktemp("bench"), "--threads", "1", env={"OMP_WAIT_POLICY": "passive"}
    )


def test_quick_run_prints_tables_and_progress(quick):
    proc, _ = quick
    assert "x copy" in proc.stdout and "vs numpy" in proc.stdout
    assert "max abs error at offset 10000" in proc.stdout
    assert "[1/" in proc.stderr  # the progress indicator goes to stderr
    assert "Traceback" not in proc.stderr


def test_quick_json_has_the_expected_keys(quick):
    _, report = quick
    assert report["schema"] == bench.SCHEMA
    assert {"facts", "settings", "results", "startup"} <= set(report)
    facts = report["facts"]
    for key in ("numba_gn", "numba", "numpy", "python", "threads", "threading layer", "torch"):
        assert key in facts
    assert report["settings"]["quick"] is True and report["settings"]["offset"] == 1e4
    rows = report["results"]
    assert {(r["label"], r["pass"]) for r in rows} == {
        (c.label, p) for c in bench.QUICK_CASES for p in bench.PASSES
    }
    has_torch = facts["torch"] != "not used"
    for r in rows:
        assert {"shape", "axis", "dtype", "layout", "series", "nbytes", "ideal_bytes"} <= set(r)
        assert r["ideal_bytes"] == bench.IDEAL_BYTES[r["pass"]] * r["nbytes"]
        s = r["seconds"]
        assert s["numba_gn"] > 0 and s["copy"] > 0 and s["numpy"] > 0
        assert (s.get("torch") is not None) == has_torch
        assert r["gbps"]["numba_gn"] == pytest.approx(r["ideal_bytes"] / s["numba_gn"] / 1e9)
        assert r["ratios"]["x_copy"] == pytest.approx(s["numba_gn"] / s["copy"])
        assert r["ratios"]["numpy_speedup"] > 0
        err = r["max_abs_error"]
        assert err["numba_gn"] < (0.1 if r["dtype"] == "float16" else 1e-4), r
        assert ("torch" in err) == has_torch
        assert s["numba_gn_alloc"] > 0
        if has_torch:
            assert r["ratios"]["torch_speedup"] == pytest.approx(s["torch"] / s["numba_gn_alloc"])
    assert facts["threads"] == "1" and report["settings"]["threads"] == 1
    assert facts["OMP_WAIT_POLICY"] == "passive"
    assert facts["OMP_WAIT_POLICY set by bench"] == "False"


def test_wait_policy_is_set_only_when_the_user_has_not(monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    monkeypatch.setattr(os, "environ", env)  # restored after the test
    assert bench._set_wait_policy() == "active" and env["OMP_WAIT_POLICY"] == "active"
    env["OMP_WAIT_POLICY"] = "passive"
    assert bench._set_wait_policy() is None and env["OMP_WAIT_POLICY"] == "passive"


def test_threads_out_of_range_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")  # run() must not touch this process's env
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    assert bench.run(parser.parse_args(["--threads", "10000"])) == 2
    assert "--threads must be between 1 and" in capsys.readouterr().err


def test_progress_without_a_terminal_writes_one_line_per_step():
    stream = io.StringIO()
    p = bench.Progress(total=2, stream=stream)
    p.step("first")
    p.step("second")
    p.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/2]") and lines[1].startswith("[2/2]") and "second" in lines[1]


@pytest.mark.parametrize(
    ("shape", "axis"),
    [((2, 4, 4, 64), -1), ((2, 64, 4, 4), 1), ((2, 4, 64, 3), 2), ((2, 3, 4, 8, 8), (3, 4))],
)
def test_numpy_peer_backward_matches_the_engine(rng, shape, axis):
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    axes = (axis,) if isinstance(axis, int) else axis
    cshape = tuple(shape[a] for a in axes)
    gamma, beta = rng.standard_normal(cshape), rng.standard_normal(cshape)
    y, mean, rstd = numba_gn.group_norm(x, 32, gamma, beta, axis=axis, return_stats=True)
    dx, dgamma, dbeta = numba_gn.group_norm_backward(dy, x, mean, rstd, 32, gamma, axis=axis)
    y2, dx2, dgamma2, dbeta2 = numpy_forward_backward(x, dy, 32, gamma, beta, axis=axis)
    for a, b in ((y, y2), (dx, dx2), (dgamma, dgamma2), (dbeta, dbeta2)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_performance_page_renders_from_the_json(quick, tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "make_performance_page.py"
    spec = importlib.util.spec_from_file_location("make_performance_page", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    _, report = quick
    src = tmp_path / "bench.json"
    src.write_text(json.dumps(report))
    assert tool.main([str(src), "--docs", str(tmp_path / "docs")]) == 0  # no sweep: no plots
    page = (tmp_path / "docs" / "performance.md").read_text()
    for heading in ("# Performance", "## Measured on", "## Targets", "## All cases", "## Accuracy"):
        assert heading in page
    assert "tiny channels-last" in page


def test_startup_is_measured_next_to_the_numba_floor():
    """Fresh interpreters: import, import + first call, and a trivial cached Numba function."""
    startup = bench.measure_startup(runs=1)
    assert set(startup) == {"warm_import_s", "warm_first_call_s", "numba_floor_s"}
    assert 0 < startup["warm_import_s"] < startup["warm_first_call_s"] < 60
    assert 0 < startup["numba_floor_s"] < 60


def test_missing_torch_is_said_once(monkeypatch, capsys):
    """Without PyTorch, one line says how to get the comparison (not only "-" cells)."""
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    monkeypatch.setitem(sys.modules, "torch", None)  # find_spec -> None, import -> ImportError
    # Timing is not what this test is about: every timed call runs twice and counts 1 ms.
    monkeypatch.setattr(bench._Timer, "__call__", lambda self, fn: (fn(), fn(), 1e-3)[-1])
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    assert bench.run(parser.parse_args(["--quick"])) == 0  # no --threads: keep this process's
    out = capsys.readouterr().out
    assert out.count(bench.TORCH_MISSING) == 1
    assert bench.TORCH_MISSING == "PyTorch not installed: pip install torch to compare"
    assert bench.run(parser.parse_args(["--quick", "--no-torch"])) == 0
    assert "PyTorch not installed" not in capsys.readouterr().out  # left out on purpose


def test_installed_torch_prints_no_missing_line(quick):
    proc, report = quick
    has_torch = report["facts"]["torch"] != "not used"
    assert (bench.TORCH_MISSING in proc.stdout) == (not has_torch)
