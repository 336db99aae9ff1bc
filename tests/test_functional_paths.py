"""Every kernel path computes the same bits: serial twins, parallel fused, chunked slabs, any
thread count."""

from __future__ import annotations

import contextlib

import numba
import numpy as np
import pytest

import numba_gn
from numba_gn import _engine, _knobs, group_norm, group_norm_backward
from numba_gn.kernels import rows, slab

# name -> (shape, axis, groups); the forced strategies run the parallel kernels on every case,
# and the default choice does on those of GROUP_NORM_PARALLEL_MIN_ELEMENTS or more.
CASES = {
    "rows-nhwc": ((1, 64, 32, 64), -1, 32),  # one sample: its blocks spread over the threads
    "rows-many-samples": ((16, 8, 16, 64), -1, 32),  # whole samples in parallel by default
    "slab-nchw": ((4, 64, 32, 32), 1, 32),
    "slab-few-slabs": ((1, 8, 128, 128), 1, 2),  # 2 slabs of 2 pieces: chunked by default
    "slab-middle": ((4, 32, 64, 16), 2, 16),  # runs of 64: slab family with A = 32
    "rows-middle": ((4, 512, 8, 8), 2, 4),  # runs of 16: row family
    "2d-long-runs": ((64, 1024), -1, 32),
    "2d-short-runs": ((512, 64), -1, 32),
    "tuple-axes": ((4, 16, 32, 32), (1, 2), 16),
    "slab-short-runs": ((2, 4, 4, 4096), -1, 8),  # channels-last rows too long for row kernels
    "2d-one-element-runs": ((32, 2048), -1, 2),  # A = 1, B = 1: per-element coefficients
    "slab-grouped-segments": ((2, 80, 64, 64), 2, 32),  # units of 32 segments, last partial
    "rows-few-groups": ((4, 16, 16, 256), -1, 2),  # runs of 128 but one-element channel runs
}


@contextlib.contextmanager
def _mode(mode: str):
    """Force one kernel path for the duration of the block (the engine's supported switch)."""
    threads = numba.get_num_threads()
    forced = {
        "default": {},
        "serial": {"strategy": "serial"},
        "chunked": {"strategy": "chunked"},
        "fused": {"strategy": "fused"},
        "one-thread": {},
        "streaming": {"stream": True},
        "streaming-serial": {"strategy": "serial", "stream": True},
    }[mode]
    if mode == "one-thread":
        numba.set_num_threads(1)
    try:
        with _engine.forced(**forced):
            yield
    finally:
        numba.set_num_threads(threads)


