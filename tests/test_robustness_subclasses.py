"""ndarray subclasses as arguments: computed on as plain ndarrays, or refused with a TypeError.

The kernels are compiled for plain ndarrays. Subclasses are seen through a plain-ndarray view of
their memory (``np.memmap``, ``np.matrix``, user subclasses), and as ``out`` they are written
into and returned themselves; masked arrays are refused for every argument, since the mask
would be ignored. Either way no Numba error ever reaches the caller.
"""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pytest
from reference import group_norm_backward_ref, group_norm_ref

from numba_gn import autograd as ag
from numba_gn import (
    group_norm,
    group_norm_backward,
    group_norm_masked,
    group_norm_masked_backward,
)

TOL = 1e-12
N, C, G = 3, 8, 4


class Tagged(np.ndarray):
    """A trivial user subclass."""


def _matrix(a) -> np.matrix:
    """``np.matrix(a)`` without NumPy's warning that the class is not recommended."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.matrix(a)


def _close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=0, atol=TOL)


@pytest.fixture
def data(rng):
    x = rng.standard_normal((N, C))
    gamma = rng.standard_normal(C)
    beta = rng.standard_normal(C)
    dy = rng.standard_normal((N, C))
    _, mean, rstd = group_norm(x, G, gamma, beta, return_stats=True)
    mask = np.array([True, False, True])
    return {
        "x": x,
        "gamma": gamma,
        "beta": beta,
        "dy": dy,
        "mean": mean,
        "rstd": rstd,
        "mask": mask,
    }


def _call(fn, d):
    """Call entry point ``fn`` with the arrays of ``d`` (which tests replace one at a time)."""
    if fn == "group_norm":
        return group_norm(d["x"], G, d["gamma"], d["beta"], out=d.get("out"))
    if fn == "group_norm_backward":
        return group_norm_backward(
            d["dy"], d["x"], d["mean"], d["rstd"], G, d["gamma"], out=d.get("out")
        )
    if fn == "group_norm_masked":
        return group_norm_masked(d["x"], d["mask"], G, d["gamma"], d["beta"])
    return group_norm_masked_backward(
        d["dy"], d["x"], d["mask"], d["mean"], d["rstd"], G, d["gamma"]
    )


ARGS = {
    "group_norm": ("x", "gamma", "beta", "out"),
    "group_norm_backward": ("dy", "x", "mean", "rstd", "gamma", "out"),
    "group_norm_masked": ("x", "mask", "gamma", "beta"),
    "group_norm_masked_backward": ("dy", "x", "mask", "mean", "rstd", "gamma"),
}
CASES = [(fn, name) for fn, names in ARGS.items() for name in names]


def _results(result):
    return result if isinstance(result, tuple) else (result,)


# -- masked arrays: refused, naming the argument -----------------------------------------------


@pytest.mark.parametrize(("fn", "name"), CASES)
def test_masked_array_is_refused_for_every_argument(data, fn, name):
    d = dict(data)
    if name == "out":
        d["out"] = np.ma.masked_array(np.full((N, C), 7.0), mask=False)
    else:
        d[name] = np.ma.masked_array(d[name], mask=np.zeros(np.shape(d[name]), bool))
    with pytest.raises(TypeError, match=f"`{name}` is a masked array") as info:
        _call(fn, d)
    assert not isinstance(info.value, numba.core.errors.NumbaError)
    if name == "out":
        assert (d["out"].data == 7.0).all()  # nothing written


def test_masked_x_points_to_the_masked_functions(data):
    with pytest.raises(TypeError, match="numba_gn.group_norm_masked"):
        group_norm(np.ma.masked_array(data["x"], mask=data["x"] > 1), G)
    with pytest.raises(TypeError, match="group_norm_masked_backward"):
        group_norm_backward(
            np.ma.masked_array(data["dy"]), data["x"], data["mean"], data["rstd"], G
        )


def test_masked_array_through_the_tape_is_refused(data):
    with pytest.raises(TypeError, match="`x` is a masked array"):
        ag.group_norm(np.ma.masked_array(data["x"]), G)


# -- np.matrix: inputs converted, out written into ---------------------------------------------

# np.matrix is always 2-D: a matrix gamma (1, C) or mask (1, N) does not have the expected
# shape and is refused like any other wrong shape; mean/rstd and the arrays of x's shape work.
MATRIX_INPUTS = [(fn, n) for fn, n in CASES if n not in ("out", "gamma", "beta", "mask")]


def _expected(fn, d):
    if fn == "group_norm":
        return (group_norm_ref(d["x"], G, d["gamma"], d["beta"])[0],)
    if fn == "group_norm_backward":
        return group_norm_backward_ref(d["dy"], d["x"], G, d["gamma"])
    plain = {k: np.asarray(v) for k, v in d.items() if v is not None}
    return _results(_call(fn, plain))


@pytest.mark.parametrize(("fn", "name"), MATRIX_INPUTS)
def test_matrix_input_is_computed_as_a_plain_array(data, fn, name):
    d = dict(data)
    expected = _expected(fn, d)
    d[name] = _matrix(d[name])
    got = _results(_call(fn, d))
    assert all(type(a) is np.ndarray for a in got)
    for a, b in zip(got, expected, strict=True):
        _close(a, b)


@pytest.mark.parametrize(
    ("fn", "name"), [("group_norm", "gamma"), ("group_norm", "beta"), ("group_norm_masked", "mask")]
)
def test_matrix_of_a_1d_argument_has_the_wrong_shape(data, fn, name):
    d = dict(data)
    d[name] = _matrix(d[name])
    with pytest.raises(ValueError, match=f"`{name}` must have (shape|the shape)"):
        _call(fn, d)


@pytest.mark.parametrize("fn", ["group_norm", "group_norm_backward"])
def test_matrix_out_is_written_and_returned(data, fn):
    d = dict(data)
    expected = _expected(fn, d)
    d["out"] = out = _matrix(np.zeros((N, C)))
    got = _results(_call(fn, d))
    assert got[0] is out and type(out) is np.matrix
    for a, b in zip(got, expected, strict=True):
        _close(a, b)


def test_matrix_everything_at_once(data):
    x, dy = _matrix(data["x"]), _matrix(data["dy"])
    y, mean, rstd = group_norm(x, G, return_stats=True)
    dx = _matrix(np.empty((N, C)))
    got = group_norm_backward(dy, x, _matrix(mean), _matrix(rstd), G, out=dx)
    assert got[0] is dx
    for a, b in zip(got, group_norm_backward_ref(data["dy"], data["x"], G), strict=True):
        _close(a, b)


def test_matrix_out_of_the_wrong_shape_is_refused_untouched(rng):
    x = rng.standard_normal((2, 3, 4))
    out = _matrix(np.full((2, 12), 7.0))
    with pytest.raises(ValueError, match="`out` must have shape"):
        group_norm(x, 2, out=out)
    assert (out == 7.0).all()


# -- np.memmap: input and out ------------------------------------------------------------------


def _memmap(path, values, mode="w+"):
    m = np.memmap(path, dtype=values.dtype, mode=mode, shape=values.shape)
    if mode != "r":
        m[...] = values
    return m


@pytest.mark.parametrize(("fn", "name"), [c for c in CASES if c[1] != "out"])
def test_memmap_input(data, tmp_path, fn, name):
    d = dict(data)
    expected = _expected(fn, d)
    d[name] = _memmap(tmp_path / f"{name}.dat", d[name])
    got = _results(_call(fn, d))
    for a, b in zip(got, expected, strict=True):
        _close(a, b)


@pytest.mark.parametrize("fn", ["group_norm", "group_norm_backward"])
def test_memmap_out_is_written_and_returned(data, tmp_path, fn):
    d = dict(data)
    expected = _expected(fn, d)
    path = tmp_path / "out.dat"
    d["out"] = out = _memmap(path, np.zeros((N, C)))
    got = _results(_call(fn, d))
    assert got[0] is out and isinstance(out, np.memmap)
    for a, b in zip(got, expected, strict=True):
        _close(a, b)
    out.flush()
    _close(np.fromfile(path, dtype=np.float64).reshape(N, C), expected[0])


def test_memmap_as_input_and_out_in_place(data, tmp_path):
    m = _memmap(tmp_path / "x.dat", data["x"])
    y = group_norm(m, G, data["gamma"], data["beta"], out=m)
    assert y is m
    _close(m, group_norm_ref(data["x"], G, data["gamma"], data["beta"])[0])


def test_read_only_memmap_out_is_refused(data, tmp_path):
    path = tmp_path / "out.dat"
    np.full((N, C), 7.0).tofile(path)
    out = np.memmap(path, dtype=np.float64, mode="r", shape=(N, C))
    with pytest.raises(ValueError, match="`out` is read-only"):
        group_norm(data["x"], G, out=out)
    assert (np.asarray(out) == 7.0).all()


# -- a user subclass ---------------------------------------------------------------------------


@pytest.mark.parametrize(("fn", "name"), CASES)
def test_user_subclass_anywhere(data, fn, name):
    d = dict(data)
    expected = _expected(fn, d)
    if name == "out":
        d["out"] = np.zeros((N, C)).view(Tagged)
    else:
        d[name] = np.asarray(d[name]).view(Tagged)
    got = _results(_call(fn, d))
    if name == "out":
        assert got[0] is d["out"] and type(got[0]) is Tagged
    else:
        assert type(got[0]) is np.ndarray
    for a, b in zip(got, expected, strict=True):
        _close(a, b)


def test_user_subclass_through_the_tape(data):
    # Function.apply hands non-Tensor arrays to the functional as they are.
    xt = ag.Tensor(data["x"])
    gamma = data["gamma"].view(Tagged)
    with ag.GradientTape() as tape:
        tape.watch([xt])
        loss = ag.sum(ag.group_norm(xt, G, gamma) * data["dy"])
    (dx,) = tape.gradient(loss, [xt])
    _close(dx, group_norm_backward_ref(data["dy"], data["x"], G, data["gamma"])[0])


def test_layers_and_tensors_refuse_masked_arrays():
    """A layer or Tensor would drop the mask through np.asarray: refused, naming the argument."""
    from numba_gn import GroupNormalization, Tensor
    from numba_gn.layers import Dense

    data = np.ma.masked_array(np.ones((2, 4, 8), np.float32), mask=np.zeros((2, 4, 8), bool))
    for layer in (GroupNormalization(groups=4), Dense(3)):
        with pytest.raises(TypeError, match="`inputs` is a masked array.*mask="):
            layer(data)
        assert not layer.built  # refused before building anything
    with pytest.raises(TypeError, match="`data` is a masked array"):
        Tensor(data)
    assert Tensor(data.filled(0)).shape == (2, 4, 8)  # the data itself is fine
