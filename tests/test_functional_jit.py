"""`numba_gn.group_norm` / `group_norm_backward` called from a user's `@numba.njit` code.

Compiled calls must give the Python call's bits (y, mean, rstd, dx, dgamma, dbeta) on every
layout, raise its errors, run inside a user's `prange` loop, and compose into a pipeline.

Every compilation costs seconds, so the user functions are defined once at module level and
the cases are chosen to share their argument types (one compilation per type signature).
"""

from __future__ import annotations

import io
import math

import numba
import numpy as np
import pytest

import numba_gn
from numba_gn import _engine, functional_jit, group_norm, group_norm_backward
from numba_gn.kernels import LANES, rows, slab

# ----------------------------------------------------------------------------------------------
# The user's functions


@numba.njit
def _both(x, dy, groups, gamma, beta, axis, epsilon):
    y, mean, rstd = group_norm(x, groups, gamma, beta, axis=axis, epsilon=epsilon,
                               return_stats=True)
    dx, dgamma, dbeta = group_norm_backward(dy, x, mean, rstd, groups, gamma, axis=axis)
    return y, mean, rstd, dx, dgamma, dbeta


def _python_both(x, dy, groups, gamma, beta, axis, epsilon):
    y, mean, rstd = group_norm(x, groups, gamma, beta, axis=axis, epsilon=epsilon,
                               return_stats=True)
    dx, dgamma, dbeta = group_norm_backward(dy, x, mean, rstd, groups, gamma, axis=axis)
    return y, mean, rstd, dx, dgamma, dbeta


@numba.njit
def _plain(x, dy, group_size):
    # gamma/beta omitted, group_size, return_stats given as False: the other signatures.
    y = group_norm(x, group_size=group_size, return_stats=False)
    _, mean, rstd = group_norm(x, group_size=group_size, return_stats=True)
    dx, dgamma, dbeta = group_norm_backward(dy, x, mean, rstd, group_size=group_size)
    return y, mean, rstd, dx, dgamma, dbeta


@numba.njit
def _into(x, dy, groups, gamma, beta, y_out, dx_out):
    y, mean, rstd = group_norm(x, groups, gamma, beta, out=y_out, return_stats=True)
    dx, dgamma, dbeta = group_norm_backward(dy, x, mean, rstd, groups, gamma, out=dx_out)
    return y, mean, rstd, dx, dgamma, dbeta


@numba.njit(parallel=True)
def _batched(xs, groups, gamma, beta):
    # A user's parallel loop: one call per sample of a batch of batches.
    ys = np.empty_like(xs)
    for i in numba.prange(xs.shape[0]):
        ys[i] = group_norm(xs[i], groups, gamma, beta)
    return ys


@numba.njit
def _pipeline(x, gamma, beta):
    # Normalise, apply a nonlinearity, reduce: per-sample mean of the SiLU of the output.
    y = group_norm(x, 4, gamma, beta)
    z = y / (1.0 + np.exp(-y))
    n = x.shape[0]
    out = np.empty(n)
    for i in range(n):
        out[i] = z[i].sum() / z[i].size
    # Constants with `return_stats` given: Numba types them as literals (another code path).
    _, mean, rstd = group_norm(x, 4, gamma, beta, axis=-1, return_stats=True)
    return y, out, mean, rstd


KEYS = ("y", "mean", "rstd", "dx", "dgamma", "dbeta")


