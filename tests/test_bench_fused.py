"""``numba-gn bench --fused``: rows are complete, and what is timed agrees before it is timed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from numba_gn._peers import numpy_forward_backward
from numba_gn.cli import bench_fused, build_parser

TINY = ((1, 4),)  # (N, H=W) with C = 256: 16 KiB of float32


@pytest.fixture(scope="module")
def report():
    """One measurement of the tiniest size, 1 sample, without PyTorch (shared below)."""
    return bench_fused.measure(TINY, repeat=1, quick=True, with_torch=False)


def test_rows_cover_every_case_and_pass(report):
    rows = report["results"]
    expected = {
        (layout, act, res, p)
        for layout in bench_fused.LAYOUTS
        for act, res in bench_fused.ACTIVATIONS
        for p in bench_fused.PASSES
    }
    assert {(r["layout"], r["activation"], r["residual"], r["pass"]) for r in rows} == expected
    assert len(rows) == len(expected) == 12
    assert report["torch"] is None and report["repeat"] == 1 and report["notes"] == []
    for r in rows:
        assert r["dtype"] == "float32"
        assert r["nbytes"] == 1 * 4 * 4 * 256 * 4
        assert r["shape"] == ([1, 4, 4, 256] if r["layout"] == "channels-last" else [1, 256, 4, 4])
        assert r["axis"] == (-1 if r["layout"] == "channels-last" else 1)
        s = r["seconds"]
        assert set(s) == set(bench_fused.IMPLEMENTATIONS)
        for name in ("copy", "group_norm", "fused", "separate"):
            assert s[name] > 0, (r["label"], name)
        assert s["torch_eager"] is None and s["torch_compile"] is None
        q = r["ratios"]
        assert q["fused_vs_group_norm"] == pytest.approx(s["fused"] / s["group_norm"])
        assert q["separate_vs_fused"] == pytest.approx(s["separate"] / s["fused"])
        assert q["torch_eager_vs_fused"] is None and q["torch_compile_vs_fused"] is None
        assert r["x_copy"]["copy"] == pytest.approx(1.0)
        assert r["x_copy"]["fused"] == pytest.approx(s["fused"] / s["copy"])
        json.dumps(r)  # JSON-ready


def test_rows_of_one_input_share_the_copy_and_group_norm_times(report):
    by_input: dict = {}
    for r in report["results"]:
        key = (r["layout"], r["pass"])
        by_input.setdefault(key, set()).add((r["seconds"]["copy"], r["seconds"]["group_norm"]))
    assert all(len(v) == 1 for v in by_input.values())


def test_fused_and_separate_results_agree(report):
    for r in report["results"]:
        a = r["agreement"]["fused_vs_separate"]
        names = {"y", "dx", "dgamma", "dbeta"} | ({"dresidual"} if r["residual"] else set())
        assert names <= set(a), r["label"]
        assert a["y"] <= bench_fused.TOLERANCE["forward"], r["label"]
        for name in names - {"y"}:
            assert a[name] <= bench_fused.TOLERANCE["forward+backward"], (r["label"], name)
        if r["activation"] == "relu":  # the same operations, rounded the same way
            assert a["identical_y"] and a["y"] == 0.0


def _inputs(rng, layout):
    shape, axis = ((2, 4, 4, 64), -1) if layout == "channels-last" else ((2, 64, 4, 4), 1)
    return bench_fused.Inputs(
        x=rng.standard_normal(shape, dtype=np.float32),
        r=rng.standard_normal(shape, dtype=np.float32),
        dy=rng.standard_normal(shape, dtype=np.float32),
        gamma=(1 + 0.2 * rng.standard_normal(64)).astype(np.float32),
        beta=(0.2 * rng.standard_normal(64)).astype(np.float32),
        axis=axis,
    )


def _act64(name, z):
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(np.float64)
    s = 1 / (1 + np.exp(-z))
    return z * s, s * (1 + z * (1 - s))


@pytest.mark.parametrize("layout", bench_fused.LAYOUTS)
@pytest.mark.parametrize(("activation", "residual"), bench_fused.ACTIVATIONS)
def test_both_ways_match_a_float64_reference(rng, layout, activation, residual):
    """Fused and separate agree with each other (verify) and with NumPy in float64."""
    inp = _inputs(rng, layout)
    ops = bench_fused.Ops(inp, activation, residual)
    diffs, reference = ops.verify()
    assert diffs["y"] <= 1e-5
    x64 = inp.x.astype(np.float64)
    g64, _, _, _ = numpy_forward_backward(
        x64, x64, 32, inp.gamma, inp.beta, axis=inp.axis, epsilon=1e-3, dtype=np.float64
    )
    z = g64 + inp.r if residual else g64
    y64, slope = _act64(activation, z)
    dz = inp.dy * slope
    _, dx64, dgamma64, dbeta64 = numpy_forward_backward(
        x64, dz, 32, inp.gamma, inp.beta, axis=inp.axis, epsilon=1e-3, dtype=np.float64
    )
    for way in (ops.fused_forward_backward, ops.separate_forward_backward):
        y, (dx, dgamma, dbeta, dres) = way()
        assert bench_fused.compare(y, y64) < 1e-5
        assert bench_fused.compare(dx, dx64) < 1e-4
        assert bench_fused.compare(dgamma, dgamma64) < 1e-5
        assert bench_fused.compare(dbeta, dbeta64) < 1e-5
        if residual:
            assert bench_fused.compare(dres, dz) < 1e-5
        else:
            assert dres is None
    idx = bench_fused.sample_indices(inp.x.size)
    assert reference["y"] == pytest.approx(y64.reshape(-1)[idx], rel=1e-4, abs=1e-5)
    assert (reference["dresidual"] is None) == (not residual)


def test_verify_refuses_a_wrong_fused_result(rng):
    class Wrong(bench_fused.Ops):
        def fused_forward_backward(self):
            y, (dx, dgamma, dbeta, dres) = super().fused_forward_backward()
            return y, (dx, dgamma * np.float32(1.01), dbeta, dres)

    with pytest.raises(bench_fused.MismatchError, match="dgamma"):
        Wrong(_inputs(rng, "channels-last"), "silu", True).verify()


def test_compare_is_relative_to_the_largest_reference_value():
    assert bench_fused.compare(np.array([1.0, 2.5]), np.array([1.0, 2.0])) == 0.25
    assert bench_fused.compare(np.array([0.5]), np.array([0.0])) == 0.5
    assert bench_fused.compare(np.zeros(0), np.zeros(0)) == 0.0


def test_table_prints_every_row(report):
    out = io.StringIO()
    bench_fused.print_table(report, file=out)
    text = out.getvalue()
    for r in report["results"]:
        assert r["label"][:32] in text
    assert "fus/GN" in text and "sep/fus" in text and "cmp/fus" in text


def test_sizes_are_the_sweeps_from_64_kib_to_64_mib():
    from numba_gn.cli.bench import SWEEP_SIZES

    assert set(bench_fused.SIZES) <= set(SWEEP_SIZES)
    nbytes = [n * s * s * 256 * 4 for n, s in bench_fused.SIZES]
    assert min(nbytes) == 64 * 1024 and max(nbytes) == 64 * 1024 * 1024


def test_bench_takes_fused():
    args = build_parser().parse_args(["bench", "--fused", "--quick", "--no-torch"])
    assert args.fused and args.quick and args.no_torch


def test_command_line_quick_run(tmp_path):
    out = tmp_path / "fused.json"
    proc = subprocess.run(
        [sys.executable, "-m", "numba_gn", "bench", "--fused", "--quick", "--no-torch",
         "--threads", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_WAIT_POLICY": "passive"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "fus/GN" in proc.stdout and "Traceback" not in proc.stderr
    report = json.loads(out.read_text())
    assert report["schema"] == bench_fused.SCHEMA
    assert report["settings"]["quick"] is True and report["repeat"] == 2
    assert report["settings"]["sizes"] == [list(s) for s in bench_fused.QUICK_SIZES]
    assert report["threads"] == 1 and report["facts"]["threads"] == "1"
    assert len(report["results"]) == 2 * 2 * 3 * 2


# -- PyTorch, in its own process --------------------------------------------------------------


def _torch_rows(cases, references, with_compile):
    rows = {(c, p): bench_fused.Row(c, p) for c in cases for p in bench_fused.PASSES}
    timer = bench_fused._Timer(repeat=1, min_time=0.0, budget=0.1)
    progress = bench_fused.Progress(total=10, stream=io.StringIO())
    version, notes = bench_fused._time_torch_elsewhere(
        cases, references, rows, 1, timer, with_compile, progress
    )
    assert notes == []
    return version, rows


def _references(cases):
    refs = {}
    for c in cases:
        inputs = bench_fused.make_inputs(c.shape, c.axis)
        _, refs[c] = bench_fused.Ops(inputs, c.activation, c.residual).verify()
    return refs


def test_torch_eager_is_checked_and_timed():
    pytest.importorskip("torch")
    cases = bench_fused.cases(TINY)
    version, rows = _torch_rows(cases, _references(cases), with_compile=False)
    assert version.startswith("2.")
    for row in rows.values():
        assert row.seconds["torch_eager"] > 0 and "torch_compile" not in row.seconds
        assert row.agreement["torch_eager"] <= bench_fused.TORCH_TOLERANCE
        assert row.first_call["torch_eager"] > 0
        assert row.to_json()["ratios"]["torch_eager_vs_fused"] is None  # no fused time here


def test_torch_results_that_disagree_are_not_timed():
    pytest.importorskip("torch")
    case = bench_fused.cases(TINY)[0]
    refs = _references([case])
    refs[case]["dgamma"] = [v + 1.0 for v in refs[case]["dgamma"]]
    with pytest.raises(bench_fused.MismatchError, match="torch_eager differs"):
        _torch_rows([case], refs, with_compile=False)


@pytest.mark.slow
def test_torch_compile_is_checked_and_timed():
    """torch.compile of one case (compiling takes tens of seconds on 2 cores)."""
    pytest.importorskip("torch")
    case = bench_fused.cases(TINY)[0]
    _, rows = _torch_rows([case], _references([case]), with_compile=True)
    for p in bench_fused.PASSES:
        row = rows[case, p]
        assert row.seconds["torch_compile"] > 0
        assert row.agreement["torch_compile"] <= bench_fused.TORCH_TOLERANCE
        assert row.first_call["torch_compile"] > 0


@pytest.mark.slow
def test_torch_compile_that_fails_is_skipped_with_the_reason(monkeypatch, tmp_path):
    """Without a working C++ compiler, torch.compile is left out and eager is still timed."""
    pytest.importorskip("torch")
    monkeypatch.setenv("CXX", "/bin/false")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # no cached kernels to load
    case = bench_fused.cases(TINY)[0]
    rows = {(case, p): bench_fused.Row(case, p) for p in bench_fused.PASSES}
    _, notes = bench_fused._time_torch_elsewhere(
        [case], _references([case]), rows, 1, bench_fused._Timer(1, 0.0, 0.1), True,
        bench_fused.Progress(total=2, stream=io.StringIO()),
    )
    assert len(notes) == 1 and notes[0].startswith("torch_compile not timed: ")
    for p in bench_fused.PASSES:
        assert rows[case, p].seconds["torch_eager"] > 0
        assert "torch_compile" not in rows[case, p].seconds