def _everything(x, dy, groups, gamma, beta, axis, paths=None):
    """Forward and backward; the engine's paths of both calls are appended to ``paths``."""
    y, mean, rstd = group_norm(x, groups, gamma, beta, axis=axis, return_stats=True)
    forward_path = _engine.last_path()
    dx, dgamma, dbeta = group_norm_backward(dy, x, mean, rstd, groups, gamma, axis=axis)
    if paths is not None:
        paths += [forward_path, _engine.last_path()]
    return {"y": y, "mean": mean, "rstd": rstd, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def _inputs(shape, axis, dtype, rng):
    axes = (axis,) if isinstance(axis, int) else axis
    cshape = tuple(shape[a] for a in axes)
    x = (100.0 + rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, cshape).astype(dtype)
    beta = rng.standard_normal(cshape).astype(dtype)
    return x, dy, gamma, beta


@pytest.mark.skipif(numba.get_num_threads() < 2, reason="needs at least 2 Numba threads")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_all_paths_bitwise_identical(case, dtype, rng):
    shape, axis, groups = CASES[case]
    assert np.prod(shape) >= _knobs.PARALLEL_MIN_ELEMENTS
    x, dy, gamma, beta = _inputs(shape, axis, dtype, rng)
    paths = []
    with _mode("serial"):
        expected = _everything(x, dy, groups, gamma, beta, axis, paths)
    assert {p.strategy for p in paths} == {"serial"}
    modes = ["default", "one-thread", "chunked", "fused", "streaming", "streaming-serial"]
    for mode in modes:
        paths = []
        with _mode(mode):
            got = _everything(x, dy, groups, gamma, beta, axis, paths)
        strategies = {p.strategy for p in paths}
        big = np.prod(shape) >= _knobs.GROUP_NORM_PARALLEL_MIN_ELEMENTS
        if mode in ("one-thread", "streaming-serial"):
            assert strategies == {"serial"}, (mode, paths)
        elif mode in ("chunked", "fused") or big:
            assert "serial" not in strategies, (mode, paths)
        if mode in ("chunked", "fused"):
            assert strategies == {mode}, paths
        assert {p.stream for p in paths} == {mode.startswith("streaming")} or mode == "default"
        for key, want in expected.items():
            assert got[key].dtype == want.dtype, (mode, key)
            np.testing.assert_array_equal(got[key], want, err_msg=f"{mode}: {key}")


def test_cases_cover_both_families_and_both_parallel_strategies():
    # Guard for the test above: with the default settings the cases really do reach the row
    # kernels (waves and whole samples) and the slab kernels (fused and chunked).
    if numba.get_num_threads() < 2:
        pytest.skip("needs at least 2 Numba threads")
    rng = np.random.default_rng(0)
    paths = []
    for shape, axis, groups in CASES.values():
        x, dy, gamma, beta = _inputs(shape, axis, np.float32, rng)
        _everything(x, dy, groups, gamma, beta, axis, paths)
    seen = {(p.family, p.strategy) for p in paths}
    assert seen >= {("rows", "chunked"), ("rows", "fused"), ("slab", "fused"), ("slab", "chunked")}


@pytest.mark.parametrize("case", ["rows-nhwc", "slab-few-slabs"])
def test_nonfinite_values_take_the_same_bits_on_every_path(case, rng):
    shape, axis, groups = CASES[case]
    x, dy, gamma, beta = _inputs(shape, axis, np.float32, rng)
    x.reshape(-1)[7] = np.nan
    x.reshape(-1)[9] = np.inf
    with _mode("serial"):
        expected = _everything(x, dy, groups, gamma, beta, axis)
    for mode in ("default", "chunked", "fused"):
        with _mode(mode):
            got = _everything(x, dy, groups, gamma, beta, axis)
        for key, want in expected.items():
            np.testing.assert_array_equal(got[key], want, err_msg=f"{mode}: {key}")
    assert np.isnan(expected["y"]).any() and np.isfinite(expected["y"]).any()


def test_forced_paths_reach_every_kernel_on_a_small_input(rng):
    """The switch works on any size: a small input on the parallel kernels, and back."""
    if numba.get_num_threads() < 2:
        pytest.skip("needs at least 2 Numba threads")
    x, dy, gamma, beta = _inputs((2, 4, 8), -1, np.float64, rng)
    with _mode("serial"):
        expected = _everything(x, dy, 4, gamma, beta, -1)
    for strategy in ("fused", "chunked"):
        paths = []
        with _mode(strategy):
            got = _everything(x, dy, 4, gamma, beta, -1, paths)
        assert paths == [_engine.Path("rows", strategy, False)] * 2
        for key, want in expected.items():
            np.testing.assert_array_equal(got[key], want)
    paths = []
    _everything(x, dy, 4, gamma, beta, -1, paths)  # outside the block: automatic again
    assert paths == [_engine.Path("rows", "serial", False)] * 2
    with pytest.raises(ValueError, match="strategy"):
        with _engine.forced(strategy="sideways"):
            pass


def test_repeated_calls_are_deterministic(rng):
    shape, axis, groups = CASES["rows-nhwc"]
    x, dy, gamma, beta = _inputs(shape, axis, np.float32, rng)
    first = _everything(x, dy, groups, gamma, beta, axis)
    for _ in range(3):
        again = _everything(x, dy, groups, gamma, beta, axis)
        for key, want in first.items():
            np.testing.assert_array_equal(again[key], want)


def test_num_threads_is_restored_after_forced_modes():
    threads = numba.get_num_threads()
    with _mode("one-thread"):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == threads


def _kernels():
    """The entry points of the row and slab families (public, not inlined), by name."""
    for module in (rows, slab):
        for name, obj in vars(module).items():
            if (
                isinstance(obj, numba.core.registry.CPUDispatcher)
                and obj.py_func.__module__ == module.__name__
                and obj.targetoptions.get("inline") != "always"
                and not name.startswith("_")  # helpers called from kernels (subroutines)
            ):
                yield f"{module.__name__}.{name}", obj


def test_warmup_compiles_every_kernel():
    """After warmup() no user call compiles: every kernel has a float32 specialisation."""
    numba_gn.warmup(("float32",))
    names = []
    for name, kernel in _kernels():
        names.append(name)
        assert any(sig[0].dtype == numba.float32 for sig in kernel.signatures), name
    assert len(names) >= 12  # 3 per family (rows, slab) and pass (forward, backward)


def test_read_only_inputs_share_one_specialisation(rng):
    """Writeable and read-only inputs/parameters reach the kernels with the same types."""
    x = rng.standard_normal((2, 6, 8)).astype(np.float32)
    gamma, beta = np.ones(8), np.zeros(8)
    for frozen in (False, True):
        for a in (x, gamma, beta):
            a.flags.writeable = not frozen
        y, mean, rstd = group_norm(x, 4, gamma, beta, return_stats=True)
        for a in (y, mean, rstd):
            a.flags.writeable = not frozen
        group_norm_backward(y, x, mean, rstd, 4, gamma)
    for name, kernel in _kernels():
        # One specialisation per dtype and epilogue (the last argument: None for plain calls;
        # fused calls made earlier in the session add their own).
        keys = [(sig[0].dtype, sig[-1]) for sig in kernel.signatures]
        assert len(keys) == len(set(keys)), f"{name}: {kernel.signatures}"


@pytest.mark.parametrize("strategy", ["serial", "fused", "chunked"])
@pytest.mark.parametrize("shape", [(1, 16, 8, 8), (1, 8, 32, 32), (1, 12, 4, 8)])
def test_channel_run_sums_are_dy_sums_of_each_run(strategy, shape, rng):
    """Channels-first backward sums every channel's run as `dy_sums` does, bit for bit.

    With one sample, `dbeta` is each channel's `sum(dy)` itself; the slab kernels compute it
    from one view of a group's runs (or per unit), which must not change a bit.
    """
    from numba import njit

    from numba_gn.kernels._common import compute_empty, dy_sums

    @njit
    def run_sums(dy, x, lanes):
        acc = compute_empty(x, (2, lanes))
        out = np.empty(dy.shape[0])
        for c in range(dy.shape[0]):
            out[c] = dy_sums(dy[c], x[c], np.float32(0.0), np.float32(0.0), acc)[0]
        return out

    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    _, mean, rstd = group_norm(x, 4, axis=1, return_stats=True)
    with _engine.forced(strategy=strategy):
        _, _, dbeta = group_norm_backward(dy, x, mean, rstd, 4, axis=1)
    run = shape[2] * shape[3]
    lanes = _engine._lanes(np.dtype(np.float32), shape[1] // 4 * run)  # the slab's, as the engine
    expected = run_sums(dy.reshape(shape[1], run), x.reshape(shape[1], run), lanes)
    np.testing.assert_array_equal(dbeta, expected.astype(np.float32))