def _assert_same(got, want):
    for key, g, w in zip(KEYS, got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype, (key, g.shape, w.shape, g.dtype)
        assert np.array_equal(g, w), key


# ----------------------------------------------------------------------------------------------
# The layout matrix (as in test_functional_paths / test_functional_numerics, small shapes)


def _c(shape, rng, dtype):
    return (100.0 + rng.standard_normal(shape)).astype(dtype)


def _transposed_nchw(shape, rng, dtype):
    """A channels-last array seen as NCHW: the kernels read it in place (by-stride order)."""
    n, c, h, w = shape
    return _c((n, h, w, c), rng, dtype).transpose(0, 3, 1, 2)


def _strided(shape, rng, dtype):
    """Every other element along axis 2: not contiguous, copied into canonical order."""
    big = _c((shape[0], shape[1], 2 * shape[2], shape[3]), rng, dtype)
    return big[:, :, ::2]


def _reversed(shape, rng, dtype):
    """Negative strides along axis 1."""
    return _c(shape, rng, dtype)[:, ::-1]


def _fortran(shape, rng, dtype):
    return np.asfortranarray(_c(shape, rng, dtype))


# name -> (shape, axis, groups, make); 4-d unless said otherwise
CASES = {
    "channels-last rows": ((2, 6, 5, 8), -1, 4, _c),
    "channels-first slab": ((2, 8, 6, 5), 1, 4, _c),
    "middle axis rows": ((2, 6, 8, 5), 2, 4, _c),
    "middle axis slab": ((2, 4, 16, 32), 2, 4, _c),
    "long runs slab": ((2, 16, 8, 80), -1, 2, _c),
    "groups=-1": ((2, 6, 5, 8), -1, -1, _c),
    "groups=1": ((2, 3, 4, 6), 1, 1, _c),
    "size-1 axes": ((3, 1, 5, 8), -1, 2, _c),
    "negative axis": ((2, 8, 6, 5), -3, 2, _c),
    "2-d": ((4, 64), -1, 8, _c),
    "2-d long": ((3, 5000), 1, 2, _c),
    "tuple axes": ((2, 4, 3, 5), (1, 2), 4, _c),
    "tuple axes reversed": ((2, 4, 3, 5), (2, 1), 3, _c),
    "tuple axes apart": ((2, 4, 3, 6), (1, 3), 8, _c),
    "tuple axes negative": ((2, 3, 4, 8), (-2, -1), 4, _c),
    "transposed view": ((2, 8, 5, 6), 1, 4, _transposed_nchw),
    "transposed view, tuple": ((2, 8, 5, 6), (1, 2), 4, _transposed_nchw),
    "strided": ((2, 3, 5, 8), -1, 4, _strided),
    "negative strides": ((2, 4, 5, 8), -1, 2, _reversed),
    "fortran order": ((2, 6, 5, 8), -1, 4, _fortran),
    "fortran order, channels first": ((2, 8, 6, 5), 1, 2, _fortran),
}

# float64 on a subset: each dtype and layout kind is a compilation of its own.
FLOAT64_CASES = ["channels-last rows", "channels-first slab", "transposed view"]


def _inputs(case, dtype, rng, params=True):
    shape, axis, groups, make = CASES[case]
    x = make(shape, rng, dtype)
    assert x.shape == shape
    dy = rng.standard_normal(shape).astype(dtype)
    axes = (axis,) if isinstance(axis, int) else axis
    cshape = tuple(shape[a] for a in axes)
    gamma = rng.uniform(0.5, 1.5, cshape).astype(dtype) if params else None
    beta = rng.standard_normal(cshape).astype(dtype) if params else None
    return x, dy, groups, gamma, beta, axis


def _params():
    for case in CASES:
        yield pytest.param(case, np.float32, id=f"{case}-float32")
    for case in FLOAT64_CASES:
        yield pytest.param(case, np.float64, id=f"{case}-float64")


@pytest.mark.parametrize(("case", "dtype"), list(_params()))
def test_compiled_calls_give_the_python_bits(case, dtype, rng):
    x, dy, groups, gamma, beta, axis = _inputs(case, dtype, rng)
    x_before = x.copy()
    got = _both(x, dy, groups, gamma, beta, axis, 1e-3)
    want = _python_both(x, dy, groups, gamma, beta, axis, 1e-3)
    _assert_same(got, want)
    np.testing.assert_array_equal(x, x_before)  # the input is not touched
    assert got[0].flags.c_contiguous  # a new y is always C-ordered in compiled code
    assert np.isfinite(got[0]).all()


def test_the_matrix_reaches_both_families_copies_and_views(rng):
    """Guard for the test above: the cases take both kernel families, in place and copied."""
    families, copies = set(), set()
    for case in CASES:
        x, dy, groups, gamma, beta, axis = _inputs(case, np.float32, rng)
        canon = _engine.Canonical(x, numba_gn._args.normalize_axes(axis, x.ndim))
        G = numba_gn._args.resolve_groups(groups, None, canon.C)
        families.add(_engine._row_family(canon.A, canon.C, canon.B, G))
        copies.add(not canon.is_view(x))
    assert families == {True, False} and copies == {True, False}


def test_omitted_parameters_group_size_and_return_stats_false(rng):
    x, dy, _, _, _, _ = _inputs("channels-last rows", np.float32, rng, params=False)
    got = _plain(x, dy, 2)
    y, mean, rstd = group_norm(x, group_size=2, return_stats=True)
    dx, dgamma, dbeta = group_norm_backward(dy, x, mean, rstd, group_size=2)
    _assert_same(got, (y, mean, rstd, dx, dgamma, dbeta))
    assert mean.shape == (2, 4) and dgamma.dtype == np.float32


def test_streaming_stores_on_a_large_output(rng):
    """At `STREAM_MIN_BYTES` of output both paths write with streaming stores (the Python call
    also in parallel): the same bits. Reuses the first signature of `_both`."""
    from numba_gn import _knobs

    shape = (4, 64, 64, 256)
    assert math.prod(shape) * 4 >= _knobs.STREAM_MIN_BYTES
    x = (100.0 + rng.standard_normal(shape, dtype=np.float32))
    dy = rng.standard_normal(shape, dtype=np.float32)
    gamma = rng.uniform(0.5, 1.5, 256).astype(np.float32)
    beta = rng.standard_normal(256).astype(np.float32)
    got = _both(x, dy, 32, gamma, beta, -1, 1e-3)
    want = _python_both(x, dy, 32, gamma, beta, -1, 1e-3)
    assert _engine.last_path().stream  # the Python call streamed too
    _assert_same(got, want)


def test_zero_size_input(rng):
    x = np.zeros((0, 6, 5, 8), np.float32)
    got = _both(x, x, 4, np.ones(8, np.float32), np.zeros(8, np.float32), -1, 1e-3)
    want = _python_both(x, x, 4, np.ones(8, np.float32), np.zeros(8, np.float32), -1, 1e-3)
    _assert_same(got, want)


def test_mixed_parameter_dtypes(rng):
    """gamma/beta of another dtype than x (and an int epsilon) reach the kernels as the Python
    call converts them: float64 values, float64 epsilon, dgamma in gamma's dtype."""
    x, dy, groups, _, _, axis = _inputs("channels-last rows", np.float32, rng)
    gamma = rng.uniform(0.5, 1.5, 8)
    beta = rng.standard_normal(8)
    got = _both(x, dy, groups, gamma, beta, axis, 1)
    want = _python_both(x, dy, groups, gamma, beta, axis, 1)
    _assert_same(got, want)
    assert got[4].dtype == np.float64


# ----------------------------------------------------------------------------------------------
# out=


def _out_cases(rng):
    x, dy, groups, gamma, beta, _ = _inputs("channels-last rows", np.float32, rng)
    fresh = (np.zeros_like(x), np.zeros_like(x))
    nchw = (np.zeros((2, 8, 6, 5), np.float32).transpose(0, 2, 3, 1),  # not canonical: copied
            np.zeros((2, 8, 6, 5), np.float32).transpose(0, 2, 3, 1))
    return x, dy, groups, gamma, beta, {"fresh": fresh, "transposed": nchw}


def test_out_is_written_and_returned(rng):
    x, dy, groups, gamma, beta, outs = _out_cases(rng)
    want = _python_both(x, dy, groups, gamma, beta, -1, 1e-3)
    for name, (y_out, dx_out) in outs.items():
        got = _into(x, dy, groups, gamma, beta, y_out, dx_out)
        _assert_same(got, want)
        assert got[0] is y_out and got[3] is dx_out, name
        np.testing.assert_array_equal(y_out, want[0])
        np.testing.assert_array_equal(dx_out, want[3])


def test_out_may_be_the_input(rng):
    """In place (`out` is `x`), and `out` sharing memory with gamma: the Python call's rule,
    the result computed from copies of the inputs."""
    x, dy, groups, gamma, beta, _ = _out_cases(rng)
    want = _python_both(x, dy, groups, gamma, beta, -1, 1e-3)
    xc, dyc = x.copy(), dy.copy()
    got = _into(xc, dyc, groups, gamma, beta, xc, dyc)
    np.testing.assert_array_equal(got[0], want[0])  # y overwrote x
    # the backward read the overwritten x (now y): the Python call does the same
    xp, dyp = x.copy(), dy.copy()
    _, mean, rstd = group_norm(xp, groups, gamma, beta, out=xp, return_stats=True)
    dx, dgamma, dbeta = group_norm_backward(dyp, xp, mean, rstd, groups, gamma, out=dyp)
    _assert_same(got, (xp, mean, rstd, dyp, dgamma, dbeta))
    assert got[0] is xc and got[3] is dyc


# ----------------------------------------------------------------------------------------------
# A user's parallel loop, and a pipeline


def test_calls_inside_a_user_prange_loop(rng):
    xs = _c((6, 2, 5, 4, 16), rng, np.float32)
    gamma = rng.uniform(0.5, 1.5, 16).astype(np.float32)
    beta = rng.standard_normal(16).astype(np.float32)
    parallel = _batched(xs, 4, gamma, beta)
    serial = np.stack([group_norm(x, 4, gamma, beta) for x in xs])  # one call after another
    assert np.array_equal(parallel, serial)


def test_compiled_code_calls_the_serial_kernels_only(rng):
    """No nested parallel region from inside a user's prange: only the serial twins are named."""
    named = [functional_jit._FORWARD_ROWS, functional_jit._FORWARD_SLAB,
             functional_jit._BACKWARD_ROWS, functional_jit._BACKWARD_SLAB]
    assert named == [rows.forward_ser, slab.forward_fused_ser, rows.backward_ser,
                     slab.backward_fused_ser]
    for kernel in named:
        assert not kernel.targetoptions.get("parallel"), kernel
    # ... and get the types the Python path gives them (read-only inputs, writeable outputs),
    # so compiled callers reuse the kernels' compiled code rather than adding specialisations.
    x, dy, groups, gamma, beta, axis = _inputs("channels-last rows", np.float32, rng)
    _both(x, dy, groups, gamma, beta, axis, 1e-3)
    sigs = [s for s in rows.forward_ser.signatures if s[0].dtype == numba.float32]
    assert sigs and all(not s[0].mutable and s[1].mutable for s in sigs)


def test_a_user_pipeline_normalise_nonlinearity_reduce(rng):
    x = _c((3, 5, 4, 8), rng, np.float32)
    gamma = rng.uniform(0.5, 1.5, 8).astype(np.float32)
    beta = rng.standard_normal(8).astype(np.float32)
    y, per_sample, mean, rstd = _pipeline(x, gamma, beta)
    want_y, want_mean, want_rstd = group_norm(x, 4, gamma, beta, return_stats=True)
    assert np.array_equal(y, want_y)
    assert np.array_equal(mean, want_mean) and np.array_equal(rstd, want_rstd)
    z = want_y / (1.0 + np.exp(-want_y))
    np.testing.assert_allclose(per_sample, z.reshape(3, -1).mean(axis=1), rtol=1e-5, atol=1e-6)
    assert per_sample.shape == (3,) and np.all(per_sample > -0.3)


# ----------------------------------------------------------------------------------------------
# Errors: the Python call's types and messages


def _python_error(fn, *args, **kwargs):
    with pytest.raises((TypeError, ValueError)) as info:
        fn(*args, **kwargs)
    return info.value


RUNTIME_ERRORS = {
    "groups not dividing": {"groups": 3},
    "groups too many": {"groups": 16},
    "groups zero": {"groups": 0},
    "axis out of range": {"axis": 4},
    "axis batch": {"axis": -4},
    "gamma shape": {"gamma": np.ones(7, np.float32)},
    "gamma batch hint": {"gamma": np.ones(2, np.float32)},
    "epsilon negative": {"epsilon": -1.0},
    "epsilon nan": {"epsilon": math.nan},
}


@pytest.mark.parametrize("case", list(RUNTIME_ERRORS))
def test_bad_values_raise_the_python_error(case, rng):
    x, dy, groups, gamma, beta, axis = _inputs("channels-last rows", np.float32, rng)
    args = {"groups": groups, "gamma": gamma, "beta": beta, "axis": axis, "epsilon": 1e-3}
    args.update(RUNTIME_ERRORS[case])
    want = _python_error(_python_both, x, dy, **args)
    got = _python_error(_both, x, dy, **args)
    assert isinstance(got, ValueError) and type(want) is ValueError
    assert str(got) == str(want)


def test_bad_values_raise_the_python_error_with_tuple_axes_and_group_size(rng):
    x, dy, _, gamma, beta, _ = _inputs("tuple axes", np.float32, rng)
    for axis in ((1, 1), (1, 4), (0, 1)):
        want = _python_error(_python_both, x, dy, 4, gamma, beta, axis, 1e-3)
        got = _python_error(_both, x, dy, 4, gamma, beta, axis, 1e-3)
        assert str(got) == str(want) and isinstance(got, ValueError)
    x, dy, *_ = _inputs("channels-last rows", np.float32, rng, params=False)
    for size in (3, 0):
        want = _python_error(group_norm, x, group_size=size)
        got = _python_error(_plain, x, dy, size)
        assert str(got) == str(want) and isinstance(got, ValueError)


def test_bad_shapes_raise_the_python_error(rng):
    x, dy, groups, gamma, beta, _ = _out_cases(rng)[:6]
    _, mean, rstd = group_norm(x, groups, return_stats=True)
    bad = np.zeros((2, 6, 5, 7), np.float32)
    cases = [
        (lambda: _into(x, dy, groups, gamma, beta, bad, dy.copy()),
         lambda: group_norm(x, groups, gamma, beta, out=bad)),
        (lambda: _into(x, bad, groups, gamma, beta, x.copy(), dy.copy()),
         lambda: group_norm_backward(bad, x, mean, rstd, groups, gamma)),
    ]
    for compiled, python in cases:
        got, want = _python_error(compiled), _python_error(python)
        assert str(got) == str(want) and isinstance(got, ValueError)


def _compile_error(fn, *args):
    with pytest.raises((TypeError, ValueError)) as info:
        fn(*args)
    return info.value


def test_bad_types_raise_when_the_caller_compiles(rng):
    # A new user function per case: each is refused while it compiles (typing only: fast).
    x = rng.standard_normal((2, 4, 8)).astype(np.float32)
    err = _compile_error(numba.njit(lambda x: group_norm(x, 4)), x.astype(np.int64))
    assert type(err) is TypeError and str(err) == str(_python_error(group_norm, x.astype(int), 4))
    err = _compile_error(numba.njit(lambda x: group_norm(x, 4)), x.astype(np.float16))
    assert type(err) is TypeError and "float16" in str(err) and "compiled code" in str(err)
    err = _compile_error(numba.njit(lambda x: group_norm(x, 4)), x[0, 0])
    assert type(err) is ValueError and str(err).startswith("`x` must have at least 2 dimensions")
    err = _compile_error(numba.njit(lambda x: group_norm(x, 4, return_stats=1)), x)
    assert type(err) is TypeError and str(err).startswith("`return_stats` must be a bool")
    err = _compile_error(numba.njit(lambda x: group_norm(x, 4, axis=[1, 2])), x)
    assert type(err) is TypeError and "`axis`" in str(err)
    err = _compile_error(numba.njit(lambda x: group_norm(x, 4, epsilon=True)), x)
    assert type(err) is TypeError and str(err).startswith("`epsilon` must be a real number")
    bad_gamma = np.ones(8, dtype=np.bool_)
    err = _compile_error(numba.njit(lambda x, g: group_norm(x, 4, g)), x, bad_gamma)
    assert type(err) is TypeError and str(err) == str(_python_error(group_norm, x, 4, bad_gamma))
    out = np.zeros(x.shape)
    err = _compile_error(numba.njit(lambda x, o: group_norm(x, 4, out=o)), x, out)
    assert type(err) is TypeError and str(err) == str(_python_error(group_norm, x, 4, out=out))
    out = np.zeros_like(x)
    out.flags.writeable = False
    err = _compile_error(numba.njit(lambda x, o: group_norm(x, 4, out=o)), x, out)
    assert type(err) is ValueError and str(err) == "`out` is read-only."
    err = _compile_error(numba.njit(lambda x: group_norm(x, None)), x)
    assert type(err) is ValueError and str(err) == str(_python_error(group_norm, x, None))
    _, mean, rstd = group_norm(x, 4, return_stats=True)
    err = _compile_error(
        numba.njit(lambda x, m: group_norm_backward(x, x, m, m, 4)), x, mean.astype(np.int64)
    )
    assert type(err) is TypeError
    assert str(err) == str(_python_error(group_norm_backward, x, x, mean.astype(int), rstd, 4))


def test_error_messages_are_made_by_the_python_checks():
    """The message of a compiled error is the Python check's own (one source for both)."""
    err = functional_jit._ArgumentError("epsilon", -1.5)
    assert isinstance(err, ValueError)
    assert str(err) == str(_python_error(numba_gn._args.check_epsilon, -1.5))
    import pickle

    again = pickle.loads(pickle.dumps(err))
    assert type(again) is ValueError and str(again) == str(err)


# ----------------------------------------------------------------------------------------------
# The replicated decisions, checked in Python (the compiled helpers are plain Python functions)


def test_memory_order_and_contiguity_match_numpy_and_the_engine(rng):
    """`_memory_order`, `_c_contiguous` and `_dims` against `_engine.Canonical` and NumPy's
    C_CONTIGUOUS flag, over random shapes (with lengths 0 and 1), axes and transpositions."""
    for _ in range(400):
        ndim = int(rng.integers(2, 6))
        shape = tuple(int(s) for s in rng.choice([0, 1, 1, 2, 3, 4], ndim))
        base = np.zeros(shape, np.float32)
        order = (0, *rng.permutation(np.arange(1, ndim)))
        steps = tuple(int(s) for s in rng.choice([1, 1, 2, -1], ndim))
        x = base.transpose(order)[tuple(slice(None, None, s) for s in steps)]
        k = int(rng.integers(1, ndim))
        axes = tuple(int(a) for a in rng.choice(np.arange(1, ndim), k, replace=False))
        perm = functional_jit._memory_order(x.shape, x.strides, np.array(axes), x.itemsize)
        canon = _engine.Canonical(x, axes)
        assert tuple(perm) == canon.perm, (x.shape, x.strides, axes)
        assert functional_jit._dims(x.shape, perm, np.array(axes)) == (
            canon.N, canon.A, canon.C, canon.B)
        for p in (perm, np.array(order)):
            assert functional_jit._c_contiguous(x.shape, x.strides, p, x.itemsize) == (
                x.transpose(p).flags.c_contiguous)


def test_lanes_match_the_engine():
    for dtype in (np.float32, np.float64):
        most = LANES[np.dtype(dtype)]
        for run in [*range(0, 300), 1000, 4095, 4096, 100_000]:
            assert functional_jit._lanes(most, run) == _engine._lanes(np.dtype(dtype), run), run


def test_registering_compiles_nothing():
    """Importing numba_gn compiles no implementation: they are typed on a caller's first use."""
    from _subprocess import check_python, last_json_line

    res = check_python(
        """
import json
from numba.core import event
with event.install_recorder("numba:compile") as rec:
    import numba_gn
    assert numba_gn.functional_jit is not None
print(json.dumps({"compiled": len(rec.buffer)}))
"""
    )
    assert last_json_line(res.stdout) == {"compiled": 0}


# ----------------------------------------------------------------------------------------------
# The benchmark


def test_bench_njit_reports_both_medians_and_the_ratio():
    from numba_gn.cli import bench_njit

    report = bench_njit.measure(calls=20, repeat=1)
    assert report["calls"] == 20 and report["shape"] == [2, 8, 8, 32]
    assert set(report["seconds"]) == {"njit", "python"} == set(report["per_call_seconds"])
    assert all(t > 0 for t in report["seconds"].values())
    assert report["ratio"] == pytest.approx(
        report["seconds"]["python"] / report["seconds"]["njit"])
    assert report["identical"] is True
    text = io.StringIO()
    bench_njit.print_report(report, file=text)
    assert "njit" in text.getvalue() and "ratio python / njit" in text.getvalue()


def test_numba_gn_bench_njit_runs_from_the_command_line(capsys):
    from numba_gn.cli import main

    assert main(["bench", "--njit", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "1000 calls of numba_gn.group_norm" in out
    assert "njit" in out and "python" in out and "ratio python / njit" in out
    assert "same results: yes" in out
