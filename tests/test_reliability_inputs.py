"""Bad input through every public entry point, and safe loading.

Beyond the core-engine list (``test_functional_errors.py``): NaN/Inf in gamma or beta stays in
the affected channels; read-only and big-endian arrays work and give the same bits as native
writable ones; Python lists and scalars are converted or refused clearly; wrong dtypes into the
tape op and the layer; a layer called with another rank or channel count than it was built for;
``set_weights`` with wrong shapes or counts changes nothing; configs with unknown keys, wrong
types or foreign modules are refused without importing anything.

The cases live in module-level tables so the number of bad inputs tried can be counted
(:func:`count_bad_inputs`).
"""

from __future__ import annotations

import ast
import builtins
import gc
import importlib
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import numba_gn
from numba_gn import autograd as ag
from numba_gn import group_norm, group_norm_backward
from numba_gn.layers import GroupNormalization
from numba_gn.models import Sequential

# name -> (shape, axis, groups): serial and parallel (>= 32768 elements), both kernel families.
LAYOUTS = {
    "slab-ser": ((2, 8, 6, 5), 1, 4),
    "rows-ser": ((2, 6, 5, 8), -1, 4),
    "slab-fused-par": ((4, 16, 32, 32), 1, 4),
    "slab-chunked-par": ((1, 8, 64, 128), 1, 2),
    "rows-par": ((2, 32, 16, 128), -1, 32),
}
DTYPES = ("float16", "float32", "float64")


def _data(shape, axis, dtype, seed=0):
    rng = np.random.default_rng(seed)
    C = shape[axis]
    x = (1.0 + rng.standard_normal(shape)).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, C)
    beta = rng.standard_normal(C)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, dy


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _channel_last(a, axis):
    return np.moveaxis(np.asarray(a), axis, -1)


# ----------------------------------------------------------------------------------------------
# NaN / Inf in gamma or beta: contained to the affected channel (forward) and group (dx)

NONFINITE = (np.nan, np.inf, -np.inf)
PARAMS = ("gamma", "beta")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_nonfinite_gamma_beta_is_contained(layout, dtype):
    shape, axis, G = LAYOUTS[layout]
    x, gamma, beta, dy = _data(shape, axis, dtype)
    C = shape[axis]
    D = C // G
    y0, m0, r0 = group_norm(x, G, gamma, beta, axis=axis, return_stats=True)
    dx0, dg0, db0 = group_norm_backward(dy, x, m0, r0, G, gamma, axis=axis)
    c = C // 2 + 1  # a channel inside some group, not the first
    other_ch = [k for k in range(C) if k != c]
    other_grp = [k for k in range(C) if k // D != c // D]
    for bad in NONFINITE:
        for which in PARAMS:
            g, b = gamma.copy(), beta.copy()
            (g if which == "gamma" else b)[c] = bad
            y, m, r = group_norm(x, G, g, b, axis=axis, return_stats=True)
            yl, y0l = _channel_last(y, axis), _channel_last(y0, axis)
            # The statistics do not involve gamma/beta; every other channel is bit-identical.
            assert _same(m, m0) and _same(r, r0)
            assert _same(yl[..., other_ch], y0l[..., other_ch]), (which, bad)
            assert not np.isfinite(yl[..., c]).any(), (which, bad)
            # Backward: dgamma/dbeta never involve gamma; dx only in the affected group.
            dx, dg, db = group_norm_backward(dy, x, m, r, G, g, axis=axis)
            assert _same(dg, dg0) and _same(db, db0)
            dxl, dx0l = _channel_last(dx, axis), _channel_last(dx0, axis)
            assert _same(dxl[..., other_grp], dx0l[..., other_grp]), (which, bad)
            if which == "beta":
                assert _same(dx, dx0)  # beta does not enter dx at all


def test_nonfinite_gamma_through_the_tape_is_contained():
    x, gamma, beta, dy = _data((2, 8, 6, 5), 1, "float64")
    g = gamma.copy()
    g[5] = np.nan
    xt, gt, bt = ag.Tensor(x), ag.Tensor(g), ag.Tensor(beta)
    with ag.GradientTape() as tape:
        tape.watch([xt, gt, bt])
        y = ag.group_norm(xt, 4, gt, bt, axis=1)
        loss = ag.sum(y * dy)
    dx, dg, db = tape.gradient(loss, [xt, gt, bt])
    assert np.isnan(y.numpy()[:, 5]).all() and np.isfinite(np.delete(y.numpy(), 5, axis=1)).all()
    assert np.isfinite(dg).all() and np.isfinite(db).all()
    assert np.isnan(dx[:, 4:6]).all() and np.isfinite(dx[:, [0, 1, 2, 3, 6, 7]]).all()


# ----------------------------------------------------------------------------------------------
# Read-only inputs (must work, same bits)


def _read_only(a):
    a = np.array(a)  # own copy
    a.flags.writeable = False
    return a


def _views(x):
    """(kind, writable, read-only) twins of ``x`` with the same memory layout.

    C order, Fortran order (another kernel path), a strided view, and memory that cannot be
    made writable at all (a bytes object). Layouts may take different kernel paths, so each
    read-only array is compared with its writable twin.
    """
    yield "c", x, _read_only(x)
    f = np.asfortranarray(x)
    fr = np.asfortranarray(x)
    fr.flags.writeable = False
    yield "fortran", f, fr
    big = np.repeat(x, 2, axis=-1)
    bigr = big.copy()
    bigr.flags.writeable = False
    yield "strided", big[..., ::2], bigr[..., ::2]
    yield "bytes", x, np.frombuffer(x.tobytes(), dtype=x.dtype).reshape(x.shape)


READ_ONLY_KINDS = ("c", "fortran", "strided", "bytes")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_read_only_inputs_work(layout, dtype):
    shape, axis, G = LAYOUTS[layout]
    x, gamma, beta, dy = _data(shape, axis, dtype)
    gam, bet, dyr = _read_only(gamma), _read_only(beta), _read_only(dy)
    for kind, xw, xr in _views(x):
        assert not xr.flags.writeable and xw.flags.writeable
        y0, m0, r0 = group_norm(xw, G, gamma, beta, axis=axis, return_stats=True)
        grads0 = group_norm_backward(dy, xw, m0, r0, G, gamma, axis=axis)
        y, m, r = group_norm(xr, G, gam, bet, axis=axis, return_stats=True)
        assert _same(y, y0) and _same(m, m0) and _same(r, r0), kind
        grads = group_norm_backward(dyr, xr, _read_only(m), _read_only(r), G, gam, axis=axis)
        for a, b in zip(grads, grads0, strict=True):
            assert _same(a, b), kind
        assert y.flags.writeable  # outputs are fresh arrays


def test_read_only_memmap_input(tmp_path):
    x, gamma, beta, dy = _data((4, 64, 16, 16), 1, "float32")
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r", allow_pickle=False)
    assert not xm.flags.writeable
    assert _same(group_norm(xm, 32, gamma, beta, axis=1), group_norm(x, 32, gamma, beta, axis=1))


def test_read_only_out_is_refused_and_untouched():
    x, gamma, beta, _ = _data((2, 8, 6, 5), 1, "float32")
    out = np.full_like(x, 7.0)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="`out` is read-only"):
        group_norm(x, 4, gamma, beta, axis=1, out=out)
    assert (out == 7.0).all()


