"""The fused functional API: `group_norm(..., residual=, activation=)` and its backward.

`y = act(GN(x) * gamma + beta + residual)` and `(dx, dgamma, dbeta, dresidual)` are checked

* against the float64 references `numba_gn.numpy_reference.group_norm_act_reference` and
  `group_norm_act_backward_reference` (chain rule), for every activation, with and without a
  residual, on both kernel families (rows: channels-last; slab: channels-first), every forced
  strategy with streaming stores on and off (all of which must give the same bits), a middle
  channel axis, a tuple of axes and `group_size`;
* against the same computation done as separate ops on `group_norm`'s output (same bits for
  identity, relu and leaky_relu in float32/float64, and float32 silu/sigmoid, as promised);
* for float16 and bfloat16: close to the float64 reference, at least as close as the unfused
  chain (which rounds GN's output, and the sum with the residual, to 16 bits);
* at large offsets, on constant groups, with NaN/Inf in `x` or the residual (contained in their
  (sample, group) or element), on an empty batch;
* for bad arguments (clear errors naming them, nothing written to `out`) and `out=` aliasing
  `x`, `dy` or the residual;
* from a user's `@numba.njit` function.

Shapes are small: the forced parallel strategies run the parallel kernels on them anyway.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numba
import numpy as np
import pytest

from numba_gn import _engine, group_norm, group_norm_backward
from numba_gn.autograd import GradientTape, Tensor, gelu, relu, sigmoid, silu
from numba_gn.kernels import activations
from numba_gn.numpy_reference import (
    activation_reference,
    group_norm_act_backward_reference,
    group_norm_act_reference,
)

try:
    import ml_dtypes
except ImportError:  # bfloat16 cases are skipped without it
    ml_dtypes = None

F32_EPS = float(np.finfo(np.float32).eps)
F64_EPS = float(np.finfo(np.float64).eps)

# id -> the fused keywords. leaky_relu uses a non-default slope that float32 cannot represent
# exactly, so a kernel that rounds it differently from NumPy's `float32(slope) * z` shows up.
ACTS = {
    "none": {},
    "linear": {"activation": "linear"},
    "relu": {"activation": "relu"},
    "leaky_relu": {"activation": "leaky_relu", "negative_slope": 0.1},
    "silu": {"activation": "silu"},
    "swish": {"activation": "swish"},
    "sigmoid": {"activation": "sigmoid"},
    "gelu": {"activation": "gelu"},
    "gelu_tanh": {"activation": "gelu", "approximate": True},
}

# The activations whose float32/float64 results are promised bit for bit equal to NumPy ops.
EXACT_ACTS = ("none", "linear", "relu", "leaky_relu")


class Case(NamedTuple):
    shape: tuple[int, ...]
    axis: int | tuple[int, ...]
    grouping: dict  # {"groups": G} or {"group_size": k}
    family: str  # the kernel family the engine picks for it

    @property
    def channel_shape(self) -> tuple[int, ...]:
        axes = (self.axis,) if isinstance(self.axis, int) else self.axis
        return tuple(self.shape[a] for a in axes)

    @property
    def groups(self) -> int:
        if "groups" in self.grouping:
            return self.grouping["groups"]
        return int(np.prod(self.channel_shape)) // self.grouping["group_size"]


LAYOUTS = {
    "rows": Case((2, 6, 5, 8), -1, {"groups": 4}, "rows"),  # channels-last
    "slab": Case((2, 8, 6, 5), 1, {"groups": 4}, "slab"),  # channels-first
    "mid-rows": Case((2, 6, 8, 5), 2, {"groups": 4}, "rows"),  # middle axis, short runs
    "mid-slab": Case((2, 3, 8, 64), 2, {"groups": 4}, "slab"),  # middle axis, runs of 128
    "tuple": Case((2, 4, 3, 6), (3, 1), {"groups": 4}, "rows"),  # two axes, unordered
    "group-size": Case((2, 5, 12), -1, {"group_size": 3}, "rows"),
    "2d": Case((3, 16), -1, {"groups": 4}, "slab"),  # one row per sample
}

# Every (strategy, stream) the engine can be forced to.
PATHS = [(s, stream) for s in ("serial", "fused", "chunked") for stream in (False, True)]

# The fused kernels are compiled per activation (it is part of their Numba type), per dtype,
# with or without a residual, per kernel family and per path: seconds each. So every activation
# runs where its own code differs, on the row family (float32 with and without a residual, as
# models call it, and float64 with one), a few that differ the most run everywhere else, and the
# paths, which share every line of the epilogue, are all checked with SiLU. The choice is made
# here only.
FEW_ACTS = ("none", "leaky_relu", "silu", "gelu")  # identity, a slope, exp, erf
HALF_ACTS = ("silu",)  # 16-bit data: the float32 loops between a load and a store
PATH_ACT = "silu"


def _acts(dtype, with_residual: bool, family: str) -> tuple[str, ...]:
    """The activations tested for a (dtype, residual or not, kernel family) combination."""
    if np.dtype(dtype).itemsize == 2:
        return HALF_ACTS
    if family == "rows" and (with_residual or dtype == np.float32):
        return tuple(ACTS)
    if with_residual and dtype == np.float32:
        return FEW_ACTS
    return ("none", PATH_ACT)


def _combos(layouts, dtypes=(np.float32, np.float64), residuals=(False, True), acts=None):
    """`(layout, dtype, act, with_residual)` parameters, the activations as `_acts` picks them
    (and among `acts` when given)."""
    for layout in layouts:
        for dtype in dtypes:
            for with_residual in residuals:
                for act in _acts(dtype, with_residual, LAYOUTS[layout].family):
                    if acts is None or act in acts:
                        name = {np.float32: "f32", np.float64: "f64"}.get(dtype, str(dtype))
                        res = "res" if with_residual else "no-res"
                        yield pytest.param(
                            layout, dtype, act, with_residual, id=f"{layout}-{name}-{act}-{res}"
                        )


def _paths(dtype, with_residual, act):
    """Every path for float32 SiLU with a residual, the serial one otherwise (see `_acts`)."""
    if dtype == np.float32 and with_residual and act == PATH_ACT:
        return PATHS
    return [("serial", False)]


class Data(NamedTuple):
    x: np.ndarray
    gamma: np.ndarray
    beta: np.ndarray
    residual: np.ndarray
    dy: np.ndarray


def _data(rng: np.random.Generator, case: Case, dtype, offset: float = 3.0) -> Data:
    """Inputs of `dtype`; 16-bit inputs get float32 gamma and beta (as layers pass them)."""
    pdtype = dtype if dtype in (np.float32, np.float64) else np.float32
    cshape = case.channel_shape
    return Data(
        x=(offset + rng.standard_normal(case.shape)).astype(dtype),
        gamma=rng.uniform(0.5, 1.5, cshape).astype(pdtype),
        beta=(0.5 * rng.standard_normal(cshape)).astype(pdtype),
        residual=rng.standard_normal(case.shape).astype(dtype),
        dy=rng.standard_normal(case.shape).astype(dtype),
    )


def _forward(case: Case, d: Data, residual, kw: dict, **extra):
    return group_norm(
        d.x, gamma=d.gamma, beta=d.beta, axis=case.axis, residual=residual, return_stats=True,
        **case.grouping, **kw, **extra,
    )


def _backward(case: Case, d: Data, mean, rstd, residual, kw: dict, **extra):
    return group_norm_backward(
        d.dy, d.x, mean, rstd, gamma=d.gamma, beta=d.beta, axis=case.axis, residual=residual,
        **case.grouping, **kw, **extra,
    )


def _reference(case: Case, d: Data, residual, kw: dict, **extra):
    return group_norm_act_reference(
        d.x, case.groups, d.gamma, d.beta, axis=case.axis, residual=residual, **kw, **extra
    )


def _reference_backward(case: Case, d: Data, residual, kw: dict, **extra):
    return group_norm_act_backward_reference(
        d.dy, d.x, case.groups, d.gamma, d.beta, axis=case.axis, residual=residual, **kw, **extra
    )


def _f64(a) -> np.ndarray:
    return np.asarray(a).astype(np.float64)


def _max_abs(a, b) -> float:
    return float(np.max(np.abs(_f64(a) - _f64(b)), initial=0.0))


def _rel(a, b) -> float:
    """Max abs error relative to the largest magnitude of the reference `b`."""
    return _max_abs(a, b) / max(float(np.max(np.abs(_f64(b)))), 1e-300)


# Forward tolerances against the float64 reference (inputs of offset 3, |gamma| <= 1.5):
# float32 GN is within 1e-5 of float64 (the engine's target, see test_functional_numerics),
# the activations' slopes are at most ~1.13 (GELU), and z and y are each rounded once.
FORWARD_TOL = {
    np.float32: {"atol": 2e-5, "rtol": 4 * F32_EPS},
    np.float64: {"atol": 1e-12, "rtol": 4 * F64_EPS},
}
# Backward tolerances: max abs error relative to the largest magnitude of the reference.
BACKWARD_REL = {np.float32: 2e-5, np.float64: 1e-11}


def _assert_forward_close(y, ref, dtype, err_msg=""):
    np.testing.assert_allclose(_f64(y), ref, **FORWARD_TOL[dtype], err_msg=err_msg)


def _assert_grads_close(got, want, dtype, err_msg=""):
    names = ("dx", "dgamma", "dbeta", "dresidual")
    for name, g, w in zip(names, got, want, strict=True):
        if w is None:
            assert g is None, f"{err_msg}: {name}"
            continue
        assert _rel(g, w) <= BACKWARD_REL[dtype], f"{err_msg}: {name} rel {_rel(g, w):.3g}"


def _assert_same_bits(got: tuple, want: tuple, err_msg: str = ""):
    assert len(got) == len(want), err_msg
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if w is None:
            assert g is None, f"{err_msg} [{i}]"
            continue
        assert g.dtype == w.dtype and g.shape == w.shape, f"{err_msg} [{i}]"
        np.testing.assert_array_equal(g, w, err_msg=f"{err_msg} [{i}]")


# ----------------------------------------------------------------------------------------------
# The layouts really reach the families they claim


def test_layouts_take_their_kernel_family(rng):
    for name, case in LAYOUTS.items():
        d = _data(rng, case, np.float32)
        _forward(case, d, d.residual, ACTS[PATH_ACT])
        assert _engine.last_path().family == case.family, name
        _forward(case, d, None, {})
        assert _engine.last_path().family == case.family, name


# ----------------------------------------------------------------------------------------------
# Forward and backward against the float64 reference, on every path


@pytest.mark.parametrize(("layout", "dtype", "act", "with_residual"), list(_combos(LAYOUTS)))
def test_forward_matches_reference_on_every_path(layout, dtype, act, with_residual, rng):
    case, kw = LAYOUTS[layout], ACTS[act]
    d = _data(rng, case, dtype)
    res = d.residual if with_residual else None
    x_before, res_before = d.x.copy(), d.residual.copy()
    yr, mr, rr = _reference(case, d, res, kw)
    first = None
    for strategy, stream in _paths(dtype, with_residual, act):
        where = f"{strategy}/stream={stream}"
        with _engine.forced(strategy=strategy, stream=stream):
            got = _forward(case, d, res, kw)
            assert _engine.last_path() == (case.family, strategy, stream), where
            _, m_plain, r_plain = _forward(case, d, None, {})
        y, mean, rstd = got
        assert y.dtype == dtype and y.shape == case.shape, where
        _assert_forward_close(y, yr, dtype, where)
        # The statistics are GN(x)'s: the plain call's, bit for bit, and the reference's.
        np.testing.assert_array_equal(mean, m_plain, err_msg=where)
        np.testing.assert_array_equal(rstd, r_plain, err_msg=where)
        np.testing.assert_allclose(rstd, rr, rtol=1e-5 if dtype == np.float32 else 1e-12)
        if first is None:
            first = got
        else:
            _assert_same_bits(got, first, where)
    np.testing.assert_array_equal(d.x, x_before)  # inputs untouched
    np.testing.assert_array_equal(d.residual, res_before)


@pytest.mark.parametrize(("layout", "dtype", "act", "with_residual"), list(_combos(LAYOUTS)))
def test_backward_matches_reference_on_every_path(layout, dtype, act, with_residual, rng):
    case, kw = LAYOUTS[layout], ACTS[act]
    d = _data(rng, case, dtype)
    res = d.residual if with_residual else None
    dy_before = d.dy.copy()
    want = _reference_backward(case, d, res, kw)
    _, mean, rstd = _forward(case, d, res, kw)
    plain = not kw and res is None
    first = None
    for strategy, stream in _paths(dtype, with_residual, act):
        where = f"{strategy}/stream={stream}"
        with _engine.forced(strategy=strategy, stream=stream):
            got = _backward(case, d, mean, rstd, res, kw)
            assert _engine.last_path() == (case.family, strategy, stream), where
        if plain:  # no fused keyword given: the plain call's 3-tuple
            assert len(got) == 3, where
            got = (*got, None)
        assert len(got) == 4, where
        dx, dgamma, dbeta, dres = got
        assert dx.dtype == dtype and dx.shape == case.shape, where
        assert dgamma.dtype == dtype and dgamma.shape == case.channel_shape, where
        assert dbeta.dtype == dtype and dbeta.shape == case.channel_shape, where
        if res is None:
            assert dres is None, where
        else:
            assert dres.dtype == dtype and dres.shape == case.shape, where
        _assert_grads_close(got, want, dtype, where)
        if first is None:
            first = got
        else:
            _assert_same_bits(got, first, where)
    np.testing.assert_array_equal(d.dy, dy_before)


def test_plain_backward_returns_three_and_fused_four(rng):
    case = LAYOUTS["rows"]
    d = _data(rng, case, np.float32)
    _, mean, rstd = _forward(case, d, None, {})
    args = (d.dy, d.x, mean, rstd, 4, d.gamma)
    plain = group_norm_backward(*args)
    assert isinstance(plain, tuple) and len(plain) == 3
    # Explicit defaults are still the plain call.
    _assert_same_bits(group_norm_backward(*args, residual=None, activation=None), plain)
    _assert_same_bits(group_norm_backward(*args, beta=d.beta), plain)  # beta unused when plain
    linear = group_norm_backward(*args, activation="linear")
    assert len(linear) == 4 and linear[3] is None
    _assert_same_bits(linear[:3], plain)
    relu_ = group_norm_backward(*args, beta=d.beta, activation="relu")
    assert len(relu_) == 4 and relu_[3] is None
    with_res = group_norm_backward(*args, residual=d.residual)
    assert len(with_res) == 4
    _assert_same_bits(with_res[:3], plain)  # identity: z's gradient is dy
    np.testing.assert_array_equal(with_res[3], d.dy)


# ----------------------------------------------------------------------------------------------
# Same bits as separate ops on group_norm's output


def _separate_forward(y: np.ndarray, residual, kw: dict) -> np.ndarray:
    """The activation of `z = y + residual` as separate NumPy/numba_gn ops, in `y`'s dtype.

    identity: `z`; relu: `np.maximum(z, 0)`; leaky_relu: Keras's NumPy backend,
    `np.maximum(z, np.asarray(negative_slope, z.dtype) * z)`; silu/swish and sigmoid:
    `numba_gn.autograd.silu` / `sigmoid` (float32: the one-pass kernels of
    `numba_gn.kernels.activations`); gelu: `numba_gn.autograd.gelu`.
    """
    z = y if residual is None else y + residual  # NumPy add in the common dtype
    act = kw.get("activation")
    if act in (None, "linear"):
        return z
    if act == "relu":
        return np.maximum(z, z.dtype.type(0))
    if act == "leaky_relu":
        return np.maximum(z, np.asarray(kw["negative_slope"], z.dtype) * z)
    op = {"silu": silu, "swish": silu, "sigmoid": sigmoid}.get(act)
    if op is None:
        op = functools.partial(gelu, approximate=kw.get("approximate", False))
    return op(Tensor(z)).numpy()


@pytest.mark.parametrize(
    ("layout", "dtype", "act", "with_residual"),
    list(_combos(["rows", "slab", "mid-slab", "tuple"])),
)
def test_forward_against_separate_ops(layout, dtype, act, with_residual, rng):
    case, kw = LAYOUTS[layout], ACTS[act]
    d = _data(rng, case, dtype)
    res = d.residual if with_residual else None
    y, mean, rstd = _forward(case, d, res, kw)
    y_plain, m_plain, r_plain = _forward(case, d, None, {})
    np.testing.assert_array_equal(mean, m_plain)
    np.testing.assert_array_equal(rstd, r_plain)
    sep = _separate_forward(y_plain, res, kw)
    assert sep.dtype == dtype
    if act in EXACT_ACTS or (dtype == np.float32 and act in ("silu", "swish", "sigmoid")):
        np.testing.assert_array_equal(y, sep)
        if dtype == np.float32 and act in ("silu", "swish", "sigmoid"):  # the kernels, directly
            name = "silu" if act == "swish" else act
            z = y_plain if res is None else y_plain + res
            np.testing.assert_array_equal(y, activations.forward(name, z))
        return
    # gelu (both dtypes), silu/sigmoid in float64: within a few ulps.
    _assert_within_ulps(y, sep, y_plain if res is None else y_plain + res, dtype)


def _assert_within_ulps(got, want, z, dtype, ulps: int = 4):
    """`got` within `ulps` ulps of `want`, counted at the scale of the result and of `z`.

    GELU (and SiLU) at negative `z` is a difference of nearly equal terms in any formula: the
    rounding errors of its parts are ulps of `z`, not of the small result.
    """
    eps = float(np.finfo(dtype).eps)
    bound = ulps * eps * (np.abs(_f64(want)) + np.abs(_f64(z))) + np.finfo(dtype).tiny
    err = np.abs(_f64(got) - _f64(want))
    assert np.all(err <= bound), f"{float(np.max(err / bound)) * ulps:.3g} ulps"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["rows", "slab"])
def test_return_stats_and_out_do_not_change_the_result(layout, dtype, rng):
    case, kw = LAYOUTS[layout], ACTS["silu"]
    d = _data(rng, case, dtype)
    y, mean, rstd = _forward(case, d, d.residual, kw)
    y_only = group_norm(d.x, gamma=d.gamma, beta=d.beta, axis=case.axis, residual=d.residual,
                        **case.grouping, **kw)
    np.testing.assert_array_equal(y_only, y)
    out = np.full(case.shape, -7.0, dtype)
    got = group_norm(d.x, gamma=d.gamma, beta=d.beta, axis=case.axis, residual=d.residual,
                     out=out, **case.grouping, **kw)
    assert got is out
    np.testing.assert_array_equal(out, y)
    # A non-contiguous destination.
    big = np.full(case.shape[:-1] + (2 * case.shape[-1],), -7.0, dtype)
    group_norm(d.x, gamma=d.gamma, beta=d.beta, axis=case.axis, residual=d.residual,
               out=big[..., ::2], **case.grouping, **kw)
    np.testing.assert_array_equal(big[..., ::2], y)
    np.testing.assert_array_equal(big[..., 1::2], np.full(y.shape, -7.0, dtype))


def test_residual_conversions(rng):
    case, kw = LAYOUTS["rows"], ACTS["gelu"]
    d = _data(rng, case, np.float32)
    want = _forward(case, d, d.residual, kw)[0]
    # float64, converted to float32 like dy: a relative change below half an ulp rounds back.
    r64 = d.residual.astype(np.float64) * (1 + 2.0**-30)
    np.testing.assert_array_equal(_forward(case, d, r64, kw)[0], want)
    for r in (
        np.asfortranarray(d.residual),
        d.residual.astype(">f4"),
        np.repeat(d.residual, 2, axis=-1)[..., ::2],
        d.residual.tolist(),  # array-likes convert, as `dy` does
    ):
        np.testing.assert_array_equal(_forward(case, d, r, kw)[0], want)
    # A residual in a different memory order from x (channels-first memory, logical NHWC).
    rt = np.ascontiguousarray(d.residual.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(_forward(case, d, rt, kw)[0], want)
    _, mean, rstd = _forward(case, d, d.residual, kw)
    want_b = _backward(case, d, mean, rstd, d.residual, kw)
    _assert_same_bits(_backward(case, d, mean, rstd, rt, kw), want_b)
    _assert_same_bits(_backward(case, d, mean, rstd, r64, kw), want_b)


# ----------------------------------------------------------------------------------------------
# Backward against separate ops: the activation's backward, then group_norm_backward


def _separate_backward(z: np.ndarray, dy: np.ndarray, kw: dict) -> np.ndarray:
    """`dz = dy * act'(z)` by separate ops in `z`'s dtype.

    identity: `dy`; leaky_relu: `np.where(z > 0, dy, dy * float(negative_slope))` in z's dtype;
    relu, silu/swish, sigmoid, gelu: `numba_gn.autograd`'s ops under a `GradientTape`
    (float32 relu/silu/sigmoid: the one-pass kernels' backward).
    """
    act = kw.get("activation")
    if act in (None, "linear"):
        return dy
    if act == "leaky_relu":
        return np.where(z > 0, dy, dy * np.asarray(kw["negative_slope"], z.dtype))
    op = {"relu": relu, "silu": silu, "swish": silu, "sigmoid": sigmoid}.get(act)
    if op is None:
        op = functools.partial(gelu, approximate=kw.get("approximate", False))
    t = Tensor(z)
    with GradientTape() as tape:
        tape.watch(t)
        out = op(t)
    (dz,) = tape.gradient(out, [t], output_gradients=dy)
    return dz


# Fused vs separate backward, max abs difference relative to the largest magnitude: the fused
# kernels form dz in registers (activation derivative from z recomputed in the kernel), the
# separate chain from z as GN's rounded output plus the residual; a few ulps of the largest
# value in either dtype.
SEPARATE_REL = {np.float32: 16 * F32_EPS, np.float64: 16 * F64_EPS}


@pytest.mark.parametrize(
    ("layout", "dtype", "act", "with_residual"), list(_combos(["rows", "slab", "mid-slab"]))
)
def test_backward_against_separate_ops(layout, dtype, act, with_residual, rng):
    case, kw = LAYOUTS[layout], ACTS[act]
    d = _data(rng, case, dtype)
    res = d.residual if with_residual else None
    _, mean, rstd = _forward(case, d, res, kw)
    got = _backward(case, d, mean, rstd, res, kw)
    if len(got) == 3:
        got = (*got, None)
    y_plain = _forward(case, d, None, {})[0]
    z = y_plain if res is None else y_plain + res
    dz = _separate_backward(z, d.dy, kw)
    assert dz.dtype == dtype
    sep = group_norm_backward(dz, d.x, mean, rstd, gamma=d.gamma, axis=case.axis,
                              **case.grouping)
    for name, g, s in zip(("dx", "dgamma", "dbeta"), got[:3], sep, strict=True):
        assert g.dtype == s.dtype
        assert _rel(g, s) <= SEPARATE_REL[dtype], (name, _rel(g, s))
    if res is None:
        assert got[3] is None
        return
    if act in ("none", "linear", "relu"):  # dz is dy or 0: exact
        np.testing.assert_array_equal(got[3], dz)
        return
    # dz against the exact derivative at the same z: a few ulps of the size of the terms of
    # dy * act'(z). GELU's tanh form, `0.5 (1 + t) + 0.5 z (1 - t^2) k (1 + 3 c z^2)`, turns one
    # ulp of t into ~|z|^3 / 4 ulps of dy (its terms cancel where t is near -1, |z| ~ 3..5),
    # in the fused kernels and in the separate op alike.
    exact = _f64(d.dy) * activation_reference(z, **kw)[1]
    zz = np.abs(_f64(z))
    scale = np.abs(_f64(d.dy)) * (1.0 + zz * (1.0 + 3 * 0.044715 * zz * zz))
    eps = float(np.finfo(dtype).eps)
    for name, g in (("fused", got[3]), ("separate", dz)):
        ulps = np.abs(_f64(g) - exact) / (eps * scale)
        assert ulps.max() <= 4, (name, float(ulps.max()))


# ----------------------------------------------------------------------------------------------
# float16 and bfloat16


def _half_dtypes():
    yield pytest.param(np.dtype(np.float16), id="f16")
    if ml_dtypes is None:
        yield pytest.param(None, id="bf16", marks=pytest.mark.skip(reason="needs ml_dtypes"))
    else:
        yield pytest.param(np.dtype(ml_dtypes.bfloat16), id="bf16")


def _half_cases():
    """float16 with a residual, bfloat16 without: each combination compiles kernels again."""
    f16, bf16 = _half_dtypes()
    yield pytest.param(f16.values[0], True, id="f16-res", marks=f16.marks)
    yield pytest.param(bf16.values[0], False, id="bf16-no-res", marks=bf16.marks)


def _ulp(v: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The spacing of `dtype`'s numbers at the float64 values `v` (subnormals included)."""
    bits, emin = (11, -14) if dtype == np.float16 else (8, -126)  # significand bits, min exp
    e = np.floor(np.log2(np.maximum(np.abs(v), 2.0**emin)))
    return 2.0 ** (e - (bits - 1))


def _round(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.asarray(a).astype(np.float32).astype(dtype)


@pytest.mark.parametrize("act", HALF_ACTS)
@pytest.mark.parametrize(("dtype", "with_residual"), list(_half_cases()))
@pytest.mark.parametrize("layout", ["rows", "slab"])
def test_half_precision_forward(layout, dtype, act, with_residual, rng):
    case, kw = LAYOUTS[layout], ACTS[act]
    d = _data(rng, case, dtype)
    res = d.residual if with_residual else None
    y, mean, rstd = _forward(case, d, res, kw)
    assert y.dtype == dtype and y.shape == case.shape
    assert mean.dtype == np.float64 and rstd.dtype == np.float64
    _, m_plain, r_plain = _forward(case, d, None, {})
    np.testing.assert_array_equal(mean, m_plain)
    np.testing.assert_array_equal(rstd, r_plain)
    yr, _, _ = _reference(case, d, res, kw)
    err = np.abs(_f64(y) - yr)
    # Computed in float32 and rounded once: half an ulp of the 16-bit format, plus float32's
    # error before the rounding (GN's 1e-5 target, times gamma and the activation's slope).
    assert np.all(err <= 0.5 * _ulp(yr, dtype) + 3e-5), float(np.max(err / _ulp(yr, dtype)))
    # The unfused chain: GN rounded to 16 bits, plus the residual rounded to 16 bits, then the
    # exact activation of that rounded z, rounded (the best any unfused chain can do).
    y_plain = _forward(case, d, None, {})[0]
    z16 = y_plain if res is None else _round(_f64(y_plain) + _f64(res), dtype)
    unfused = _round(activation_reference(z16, **kw)[0], dtype)
    assert err.max() <= np.abs(_f64(unfused) - yr).max()


@pytest.mark.parametrize("act", HALF_ACTS)
@pytest.mark.parametrize(("dtype", "with_residual"), list(_half_cases()))
@pytest.mark.parametrize("layout", ["rows", "slab"])
def test_half_precision_backward(layout, dtype, act, with_residual, rng):
    case, kw = LAYOUTS[layout], ACTS[act]
    d = _data(rng, case, dtype)
    res = d.residual if with_residual else None
    _, mean, rstd = _forward(case, d, res, kw)
    got = _backward(case, d, mean, rstd, res, kw)
    if len(got) == 3:
        got = (*got, None)
    dx, dgamma, dbeta, dres = got
    assert dx.dtype == dtype and dgamma.dtype == np.float32 and dbeta.dtype == np.float32
    want = _reference_backward(case, d, res, kw)
    # dx and dresidual: rounded once from float32; dgamma and dbeta: float32 sums of float32 dz.
    for name, g, w in (("dx", dx, want[0]), ("dresidual", dres, want[3])):
        if w is None:
            assert g is None
            continue
        assert g.dtype == dtype and g.shape == case.shape
        err = np.abs(_f64(g) - w)
        slack = 2e-5 * np.abs(w).max()
        assert np.all(err <= 0.5 * _ulp(w, dtype) + slack), (name, float(err.max()))
    assert _rel(dgamma, want[1]) <= 1e-5
    assert _rel(dbeta, want[2]) <= 1e-5
    # The unfused chain: z rounded to 16 bits (GN's output, then the sum with the residual),
    # dz = dy * act'(z) exact then rounded to 16 bits, then group_norm_backward.
    y_plain = _forward(case, d, None, {})[0]
    z16 = y_plain if res is None else _round(_f64(y_plain) + _f64(res), dtype)
    slope = activation_reference(z16, **kw)[1]
    dz16 = _round(_f64(d.dy) * slope, dtype)
    sep = group_norm_backward(dz16, d.x, mean, rstd, gamma=d.gamma, axis=case.axis,
                              **case.grouping)
    for name, g, s, w in zip(("dx", "dgamma", "dbeta"), got[:3], sep, want[:3], strict=True):
        assert _max_abs(g, w) <= _max_abs(s, w), name
    if res is not None:
        assert _max_abs(dres, want[3]) <= _max_abs(dz16, want[3])


@pytest.mark.parametrize("act", HALF_ACTS)
@pytest.mark.parametrize(("dtype", "with_residual"), list(_half_cases()))
@pytest.mark.parametrize("layout", ["rows", "slab"])
def test_half_precision_is_the_float32_computation_rounded_once(layout, dtype, with_residual, act,
                                                                rng):
    # As for plain GroupNorm: the same statistics and sums as float32 on the same values, and
    # every 16-bit output the float32 result rounded once (no 16-bit intermediate).
    case, kw = LAYOUTS[layout], ACTS[act]
    d = _data(rng, case, dtype)
    d32 = d._replace(x=d.x.astype(np.float32), residual=d.residual.astype(np.float32),
                     dy=d.dy.astype(np.float32))
    res, res32 = (d.residual, d32.residual) if with_residual else (None, None)
    y, mean, rstd = _forward(case, d, res, kw)
    y32, mean32, rstd32 = _forward(case, d32, res32, kw)
    np.testing.assert_array_equal(mean, mean32)
    np.testing.assert_array_equal(rstd, rstd32)
    np.testing.assert_array_equal(_bits16(y), _bits16(y32.astype(dtype)))
    dx, dgamma, dbeta, dres = _backward(case, d, mean, rstd, res, kw)
    dx32, dgamma32, dbeta32, dres32 = _backward(case, d32, mean32, rstd32, res32, kw)
    np.testing.assert_array_equal(dgamma, dgamma32)
    np.testing.assert_array_equal(dbeta, dbeta32)
    np.testing.assert_array_equal(_bits16(dx), _bits16(dx32.astype(dtype)))
    if with_residual:
        np.testing.assert_array_equal(_bits16(dres), _bits16(dres32.astype(dtype)))
    else:
        assert dres is None and dres32 is None


def _bits16(a: np.ndarray) -> np.ndarray:
    """The bit patterns of a 16-bit float array (NaNs and signed zeros compare too)."""
    return np.asarray(a).view(np.uint16)


# ----------------------------------------------------------------------------------------------
# Large offsets, constant groups, non-finite values, empty batches


@pytest.mark.parametrize("offset", [1e2, 1e4, 1e6])
@pytest.mark.parametrize(
    ("layout", "dtype", "act", "with_residual"),
    list(_combos(["rows", "slab", "mid-slab"], residuals=(True,),
                 acts=("relu", "silu", "gelu_tanh"))),
)
def test_large_offsets(layout, dtype, act, with_residual, offset, rng):
    case, kw = LAYOUTS[layout], ACTS[act]
    d = _data(rng, case, dtype, offset=offset)
    y, mean, rstd = _forward(case, d, d.residual, kw)
    yr, _, _ = _reference(case, d, d.residual, kw)
    # float32: GN's 1e-5 target at every offset; float64: its relative error grows with the
    # offset over the spread (here 1), by float64's epsilon.
    atol = 2e-5 if dtype == np.float32 else 64 * F64_EPS * offset
    np.testing.assert_allclose(y, yr, rtol=4 * np.finfo(dtype).eps, atol=atol)
    if offset <= 1e4:  # float32 data at 1e6 has 1/16 steps: its gradients are not meaningful
        got = _backward(case, d, mean, rstd, d.residual, kw)
        want = _reference_backward(case, d, d.residual, kw)
        rel = 1e-4 if dtype == np.float32 else 1e-9
        for name, g, w in zip(("dx", "dgamma", "dbeta", "dresidual"), got, want, strict=True):
            assert _rel(g, w) <= rel, (name, _rel(g, w))


@pytest.mark.parametrize(
    ("layout", "act"),
    [(layout, act) for layout in ("rows", "slab")
     for act in _acts(np.float32, True, LAYOUTS[layout].family)],
)
def test_constant_groups(layout, act, rng):
    case, kw = LAYOUTS[layout], ACTS[act]
    d = _data(rng, case, np.float32)
    d = d._replace(x=np.full(case.shape, 123.25, np.float32))
    # GN of a constant group is exactly beta, so y is exactly act(beta + residual) by the ops.
    bshape = [1] * len(case.shape)
    bshape[case.axis] = case.shape[case.axis]
    beta_b = np.broadcast_to(d.beta.reshape(bshape), case.shape)
    for res in (None, d.residual):
        if act not in _acts(np.float32, res is not None, case.family):
            continue
        y, mean, rstd = _forward(case, d, res, kw)
        assert np.all(np.isfinite(y))
        sep = _separate_forward(np.ascontiguousarray(beta_b), res, kw)
        if act in EXACT_ACTS or act in ("silu", "swish", "sigmoid"):
            np.testing.assert_array_equal(y, sep)
        else:
            _assert_within_ulps(y, sep, beta_b if res is None else beta_b + res, np.float32)
        got = _backward(case, d, mean, rstd, res, kw)
        got = (*got, None) if len(got) == 3 else got
        want = _reference_backward(case, d, res, kw)
        for g, w in zip(got, want, strict=True):
            if w is not None:
                assert np.all(np.isfinite(g))
                assert _rel(g, w) <= 1e-5
    # z == 0 exactly (beta 0, a residual of zeros): relu'(0) = 0, so every gradient is 0.
    if act == "relu":
        d0 = d._replace(beta=np.zeros_like(d.beta))
        zeros = np.zeros(case.shape, np.float32)
        y, mean, rstd = _forward(case, d0, zeros, kw)
        np.testing.assert_array_equal(y, zeros)
        for g in _backward(case, d0, mean, rstd, zeros, kw):
            np.testing.assert_array_equal(g, np.zeros_like(g))


def _blocks(case: Case):
    """`(n, g, index)` of every (sample, group) block of an array of `case.shape`."""
    ax = case.axis % len(case.shape)
    D = case.shape[ax] // case.groups
    for n in range(case.shape[0]):
        for g in range(case.groups):
            idx = [slice(None)] * len(case.shape)
            idx[0] = n
            idx[ax] = slice(g * D, (g + 1) * D)
            yield n, g, tuple(idx)


CONTAINMENT_PATHS = [("serial", False), ("fused", False), ("chunked", True)]


def _containment_paths(dtype, act):
    """Three paths for float32 SiLU, the serial one otherwise (see `_acts`)."""
    return CONTAINMENT_PATHS if dtype == np.float32 and act == PATH_ACT else [("serial", False)]


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize(
    ("layout", "dtype", "act", "with_residual"),
    list(_combos(["rows", "slab"], residuals=(True,), acts=("linear", "relu", "silu", "gelu"))),
)
def test_nonfinite_x_is_contained_in_its_group(layout, dtype, act, with_residual, bad, rng):
    case, kw = LAYOUTS[layout], ACTS[act]
    d = _data(rng, case, dtype)
    blocks = list(_blocks(case))
    n_bad, g_bad, idx = blocks[len(blocks) // 2 + 1]
    x_bad = d.x.copy()
    block = x_bad[idx]
    block[np.unravel_index(block.size // 2, block.shape)] = bad
    d_bad = d._replace(x=x_bad)
    D = case.shape[case.axis] // case.groups
    others_c = np.ones(case.shape[case.axis], bool)
    others_c[g_bad * D : (g_bad + 1) * D] = False
    keep = np.ones((case.shape[0], case.groups), bool)
    keep[n_bad, g_bad] = False
    for strategy, stream in _containment_paths(dtype, act):
        with _engine.forced(strategy=strategy, stream=stream):
            y0, m0, r0 = _forward(case, d, d.residual, kw)
            y1, m1, r1 = _forward(case, d_bad, d.residual, kw)
            b0 = _backward(case, d, m0, r0, d.residual, kw)
            b1 = _backward(case, d_bad, m1, r1, d.residual, kw)
        assert np.isnan(y1[idx]).all()
        for n, g, other in blocks:
            if (n, g) != (n_bad, g_bad):
                np.testing.assert_array_equal(y1[other], y0[other])
                np.testing.assert_array_equal(b1[0][other], b0[0][other])  # dx
                np.testing.assert_array_equal(b1[3][other], b0[3][other])  # dresidual
        np.testing.assert_array_equal(m1[keep], m0[keep])
        np.testing.assert_array_equal(r1[keep], r0[keep])
        np.testing.assert_array_equal(b1[1][others_c], b0[1][others_c])  # dgamma
        np.testing.assert_array_equal(b1[2][others_c], b0[2][others_c])  # dbeta


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    ("layout", "dtype", "act", "with_residual"),
    list(_combos(["rows", "slab"], dtypes=(np.float32,), residuals=(True,))),
)
def test_nonfinite_residual_is_contained_in_its_element(layout, dtype, act, with_residual, bad,
                                                        rng):
    case, kw = LAYOUTS[layout], ACTS[act]
    d = _data(rng, case, np.float32)
    pos = tuple(s // 2 for s in case.shape)
    r_bad = d.residual.copy()
    r_bad[pos] = bad
    elsewhere = np.ones(case.shape, bool)
    elsewhere[pos] = False
    blocks = list(_blocks(case))
    for strategy, stream in _containment_paths(dtype, act):
        with _engine.forced(strategy=strategy, stream=stream):
            y0, m0, r0 = _forward(case, d, d.residual, kw)
            y1, m1, r1 = _forward(case, d, r_bad, kw)
            b0 = _backward(case, d, m0, r0, d.residual, kw)
            b1 = _backward(case, d, m1, r1, r_bad, kw)
        np.testing.assert_array_equal(y1[elsewhere], y0[elsewhere])
        np.testing.assert_array_equal(m1, m0)
        np.testing.assert_array_equal(r1, r0)
        if np.isnan(bad) or (bad > 0 and act != "sigmoid"):
            # NaN stays NaN; +inf stays +inf through every activation but sigmoid (1).
            np.testing.assert_array_equal(y1[pos], bad)
        elif bad > 0:
            assert y1[pos] == 1.0
        # Backward: only the element's (sample, group) block of dx, its channel's dgamma and
        # dbeta and its own dresidual may change.
        np.testing.assert_array_equal(b1[3][elsewhere], b0[3][elsewhere])
        c = pos[case.axis]
        for n, g, idx in blocks:
            inside = n == pos[0] and g == c // (case.shape[case.axis] // case.groups)
            if not inside:
                np.testing.assert_array_equal(b1[0][idx], b0[0][idx])
        others = np.arange(case.shape[case.axis]) != c
        np.testing.assert_array_equal(b1[1][others], b0[1][others])
        np.testing.assert_array_equal(b1[2][others], b0[2][others])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize(("shape", "axis"), [((0, 8, 4), 1), ((0, 3, 8), -1)])
def test_empty_batch(shape, axis, dtype):
    x = np.zeros(shape, dtype)
    residual = np.zeros(shape, dtype)
    for res in (None, residual):
        y, mean, rstd = group_norm(x, 4, axis=axis, residual=res, activation="silu",
                                   return_stats=True)
        assert y.shape == shape and y.dtype == dtype
        assert mean.shape == (0, 4) and rstd.shape == (0, 4)
        got = group_norm_backward(x, x, mean, rstd, 4, axis=axis, residual=res,
                                  activation="silu")
        assert len(got) == 4
        dx, dgamma, dbeta, dres = got
        assert dx.shape == shape and dx.dtype == dtype
        pdtype = np.float32 if dtype == np.float16 else dtype
        np.testing.assert_array_equal(dgamma, np.zeros(8, pdtype))
        np.testing.assert_array_equal(dbeta, np.zeros(8, pdtype))
        assert dgamma.dtype == pdtype and dbeta.dtype == pdtype
        if res is None:
            assert dres is None
        else:
            assert dres.shape == shape and dres.dtype == dtype


# ----------------------------------------------------------------------------------------------
# Argument errors; out= and aliasing


@pytest.fixture
def small(rng):
    case = LAYOUTS["rows"]
    return case, _data(rng, case, np.float32)


def _fwd_call(case, d, **kw):
    kw.setdefault("groups", 4)
    return group_norm(d.x, gamma=d.gamma, beta=d.beta, axis=case.axis, **kw)


def _bwd_call(case, d, **kw):
    _, mean, rstd = group_norm(d.x, 4, d.gamma, d.beta, return_stats=True)
    return group_norm_backward(d.dy, d.x, mean, rstd, 4, d.gamma, beta=d.beta, **kw)


BAD_ARGUMENTS = {
    # id: (keywords, error type, pattern in the message)
    "unknown-activation": ({"activation": "tanh"}, ValueError, "`activation`"),
    "activation-case": ({"activation": "ReLU"}, ValueError, "`activation`"),
    "activation-empty": ({"activation": ""}, ValueError, "`activation`"),
    "activation-callable": ({"activation": np.tanh}, (TypeError, ValueError), "`activation`"),
    "activation-number": ({"activation": 1}, (TypeError, ValueError), "`activation`"),
    "residual-shape": ({"residual": np.zeros((2, 6, 5, 4), np.float32)}, ValueError,
                       "`residual`"),
    "residual-broadcastable": ({"residual": np.zeros((6, 5, 8), np.float32)}, ValueError,
                               "`residual`"),
    "residual-scalar": ({"residual": 1.0}, ValueError, "`residual`"),
    "residual-string": ({"residual": "abc"}, TypeError, "`residual`"),
    "residual-int": ({"residual": np.zeros((2, 6, 5, 8), np.int32)}, TypeError, "`residual`"),
    "residual-complex": ({"residual": np.zeros((2, 6, 5, 8), np.complex64)}, TypeError,
                         "`residual`"),
    "residual-object": ({"residual": object()}, TypeError, "`residual`"),
    "slope-string": ({"activation": "leaky_relu", "negative_slope": "0.2"}, TypeError,
                     "`negative_slope`"),
    "slope-none": ({"activation": "leaky_relu", "negative_slope": None}, TypeError,
                   "`negative_slope`"),
    "slope-array": ({"activation": "leaky_relu", "negative_slope": [0.2]}, TypeError,
                    "`negative_slope`"),
    "slope-nan": ({"activation": "leaky_relu", "negative_slope": float("nan")}, ValueError,
                  "`negative_slope`"),
    "slope-other-activation": ({"activation": "relu", "negative_slope": "x"}, TypeError,
                               "`negative_slope`"),
    "approximate-string": ({"activation": "gelu", "approximate": "yes"}, TypeError,
                           "`approximate`"),
    "approximate-int": ({"activation": "gelu", "approximate": 1}, TypeError, "`approximate`"),
    "approximate-none": ({"activation": "gelu", "approximate": None}, TypeError,
                         "`approximate`"),
}


@pytest.mark.parametrize("case_id", list(BAD_ARGUMENTS))
def test_bad_arguments_raise_and_write_nothing(case_id, small):
    case, d = small
    kw, error, pattern = BAD_ARGUMENTS[case_id]
    out = np.full(case.shape, -7.0, np.float32)
    with pytest.raises(error, match=pattern):
        _fwd_call(case, d, out=out, **kw)
    np.testing.assert_array_equal(out, np.full(case.shape, -7.0, np.float32))
    with pytest.raises(error, match=pattern):
        _bwd_call(case, d, out=out, **kw)
    np.testing.assert_array_equal(out, np.full(case.shape, -7.0, np.float32))


@pytest.mark.parametrize(
    ("kw", "error", "pattern"),
    [
        ({"negative_slope": "0.2"}, TypeError, "`negative_slope`"),
        ({"approximate": "yes"}, TypeError, "`approximate`"),
    ],
    ids=["slope", "approximate"],
)
def test_bad_fused_keywords_raise_in_a_plain_call_too(kw, error, pattern, small):
    # No residual and no activation, but a bad value is still bad input.
    case, d = small
    with pytest.raises(error, match=pattern):
        _fwd_call(case, d, **kw)
    with pytest.raises(error, match=pattern):
        _bwd_call(case, d, **kw)


def test_masked_residual_is_refused(small):
    case, d = small
    masked = np.ma.masked_array(d.residual, mask=d.residual > 1)
    with pytest.raises(TypeError, match="`residual`"):
        _fwd_call(case, d, residual=masked, activation="relu")
    with pytest.raises(TypeError, match="`residual`"):
        _bwd_call(case, d, residual=masked, activation="relu")


def test_backward_checks_beta(small):
    case, d = small
    _, mean, rstd = group_norm(d.x, 4, d.gamma, d.beta, return_stats=True)
    with pytest.raises(ValueError, match="`beta`"):
        group_norm_backward(d.dy, d.x, mean, rstd, 4, d.gamma, beta=np.zeros(3, np.float32),
                            activation="relu")


def test_swish_is_silu_and_linear_is_none(small):
    case, d = small
    for res in (None, d.residual):
        _assert_same_bits(
            _fwd_call(case, d, residual=res, activation="swish", return_stats=True),
            _fwd_call(case, d, residual=res, activation="silu", return_stats=True),
        )
        _assert_same_bits(
            _fwd_call(case, d, residual=res, activation="linear", return_stats=True),
            _fwd_call(case, d, residual=res, return_stats=True),
        )
    # Keras's defaults: leaky_relu's negative_slope is 0.2, gelu is the exact (erf) form.
    res = d.residual
    np.testing.assert_array_equal(
        _fwd_call(case, d, residual=res, activation="leaky_relu"),
        _fwd_call(case, d, residual=res, activation="leaky_relu", negative_slope=0.2),
    )
    np.testing.assert_array_equal(
        _fwd_call(case, d, residual=res, activation="gelu"),
        _fwd_call(case, d, residual=res, activation="gelu", approximate=False),
    )
    # negative_slope matters to leaky_relu only, approximate to gelu only.
    want = _fwd_call(case, d, residual=d.residual, activation="relu")
    got = _fwd_call(case, d, residual=d.residual, activation="relu", negative_slope=0.5,
                    approximate=True)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("layout", "dtype", "act", "with_residual"),
    list(_combos(["rows", "slab"], dtypes=(np.float32,), residuals=(True,),
                 acts=("linear", "relu", "leaky_relu", "silu", "gelu"))),
)
def test_out_aliasing_inputs(layout, dtype, act, with_residual, rng):
    case, kw = LAYOUTS[layout], ACTS[act]
    d = _data(rng, case, np.float32)
    want = _forward(case, d, d.residual, kw)
    # out is x
    x = d.x.copy()
    got = _forward(case, d._replace(x=x), d.residual, kw, out=x)
    assert got[0] is x
    _assert_same_bits(got, want)
    # out is the residual
    r = d.residual.copy()
    got = _forward(case, d, r, kw, out=r)
    assert got[0] is r
    _assert_same_bits(got, want)
    # out is both x and the residual: y = act(GN(x) + x)
    x = d.x.copy()
    want_xx = _forward(case, d, d.x, kw)
    got = _forward(case, d._replace(x=x), x, kw, out=x)
    _assert_same_bits(got, want_xx)
    # backward: out is dy, x or the residual
    _, mean, rstd = want
    want_b = _backward(case, d, mean, rstd, d.residual, kw)
    for which in ("dy", "x", "residual"):
        dd = d._replace(x=d.x.copy(), dy=d.dy.copy(), residual=d.residual.copy())
        out = getattr(dd, which)
        got_b = _backward(case, dd, mean, rstd, dd.residual, kw, out=out)
        assert got_b[0] is out, which
        _assert_same_bits(got_b, want_b, which)


# ----------------------------------------------------------------------------------------------
# From a user's compiled code


@numba.njit
def _compiled_fused(x, residual):
    return group_norm(x, 4, residual=residual, activation="relu")


@numba.njit
def _compiled_fused_backward(dy, x, mean, rstd, beta):
    return group_norm_backward(dy, x, mean, rstd, 4, beta=beta, activation="relu")


@pytest.mark.parametrize("which", ["forward", "backward"])
def test_compiled_callers_refuse_the_fused_keywords_naming_them(which, rng):
    # Compiled code supports the plain calls only (numba_gn.functional_jit): a fused keyword
    # fails when the caller is compiled, with Numba's typing error naming the keyword.
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    typing_error = numba.core.errors.TypingError
    with pytest.raises(typing_error, match=r"unexpected keyword argument '(residual|beta)'"):
        if which == "forward":
            _compiled_fused(x, x)
        else:
            _, mean, rstd = group_norm(x, 4, return_stats=True)
            _compiled_fused_backward(x, x, mean, rstd, np.zeros(8, np.float32))