def test_read_only_tensor_through_the_tape():
    x, gamma, beta, dy = _data((2, 32, 16, 128), -1, "float32")
    expected = group_norm_backward(
        dy, x, *group_norm(x, 32, gamma, axis=-1, return_stats=True)[1:], 32, gamma, axis=-1
    )
    xt, gt = ag.Tensor(_read_only(x)), ag.Tensor(_read_only(gamma))
    with ag.GradientTape() as tape:
        tape.watch([xt, gt])
        loss = ag.sum(ag.group_norm(xt, 32, gt, None, axis=-1) * _read_only(dy))
    dx, dg = tape.gradient(loss, [xt, gt])
    assert _same(dx, expected[0]) and _same(dg, expected[1])


# ----------------------------------------------------------------------------------------------
# Big-endian arrays (work, same bits as native)

BIG_ENDIAN = {"float16": ">f2", "float32": ">f4", "float64": ">f8"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_big_endian_inputs_work(layout, dtype):
    shape, axis, G = LAYOUTS[layout]
    x, gamma, beta, dy = _data(shape, axis, dtype)
    y0, m0, r0 = group_norm(x, G, gamma, beta, axis=axis, return_stats=True)
    grads0 = group_norm_backward(dy, x, m0, r0, G, gamma, axis=axis)
    be = BIG_ENDIAN[dtype]
    xb, dyb = x.astype(be), dy.astype(be)
    gb, bb = gamma.astype(">f8"), beta.astype(">f4").astype(">f8")
    assert _same(bb.astype("<f8"), beta.astype(np.float32).astype(np.float64))
    y, m, r = group_norm(xb, G, gb, beta.astype(">f8"), axis=axis, return_stats=True)
    assert y.dtype == np.dtype(dtype)  # native byte order out
    assert _same(y, y0) and _same(m, m0) and _same(r, r0)
    grads = group_norm_backward(dyb, xb, m.astype(">f8"), r.astype(">f8"), G, gb, axis=axis)
    for a, b in zip(grads, grads0, strict=True):
        assert np.array_equal(a, b)
    assert grads[0].dtype == np.dtype(dtype)  # dx native (dgamma/dbeta follow gamma's dtype)
    # through the tape, too
    xt = ag.Tensor(xb)
    with ag.GradientTape() as tape:
        tape.watch(xt)
        loss = ag.sum(ag.group_norm(xt, G, gamma, beta, axis=axis) * dy)
    (dx,) = tape.gradient(loss, [xt])
    assert np.array_equal(dx, grads0[0])


def test_big_endian_out_is_refused_clearly():
    x = np.ones((2, 8, 4))
    with pytest.raises(TypeError, match="`out` must have dtype float64"):
        group_norm(x, 4, out=np.empty((2, 8, 4), dtype=">f8"))


# ----------------------------------------------------------------------------------------------
# Python lists and scalars


def test_lists_of_floats_work():
    x, gamma, beta, dy = _data((2, 8, 6), -1, "float64")
    y0, m0, r0 = group_norm(x, 3, gamma, beta, return_stats=True)
    y, m, r = group_norm(x.tolist(), 3, gamma.tolist(), tuple(beta.tolist()), return_stats=True)
    assert _same(y, y0) and _same(m, m0) and _same(r, r0)
    grads0 = group_norm_backward(dy, x, m0, r0, 3, gamma)
    grads = group_norm_backward(
        dy.tolist(), x.tolist(), m0.tolist(), r0.tolist(), 3, gamma.tolist()
    )
    for a, b in zip(grads, grads0, strict=True):
        assert np.array_equal(a, b)
    assert _same(ag.group_norm(x.tolist(), 3, None, None).numpy(), group_norm(x, 3))
    # A list of float16 scalars keeps float16 (NumPy's inference).
    xh = x.astype(np.float16)
    assert _same(group_norm(list(xh), 3), group_norm(xh, 3))


_X = np.ones((2, 8, 4))
_M = np.zeros((2, 4))

# (id, call, exception, message regex): each must raise that, naming the culprit.
BAD_FUNCTIONAL = [
    ("x-python-float", lambda: group_norm(3.0, 1), ValueError, r"`x` must have at least 2 dim"),
    ("x-python-int", lambda: group_norm(3, 1), TypeError, r"`x` must be a float16"),
    ("x-0d", lambda: group_norm(np.float32(1), 1), ValueError, r"`x` must have at least 2"),
    ("x-1d-list", lambda: group_norm([1.0, 2.0], 1), ValueError, r"`x` .*got shape \(2,\)"),
    ("x-int-list", lambda: group_norm([[1, 2], [3, 4]], 1), TypeError, r"`x` .*int64"),
    ("x-bool", lambda: group_norm(np.ones((2, 4), bool), 1), TypeError, r"`x` .*bool"),
    ("x-complex", lambda: group_norm(np.ones((2, 4), complex), 1), TypeError, r"`x` .*complex"),
    ("x-object", lambda: group_norm(np.ones((2, 4), object), 1), TypeError, r"`x` .*object"),
    ("x-longdouble", lambda: group_norm(np.ones((2, 4), np.longdouble), 1), TypeError, r"`x`"),
    ("x-str", lambda: group_norm("abc", 1), TypeError, r"`x` must be a float"),
    ("x-none", lambda: group_norm(None, 1), TypeError, r"`x` must be a float"),
    ("x-dict", lambda: group_norm({"a": 1.0}, 1), TypeError, r"`x` must be a float"),
    ("x-ragged", lambda: group_norm([[1.0, 2.0], [3.0]], 1), TypeError, r"`x` could not be"),
    ("x-datetime", lambda: group_norm(np.zeros((2, 4), "M8[s]"), 1), TypeError, r"`x`"),
    ("x-structured", lambda: group_norm(np.zeros((2, 4), "f8,f8"), 1), TypeError, r"`x`"),
    ("gamma-scalar", lambda: group_norm(_X, 4, 2.0), ValueError, r"`gamma` must have shape"),
    ("gamma-ragged", lambda: group_norm(_X, 4, [[1.0], [1.0, 2.0]]), TypeError, r"`gamma`"),
    ("gamma-str", lambda: group_norm(_X, 4, "abcd"), TypeError, r"`gamma` must be a real"),
    ("gamma-complex", lambda: group_norm(_X, 4, np.ones(4, complex)), TypeError, r"`gamma`"),
    ("gamma-bool", lambda: group_norm(_X, 4, np.ones(4, bool)), TypeError, r"`gamma`"),
    ("gamma-object", lambda: group_norm(_X, 4, np.ones(4, object)), TypeError, r"`gamma`"),
    ("gamma-2d", lambda: group_norm(_X, 4, np.ones((1, 4))), ValueError, r"`gamma` .*\(4,\)"),
    ("gamma-long", lambda: group_norm(_X, 4, np.ones(8)), ValueError, r"`gamma` .*\(4,\)"),
    ("beta-list-short", lambda: group_norm(_X, 4, None, [0.0] * 3), ValueError, r"`beta`"),
    ("beta-dict", lambda: group_norm(_X, 4, None, {"a": 1}), TypeError, r"`beta`"),
    ("eps-str", lambda: group_norm(_X, 4, epsilon="1e-3"), TypeError, r"`epsilon`"),
    ("eps-nan", lambda: group_norm(_X, 4, epsilon=float("nan")), ValueError, r"`epsilon`"),
    ("eps-inf", lambda: group_norm(_X, 4, epsilon=float("inf")), ValueError, r"`epsilon`"),
    ("eps-neg", lambda: group_norm(_X, 4, epsilon=-1.0), ValueError, r"`epsilon`"),
    ("eps-array", lambda: group_norm(_X, 4, epsilon=np.array([1e-3])), TypeError, r"`epsilon`"),
    ("groups-float", lambda: group_norm(_X, 4.0), ValueError, r"`groups`"),
    ("groups-str", lambda: group_norm(_X, "4"), ValueError, r"`groups`"),
    ("groups-none", lambda: group_norm(_X, None), ValueError, r"`groups`"),
    ("groups-list", lambda: group_norm(_X, [4]), ValueError, r"`groups`"),
    ("group-size-float", lambda: group_norm(_X, group_size=2.0), ValueError, r"`group_size`"),
    ("axis-float", lambda: group_norm(_X, 4, axis=1.0), TypeError, r"`axis`"),
    ("axis-str", lambda: group_norm(_X, 4, axis="-1"), TypeError, r"`axis`"),
    ("axis-array", lambda: group_norm(_X, 4, axis=np.array([2])), TypeError, r"`axis`"),
    ("axis-set", lambda: group_norm(_X, 4, axis={2}), TypeError, r"`axis`"),
    ("out-list", lambda: group_norm(_X, 4, out=[0.0]), TypeError, r"`out` must be a NumPy"),
    ("out-shape", lambda: group_norm(_X, 4, out=np.empty((2, 4, 8))), ValueError, r"`out`"),
    ("out-dtype", lambda: group_norm(_X, 4, out=np.empty(_X.shape, "f4")), TypeError, r"`out`"),
    ("dy-scalar", lambda: group_norm_backward(1.0, _X, _M, _M, 4), ValueError, r"`dy`"),
    (
        "dy-int",
        lambda: group_norm_backward(np.ones((2, 8, 4), int), _X, _M, _M, 4),
        TypeError,
        r"`dy`",
    ),
    (
        "dy-ragged",
        lambda: group_norm_backward([[1.0], [1.0, 2.0]], _X, _M, _M, 4),
        TypeError,
        r"`dy`",
    ),
    (
        "dy-shape",
        lambda: group_norm_backward(np.ones((2, 8)), _X, _M, _M, 4),
        ValueError,
        r"`dy` must have the shape",
    ),
    (
        "mean-int",
        lambda: group_norm_backward(_X, _X, np.zeros((2, 4), int), _M, 4),
        TypeError,
        r"`mean`",
    ),
    (
        "mean-shape",
        lambda: group_norm_backward(_X, _X, np.zeros(8), _M, 4),
        ValueError,
        r"`mean` must have shape \(2, 4\)",
    ),
    (
        "mean-ragged",
        lambda: group_norm_backward(_X, _X, [[0.0], [0.0, 1.0]], _M, 4),
        TypeError,
        r"`mean`",
    ),
    ("rstd-str", lambda: group_norm_backward(_X, _X, _M, "abc", 4), TypeError, r"`rstd`"),
    ("rstd-none", lambda: group_norm_backward(_X, _X, _M, None, 4), TypeError, r"`rstd`"),
    (
        "bwd-gamma-shape",
        lambda: group_norm_backward(_X, _X, _M, _M, 4, np.ones(3)),
        ValueError,
        r"`gamma`",
    ),
    (
        "bwd-x-int",
        lambda: group_norm_backward(_X, np.ones((2, 8, 4), int), _M, _M, 4),
        TypeError,
        r"`x`",
    ),
]


@pytest.mark.parametrize(
    ("call", "exc", "match"), [c[1:] for c in BAD_FUNCTIONAL], ids=[c[0] for c in BAD_FUNCTIONAL]
)
def test_bad_functional_input_is_refused_clearly(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize(
    "bad",
    [
        {"gamma": np.ones(3)},
        {"beta": "x"},
        {"epsilon": -1.0},
        {"groups": 3},
        {"axis": 0},
    ],
    ids=["gamma", "beta", "epsilon", "groups", "axis"],
)
def test_nothing_is_written_to_out_on_error(bad):
    x = np.random.default_rng(0).standard_normal((2, 8, 4))
    out = np.full_like(x, -7.0)
    kwargs = {"gamma": None, "beta": None, "epsilon": 1e-3, "groups": 4, "axis": -1} | bad
    groups = kwargs.pop("groups")
    with pytest.raises((TypeError, ValueError)):
        group_norm(x, groups, out=out, **kwargs)
    assert (out == -7.0).all()


# ----------------------------------------------------------------------------------------------
# Tensors of the wrong dtype into the tape op

BAD_TAPE = [
    ("int", lambda: ag.group_norm(ag.Tensor(np.ones((2, 4), int)), groups=1), TypeError, r"`x`"),
    ("bool", lambda: ag.group_norm(ag.Tensor(np.ones((2, 4), bool)), groups=1), TypeError, r"`x`"),
    (
        "complex",
        lambda: ag.group_norm(ag.Tensor(np.ones((2, 4), complex)), groups=1),
        TypeError,
        r"`x`",
    ),
    (
        "object",
        lambda: ag.group_norm(ag.Tensor(np.ones((2, 4), object)), groups=1),
        TypeError,
        r"`x`",
    ),
    ("str", lambda: ag.group_norm(ag.Tensor(np.full((2, 4), "a")), groups=1), TypeError, r"`x`"),
    ("scalar", lambda: ag.group_norm(ag.Tensor(1.0), groups=1), ValueError, r"`x` must have"),
    (
        "gamma-complex",
        lambda: ag.group_norm(_X, gamma=ag.Tensor(np.ones(4, complex)), groups=4),
        TypeError,
        r"`gamma`",
    ),
    (
        "gamma-shape",
        lambda: ag.group_norm(_X, gamma=ag.Tensor(np.ones(5)), groups=4),
        ValueError,
        r"`gamma`",
    ),
    (
        "beta-str",
        lambda: ag.group_norm(_X, gamma=None, beta=ag.Tensor(np.full(4, "a")), groups=4),
        TypeError,
        r"`beta`",
    ),
    ("groups", lambda: ag.group_norm(_X, groups=3), ValueError, r"channels \(4\)"),
]


@pytest.mark.parametrize(
    ("call", "exc", "match"), [c[1:] for c in BAD_TAPE], ids=[c[0] for c in BAD_TAPE]
)
def test_bad_tape_input_is_refused_clearly(call, exc, match):
    with ag.GradientTape() as tape:  # inside a tape: nothing half-recorded breaks gradient()
        x = ag.Tensor(np.ones((2, 4)))
        tape.watch(x)
        with pytest.raises(exc, match=match):
            call()
        y = ag.sum(x * 2.0)
    assert np.array_equal(tape.gradient(y, x), np.full((2, 4), 2.0))


# ----------------------------------------------------------------------------------------------
# The layer: wrong dtypes, another rank or channel count than built for, set_weights, configs


def _built_layer(groups=4, axis=-1, shape=(2, 5, 8)):
    layer = GroupNormalization(groups=groups, axis=axis)
    layer(np.ones(shape, np.float32))
    return layer


LAYER_BAD_DTYPES = ("complex128", "complex64", "object", "<U1", "S1", "M8[s]", "m8[s]", "f8,f8")
LAYER_CAST_DTYPES = ("int64", "int32", "uint8", "bool")  # Keras casts these to float32


@pytest.mark.parametrize("dtype", LAYER_BAD_DTYPES)
def test_layer_refuses_wrong_dtype_tensors(dtype):
    layer = _built_layer()
    weights = [w.copy() for w in layer.get_weights()]
    x = np.zeros((2, 5, 8), dtype=dtype)
    for value in (x, ag.Tensor(x)):
        with pytest.raises(TypeError, match="dtype"):
            layer(value)
    for a, b in zip(layer.get_weights(), weights, strict=True):
        assert _same(a, b)


@pytest.mark.parametrize("dtype", LAYER_CAST_DTYPES)
def test_layer_casts_integer_and_bool_tensors_like_keras(dtype):
    layer = _built_layer()
    x = (np.arange(80).reshape(2, 5, 8) % 2).astype(dtype)
    expected = np.asarray(layer(x.astype(np.float32)))
    for value in (x, ag.Tensor(x)):
        out = layer(value)
        assert out.dtype == np.float32 and _same(out.numpy(), expected)


# (id, input shape) for a layer built on (2, 5, 8) with axis=-1 (8 channels).
LAYER_BAD_SHAPES = [
    ("rank-up", (2, 5, 8, 1)),
    ("rank-down", (2, 8)),
    ("channels-more", (2, 5, 16)),
    ("channels-fewer", (2, 5, 4)),
    ("rank-1", (8,)),
]


@pytest.mark.parametrize(
    ("shape"), [s for _, s in LAYER_BAD_SHAPES], ids=[i for i, _ in LAYER_BAD_SHAPES]
)
def test_layer_called_with_other_shape_names_the_expected_one(shape):
    layer = _built_layer()
    weights = [w.copy() for w in layer.get_weights()]
    with pytest.raises(ValueError) as info:
        layer(np.ones(shape, np.float32))
    msg = str(info.value)
    assert "8" in msg and ("shape" in msg or "rank" in msg or "dimension" in msg), msg
    for a, b in zip(layer.get_weights(), weights, strict=True):
        assert _same(a, b)
    # the layer still works on its own shape
    assert np.asarray(layer(np.ones((3, 5, 8), np.float32))).shape == (3, 5, 8)


def test_layer_other_batch_and_length_still_work():
    layer = _built_layer()
    for shape in ((1, 5, 8), (7, 5, 8), (2, 11, 8)):
        assert np.asarray(layer(np.ones(shape, np.float32))).shape == shape


def test_layer_scalar_and_list_inputs():
    layer = _built_layer()
    with pytest.raises(ValueError):
        layer(1.0)
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
    assert np.allclose(np.asarray(layer(x.tolist())), np.asarray(layer(x)), atol=1e-6)


_G8 = np.full(8, 2.0, np.float32)

# (id, weights list) for a layer with gamma, beta of shape (8,).
BAD_SET_WEIGHTS = [
    ("none", []),
    ("one", [_G8]),
    ("three", [_G8, _G8, _G8]),
    ("gamma-shape", [np.ones(7, np.float32), _G8]),
    ("beta-shape", [_G8, np.ones((8, 1), np.float32)]),  # gamma fine, beta not: nothing changes
    ("beta-scalar", [_G8, 1.0]),
    ("beta-str", [_G8, np.full(8, "a")]),
    ("beta-complex", [_G8, np.ones(8, complex)]),
    ("beta-ragged", [_G8, [[1.0], [1.0, 2.0]]]),
    ("beta-none", [_G8, None]),
    ("not-a-list", _G8),
]


@pytest.mark.parametrize(("name", "weights"), BAD_SET_WEIGHTS)
def test_failed_set_weights_changes_nothing(name, weights):
    layer = _built_layer()
    rng = np.random.default_rng(1)
    start = [rng.standard_normal(8).astype(np.float32) for _ in range(2)]
    layer.set_weights(start)
    try:
        with pytest.raises((TypeError, ValueError)) as info:
            layer.set_weights(weights)
    finally:  # even when the message check below fails, nothing may have changed
        for a, b in zip(layer.get_weights(), start, strict=True):
            assert _same(a, b), name
    assert "set_weights" in str(info.value), name


# (id, config changes, what the message must name) applied to a valid config.
BAD_CONFIGS = [
    ("unknown-key", {"bogus": 1}, "bogus"),
    ("unknown-key-dunder", {"__class__": "os.system"}, "__class__"),
    ("groups-str", {"groups": "32"}, "groups"),
    ("groups-float", {"groups": 1.5}, "groups"),
    ("groups-zero", {"groups": 0}, "groups"),
    ("groups-minus2", {"groups": -2}, "groups"),
    ("group-size-str", {"group_size": "2"}, "group_size"),
    ("axis-str", {"axis": "channels"}, "axis"),
    ("axis-float", {"axis": 1.0}, "axis"),
    ("epsilon-str", {"epsilon": "0.001"}, "epsilon"),
    ("epsilon-negative", {"epsilon": -1.0}, "epsilon"),
    ("name-int", {"name": 5}, "name"),
    ("dtype-int", {"dtype": "int32"}, "int32"),
    ("dtype-foreign", {"dtype": {"module": "os", "class_name": "system", "config": {}}}, "system"),
    ("initializer-unknown", {"gamma_initializer": "no_such_initializer"}, "no_such_initializer"),
    (
        "initializer-foreign-module",
        {"gamma_initializer": {"module": "os", "class_name": "system", "config": {"command": "x"}}},
        "os",
    ),
    ("initializer-dotted", {"beta_initializer": "os.system"}, "os.system"),
    (
        "initializer-bad-arg",
        {"gamma_initializer": {"class_name": "Constant", "config": {"value": "os"}}},
        "value",
    ),
    (
        "regularizer-lambda",
        {
            "gamma_regularizer": {
                "class_name": "__lambda__",
                "config": {"code": "print", "defaults": None, "closure": None},
            }
        },
        "__lambda__",
    ),
    ("constraint-number", {"beta_constraint": 3}, "3"),
    (
        "constraint-foreign",
        {
            "gamma_constraint": {
                "module": "builtins",
                "class_name": "eval",
                "config": {},
                "registered_name": "eval",
            }
        },
        "eval",
    ),
]


@pytest.mark.parametrize(
    ("change", "named"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_is_refused_without_importing(change, named, import_spy):
    config = GroupNormalization(groups=4).get_config() | change
    with pytest.raises((TypeError, ValueError)) as info:
        with import_spy:
            layer = GroupNormalization.from_config(config)
        layer(np.ones((2, 5, 8), np.float32))  # initializers run at build
    assert named in str(info.value)
    import_spy.assert_nothing_suspicious()


def test_from_config_refuses_non_dicts():
    for config in ([1, 2], "groups=4", None, 4):
        with pytest.raises(TypeError):
            GroupNormalization.from_config(config)


# (id, mask, message part) for a layer built on (2, 5, 8): the mask is (N, T) booleans.
BAD_MASKS = [
    ("shape", np.ones((2, 6), bool), "`mask`"),
    ("channels-too", np.ones((2, 5, 8), bool), "`mask`"),
    ("float", np.ones((2, 5)), "`mask`"),
    ("str", np.full((2, 5), "a"), "`mask`"),
    ("scalar", True, "`mask`"),
    ("ragged", [[True], [True, False]], "`mask`"),
]


@pytest.mark.parametrize(("name", "mask", "named"), BAD_MASKS)
def test_layer_bad_mask_is_refused_clearly(name, mask, named):
    layer = _built_layer()
    x = np.ones((2, 5, 8), np.float32)
    with pytest.raises((TypeError, ValueError)) as info:
        layer(x, mask=mask)
    assert named in str(info.value), name


# ----------------------------------------------------------------------------------------------
# Safe loading


class _ImportSpy:
    """Inside ``with spy:``, records every import and ``importlib.import_module``, and refuses
    ``eval``/``exec`` (outside, e.g. while Numba compiles a kernel, everything passes through).
    """

    SUSPICIOUS = ("os", "subprocess", "builtins", "numba_gn_evil", "shutil", "pickle", "marshal")

    def __init__(self):
        self.imports: list[str] = []
        self.evals: list[str] = []
        self.active = False

    def __enter__(self):
        self.active = True
        return self

    def __exit__(self, *exc):
        self.active = False

    def assert_nothing_suspicious(self):
        bad = [m for m in self.imports if m.split(".")[0] in self.SUSPICIOUS]
        assert not bad, f"imported while deserializing: {bad}"
        assert not self.evals, f"evaluated while deserializing: {self.evals}"
        assert "numba_gn_evil" not in sys.modules


@pytest.fixture
def import_spy(monkeypatch):
    spy = _ImportSpy()
    real_import, real_import_module = builtins.__import__, importlib.import_module

    def spy_import(name, globals=None, locals=None, fromlist=(), level=0):
        if spy.active and level == 0:
            spy.imports.append(name)
        return real_import(name, globals, locals, fromlist, level)

    def spy_import_module(name, package=None):
        if spy.active:
            spy.imports.append(name)
        return real_import_module(name, package)

    def refuse(kind):
        real = getattr(builtins, kind)

        def f(*args, **kwargs):
            if not spy.active:
                return real(*args, **kwargs)
            spy.evals.append(f"{kind}{args[:1]!r}")
            raise AssertionError(f"{kind} called while deserializing")

        return f

    monkeypatch.setattr(builtins, "__import__", spy_import)
    monkeypatch.setattr(importlib, "import_module", spy_import_module)
    for kind in ("eval", "exec"):
        monkeypatch.setattr(builtins, kind, refuse(kind))
    return spy


# Configs an attacker could write into a saved model's JSON.
MALICIOUS_PARAM_CONFIGS = [
    {"module": "os", "class_name": "system", "config": {"command": "touch /tmp/pwned"}},
    {"module": "numba_gn_evil", "class_name": "Ones", "config": {}},
    {"module": "builtins", "class_name": "eval", "config": {}, "registered_name": "eval"},
    {"class_name": "__lambda__", "config": {"code": "print('x')"}},
    {"class_name": "function", "config": "os.system"},
    {"class_name": "os.system", "config": {}},
    {"module": "keras.initializers", "class_name": "subprocess.Popen", "config": {}},
    {"class_name": "Ones", "config": {}, "module": "numba_gn_evil.initializers"},
    {"class_name": "Ones", "config": {"__init__": "os.system"}},
    {"class_name": "Ones", "config": {}, "extra": "os"},
    "os.system",
    "__import__",
    "numba_gn_evil.Ones",
]


@pytest.mark.parametrize("family", ["initializers", "regularizers", "constraints"])
@pytest.mark.parametrize("config", MALICIOUS_PARAM_CONFIGS, ids=range(len(MALICIOUS_PARAM_CONFIGS)))
def test_param_deserialize_never_imports_or_evaluates(family, config, import_spy):
    module = getattr(numba_gn.params, family)
    with import_spy:
        with pytest.raises((TypeError, ValueError)):
            module.deserialize(config)
        with pytest.raises((TypeError, ValueError)):
            module.get(config)
    import_spy.assert_nothing_suspicious()


def test_layer_from_config_never_imports_or_evaluates(import_spy):
    with import_spy:
        for config in MALICIOUS_PARAM_CONFIGS:
            for key in ("gamma_initializer", "beta_regularizer", "gamma_constraint"):
                with pytest.raises((TypeError, ValueError)):
                    GroupNormalization.from_config({"groups": 4, key: config})
    import_spy.assert_nothing_suspicious()


def _np_load_calls():
    """(file, line, keywords) of every ``np.load``/``numpy.load`` call in the package."""
    root = Path(numba_gn.__file__).parent
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("np", "numpy")
            ):
                kw = {k.arg: k.value for k in node.keywords}
                yield path.relative_to(root.parent), node.lineno, kw


def test_every_np_load_in_the_package_refuses_pickles():
    """Static guarantee: any weights reader (now or later) passes ``allow_pickle=False``."""
    for path, line, kw in _np_load_calls():
        value = kw.get("allow_pickle")
        assert isinstance(value, ast.Constant) and value.value is False, (
            f"{path}:{line}: np.load without allow_pickle=False"
        )


def _model():
    model = Sequential([GroupNormalization(groups=4, name="gn")])
    model(np.ones((2, 5, 8), np.float32))
    return model


class _Boom:
    """Unpickling this would create a marker file: proof that a pickle ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _bad_weight_files(tmp_path, good):
    """(id -> path) of weight files that must be refused; ``good`` maps the real names."""
    g, b = list(good)
    gv, bv = good[g], good[b]
    files = {}

    def npz(name, **arrays):
        p = tmp_path / f"{name}.npz"
        np.savez(p, **arrays)
        files[name] = p

    npz("object-array", **{g: np.array([{"a": 1}, None], dtype=object), b: bv})
    npz("pickle-payload", **{g: np.array([_Boom(str(tmp_path / "PWNED"))], dtype=object), b: bv})
    npz("wrong-names", w0=gv, w1=bv)
    npz("extra-name", **{g: gv, b: bv, "gn/extra": bv})
    npz("missing-name", **{g: gv})
    npz("wrong-shape", **{g: gv, b: np.ones(3, np.float32)})
    npz("wrong-rank", **{g: gv.reshape(1, -1), b: bv})
    npz("strings", **{g: np.full(gv.shape, "a"), b: bv})
    npz("complex", **{g: gv.astype(np.complex64), b: bv})
    npz("empty-archive")
    p = tmp_path / "single.npy"
    np.save(p, gv)
    files["single-npy"] = p
    p = tmp_path / "pickle.npz"
    import pickle

    p.write_bytes(pickle.dumps(_Boom(str(tmp_path / "PWNED"))))
    files["bare-pickle"] = p
    p = tmp_path / "truncated.npz"
    p.write_bytes((tmp_path / "wrong-shape.npz").read_bytes()[:40])
    files["truncated"] = p
    p = tmp_path / "text.npz"
    p.write_text("gamma = 1")
    files["text"] = p
    p = tmp_path / "empty.npz"
    p.write_bytes(b"")
    files["empty-file"] = p
    return files


BAD_WEIGHT_FILES = [
    "object-array",
    "pickle-payload",
    "wrong-names",
    "extra-name",
    "missing-name",
    "wrong-shape",
    "wrong-rank",
    "strings",
    "complex",
    "empty-archive",
    "single-npy",
    "bare-pickle",
    "text",
    "truncated",
    "empty-file",
]
N_BAD_WEIGHT_FILES = len(BAD_WEIGHT_FILES)


@pytest.mark.parametrize("kind", BAD_WEIGHT_FILES)
def test_bad_weight_file_is_refused_clearly(kind, tmp_path):
    model = _model()
    rng = np.random.default_rng(5)
    model.set_weights([rng.standard_normal(8).astype(np.float32) for _ in range(2)])
    model.save_weights(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz", allow_pickle=False) as f:
        good = {k: f[k] for k in f.files}
    assert len(good) == 2
    before = [w.copy() for w in model.get_weights()]
    path = _bad_weight_files(tmp_path, good)[kind]
    error = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        try:
            model.load_weights(path)
        except Exception as exc:  # judged below, after any leaked file has been finalised
            error = (type(exc), str(exc))
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    for a, b in zip(model.get_weights(), before, strict=True):
        assert _same(a, b), "a refused file changed a weight"
    assert not (tmp_path / "PWNED").exists(), "a pickle was executed"
    assert error is not None, "loaded"
    assert error[0] is ValueError and path.name in error[1], error
    assert not leaks, leaks
    # the model still loads a good file
    model.set_weights([np.zeros(8, np.float32)] * 2)
    model.load_weights(tmp_path / "good.npz")
    for a, b in zip(model.get_weights(), before, strict=True):
        assert _same(a, b)


def test_weight_file_errors_name_the_problem(tmp_path):
    model = _model()
    model.save_weights(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz", allow_pickle=False) as f:
        good = {k: f[k] for k in f.files}
    files = _bad_weight_files(tmp_path, good)
    expect = {
        "object-array": "pickle",
        "wrong-names": "missing",
        "missing-name": "missing",
        "extra-name": "unexpected",
        "wrong-shape": "shape",
        "strings": "dtype",
    }
    for name, needle in expect.items():
        with pytest.raises(ValueError) as info:
            model.load_weights(files[name])
        assert needle in str(info.value), (name, str(info.value))


# ----------------------------------------------------------------------------------------------


def count_bad_inputs() -> dict[str, int]:
    """How many bad inputs this module tries."""
    n_layout = len(LAYOUTS) * len(DTYPES)
    counts = {
        "nonfinite gamma/beta": n_layout * len(NONFINITE) * len(PARAMS) + 1,
        "read-only": n_layout * len(READ_ONLY_KINDS) + 3,
        "big-endian": n_layout + 1,
        "lists": 5,
        "functional table": len(BAD_FUNCTIONAL) + 5,
        "tape": len(BAD_TAPE),
        "param configs": 3 * len(MALICIOUS_PARAM_CONFIGS) * 2,
    }
    counts["layer"] = (
        2 * len(LAYER_BAD_DTYPES)
        + 2 * len(LAYER_CAST_DTYPES)
        + len(LAYER_BAD_SHAPES)
        + 2
        + len(BAD_SET_WEIGHTS)
        + len(BAD_CONFIGS)
        + 4
        + len(BAD_MASKS)
        + 3 * len(MALICIOUS_PARAM_CONFIGS)
    )
    counts["weight files"] = N_BAD_WEIGHT_FILES
    counts["model configs"] = N_MALICIOUS_MODEL_CONFIGS + 1
    counts["total"] = sum(counts.values())
    return counts


def _malicious_layer_entries(good):
    """Layer entries of a Sequential config that name something other than a known layer."""
    return [
        good | {"module": "os", "class_name": "system"},
        good | {"class_name": "os.system"},
        good | {"class_name": "__import__"},
        good | {"class_name": "Lambda", "config": {"function": "lambda x: x"}},
        good | {"module": "builtins", "class_name": "eval", "registered_name": "eval"},
        good | {"config": good["config"] | {"gamma_initializer": "os.system"}},
        good | {"config": good["config"] | {"__reduce__": "os.system"}},
    ]


N_MALICIOUS_MODEL_CONFIGS = 7


def test_model_from_config_never_imports_or_evaluates(import_spy):
    model = _model()
    config = model.get_config()
    good = config["layers"][0]
    entries = _malicious_layer_entries(good)
    assert len(entries) == N_MALICIOUS_MODEL_CONFIGS
    with import_spy:
        for entry in entries:
            with pytest.raises((TypeError, ValueError)):
                Sequential.from_config(config | {"layers": [entry]})
        # A foreign "module" with a known class name is never imported: it is either refused
        # or resolved to numba_gn's own class.
        foreign = good | {"module": "numba_gn_evil.layers", "class_name": "GroupNormalization"}
        try:
            rebuilt = Sequential.from_config(config | {"layers": [foreign]})
        except (TypeError, ValueError):
            pass
        else:
            assert all(type(layer) is GroupNormalization for layer in rebuilt.layers)
    import_spy.assert_nothing_suspicious()
    # the unmodified config still rebuilds the model
    clone = Sequential.from_config(config)
    x = np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32)
    clone(x)
    clone.set_weights(model.get_weights())
    assert _same(np.asarray(clone(x)), np.asarray(model(x)))
